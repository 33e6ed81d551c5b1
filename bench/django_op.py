"""A helper process for bench/jobs.py, with Django set up against the live server's settings.

`python -m bench.django_op` with the server's environment (LiveServer.env) reads one JSON
command per line on stdin and answers one JSON line on stdout:

- {"op": "celery_rt", "n": N}: N times, one `bench.stamp` task sent through the server's
  broker (`.delay()`), then wait for its UDP datagram: send→task start (the task's own
  clock, the same host) and send→datagram received, seconds. A random 0-0.3 s pause
  before each send, so sends are not in phase with the worker's broker polling.
- {"op": "celery_burst", "n": N}: N tasks sent back to back, then wait for all N;
  returns the send times and the start times (epoch seconds).
- {"op": "sandbox_true", "n": N}: N times `jobs.execution.sandbox.launch(spec, ["true"]).wait()`
  with a job-like spec (the instance type's limits, binds like the runner's, a network
  namespace with the API relayed as for a job without `access.network`), wall seconds.
- {"op": "sandbox_burst", "n": N}: N such sandboxes back to back, as many at once as the
  worker's concurrency; the wall seconds (the throughput ceiling of the sandbox alone). With
  "argv" (a command list), that command instead of `true`.
- {"op": "task_per_job_burst", "n": N, "url": U[, "ledger": true]}: a task per job (see task_per_job_burst):
  N job-like sandboxed `true`, each asked for by a POST to the bare view U and run by a Celery task of
  the server's worker (with `ledger`, each also makes the target's bookkeeping); the wall seconds.
- {"op": "count_trivial_job", "n": N, "token": T, "project": P, "applet": A}: what a trivial job
  costs the database, submit to done (bench/dbcount.py): one job as a warm-up, then N jobs each
  submitted through the API view with token T (Django's test Client, in this process) and run by
  the worker's task in this process (`jobs.tasks.run_job.run`), every statement of every thread
  counted. Returns the last job's count (totals, submit and worker phases, by call site) and every
  job's totals. Run it while the server's worker has nothing to do: no other job may be runnable.
"""

import json
import os
import random
import shutil
import socket
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dxweb.settings")

import django  # noqa: E402

django.setup()

from django.conf import settings  # noqa: E402

from bench import dbcount  # noqa: E402
from bench import ledger as book  # noqa: E402
from bench.boxes import run_true, true_spec  # noqa: E402
from bench.tasks import stamp  # noqa: E402
from dxweb.celery import app  # noqa: E402,F401  (configures the broker from the settings)
from jobs.execution import sandbox  # noqa: E402

# As many sandboxes at once as `manage.py serve`'s worker runs jobs.
WORKER_CONCURRENCY = int(os.environ.get("DXWEB_WORKER_CONCURRENCY", "2"))

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
            spec = true_spec(base, i, limits)
            t0 = time.perf_counter()
            run_true(spec)
            out.append(time.perf_counter() - t0)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    return out


def sandbox_burst(n, argv=("true",)):
    """N sandboxed `true` back to back, as many at once as the worker runs jobs (its Celery
    concurrency); returns the wall seconds from the first start to the last end. This is what
    any job system using this sandbox could do on this machine with no bookkeeping at all."""
    base = Path(tempfile.mkdtemp(prefix="bench-sandbox-", dir=settings.DATA_DIR))
    limits = sandbox.instance_limits()
    pending = iter(range(n))
    lock = threading.Lock()
    errors = []

    def lane():
        while not errors:
            with lock:
                i = next(pending, None)
            if i is None:
                return
            try:
                run_true(true_spec(base, i, limits), argv)
            except Exception as exc:  # reported below, after every lane stops
                errors.append(exc)

    lanes = [threading.Thread(target=lane) for _ in range(WORKER_CONCURRENCY)]
    t0 = time.time()
    try:
        for thread in lanes:
            thread.start()
        for thread in lanes:
            thread.join()
    finally:
        shutil.rmtree(base, ignore_errors=True)
    if errors:
        raise errors[0]
    return {"wall_s": time.time() - t0, "lanes": len(lanes)}


def task_per_job_burst(n, url, threads=4, ledger=False, python=False):
    """A task per job, the naive job system on this stack: n POSTs to the bare `launch_true` view at
    `url` (bench/views.py), from `threads` clients as bench/jobs.py submits its jobs; each sends one
    Celery task that runs a job-like sandboxed `true` in the server's worker (bench/tasks.py
    boxed_true); no token, no database, unless `ledger`: then the view and the task also make the
    transactions the target allows a job (bench/ledger.py); `python`: the sandboxes import dxpy and
    make one call instead of running `true` (bench/tasks.py DXPY_CALL). Returns the wall seconds from
    the first POST to the last sandbox's end."""
    if ledger:
        book.ensure()
    base = Path(tempfile.mkdtemp(prefix="bench-task-per-job-", dir=settings.DATA_DIR))
    tags = [f"task-{i}-{random.randrange(10**9)}" for i in range(n)]
    chunks = [tags[i::threads] for i in range(threads)]
    errors = []

    def post(mine):
        for tag in mine:
            body = {"port": PORT, "tag": tag, "base": str(base), "ledger": ledger, "python": python}
            body = json.dumps(body).encode()
            request = urllib.request.Request(url, body, {"Content-Type": "application/json"})
            try:
                with urllib.request.urlopen(request, timeout=60) as response:
                    response.read()
            except OSError as exc:
                errors.append(exc)

    t0 = time.time()
    try:
        clients = [threading.Thread(target=post, args=(mine,)) for mine in chunks]
        for client in clients:
            client.start()
        for client in clients:
            client.join()
        if errors:
            raise errors[0]
        wanted, last = set(tags), t0
        while wanted:
            got, ended, _ = _recv()
            if got in wanted:
                wanted.discard(got)
                last = max(last, ended)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    return {"wall_s": last - t0, "lanes": WORKER_CONCURRENCY}


def count_trivial_job(n, token, project, applet):
    """The count of n trivial jobs, one by one, after a first one (a worker's first job sets up what it
    keeps)."""
    dbcount.count_trivial_job(token, project, applet)  # a warm-up: the first job opens its connections
    counts = [dbcount.count_trivial_job(token, project, applet) for _ in range(n)]
    last = counts[-1]
    last["runs"] = [{"queries": c["queries"], "transactions": c["transactions"], "state": c["state"]} for c in counts]
    return last


OPS = {
    "celery_rt": celery_rt,
    "celery_burst": celery_burst,
    "sandbox_true": sandbox_true,
    "sandbox_burst": sandbox_burst,
    "task_per_job_burst": task_per_job_burst,
    "count_trivial_job": count_trivial_job,
}


def main():
    print(json.dumps({"ready": True, "port": PORT}), flush=True)
    for line in sys.stdin:
        cmd = json.loads(line)
        try:
            result = {"ok": OPS[cmd.pop("op")](**cmd)}
        except Exception as exc:  # report, keep serving
            result = {"error": f"{type(exc).__name__}: {exc}"}
        print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
