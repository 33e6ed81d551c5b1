"""A running job's resource samples: its CPU, memory and disk over time, for the job page's chart.

One thread per running job (like the disk watch; a reused one, dxweb/threads.py) reads the job's
cgroup counters every DXWEB_SAMPLE_SECONDS (0.5 s; 0 takes none):

- CPU as cores used: the CPU time the cgroup's processes used since the sample before, divided by
  the wall time between the two (cpu.stat's usage_usec on cgroup v2, cpuacct.usage on v1);
- memory in MiB: memory.current (v2) or memory.usage_in_bytes (v1), what the memory limit counts;
- disk in MiB: the disk watch's latest look at what the job wrote (sandbox/disk.py), not a second
  walk of its files.

The first sample comes 0.1 s after the start, so short jobs get one too, and is stored at once (the
page shows it); the rest are written in batches, one insert every BATCH_SECONDS, not one per
sample, and only while this try still holds the job (a try the reaper replaced writes nothing
more). A new try starts from no samples.

Long jobs stay bounded: once MAX_SAMPLES samples are kept, every two neighbours become one (the CPU
their mean, memory and disk their peak: a peak is never lost) and the rate halves. A job's rows
thus cover its whole run at an even resolution, never more than MAX_SAMPLES of them: at 0.5 s, a
job of 15 minutes keeps a sample every 0.5 s, one of half an hour every 1 s, one of an hour every 2 s,
a two-day debug hold one every 2 minutes or so.

Where no cgroup counts the job (DXWEB_SANDBOX=none or a worker that is not root, without cgroups)
nothing is sampled and the job has no rows; its page says why.
"""

import logging
import threading
import time

from django.conf import settings
from django.db import transaction

from dxweb.threads import ReusedThread
from jobs.logs.store import store_thread
from jobs.models import Job, ResourceSample
from projects.models import now_ms

log = logging.getLogger(__name__)

MAX_SAMPLES = 1800
BATCH_SECONDS = 2.0
FIRST_SAMPLE_SECONDS = 0.1
MIB = 1024 * 1024


class Sampler:
    """Samples one running job's cgroup until the job ends or stop() is called."""

    def __init__(self, job, proc, cgroup, interval):
        self.thread = ReusedThread(self.run, name=f"resource-sampler-{job.id}")
        self.job_id, self.tries = job.id, job.tries
        self.proc, self.cgroup, self.interval = proc, cgroup, interval
        self.kept = []  # every sample of the run, as stored: (at, cpu, memory_mb, disk_mb)
        self.pending = []  # the samples not yet stored
        self.rewrite = False  # thinned: the stored rows are replaced by `kept` at the next flush
        self.stopping = threading.Event()
        self.last = None  # (monotonic time, CPU seconds) of the sample before

    @classmethod
    def start_for(cls, job, proc):
        """Start sampling a launched job; return the Sampler, or None when sampling is off or no
        cgroup counts this job's CPU or memory."""
        interval = float(settings.DXWEB_SAMPLE_SECONDS)
        cgroup = getattr(proc, "_cgroup", None)  # the job's cgroups (sandbox/cgroups.py JobCgroup)
        if interval <= 0 or cgroup is None:
            return None
        usage = cgroup.usage()  # one read: the check, and the base of the first sample's CPU share
        if usage == (None, None):
            return None
        sampler = cls(job, proc, cgroup, interval)
        sampler.last = (time.monotonic(), usage[0])
        sampler.start()
        return sampler

    def start(self):
        self.thread.start()

    def is_alive(self):
        return self.thread.is_alive()

    def stop(self):
        """Take no more samples, store those taken and return (the job has ended, or is killed)."""
        self.stopping.set()
        self.thread.join(10)

    def run(self):
        try:
            self._run()
        except Exception:  # noqa: BLE001 - the chart is not worth failing the job for
            log.exception("resource samples of %s stopped", self.job_id)

    def _run(self):
        if self.tries > 1:  # an earlier try's
            store_thread().call(ResourceSample.objects.filter(job_id=self.job_id).delete)
        delay, flushed = FIRST_SAMPLE_SECONDS, float("-inf")  # the first sample is stored at once
        while not self.stopping.is_set() and self.proc.wait(timeout=delay) is None:
            self.sample()
            delay = self.interval
            if time.monotonic() - flushed >= BATCH_SECONDS:
                if not self.flush():
                    return
                flushed = time.monotonic()
        self.flush()

    def sample(self):
        """Read the counters once; keep the sample (None if the cgroup is already gone)."""
        cpu_s, memory = self.cgroup.usage()
        now = time.monotonic()
        if cpu_s is None and memory is None:
            return None
        cores = None
        if cpu_s is not None and self.last is not None and self.last[1] is not None and now > self.last[0]:
            cores = round(max(0.0, (cpu_s - self.last[1]) / (now - self.last[0])), 3)
        self.last = (now, cpu_s)
        disk = getattr(self.proc, "disk_now_mb", None)  # the disk watch's latest look
        row = (
            now_ms(),
            cores,
            None if memory is None else round(memory / MIB, 1),
            None if disk is None else round(disk, 1),
        )
        self.kept.append(row)
        self.pending.append(row)
        if len(self.kept) >= MAX_SAMPLES:
            self.thin()
        return row

    def thin(self):
        """Halve the samples kept (each pair becomes one) and the rate."""
        merged = [_merge(a, b) for a, b in zip(self.kept[0::2], self.kept[1::2])]
        if len(self.kept) % 2:
            merged.append(self.kept[-1])
        self.kept, self.pending, self.rewrite = merged, [], True
        self.interval *= 2

    def flush(self):
        """Store what is pending in one insert; return False once this try no longer holds the job.

        On the log store's thread, whose database connection lasts from job to job: this thread's
        own would be opened for each job (on PostgreSQL, a server process each time)."""
        if not self.pending and not self.rewrite:
            return True
        return store_thread().call(self._store)

    def _store(self):
        if not Job.objects.filter(pk=self.job_id, tries=self.tries).exists():
            self.pending = []
            return False
        rows = self.kept if self.rewrite else self.pending
        with transaction.atomic():
            if self.rewrite:
                ResourceSample.objects.filter(job_id=self.job_id).delete()
            ResourceSample.objects.bulk_create(
                ResourceSample(job_id=self.job_id, at=at, cpu=cpu, memory_mb=memory, disk_mb=disk)
                for at, cpu, memory, disk in rows
            )
        self.pending, self.rewrite = [], False
        return True


def _merge(a, b):
    """One sample for two neighbours: the later one's time, the mean CPU, the peak memory and disk."""
    cpus = [v for v in (a[1], b[1]) if v is not None]
    return (
        b[0],
        round(sum(cpus) / len(cpus), 3) if cpus else None,
        _peak(a[2], b[2]),
        _peak(a[3], b[3]),
    )


def _peak(x, y):
    values = [v for v in (x, y) if v is not None]
    return max(values) if values else None
