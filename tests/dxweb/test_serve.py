"""`manage.py serve`, the supervisor of `make run`: restarts, backoff, and no orphans.

The live tests run the real command (daphne, a Celery worker with its embedded beat, jobs in
their sandboxes) and kill its processes with SIGKILL, as a crash or the OOM killer would.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from dxweb.management.commands.serve import Supervisor
from tests.helpers import sleeping, unique_seconds, wait_for
from tests.live import BIN, ROOT, Dx, LiveServer

NAP = Path(__file__).parent.parent / "jobs" / "apps" / "nap"
# A short lease, renewed twice a second, reaped every second: a job whose worker died is retried in seconds.
SHORT_LEASE = {"DXWEB_LEASE_SECONDS": "3", "DXWEB_HEARTBEAT_SECONDS": "0.5", "DXWEB_REAP_SECONDS": "1"}


def survivors(procs, timeout=20):
    """Which of `procs` still run after up to `timeout` s (a zombie has ended: this container's
    init may never reap what is reparented to it)."""
    deadline = time.monotonic() + timeout
    while True:
        alive = []
        for proc in procs:
            try:
                if proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE:
                    alive.append(proc)
            except psutil.NoSuchProcess:
                pass
        if not alive or time.monotonic() > deadline:
            return alive
        time.sleep(0.2)


def child(server, program):
    """The supervisor's direct child running `program` (daphne or celery), or None."""
    for proc in psutil.Process(server.proc.pid).children():
        try:
            if program in " ".join(proc.cmdline()):
                return proc
        except psutil.NoSuchProcess:
            pass
    return None


class Naps:
    """alice's project with the `nap` applet on a live server."""

    def __init__(self, server, tmp):
        self.server = server
        self.token = server.user("alice")
        self.dx = Dx(server, self.token, tmp)
        self.project = self.dx("new", "project", "naps", "--brief").stdout.strip()
        self.dx("select", self.project)
        self.applet = json.loads(self.dx("build", str(NAP)).stdout)["id"]

    def run(self, seconds):
        body = {"project": self.project, "input": {"seconds": seconds}}
        return self.server.api(f"/{self.applet}/run", body, self.token)["id"]

    def state(self, job_id):
        return self.server.api(f"/{job_id}/describe", {}, self.token)["state"]


@pytest.fixture
def server(tmp_path):
    server = LiveServer(tmp_path, extra_env=SHORT_LEASE).start()
    yield server
    server.stop()


@pytest.mark.live
def test_a_killed_worker_is_restarted_and_the_web_stays_up(server, tmp_path):
    naps = Naps(server, tmp_path)
    seconds = unique_seconds(4)
    interrupted = naps.run(seconds)
    wait_for(lambda: sleeping(seconds), 60, "the job's sandbox to start")
    web, worker = child(server, "daphne"), child(server, "celery")
    worker_group = [worker, *worker.children(recursive=True)]  # pool processes, the embedded beat, sandboxes

    worker.send_signal(signal.SIGKILL)

    # Its pool processes, its beat and the job's sandbox die with it...
    assert not survivors(worker_group)
    assert not sleeping(seconds)
    # ...the supervisor says so and starts another worker, and the web server was never stopped.
    restarted = wait_for(lambda: (c := child(server, "celery")) and c.pid != worker.pid and c, 30, "a new worker")
    assert "worker was killed by SIGKILL" in server.log_path.read_text()
    assert child(server, "daphne").pid == web.pid
    assert server.api("/system/whoami", token=naps.token) == {"id": "user-alice"}
    # The interrupted job is retried once its lease lapses; a new job runs too.
    job_id = naps.run(unique_seconds(1))
    wait_for(lambda: naps.state(job_id) == "done", 90, "a job started after the restart to finish")
    wait_for(lambda: naps.state(interrupted) == "done", 90, "the interrupted job's retry to finish")

    # A clean stop (SIGTERM, as Ctrl-C) still stops everything.
    everything = [restarted, *restarted.children(recursive=True), child(server, "daphne")]
    server.stop()
    assert "dxweb stopped" in server.log_path.read_text()
    assert not survivors(everything)


@pytest.mark.live
def test_an_idle_stop_lets_the_worker_stop_its_own_pool(server):
    """A stop signals each child alone: the Celery worker stops its pool itself. Signalled too, the
    pool processes died as if killed, and the worker logged an ERROR for each at every Ctrl-C."""
    wait_for(lambda: " lanes" in server.log_path.read_text(), 60, "the worker to be ready")
    everything = psutil.Process(server.proc.pid).children(recursive=True)
    server.stop()
    log = server.log_path.read_text()
    assert "dxweb stopped" in log
    assert "Warm shutdown" in log
    assert "exited with 'signal" not in log and "ERROR" not in log, log[-3000:]
    assert not survivors(everything)


@pytest.mark.live
def test_a_stop_lets_the_running_jobs_end_and_starts_no_other(server, tmp_path):
    """Stopping, the worker takes no more wake-ups and its lanes claim no more jobs: the two jobs that
    run end (the stop waits up to 15 s for them) and the queued ones wait, unclaimed, for the next start."""
    naps = Naps(server, tmp_path)
    seconds = unique_seconds(3)
    jobs = [naps.run(seconds) for _ in range(10)]
    wait_for(lambda: len(sleeping(seconds)) == 2, 60, "two of the jobs to run (two lanes)")
    server.stop(drop=False)  # the database is read below
    assert "dxweb stopped" in server.log_path.read_text()
    read = (
        "import json; from jobs.models import Job; "
        f"print(json.dumps(dict(Job.objects.filter(pk__in={jobs!r}).values_list('id', 'state'))))"
    )
    states = json.loads(server.manage("shell", "-c", read).stdout.strip().splitlines()[-1])
    assert sorted(states.values()) == ["done"] * 2 + ["runnable"] * 8, states


@pytest.mark.live
def test_killing_the_supervisor_leaves_no_process_and_frees_the_port(server, tmp_path):
    naps = Naps(server, tmp_path)
    seconds = unique_seconds(60)
    naps.run(seconds)
    wait_for(lambda: sleeping(seconds), 60, "the job's sandbox to start")
    descendants = psutil.Process(server.proc.pid).children(recursive=True)
    assert len(descendants) >= 4  # daphne, the worker, its pool and beat, the job's sandbox

    server.proc.send_signal(signal.SIGKILL)
    server.proc.wait()

    alive = survivors(descendants)
    assert not alive, [(p.pid, p.cmdline()) for p in alive]
    assert not sleeping(seconds)
    # The next `make run` starts on the same port and data directory.
    server.start()
    assert server.api("/system/whoami", token=naps.token) == {"id": "user-alice"}


def test_a_port_in_use_is_named_without_a_traceback(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {
            **os.environ,
            "DXWEB_DATA_DIR": str(tmp_path / "data"),
            "DXWEB_HOST": "127.0.0.1",
            "DXWEB_PORT": str(port),
        }
        env.pop("DJANGO_SETTINGS_MODULE", None)
        result = subprocess.run(
            [str(BIN / "python"), "manage.py", "serve"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            start_new_session=True,
        )
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert f"port {port} on 127.0.0.1 is already in use" in output
    assert "Traceback" not in output and "dxweb is running" not in output


# The supervisor alone, with tiny children and delays ------------------------------------------


def supervise(supervisor, seconds):
    supervisor.start()
    deadline = time.monotonic() + seconds
    try:
        while time.monotonic() < deadline:
            supervisor.check()
            time.sleep(0.01)
    finally:
        supervisor.stop(timeout=5)


def starts_of(path):
    return [float(line) for line in path.read_text().split()]


def recorder(path, then):
    """A child that writes when it started (the clock every process shares) and then runs `then`."""
    return [sys.executable, "-c", f"import time; open({str(path)!r}, 'a').write(f'{{time.monotonic()}}\\n'); {then}"]


def test_a_child_that_keeps_dying_is_restarted_ever_more_slowly_and_reported(tmp_path):
    messages = []
    starts = tmp_path / "starts"
    supervisor = Supervisor(
        {"flaky": recorder(starts, "raise SystemExit(3)")},
        warn=messages.append,
        first_delay=0.2,
        max_delay=0.8,
        quick=10,
        report_after=3,
    )
    supervise(supervisor, 4.5)
    gaps = [b - a for a, b in zip(starts_of(starts), starts_of(starts)[1:])]
    assert len(gaps) >= 4, gaps
    # 0.2, 0.4, 0.8 s, then capped at 0.8 s (each gap also holds a Python start-up).
    for gap, delay in zip(gaps, [0.2, 0.4, 0.8, 0.8, 0.8]):
        assert delay <= gap < delay + 0.6, gaps
    assert messages[0].startswith("flaky exited with status 3 after ")
    assert messages[0].endswith("; restarting it in 0.2 s")
    assert messages[1].endswith("; restarting it in 0.4 s")
    assert messages[2].startswith(
        "flaky keeps dying: 3 times in a row, each within 10 s of starting "
        "(it exited with status 3; its output is above). Next try in 0.8 s"
    )


def test_a_child_that_ran_a_while_is_restarted_at_once(tmp_path):
    messages = []
    starts = tmp_path / "starts"
    supervisor = Supervisor(
        {"steady": recorder(starts, "time.sleep(0.5)")}, warn=messages.append, first_delay=0.1, max_delay=5, quick=0.3
    )
    supervise(supervisor, 3)
    assert len(starts_of(starts)) >= 4
    assert messages and all(m.endswith("; restarting it in 0.1 s") for m in messages), messages


def test_stop_ends_each_child_and_what_it_started(tmp_path):
    pids = tmp_path / "pids"
    script = (
        f"import os, subprocess, time; p = subprocess.Popen(['sleep', '300']); "
        f"open({str(pids)!r}, 'w').write(f'{{os.getpid()}} {{p.pid}}'); time.sleep(300)"
    )
    supervisor = Supervisor({"parent": [sys.executable, "-c", script]}, warn=print)
    supervisor.start()
    wait_for(lambda: pids.exists() and pids.read_text(), 10, "the child to start its own child")
    procs = [psutil.Process(int(pid)) for pid in pids.read_text().split()]
    supervisor.stop(timeout=5)
    assert not survivors(procs, timeout=5)


ADOPTER = """
import json, os, signal, sys, time
import django, psutil
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dxweb.settings")
django.setup()
from dxweb.management.commands.serve import Supervisor, become_subreaper

assert become_subreaper()
messages = []
# The child's subshell starts a short sleep and exits: the sleep is orphaned, as a sandbox's inner
# bubblewrap is, and adopted by this process.
supervisor = Supervisor({"parent": ["sh", "-c", "(sleep 0.2 &); exec sleep 300"]}, warn=messages.append)
supervisor.start()
me, first = psutil.Process(), supervisor.children[0].proc.pid


def zombies():
    return [p.pid for p in me.children() if p.status() == psutil.STATUS_ZOMBIE]


time.sleep(1)
adopted = zombies()  # the orphan, ended and not yet reaped
for _ in range(5):
    supervisor.check()
    time.sleep(0.1)
left = zombies()
os.kill(first, signal.SIGKILL)  # the supervised child: check() still reads its own status
time.sleep(0.3)
supervisor.check()
print(json.dumps({"adopted": adopted, "left": left, "first": first, "messages": messages}))
supervisor.stop(timeout=5)
"""


def test_the_supervisor_reaps_the_orphans_it_adopts_and_still_reads_its_childrens_status():
    """Each job's sandbox leaves an orphan (bubblewrap's inner process); `serve` adopts and reaps
    them, or a container whose pid 1 reaps nothing would fill up with zombies, one per job."""
    result = subprocess.run([sys.executable, "-c", ADOPTER], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert len(report["adopted"]) == 1 and report["adopted"][0] != report["first"]
    assert report["left"] == []
    assert len(report["messages"]) == 1
    assert report["messages"][0].startswith("parent was killed by SIGKILL after ")
