"""The job sandbox's isolation: what a job can see and change — its home, environment, /tmp and root, the
data directory and other jobs hidden, its network — and what it may not do to the host: kernel settings,
the system call filter."""

import dataclasses
import json
import secrets
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import psutil
import pytest

from jobs.execution import sandbox
from jobs.execution.sandbox import network, rootfs
from tests.helpers import wait_for
from tests.jobs.execution.conftest import PYTHON, make_spec, run

pytestmark = pytest.mark.usefixtures("no_sandbox_outlives_its_test")


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
    proc = sandbox.launch(
        spec,
        [
            "bash",
            "-c",
            f"echo x > /usr/bin/{name}; echo y > /etc/{name}; echo z > /opt/{name}; echo t > /var/tmp/{name};"
            f" touch /.dx-hold; echo written; while [ ! -e go ]; do sleep 0.01; done",
        ],
    )
    try:
        assert proc.stdout.readline() == b"written\n"
        # The rest of the root is the sandbox's own tmpfs, seen through its first process while it runs.
        assert proc.host_path(f"/etc/{name}").read_text() == "y\n"
        assert proc.host_path("/.dx-hold").exists()
    finally:
        (spec.home / "go").touch()
    code = proc.wait()
    for path in (f"/usr/bin/{name}", f"/etc/{name}", f"/opt/{name}", f"/var/tmp/{name}", "/.dx-hold"):
        assert not Path(path).exists()
    assert proc.host_path("/.dx-hold") is None  # gone with the sandbox
    # /opt and /var are the job's, on disk in its layer, as is what it writes to the system.
    assert proc.host_path(f"/opt/{name}").read_text() == "z\n"
    assert proc.host_path(f"/var/tmp/{name}").read_text() == "t\n"
    assert proc.host_path(f"/var/tmp/{name}").is_relative_to(spec.layer_dir())
    assert proc.host_path("/home/dnanexus/job_output.json") == spec.home / "job_output.json"
    if "overlay" not in proc.mechanisms["root"]:
        pytest.skip("overlays are not available here: the system is read-only (see the next test)")
    assert code == 0
    assert proc.host_path(f"/usr/bin/{name}").read_text() == "x\n"


def test_the_root_is_a_tmpfs_as_large_as_the_jobs_memory_with_tmp_var_and_opt_on_disk(bubblewrap, data_dir):
    spec = dataclasses.replace(make_spec("job-root-size"), memory_mb=64)
    code, out, err = run(spec, "for d in / /tmp /var/tmp /opt; do stat -f -c '%T %b %S' $d; stat -c %a $d; done")
    assert code == 0, err
    lines = iter(out.splitlines())
    sizes = {d: (next(lines).split(), next(lines)) for d in ("/", "/tmp", "/var/tmp", "/opt")}
    kind, blocks, block_size = sizes["/"][0]
    assert (kind, int(blocks) * int(block_size)) == ("tmpfs", 64 * 1024 * 1024), out
    host_kind = subprocess.run(["stat", "-f", "-c", "%T", str(data_dir)], capture_output=True, text=True).stdout.strip()
    on_disk = ("/tmp", "/var/tmp", "/opt")
    assert {d: sizes[d][0][0] for d in on_disk} == dict.fromkeys(on_disk, host_kind)
    assert (sizes["/tmp"][1], sizes["/var/tmp"][1]) == ("1777", "1777")


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
