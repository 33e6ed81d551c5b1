"""The job's cgroups (v1 or v2, where writable): its memory, CPU and process limits, killing its
whole tree, and its counters (CPU time, memory in use); rlimits and taskset where no cgroup can."""

import functools
import logging
import os
import secrets
import shlex
import time
import zlib
from dataclasses import dataclass
from pathlib import Path

from . import host

log = logging.getLogger(__name__)

STALE_CGROUP_SECONDS = 60
# How often a worker process looks for them (at a launch): a listing of every hierarchy's job cgroups
# at each launch cost a lane more than the rest of making the job's cgroups.
SWEEP_EVERY_SECONDS = 30


@dataclass(frozen=True)
class _Hierarchy:
    version: int
    controllers: frozenset
    own: Path  # this process's cgroup directory in the hierarchy

    def usable(self, controller):
        if self.version == 1:
            return controller in self.controllers
        # v2: only controllers already delegated to our children; we never rearrange the tree.
        return controller in host.read(self.own / "cgroup.subtree_control", "").split()


@functools.cache
def _hierarchies():
    """Find the cgroup hierarchies this process belongs to, with its own directory in each."""
    mine = {}
    for line in host.read("/proc/self/cgroup", "").splitlines():
        _, _, rest = line.partition(":")
        names, _, path = rest.partition(":")
        mine[names] = path
    found = []
    for line in host.read("/proc/self/mountinfo", "").splitlines():
        left, _, right = line.partition(" - ")
        fields, extra = left.split(), right.split()
        if len(fields) < 5 or len(extra) < 3 or extra[0] not in ("cgroup", "cgroup2"):
            continue
        root, mountpoint = host.unescape(fields[3]), Path(host.unescape(fields[4]))
        if extra[0] == "cgroup2":
            version, key, controllers = 2, "", frozenset(host.read(mountpoint / "cgroup.controllers", "").split())
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


class JobCgroup:
    """The job's cgroups: created before it starts, joined by its first process, removed at the end."""

    def __init__(self):
        self.dirs = {}  # hierarchy -> directory
        self.mechanisms = {}
        self.rlimits = []  # shell lines for what no cgroup could do
        self.exec_prefix = []  # a command the job is started through (taskset)
        self.kill_dir = None
        self.freezer_dir = None
        self.cpu_counter = None  # (file, key in it or None): the CPU time the job's processes used
        self.memory_counter = None  # the file holding the bytes of memory they use now

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
                    host.warn_once(
                        f"cgroup-{controller}", "cgroup %s controller not usable (%s); falling back", controller, exc
                    )
                    return False
                self.mechanisms[what] = f"cgroup v{h.version} {files[h.version - 1]}"
                return True
            return False

        if spec.memory_mb:
            limit = int(spec.memory_mb) * 1024 * 1024

            def memory(d, h):
                if h.version == 1:
                    host.write(d / "memory.limit_in_bytes", limit)
                    host.write_try(d / "memory.memsw.limit_in_bytes", limit)  # no swapping past the limit
                    self.memory_counter = d / "memory.usage_in_bytes"
                else:
                    host.write(d / "memory.max", limit)
                    host.write_try(d / "memory.swap.max", 0)
                    self.memory_counter = d / "memory.current"

            if not setup("memory", "memory", memory, ("memory.limit_in_bytes", "memory.max")):
                host.warn_once("rlimit-memory", "no writable memory cgroup: limiting memory with RLIMIT_AS instead")
                self.rlimits.append(f"ulimit -v {limit // 1024}")
                self.mechanisms["memory"] = "RLIMIT_AS"
        if spec.cpus:

            def cpuset(d, h):
                parent = _parse_cpus(
                    host.read(h.own / "cpuset.effective_cpus", "") or host.read(h.own / "cpuset.cpus", "")
                )
                chosen = _choose_cpus(parent, int(spec.cpus), spec.job_id)
                if h.version == 1:
                    mems = host.read(h.own / "cpuset.effective_mems", "") or host.read(h.own / "cpuset.mems", "")
                    host.write(d / "cpuset.mems", mems)
                host.write(d / "cpuset.cpus", ",".join(map(str, chosen)))

            if not setup("cpuset", "cpus", cpuset, ("cpuset.cpus", "cpuset.cpus")):
                taskset = host.which("taskset")
                chosen = _choose_cpus(sorted(os.sched_getaffinity(0)), int(spec.cpus), spec.job_id)
                if taskset:
                    host.warn_once(
                        "affinity", "no writable cpuset cgroup: limiting CPUs with sched_setaffinity (taskset)"
                    )
                    self.exec_prefix = [taskset, "-c", ",".join(map(str, chosen))]
                    self.mechanisms["cpus"] = "sched_setaffinity"
                else:
                    host.warn_once("no-cpus", "neither a cpuset cgroup nor taskset: CPU counts are not enforced")
        if spec.pids_max:

            def pids(d, h):
                host.write(d / "pids.max", int(spec.pids_max))

            if not setup("pids", "pids", pids, ("pids.max", "pids.max")):
                host.warn_once("no-pids", "no writable pids cgroup: the number of processes per job is not limited")
        # Tracking and killing: cgroup.kill (v2) kills atomically; a v1 freezer stops forks while we kill.
        for h in hierarchies:
            if h.version == 2:
                try:
                    directory = self._dir(h, name)
                except OSError as exc:
                    host.warn_once("cgroup-kill", "cgroup v2 not usable for killing jobs (%s)", exc)
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
                        host.warn_once("cgroup-freezer", "cgroup freezer not usable for killing jobs (%s)", exc)
        if self.dirs and "kill" not in self.mechanisms:
            self.mechanisms["kill"] = "cgroup.procs"
        self._count_cpu(hierarchies, name)
        return self

    def _count_cpu(self, hierarchies, name):
        """Find where the job's CPU time is counted: cpu.stat's usage_usec in its v2 cgroup (every v2
        cgroup has it, with or without the cpu controller), else cpuacct.usage in a v1 cpuacct
        cgroup made for it (nanoseconds)."""
        for h, directory in self.dirs.items():
            if h.version == 2 and (directory / "cpu.stat").exists():
                self.cpu_counter = (directory / "cpu.stat", "usage_usec")
                return
        for h in hierarchies:
            if h.version == 1 and "cpuacct" in h.controllers:
                try:
                    self.cpu_counter = (self._dir(h, name) / "cpuacct.usage", None)
                except OSError as exc:
                    host.warn_once("cgroup-cpuacct", "cgroup cpuacct not usable for counting CPU time (%s)", exc)
                return

    def usage(self):
        """Return (CPU seconds the job has used, bytes of memory it uses now); each None where no
        cgroup of the job counts it (or once the cgroup is gone)."""
        cpu = memory = None
        if self.cpu_counter is not None:
            path, key = self.cpu_counter
            text = host.read(path)
            try:
                if key is None:
                    cpu = int(text) / 1e9
                elif text is not None:
                    cpu = next(int(v) for k, v in (line.split() for line in text.splitlines()) if k == key) / 1e6
            except (TypeError, ValueError, StopIteration):
                cpu = None
        if self.memory_counter is not None:
            text = host.read(self.memory_counter)
            memory = int(text) if text and text.isdigit() else None
        return cpu, memory

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
            return {int(p) for p in host.read(directory / "cgroup.procs", "").split()}
        return None

    def kill(self):
        """SIGKILL every process in the job's cgroup and wait until it is empty."""
        if not self.procs():
            return
        if self.kill_dir is not None:
            host.write_try(self.kill_dir / "cgroup.kill", 1)
        frozen = self.freezer_dir is not None and host.write_try(self.freezer_dir / "freezer.state", "FROZEN")
        if frozen:
            host.poll(lambda: host.read(self.freezer_dir / "freezer.state", "") != "FREEZING", 2)
        for _ in range(50):
            pids = self.procs()
            if not pids:
                break
            for pid in pids:
                host.kill(pid)
            if frozen:
                host.write_try(self.freezer_dir / "freezer.state", "THAWED")
                frozen = False
            host.poll(lambda: not self.procs(), 0.1)
        if frozen:
            host.write_try(self.freezer_dir / "freezer.state", "THAWED")
        if not host.poll(lambda: not self.procs(), 5):
            log.warning("processes %s of a job survived SIGKILL", self.procs())

    def remove(self):
        for directory in self.dirs.values():
            if not host.poll(lambda d=directory: host.rmdir(d), 2):
                log.warning("could not remove cgroup %s", directory)
        self.dirs.clear()


_last_sweep = [float("-inf")]  # time.monotonic() of this process's last sweep


def _sweep(hierarchies):
    """Remove empty job cgroups a dead worker left behind (old enough not to be starting right now),
    at most once every SWEEP_EVERY_SECONDS in a process."""
    now = time.monotonic()
    if now - _last_sweep[0] < SWEEP_EVERY_SECONDS:
        return
    _last_sweep[0] = now
    for h in hierarchies:
        for directory in h.own.glob("dxweb-*"):
            try:
                stale = time.time() - directory.stat().st_mtime > STALE_CGROUP_SECONDS
            except OSError:
                continue
            if stale and not host.read(directory / "cgroup.procs", "x"):
                host.rmdir(directory)


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
    return sorted((available * 2)[start : start + count])
