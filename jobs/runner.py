"""Run one claimed job in its sandbox: prepare its home, stream its logs, heartbeat, collect its result."""
import json
import logging
import os
import shlex
import shutil
import socket
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlparse

from django.conf import settings
from django.db import close_old_connections

from projects.models import now_ms

from . import actions, sandbox
from .logs import SYSLOG_LEVELS, LogWriter
from .models import Job, State

log = logging.getLogger(__name__)

HOME = "/home/dnanexus"
META = "/opt/dnanexus/job"
LOG_SOCKETS = "/opt/dnanexus/log"
# pip's cache, shared by the jobs of this worker host so execDepends are fetched once.
PIP_CACHE = "/opt/dnanexus/pip-cache"
ERROR_TYPES = {"AppError", "AppInternalError"}

BASH_WRAPPER = """\
set -e -o pipefail
cd "$HOME"
{prepare}
eval "$(dx-print-bash-vars)"
. {meta}/code.sh
if [[ $(type -t {function}) == "function" ]]; then
  {function}
fi
"""

PYTHON_WRAPPER = """\
set -e -o pipefail
cd "$HOME"
{prepare}
exec python3 {meta}/code.py
"""


def job_dir(job_id):
    return Path(settings.DXWEB_JOBS_DIR) / job_id


def job_environment(job, token):
    api = urlparse(settings.DXWEB_API_URL)
    bindir = os.path.dirname(sys.executable)
    return {
        "HOME": HOME,
        "USER": "dnanexus",
        "LANG": "C.UTF-8",
        "PATH": f"{bindir}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "PYTHONUNBUFFERED": "1",
        "DX_JOB_ID": job.id,
        "DX_WORKSPACE_ID": job.workspace_id,
        "DX_PROJECT_CONTEXT_ID": job.project_id,
        "DX_SECURITY_CONTEXT": json.dumps({"auth_token": token, "auth_token_type": "Bearer"}),
        "DX_APISERVER_PROTOCOL": api.scheme,
        "DX_APISERVER_HOST": api.hostname,
        "DX_APISERVER_PORT": str(api.port or (443 if api.scheme == "https" else 80)),
        "DX_RUN_DETACH": "1",
    }


def _prepare_commands(job):
    """Shell lines run inside the sandbox before the code: bundledDepends, then pip execDepends."""
    lines = []
    run_spec = job.spec.get("runSpec", {})
    for dep in run_spec.get("bundledDepends", []):
        link = dep["id"]["$dnanexus_link"]
        file_id = link if isinstance(link, str) else link["id"]
        lines.append(
            f"dx download {shlex.quote(file_id)} -o /tmp/.bundle.tar.gz -f --no-progress"
            " && tar -xzf /tmp/.bundle.tar.gz -C / && rm -f /tmp/.bundle.tar.gz"
        )
    pip = [d for d in run_spec.get("execDepends", []) if d.get("package_manager") == "pip"]
    if pip:
        specs = " ".join(shlex.quote(d["name"] + (f"=={d['version']}" if d.get("version") else "")) for d in pip)
        lines.append(f"python3 -m pip install --quiet --disable-pip-version-check --cache-dir {PIP_CACHE} {specs}")
    return "\n".join(lines)


def _pip_cache():
    path = Path(settings.DXWEB_PIP_CACHE_DIR)
    path.mkdir(parents=True, exist_ok=True)
    return path


class LogSockets:
    """Serve /opt/dnanexus/log/{priority,bulk}: the datagram sockets dxpy's DXLogHandler writes to."""

    def __init__(self, directory, writer):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.writer = writer
        self.sockets = []
        for name in ("priority", "bulk"):
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            path = self.directory / name
            if path.exists():
                path.unlink()
            sock.bind(str(path))
            os.chmod(path, 0o777)
            sock.settimeout(0.2)
            self.sockets.append(sock)
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._serve, args=(s,), daemon=True) for s in self.sockets]
        for thread in self.threads:
            thread.start()

    def _serve(self, sock):
        while not self.stop.is_set():
            try:
                data = sock.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                return
            self.handle(data)

    def handle(self, data):
        try:
            message = json.loads(data.decode("utf-8", "replace"))
            level = message.get("level")
            source = message.get("source", "DX_APP")
            text = str(message.get("msg", ""))
        except (ValueError, AttributeError):
            self.writer.write("STDERR", data.decode("utf-8", "replace"))
            return
        if source == "DX_APP_STREAM":
            name = "STDERR" if level in (3, "3", "ERROR") else "STDOUT"
            source = "APP"
        else:
            name = SYSLOG_LEVELS.get(int(level), "INFO") if str(level).isdigit() else str(level or "INFO").upper()
        for line in text.splitlines() or [""]:
            self.writer.write(name, line, source=source)

    def close(self):
        self.stop.set()
        for thread in self.threads:
            thread.join(1)
        for sock in self.sockets:
            sock.close()


def _pump(stream, writer, level):
    for raw in iter(stream.readline, b""):
        writer.write(level, raw.decode("utf-8", "replace").rstrip("\n"))
    stream.close()


def run(job_id, worker):
    """Claim `job_id` for this worker and run it to the end; return quietly if another worker has it."""
    close_old_connections()
    claimed = actions.claim(job_id, worker)
    if claimed is None:
        return
    job, token = claimed
    writer = LogWriter(job.id)
    workdir = job_dir(job.id)
    # What an earlier try left (its worker died) must not leak into this one: outputs, errors, files.
    shutil.rmtree(workdir, ignore_errors=True)
    sockets = proc = None
    outcome = {"kind": "exit"}
    try:
        home, meta = workdir / "home", workdir / "meta"
        for path in (home, meta):
            path.mkdir(parents=True, exist_ok=True)
        (home / "job_input.json").write_text(json.dumps(job.input))
        interpreter = job.spec["runSpec"]["interpreter"]
        code_name = "code.sh" if interpreter == "bash" else "code.py"
        (meta / code_name).write_text(job.spec["runSpec"]["code"])
        template = BASH_WRAPPER if interpreter == "bash" else PYTHON_WRAPPER
        script = template.format(prepare=_prepare_commands(job), meta=META, function=shlex.quote(job.function))
        sockets = LogSockets(workdir / "log", writer)
        limits = sandbox.instance_limits(job.instance_type)
        spec = sandbox.SandboxSpec(
            job_id=job.id,
            home=home,
            env=job_environment(job, token),
            binds=[
                sandbox.Bind(meta, META, writable=True),
                sandbox.Bind(workdir / "log", LOG_SOCKETS, writable=True),
                sandbox.Bind(_pip_cache(), PIP_CACHE, writable=True),
            ],
            cpus=limits["cpus"],
            memory_mb=limits["memory_mb"],
            workdir=workdir,
        )
        writer.write("INFO", f"Running {job.executable_name} ({job.function}) on {worker}", source="SYSTEM")
        proc = sandbox.launch(spec, ["bash", "-c", script])
        pumps = [
            threading.Thread(target=_pump, args=(proc.stdout, writer, "STDOUT"), daemon=True),
            threading.Thread(target=_pump, args=(proc.stderr, writer, "STDERR"), daemon=True),
        ]
        for pump in pumps:
            pump.start()
        outcome = _supervise(job, proc)
        for pump in pumps:
            pump.join(5)
    except Exception as exc:  # the platform failed, not the job's code
        log.exception("job %s failed in the runner", job_id)
        outcome = {"kind": "platform", "message": f"{type(exc).__name__}: {exc}"}
        if proc is not None:
            proc.kill_tree()
    finally:
        if sockets is not None:
            sockets.close()
    # Watchers end their stream once the job is final and the store has nothing new: store the log first.
    writer.flush(every=settings.DXWEB_HEARTBEAT_SECONDS, while_waiting=lambda: Job.objects.filter(
        pk=job.id, state=State.RUNNING, tries=job.tries).update(heartbeat=now_ms()))
    held = _conclude(job, proc, outcome, workdir, writer, worker)
    writer.close()
    # The code has ended: its sandbox (home, root layer, sockets) is no longer needed, unless a
    # later try of the job has taken over the directory.
    if held:
        shutil.rmtree(workdir, ignore_errors=True)
    close_old_connections()


def _supervise(job, proc):
    """Wait for the process while renewing the lease; kill it on terminate, timeout or a lost lease."""
    deadline = time.monotonic() + job.timeout_s if job.timeout_s else None
    interval = settings.DXWEB_HEARTBEAT_SECONDS
    while True:
        if proc.wait(timeout=interval) is not None:
            return {"kind": "exit"}
        # Renew the lease only while it is this claim's (`tries` is its generation): after a stall
        # longer than the lease, the reaper may have handed the job to another try.
        if Job.objects.filter(pk=job.id, state=State.RUNNING, tries=job.tries).update(heartbeat=now_ms()) != 1:
            proc.kill_tree()
            if Job.objects.filter(pk=job.id, state=State.TERMINATING, tries=job.tries).exists():
                return {"kind": "terminated"}
            return {"kind": "lost"}
        if deadline is not None and time.monotonic() > deadline:
            proc.kill_tree()
            return {"kind": "timeout"}


def _read_json(path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _conclude(job, proc, outcome, workdir, writer, worker):
    """Record how the run ended; return False if this claim had lost the job to another try."""
    home = workdir / "home"
    # Every result is recorded only while this claim still holds the job (see _supervise).
    lease = {"tries": job.tries}
    if outcome["kind"] == "exit":
        state = Job.objects.filter(pk=job.id, **lease).values_list("state", flat=True).first()
        if state == State.TERMINATING:
            outcome = {"kind": "terminated"}
        elif state != State.RUNNING:
            outcome = {"kind": "lost"}
    kind = outcome["kind"]
    if kind == "lost":
        writer.write("WARNING", f"{worker} lost this job's lease (try {job.tries}) and stopped its run; "
                     "its result is discarded", source="SYSTEM")
        return False
    if kind == "terminated":
        writer.write("INFO", "The job was terminated", source="SYSTEM")
        actions.transition(job.id, State.TERMINATED, expected=[State.TERMINATING], only_if=lease)
        return True
    if kind == "timeout":
        message = f"The job ran longer than its {job.timeout_s} s timeout and was stopped"
        writer.write("ERROR", message, source="SYSTEM")
        actions.fail(job, "JobTimeoutExceeded", message, only_if=lease)
        return True
    if kind == "platform":
        writer.write("ERROR", f"The platform failed to run the job: {outcome['message']}", source="SYSTEM")
        actions.fail(job, "ExecutionError", outcome["message"], only_if=lease)
        return True
    code = proc.returncode
    if code == 0:
        output = _read_json(home / "job_output.json")
        if output is None:
            output = {}
        if not isinstance(output, dict):
            actions.fail(job, "AppInternalError", "job_output.json must hold a JSON object", only_if=lease)
            return True
        actions.finish(job.id, output, only_if=lease)
        return True
    error = (_read_json(home / "job_error.json") or {}).get("error") if (home / "job_error.json").exists() else None
    if isinstance(error, dict) and error.get("type") in ERROR_TYPES:
        reason, message = error["type"], str(error.get("message", ""))
    else:
        reason = "AppInternalError"
        message = f"Error while running the command (exit code {code})"
        if code > 128:
            message += f"; killed by signal {code - 128}" + (" (out of memory?)" if code == 137 else "")
    writer.write("ERROR", f"{reason}: {message}", source="SYSTEM")
    actions.fail(job, reason, message, only_if=lease)
    return True
