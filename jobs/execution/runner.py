"""Run one claimed job in its sandbox: prepare its home, stream its logs, heartbeat, collect its result."""

import json
import logging
import os
import queue
import select
import shlex
import shutil
import socket
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import NamedTuple
from urllib.parse import urlparse

from django.conf import settings
from django.db import close_old_connections, connections

from dxweb import sql
from dxweb.threads import ReusedThread
from jobs import actions, dispatch, holds, scheduler
from jobs.logs.store import MAX_LINE, SYSLOG_LEVELS, LogWriter
from jobs.models import Job, State
from jobs.ssh.gateway import Gateway
from projects.models import now_ms

from . import assets, sandbox
from .bash_vars import write_bash_vars
from .sampler import Sampler

log = logging.getLogger(__name__)

HOME = "/home/dnanexus"
META = "/opt/dnanexus/job"
LOG_SOCKETS = "/opt/dnanexus/log"
# pip's cache, shared by one user's jobs on this worker host so execDepends are fetched once (one per
# user: a job can write to it, and another user's jobs must not install what it wrote).
PIP_CACHE = "/opt/dnanexus/pip-cache"
# execDepends (pip) go here, on the job's PYTHONPATH and PATH: never into the worker's own Python,
# which the sandbox may show read-only (and must not change for other jobs).
PIP_TARGET = "/opt/dnanexus/python"
ERROR_TYPES = {"AppError", "AppInternalError"}
# The bash variables of the job's input (see bash_vars()), made by the runner, read-only inside.
BASH_VARS = f"{META}/bash-vars.sh"
SOURCE_BASH_VARS = f". {BASH_VARS}"
MAKE_BASH_VARS = 'eval "$(dx-print-bash-vars)"'

# {bash_vars}: SOURCE_BASH_VARS, or MAKE_BASH_VARS where bash_vars() leaves them to dx-print-bash-vars.
BASH_WRAPPER = """\
set -e -o pipefail
cd "$HOME"
{prepare}
{bash_vars}
. {meta}/code.sh
if [[ $(type -t {function}) == "function" ]]; then
  {function}
fi
"""

# With debug.debugOn, the code runs under this: if it fails (or created /.dx-hold), its exit
# status is left for the runner and a sentinel keeps the sandbox (its pid namespace) alive.
DEBUG_WRAPPER = """\
bash -c "$1"
code=$?
if [ "$code" -ne 0 ] || [ -e /.dx-hold ]; then
  echo "$code" > {meta}/exit-status
  exec sleep infinity </dev/null >/dev/null 2>&1
fi
exit 0
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
        "PATH": f"{PIP_TARGET}/bin:{bindir}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "PYTHONPATH": PIP_TARGET,
        "PYTHONUNBUFFERED": "1",
        "DX_JOB_ID": job.id,
        "DX_WORKSPACE_ID": job.workspace_id,
        "DX_PROJECT_CONTEXT_ID": job.project_id,
        "DX_SECURITY_CONTEXT": json.dumps({"auth_token": token, "auth_token_type": "Bearer"}),
        "DX_APISERVER_PROTOCOL": api.scheme,
        "DX_APISERVER_HOST": api.hostname,
        "DX_APISERVER_PORT": str(api.port or (443 if api.scheme == "https" else 80)),
        "DX_RUN_DETACH": "1",
        **({"DX_RESOURCES_ID": resources} if (resources := actions.app_resources(job)) else {}),
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
        lines.append(
            f"python3 -m pip install --quiet --disable-pip-version-check --cache-dir {PIP_CACHE} "
            f"--target {PIP_TARGET} {specs}"
        )
    return "\n".join(lines)


def _pip_cache(user_id):
    path = Path(settings.DXWEB_PIP_CACHE_DIR) / f"user-{int(user_id)}"
    path.mkdir(parents=True, exist_ok=True)
    return path


class LogSockets:
    """Serve /opt/dnanexus/log/{priority,bulk}: the datagram sockets dxpy's DXLogHandler writes to,
    and log the code's stdout and stderr once the job has started (follow()).

    One thread waits on the sockets, the pipes and a wake-up pipe (a thread per job and stream costs
    the lane its start-up at each job): close() returns as soon as what the job sent before it ended
    is logged, with no polling interval to wait out.
    """

    def __init__(self, directory, writer):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.writer = writer
        self.sockets = []
        # Bound through the directory's descriptor: a socket's path may hold at most 107 bytes, and a
        # data directory deep in the file system would leave too few for the job's own.
        directory_fd = os.open(self.directory, os.O_RDONLY | os.O_DIRECTORY)
        try:
            for name in ("priority", "bulk"):
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
                path = self.directory / name
                if path.exists():
                    path.unlink()
                sock.bind(f"/proc/self/fd/{directory_fd}/{name}")
                os.chmod(path, 0o777)
                sock.setblocking(False)
                self.sockets.append(sock)
        finally:
            os.close(directory_fd)
        self._wake_read, self._wake_write = os.pipe()
        self._streams, self._new_streams = {}, []  # fd: [file, level, partial line]
        self._lock = threading.Lock()
        self.streams_ended = threading.Event()
        self.thread = ReusedThread(self._serve, name=f"log-sockets-{self.directory.parent.name}")
        self.thread.start()

    def follow(self, stdout, stderr):
        """Log the code's stdout and stderr, line by line; streams_ended is set once both have ended."""
        with self._lock:
            self._new_streams += [(stdout, "STDOUT"), (stderr, "STDERR")]
        os.write(self._wake_write, b"f")

    def _serve(self):
        poller = select.poll()
        for sock in self.sockets:
            poller.register(sock, select.POLLIN)
        poller.register(self._wake_read, select.POLLIN)
        by_fd = {sock.fileno(): sock for sock in self.sockets}
        while True:
            for fd, _ in poller.poll():
                if fd == self._wake_read:
                    if b"x" in os.read(self._wake_read, 64):
                        for sock in self.sockets:  # what was sent before close() is still logged
                            self._drain(sock)
                        return
                    with self._lock:
                        for stream, level in self._new_streams:
                            self._streams[stream.fileno()] = [stream, level, b"", False]
                            poller.register(stream.fileno(), select.POLLIN)
                        self._new_streams.clear()
                elif fd in by_fd:
                    self._drain(by_fd[fd])
                elif fd in self._streams:
                    self._read_stream(poller, fd)

    def _read_stream(self, poller, fd):
        entry = self._streams[fd]  # [file, level, partial line, skipping the rest of a long line]
        chunk = data = os.read(fd, 65536)
        if entry[3]:  # the rest of a line already logged, cut to the log's MAX_LINE: dropped
            end = data.find(b"\n")
            data, entry[3] = (b"", True) if end < 0 else (data[end + 1 :], False)
        *lines, entry[2] = (entry[2] + data).split(b"\n")
        if len(entry[2]) > MAX_LINE:  # longer than the log keeps: logged (cut) now, not held whole
            lines.append(entry[2])
            entry[2], entry[3] = b"", True
        for raw in lines:
            self.writer.write(entry[1], raw.decode("utf-8", "replace"))
        if not chunk:  # ended: its last line, if it had no newline
            if entry[2]:
                self.writer.write(entry[1], entry[2].decode("utf-8", "replace"))
            poller.unregister(fd)
            entry[0].close()
            del self._streams[fd]
            if not self._streams:
                self.streams_ended.set()

    def _drain(self, sock):
        while True:
            try:
                data = sock.recv(65536)
            except (BlockingIOError, InterruptedError):
                return
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
        os.write(self._wake_write, b"x")
        self.thread.join(5)
        for sock in self.sockets:
            sock.close()
        os.close(self._wake_read)
        os.close(self._wake_write)


# How a run ended: what _supervise and _maybe_hold return, and _conclude records.


class Failure(NamedTuple):
    """The failure a job is held for (debug.debugOn), as its `debug` records it."""

    reason: str
    message: str

    def debug_fields(self):
        return {"failureReason": self.reason, "failureMessage": self.message}


@dataclass(frozen=True, slots=True)
class Exited:
    """The code ended with `code` (under debug.debugOn, the status the wrapper saved before holding)."""

    code: int


@dataclass(frozen=True, slots=True)
class HoldRequested:
    """Under debug.debugOn, the job created /.dx-hold: it is held whatever its code does next."""


@dataclass(frozen=True, slots=True)
class TimedOut:
    """The code ran past the job's timeout and was killed."""


@dataclass(frozen=True, slots=True)
class Terminated:
    """The job was terminated (it is terminating): its processes were killed."""


@dataclass(frozen=True, slots=True)
class Lost:
    """This claim no longer holds the job (the reaper gave it to another try): its result is discarded."""


@dataclass(frozen=True, slots=True)
class PlatformFailed:
    """The runner or the sandbox failed, not the job's code."""

    message: str


@dataclass(frozen=True, slots=True)
class Released:
    """A debug hold was released through the API or the job page, which recorded the job's end."""


@dataclass(frozen=True, slots=True)
class HoldEnded:
    """A debug hold ended (`why`): the job fails with its held failure, or is terminated if it had none."""

    failure: Failure | None
    why: str


Outcome = Exited | HoldRequested | TimedOut | Terminated | Lost | PlatformFailed | Released | HoldEnded


def run(job_id, worker):
    """Claim `job_id` for this worker and run it to the end; return quietly if another worker has it."""
    close_old_connections()
    claimed = actions.claim(job_id, worker)
    if claimed is not None:
        run_claimed(*claimed, worker)
    close_old_connections()


def work(worker, job_id=None, host=None, cap=None, limit=None, stopping=lambda: False):
    """A lane's turn (one Celery wake-up): run the job this host should take next, then the next,
    until none fits what the host has free (jobs/scheduler.py); return how many ran.

    A wake-up may so run another job than `job_id`, the one whose launch sent it. Wake-ups only say
    that there may be work, and one is sent only when none waits (jobs/dispatch.py): a job launched
    while every lane is busy is taken by a lane that looks after its current job, or by the lane that
    takes the waiting wake-up. A turn whose first claim leaves other jobs runnable wakes one more lane
    (if none waits already), so a burst spreads over the idle lanes. A spare wake-up ends after the
    claim's one read finds nothing. Going on after a job ends is also what lets a job that waited for
    room (its wake-up found the host full) start when the room is made.

    Once a job's code has ended, its end is recorded by the lane's ending thread (Ending) while the
    lane claims and starts the next: the sandbox's teardown and the next one's start wait on the
    kernel, and the database work of the end fits in that wait. The turn ends only once every end it
    handed over is recorded. Once `stopping()` (its worker is stopping), the turn claims nothing more.
    """
    host = host or settings.DXWEB_WORKER_NAME
    cap = cap or scheduler.capacity()
    limit = limit or settings.DXWEB_WORKER_RUNS_PER_WAKEUP
    ran = 0
    ending = Ending()
    try:
        while ran < limit and not stopping():
            close_old_connections()
            claimed = actions.claim_next(worker, host, cap, ending=ending.instance_types())
            if claimed is None:
                if ending.wait():  # the room they leave, and what they made runnable, is this lane's too
                    continue
                break
            if ran == 0 and claimed[0].more_runnable:
                dispatch.wake()  # the others are for an idle lane, if any: one more wakes (jobs/dispatch.py)
            ending.add(claimed[0], _run_to_end(*claimed, worker))
            ran += 1
            if not claimed[0].more_runnable:  # the lane looks once more when the job's end is recorded
                ending.wait()
                if not Job.objects.filter(state=State.RUNNABLE).exists():
                    break
        else:  # the lane gives its turn back (its limit; its worker stopping): the rest is for a new wake-up
            ending.wait()
            dispatch.wake()
    finally:
        ending.wait()
        close_old_connections()
    return ran


def run_claimed(job, token, worker):
    """Run a job this worker has just claimed (with its new token) to the end and record how it ended."""
    _run_to_end(job, token, worker)()


def _run_to_end(job, token, worker):
    """Run a claimed job's code to its end; return the function that records the end."""
    # Fenced on this claim: once the job is another try's, this one's lines are refused.
    writer = LogWriter(job.id, claim=(job.tries, job.worker), first=job.tries == 1)
    workdir = job_dir(job.id)
    # What an earlier try left (its worker died) must not leak into this one: outputs, errors, files.
    shutil.rmtree(workdir, ignore_errors=True)
    outcome, proc = _execute(job, token, workdir, writer, worker)
    ended = now_ms()  # its stoppedRunning: the next job may start before the end is recorded

    def record():
        # Watchers end their stream once the job is final and the store has nothing new: store the log first.
        writer.flush(
            every=settings.DXWEB_HEARTBEAT_SECONDS,
            while_waiting=lambda: Job.objects.filter(
                pk=job.id, state__in=[State.RUNNING, State.DEBUG_HOLD], tries=job.tries
            ).update(heartbeat=sql.DatabaseNow()),
        )
        held = _conclude(job, proc, outcome, workdir, writer, worker, ended)
        # Store what _conclude logged, then let the writer thread end on its own: close() would also
        # wait out the thread's idle poll (up to its flush interval) for nothing.
        writer.flush()
        writer.closed.set()
        # The code has ended: its sandbox (home, root layer, sockets) is no longer needed, unless a
        # later try of the job has taken over the directory.
        if held:
            _remove_soon(workdir)

    return record


class Ending:
    """The ends a lane's turn has handed to its process's ending thread, to record while it goes on.

    A job whose end is being recorded still counts as running in the database: the lane's claims
    leave its instance type out of what the host's running jobs take (`instance_types`), as its code
    and sandbox are gone.
    """

    def __init__(self):
        self.pending = []  # (job, future)

    def add(self, job, record):
        self.pending.append((job, _ending_thread().submit(_record_end, job.id, record)))

    def instance_types(self):
        self.pending = [(job, f) for job, f in self.pending if not f.done()]
        return [job.instance_type for job, _ in self.pending]

    def wait(self):
        """Wait until every end handed over is recorded; return whether any was still pending."""
        waited = bool(self.instance_types())
        for _, future in self.pending:
            future.result()
        self.pending = []
        return waited


def _record_end(job_id, record):
    try:
        record()
    except Exception:  # noqa: BLE001 - the lease lapses and the reaper retries the job, as for a dead worker
        log.exception("could not record the end of job %s", job_id)
    finally:
        close_old_connections()


@cache
def _ending_thread():
    """The process's thread that records jobs' ends (one: the ends of a lane are recorded in order)."""
    return ThreadPoolExecutor(max_workers=1, thread_name_prefix="job-ends")


os.register_at_fork(after_in_child=_ending_thread.cache_clear)  # a forked child has not the thread


def close_ending_connections():
    """Close the ending thread's database connections now (a test database is about to be dropped)."""
    if _ending_thread.cache_info().currsize:
        _ending_thread().submit(connections.close_all).result(10)


def _execute(job, token, workdir, writer, worker):
    """Run the job's code in its sandbox; return its Outcome and its process (None if it never started)."""
    sockets = proc = sampler = None
    try:
        env, binds, script, warnings = _prepare(job, token, workdir)
        sockets = LogSockets(workdir / "log", writer)
        spec = _sandbox_spec(job, workdir, env, binds)
        writer.write("INFO", f"Running {job.executable_name} ({job.function}) on {worker}", source="SYSTEM")
        for line in warnings:  # what dx-print-bash-vars would have written to stderr
            writer.write("STDERR", line)
        argv = ["bash", "-c", script]
        if job.debug.get("debugOn"):
            argv = ["bash", "-c", DEBUG_WRAPPER.format(meta=META), "dxweb-job", script]
        proc = sandbox.launch(spec, argv)
        sampler = Sampler.start_for(job, proc)  # CPU, memory and disk for the job page's chart
        if "capped" in proc.mechanisms:
            writer.write("INFO", proc.mechanisms["capped"], source="SYSTEM")
        if not spec.network and proc.mechanisms["network"].startswith("host ("):  # bubblewrap, but no netns
            writer.write(
                "WARNING",
                "The applet asks for no network access, but this worker cannot restrict it "
                f"({proc.mechanisms['network']}): the job has the host's network",
                source="SYSTEM",
            )
        return _watch(job, proc, spec, workdir, writer, sockets), proc
    except assets.AssetError as exc:  # the applet's assetDepends, not the platform: no traceback
        return PlatformFailed(f"assetDepends: {exc}"), proc
    except Exception as exc:  # the platform failed, not the job's code
        log.exception("job %s failed in the runner", job.id)
        if proc is not None:
            proc.kill_tree()
        return PlatformFailed(f"{type(exc).__name__}: {exc}"), proc
    finally:
        if sampler is not None:
            sampler.stop()  # stores its last samples before the job's end is recorded
        if sockets is not None:
            sockets.close()


def _prepare(job, token, workdir):
    """Write the job's input and code under `workdir`; return its environment, binds, script and the
    warnings to log (dx-print-bash-vars's)."""
    home, meta = workdir / "home", workdir / "meta"
    for path in (home, meta):
        path.mkdir(parents=True, exist_ok=True)
    (home / "job_input.json").write_text(json.dumps(job.input))
    interpreter = job.spec["runSpec"]["interpreter"]
    code_name = "code.sh" if interpreter == "bash" else "code.py"
    (meta / code_name).write_text(job.spec["runSpec"]["code"])
    env = job_environment(job, token)
    binds = [
        sandbox.Bind(meta, META, writable=True),
        sandbox.Bind(workdir / "log", LOG_SOCKETS, writable=True),
        sandbox.Bind(_pip_cache(job.launched_by_id), PIP_CACHE, writable=True),
    ]
    warnings, bash_vars_line = [], MAKE_BASH_VARS
    if interpreter == "bash":
        bash_vars_file, warnings = write_bash_vars(job, token, env, meta)
        if bash_vars_file is not None:
            binds.append(sandbox.Bind(bash_vars_file, BASH_VARS))  # over the writable meta directory
            bash_vars_line = SOURCE_BASH_VARS
    template = BASH_WRAPPER if interpreter == "bash" else PYTHON_WRAPPER
    prepare = "\n".join([*assets.stage(job, meta, META), _prepare_commands(job)])
    script = template.format(prepare=prepare, meta=META, function=shlex.quote(job.function), bash_vars=bash_vars_line)
    return env, binds, script, warnings


def _sandbox_spec(job, workdir, env, binds):
    limits = sandbox.instance_limits(job.instance_type)
    # Seed 000: no network unless access.network asks for it (any host named gives the whole
    # network here); the API server stays reachable.
    network = bool((job.spec.get("access") or {}).get("network"))
    return sandbox.SandboxSpec(
        job_id=job.id,
        home=workdir / "home",
        env=env,
        binds=binds,
        cpus=limits["cpus"],
        memory_mb=limits["memory_mb"],
        disk_mb=limits["disk_mb"],
        workdir=workdir,
        network=network,
        api=(env["DX_APISERVER_HOST"], int(env["DX_APISERVER_PORT"])),
    )


def _watch(job, proc, spec, workdir, writer, sockets):
    """Log the code's output and supervise it, through a debug hold if there is one, to its Outcome."""
    sockets.follow(proc.stdout, proc.stderr)
    ssh = SSHControl(job, proc, spec.env)
    lease = LeaseWatch(job, proc)
    try:
        outcome = _supervise(job, proc, ssh, workdir / "meta", lease)
        if isinstance(outcome, Exited | HoldRequested):
            outcome = _maybe_hold(job, proc, ssh, outcome, workdir, writer, lease)
    finally:
        lease.stop()
        ssh.stop()
    sockets.streams_ended.wait(5)
    return outcome


def _remove_soon(directory):
    """Remove a job's directory without waiting: removing a tree can take tens of ms (an rmdir is
    a few ms on some filesystems), while renaming it out of the way is immediate. One thread of the
    process removes what is renamed, in turn."""
    trash = directory.with_name(f".{directory.name}.removed-{os.getpid()}-{threading.get_ident()}")
    try:
        os.rename(directory, trash)
    except OSError:
        shutil.rmtree(directory, ignore_errors=True)
        return
    _remover().put(trash)


@cache
def _remover():
    """The queue of directories the remover thread removes (started at the first)."""
    trash = queue.SimpleQueue()

    def remove():
        while True:
            shutil.rmtree(trash.get(), ignore_errors=True)

    threading.Thread(target=remove, name="job-dir-remover", daemon=True).start()
    return trash


class SSHControl:
    """Starts the job's SSH gateway once the job allows SSH (allowSSH set, or held), and stops it."""

    def __init__(self, job, proc, env):
        self.job, self.proc, self.env = job, proc, env
        self.gateway = None

    def check(self, allow_ssh, held=False):
        if self.gateway is None and (allow_ssh or held) and self.proc.poll() is None:
            gateway = Gateway(self.job.id, self.proc, self.env)
            try:
                gateway.start()
            except Exception:  # noqa: BLE001 - the job runs on without SSH; retried at the next beat
                log.exception("could not start the SSH gateway of %s", self.job.id)
                gateway.stop()
                return
            self.gateway = gateway

    def stop(self):
        if self.gateway is not None:
            self.gateway.stop()
            self.gateway = None


class LeaseWatch:
    """Stops the job's sandbox once its lease may have lapsed, whether or not the database answers.

    A worker cut off from the database (its link down) blocks in its next heartbeat, and the
    reaper hands the job to another try once the lease lapsed by a heartbeat period. So this
    thread kills the sandbox when no heartbeat has succeeded for a lease (counted from the start of
    the last one that did, which wrote an earlier time): the copy is gone before another try may
    start, and the same job never runs twice at once.
    """

    def __init__(self, job, proc):
        self.job, self.proc = job, proc
        self.renewed = time.monotonic()  # the claim wrote its heartbeat just before
        self.expired = False
        self.stopped = threading.Event()
        self.thread = ReusedThread(self._run, name=f"lease-{job.id}")
        self.thread.start()

    def beat(self, state):
        """Renew the lease; return the job's allowSSH, or None if the claim no longer holds the job.

        Only while the job is this claim's (`tries` is its generation): after a stall longer than
        the lease, the reaper may have handed the job to another try.
        """
        started = time.monotonic()
        renewed = Job.objects.filter(pk=self.job.id, state=state, tries=self.job.tries).update(
            heartbeat=sql.DatabaseNow()
        )
        if renewed != 1:
            return None
        self.renewed = max(self.renewed, started)
        return Job.objects.filter(pk=self.job.id).values_list("allow_ssh", flat=True).first() or []

    def _run(self):
        lease = settings.DXWEB_LEASE_SECONDS
        while not self.stopped.wait(min(1.0, lease / 4)):
            if time.monotonic() - self.renewed > lease:
                self.expired = True
                log.warning("%s: no heartbeat succeeded for %s s; stopping its run", self.job.id, lease)
                self.proc.kill_tree()
                return

    def stop(self):
        self.stopped.set()


def _lost_or_terminated(job, proc):
    proc.kill_tree()  # first: this copy of the job may no longer be the only one
    if Job.objects.filter(pk=job.id, state=State.TERMINATING, tries=job.tries).exists():
        return Terminated()
    return Lost()


def _supervise(job, proc, ssh, meta, lease):
    """Wait for the process while renewing the lease; kill it on terminate, timeout or a lost lease.

    A heartbeat that is due comes before anything else: after a stall longer than the lease (a
    frozen worker, a paused VM) the reaper may have handed the job to another try, and the
    first heartbeat after waking then kills this copy at once.

    With debug.debugOn it also watches for the code's failure (the wrapper's exit-status file;
    the sentinel keeps the sandbox) and for /.dx-hold, which start a debug hold.
    """
    deadline = time.monotonic() + job.timeout_s if job.timeout_s else None
    interval = settings.DXWEB_HEARTBEAT_SECONDS
    debugging = bool(job.debug.get("debugOn"))
    tick = min(interval, 0.25) if debugging else interval
    next_beat = time.monotonic() + tick  # the first as before: its SSH check is due soon after the start
    while True:
        started = time.monotonic()
        if started >= next_beat:
            allow_ssh = lease.beat(State.RUNNING)
            if allow_ssh is None:
                return _lost_or_terminated(job, proc)
            ssh.check(allow_ssh)
            # Counted from the beat's start: a stall inside it leaves the next one due at once.
            next_beat = started + interval
        if proc.wait(timeout=max(0.0, min(tick, next_beat - time.monotonic()))) is not None:
            return Lost() if lease.expired else Exited(proc.returncode)
        if debugging:
            status = meta / "exit-status"
            if status.exists():
                try:
                    return Exited(int(status.read_text().strip() or 1))
                except ValueError:
                    return Exited(1)
            hold_file = proc.host_path("/.dx-hold")
            if hold_file is not None and hold_file.exists():
                return HoldRequested()
        if deadline is not None and time.monotonic() > deadline:
            proc.kill_tree()
            return TimedOut()


def _failure(code, home):
    """(reason, message) for code that exited with `code`, from job_error.json as seed 000 says."""
    error = (_read_json(home / "job_error.json") or {}).get("error") if (home / "job_error.json").exists() else None
    if isinstance(error, dict) and error.get("type") in ERROR_TYPES:
        return error["type"], str(error.get("message", ""))
    message = f"Error while running the command (exit code {code})"
    if code > 128:
        message += f"; killed by signal {code - 128}" + {
            137: " (out of memory?)",
            153: " (a file reached the job's disk limit)",
        }.get(code, "")
    return "AppInternalError", message


def _maybe_hold(job, proc, ssh, outcome, workdir, writer, lease):
    """Hold the job for debugging if its failure is one debug.debugOn names (or it made /.dx-hold).

    While held the sandbox and its processes stay; the worker keeps the lease and the SSH
    gateway. The hold ends with terminate (terminated), release, expiry or the end of the
    sandbox's processes (failed with the held failure; terminated when nothing had failed).
    """
    failure = None
    if isinstance(outcome, Exited):
        failure = _held_failure(job, outcome.code, workdir / "home")
        if failure is None:
            proc.kill_tree()  # the sentinel, if any
            return outcome
        writer.write("ERROR", f"{failure.reason}: {failure.message}", source="SYSTEM")
    if not _start_hold(job, failure, writer):
        return _lost_or_terminated(job, proc)
    return _wait_out_hold(job, proc, ssh, failure, lease)


def _held_failure(job, code, home):
    """The Failure to hold the job for, or None: the code succeeded, or failed as debug.debugOn does not name."""
    debug_on = job.debug.get("debugOn") or []
    if code == 0 or not debug_on:
        return None
    failure = Failure(*_failure(code, home))
    return failure if failure.reason in debug_on else None


def _start_hold(job, failure, writer):
    """Record the job held (DEBUG_HOLD, until when); return False if this claim no longer has it running."""
    hold_s = settings.DXWEB_DEBUG_HOLD_SECONDS
    failed = failure.debug_fields() if failure else {}
    debug = {**job.debug, **failed, "holdUntil": now_ms() + hold_s * 1000}
    if not actions.transition(
        job.id, State.DEBUG_HOLD, expected=[State.RUNNING], only_if={"tries": job.tries}, debug=debug
    ):
        return False
    why = f"after {failure.reason}" if failure else "because the job created /.dx-hold"
    writer.write(
        "WARNING",
        f"The job is held for debugging {why}, for up to {hold_s} s; connect with "
        f"`dx ssh {job.id}` or the job page's Debug view, and terminate it when done",
        source="SYSTEM",
    )
    writer.flush()
    return True


def _wait_out_hold(job, proc, ssh, failure, lease):
    """Keep a held job's lease and SSH gateway until its hold ends; return how it ended."""
    interval = settings.DXWEB_HEARTBEAT_SECONDS
    while True:
        if proc.wait(timeout=interval) is not None:
            return Lost() if lease.expired else HoldEnded(failure, "its processes ended")
        if lease.beat(State.DEBUG_HOLD) is None:
            proc.kill_tree()  # released, terminating, or another try's: first, before looking which
            state = Job.objects.filter(pk=job.id, tries=job.tries).values_list("state", flat=True).first()
            if state in (State.FAILED, State.TERMINATED):  # released through the API or the page
                return Released()
            return _lost_or_terminated(job, proc)
        ssh.check(True, held=True)
        until = (Job.objects.filter(pk=job.id).values_list("debug", flat=True).first() or {}).get("holdUntil", 0)
        if now_ms() >= until:
            proc.kill_tree()
            return HoldEnded(failure, "the hold expired")


def _read_json(path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _conclude(job, proc, outcome, workdir, writer, worker, ended=None):
    """Record how the run ended (its code at `ended`, ms); return False if this claim had lost the job
    to another try."""
    # Every result is recorded only while this claim still holds the job (see _supervise).
    lease = {"tries": job.tries}
    if isinstance(outcome, Exited):  # the usual end: recorded in one swap, if the job is still ours
        if _conclude_exit(job, proc, outcome.code, workdir / "home", writer, lease, ended):
            return True
        outcome = Lost()  # unless _still_held finds it terminating
        if Job.objects.filter(pk=job.id, state=State.TERMINATING, tries=job.tries).exists():
            outcome = Terminated()
    match _still_held(job, outcome):
        case Lost():
            refused = f" and the {writer.refused} log lines it had not stored by then are" if writer.refused else " is"
            writer.write(
                "WARNING",
                f"{worker} lost this job's lease (try {job.tries}) and stopped its run; its result{refused} discarded",
                source="SYSTEM",
            )
            return False
        case Terminated():
            writer.write("INFO", "The job was terminated", source="SYSTEM")
            actions.transition(job.id, State.TERMINATED, expected=[State.TERMINATING], only_if=lease)
        case TimedOut():
            message = f"The job ran longer than its {job.timeout_s} s timeout and was stopped"
            writer.write("ERROR", message, source="SYSTEM")
            actions.fail(job, "JobTimeoutExceeded", message, only_if=lease, stopped=ended)
        case PlatformFailed(message=message):
            writer.write("ERROR", f"The platform failed to run the job: {message}", source="SYSTEM")
            actions.fail(job, "ExecutionError", message, only_if=lease, stopped=ended)
        case Released():
            writer.write("INFO", "The debug hold was released", source="SYSTEM")
        case HoldEnded(failure=Failure() as failure, why=why):
            message = f"{failure.message} (held for debugging until {why})"
            writer.write("ERROR", f"{failure.reason}: {message}", source="SYSTEM")
            actions.fail(job, failure.reason, message, only_if=lease, stopped=ended)
        case HoldEnded(why=why):
            holds.end_hold(job, f"The debug hold ended: {why}")
    return True


def _still_held(job, outcome):
    """The outcome, or Terminated or Lost if the job ended its own way but this claim no longer runs it."""
    if isinstance(outcome, Exited | HoldEnded):
        state = Job.objects.filter(pk=job.id, tries=job.tries).values_list("state", flat=True).first()
        if state == State.TERMINATING:
            return Terminated()
        if state not in (State.RUNNING, State.DEBUG_HOLD):
            return Lost()
    return outcome


def _conclude_exit(job, proc, code, home, writer, lease, ended=None):
    """Record the end of code that exited with `code`: done with its job_output.json, or failed.
    Return False if the job was no longer this claim's to record."""
    if code == 0:
        output = _read_json(home / "job_output.json")
        if output is None:
            output = {}
        if not isinstance(output, dict):
            return actions.fail(
                job, "AppInternalError", "job_output.json must hold a JSON object", only_if=lease, stopped=ended
            )
        return actions.finish(job.id, output, only_if=lease, known=job, stopped=ended)
    reason, message = _failure(code, home)
    if proc is not None and proc.limit_exceeded:
        message = proc.limit_exceeded  # the platform stopped it: say why rather than "killed by signal 9"
    if not actions.fail(job, reason, message, only_if=lease, stopped=ended):
        return False
    writer.write("ERROR", f"{reason}: {message}", source="SYSTEM")
    return True
