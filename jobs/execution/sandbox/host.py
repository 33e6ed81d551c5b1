"""Small helpers over the host's files and processes, shared by the sandbox's modules."""

import logging
import os
import re
import select
import shutil
import signal
import time
from pathlib import Path

log = logging.getLogger(__name__)

# Where the platform's helper tools are looked up (never the job's PATH).
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

_warned = set()


def warn_once(key, message, *args):
    if key not in _warned:
        _warned.add(key)
        log.warning(message, *args)


def cpu_count():
    """Return how many CPUs this worker may run on (its affinity: a cpuset cgroup or taskset shrinks it)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def memory_mb():
    """Return the host's memory in MB (MemTotal of /proc/meminfo, in kB there), or None when unknown."""
    for line in (read("/proc/meminfo", "") or "").splitlines():
        name, _, value = line.partition(":")
        fields = value.split()
        if name == "MemTotal" and fields and fields[0].isdigit():
            return int(fields[0]) // 1024
    return None


def which(name):
    return shutil.which(name, path=SYSTEM_PATH)


def shell(lines):
    """Return argv that runs `lines` in /bin/sh, then execs the rest of the argv ("$@")."""
    script = "\n".join(["set -e", *lines, 'exec "$@"'])
    return ["/bin/sh", "-c", script, "dxweb-sandbox"]


def pidfd_open(pid):
    """Return a pidfd for `pid` (Linux 5.3+), or None where there is none."""
    try:
        return os.pidfd_open(pid)
    except (AttributeError, OSError):
        return None


def wait_readable(fd, seconds):
    """Wait until `fd` is readable or `seconds` pass (rounded up to a whole millisecond)."""
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    try:
        poller.poll(max(1, int(seconds * 1000) + 1))
    except InterruptedError:
        pass


def memfd(data):
    fd = os.memfd_create("dxweb-sandbox-args")
    os.write(fd, data)
    os.lseek(fd, 0, os.SEEK_SET)
    return fd


def kill(pid):
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def within(path, parent):
    """Whether `path` is `parent` or below it (absolute paths, as Path objects normalise them)."""
    path, parent = os.fspath(path), os.fspath(parent)
    return path == parent or path.startswith(parent if parent.endswith("/") else parent + "/")


def unescape(text):
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), text)


def read(path, default=None):
    try:
        return Path(path).read_text().strip()
    except OSError:
        return default


def write(path, value):
    with open(path, "w") as f:
        f.write(str(value))


def write_try(path, value):
    try:
        write(path, value)
        return True
    except OSError:
        return False


def rmdir(path):
    try:
        path.rmdir()
    except FileNotFoundError:
        pass
    except OSError:
        return False
    return True


def poll(condition, seconds):
    """Check `condition` until it holds or `seconds` pass; return whether it held."""
    deadline = time.monotonic() + seconds
    delay = 0.0002  # what is waited for (killed processes gone, an rmdir) is usually a moment away
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(delay)
        delay = min(delay * 2, 0.05)
    return True


def descendants(pid):
    """Return the host pids descending from `pid` (from /proc; for when no cgroup tracks the job)."""
    children = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            stat = read(f"/proc/{entry}/stat", "")
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


def wait_gone(pids):
    def gone():
        for pid in pids:
            stat = read(f"/proc/{pid}/stat", "")
            if stat and stat.rpartition(")")[2].split()[0] != "Z":
                return False
        return True

    if pids and not poll(gone, 5):
        log.warning("processes %s of a job survived SIGKILL", pids)
