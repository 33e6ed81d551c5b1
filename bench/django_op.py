"""A helper process for bench/jobs.py, with Django set up against the live server's settings.

`python -m bench.django_op` with the server's environment (LiveServer.env) reads one JSON
command per line on stdin and answers one JSON line on stdout:

- {"op": "celery_rt", "n": N}: N times, one `bench.stamp` task sent through the server's
  broker (`.delay()`), then wait for its UDP datagram: send→task start (the task's own
  clock, the same host) and send→datagram received, seconds. A random 0-0.3 s pause
  before each send, so sends are not in phase with the worker's broker polling.
- {"op": "celery_burst", "n": N}: N tasks sent back to back, then wait for all N;
  returns the send times and the start times (epoch seconds).
- {"op": "sandbox_true", "n": N}: N times `jobs.sandbox.launch(spec, ["true"]).wait()`
  with a job-like spec (the instance type's limits, binds like the runner's), wall seconds.
"""
import json
import os
import random
import shutil
import socket
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dxweb.settings")

import django  # noqa: E402

django.setup()

from django.conf import settings  # noqa: E402

from bench.tasks import stamp  # noqa: E402
from dxweb.celery import app  # noqa: E402,F401  (configures the broker from the settings)
from jobs import sandbox  # noqa: E402

SOCK = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
SOCK.bind(("127.0.0.1", 0))
PORT = SOCK.getsockname()[1]
SOCK.settimeout(120)


def _recv():
    data = json.loads(SOCK.recv(4096))
    return data["tag"], data["started"], time.time()


def celery_rt(n):
    out = []
    for i in range(n):
        time.sleep(random.uniform(0, 0.3))
        tag = f"rt-{i}-{random.random()}"
        sent = time.time()
        stamp.delay(PORT, tag)
        while True:
            got, started, received = _recv()
            if got == tag:
                break
        out.append({"send_to_start": started - sent, "send_to_received": received - sent})
    return out


def celery_burst(n):
    sends = []
    tags = [f"burst-{i}-{random.random()}" for i in range(n)]
    for tag in tags:
        sends.append(time.time())
        stamp.delay(PORT, tag)
    wanted, starts = set(tags), []
    while wanted:
        got, started, _ = _recv()
        if got in wanted:
            wanted.discard(got)
            starts.append(started)
    return {"sends": sends, "starts": starts}


def sandbox_true(n):
    base = Path(tempfile.mkdtemp(prefix="bench-sandbox-", dir=settings.DATA_DIR))
    limits = sandbox.instance_limits()
    out = []
    try:
        for i in range(n):
            time.sleep(random.uniform(0, 0.05))
            work = base / f"bench-true-{i}"
            home, meta, logs = work / "home", work / "meta", work / "log"
            for path in (home, meta, logs):
                path.mkdir(parents=True)
            spec = sandbox.SandboxSpec(
                job_id=f"bench-true-{i}", home=home, env={"HOME": "/home/dnanexus", "PATH": "/usr/bin:/bin"},
                binds=[sandbox.Bind(meta, "/opt/dnanexus/job", writable=True),
                       sandbox.Bind(logs, "/opt/dnanexus/log", writable=True)],
                cpus=limits["cpus"], memory_mb=limits["memory_mb"], workdir=work,
            )
            t0 = time.perf_counter()
            proc = sandbox.launch(spec, ["true"])
            code = proc.wait()
            out.append(time.perf_counter() - t0)
            if code != 0:
                raise RuntimeError(f"sandboxed true exited {code}: {proc.stderr.read()[:500]!r}")
            shutil.rmtree(work, ignore_errors=True)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    return out


OPS = {"celery_rt": celery_rt, "celery_burst": celery_burst, "sandbox_true": sandbox_true}


def main():
    print(json.dumps({"ready": True, "port": PORT}), flush=True)
    for line in sys.stdin:
        cmd = json.loads(line)
        try:
            result = {"ok": OPS[cmd["op"]](cmd["n"])}
        except Exception as exc:  # report, keep serving
            result = {"error": f"{type(exc).__name__}: {exc}"}
        print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
