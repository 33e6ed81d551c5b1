"""The job's disk limit: a watch on what it wrote, and the host's free space."""

import logging
import os
import time

from django.conf import settings

from dxweb.threads import ReusedThread

log = logging.getLogger(__name__)


class DiskWatch:
    """Measure what a job has written (its home and its root layer: /, /tmp, /var/tmp, /opt, writes to
    the system) and kill it once that passes its disk limit, or once the host's filesystem has less
    free than settings.DXWEB_DISK_RESERVE_MB. The job's `limit_exceeded` says why.

    Between two looks a job can write past its limit by what it writes in DXWEB_DISK_CHECK_SECONDS
    (a single file cannot: RLIMIT_FSIZE stops it at the limit). A look that takes long (a great
    many files) makes the next wait longer, so the watch never costs more than a tenth of a core.
    Its latest look is left in the job's `disk_now_mb` (MiB), which the resource samples reuse.
    """

    def __init__(self, proc, paths):
        self.proc, self.paths = proc, paths
        self.limit = int(proc.spec.disk_mb) * 1024 * 1024
        self.thread = ReusedThread(self.run, name=f"disk-watch-{proc.spec.job_id}")

    def start(self):
        self.thread.start()

    def run(self):
        interval = float(settings.DXWEB_DISK_CHECK_SECONDS)
        reserve = int(settings.DXWEB_DISK_RESERVE_MB) * 1024 * 1024
        while self.proc.wait(timeout=interval) is None:
            started = time.monotonic()
            used = disk_usage(self.paths)
            self.proc.disk_used_mb = max(self.proc.disk_used_mb or 0, used // (1024 * 1024))
            self.proc.disk_now_mb = used / (1024 * 1024)  # the latest look, for the resource samples
            try:
                stat = os.statvfs(self.paths[0])
                free = stat.f_bavail * stat.f_frsize
            except OSError:
                free = None
            why = None
            if used > self.limit:
                why = (
                    f"The job wrote {used // (1024 * 1024)} MiB to disk, more than its limit of "
                    f"{self.limit // (1024 * 1024)} MiB, and was stopped"
                )
            elif free is not None and free < reserve:
                why = (
                    f"The worker's disk is nearly full ({free // (1024 * 1024)} MiB free, "
                    f"{reserve // (1024 * 1024)} MiB kept in reserve): the job, using "
                    f"{used // (1024 * 1024)} MiB, was stopped"
                )
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
