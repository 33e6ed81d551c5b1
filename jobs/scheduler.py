"""Which runnable job a worker host takes next: capacity first, then priority, then fair share.

A worker host (WorkerHost) has a capacity: the cores and memory its jobs' instance types may take at
once, detected (the CPUs the worker may run on, the machine's memory) unless DXWEB_WORKER_CORES /
DXWEB_WORKER_MEMORY_MB say otherwise. A host claims a runnable job only while the job's instance type
fits what the host's unfinished jobs leave free. A type larger than every live host runs on an idle
host, alone, capped to it (the sandbox caps its limits and says so in its log).

Among the jobs that fit, a claim takes:
1. the highest `priority` (high, normal, low);
2. then the launcher with the fewest jobs running anywhere, and between those with as many, the one
   whose job was claimed longest ago (LauncherShare): claims interleave launchers, so a small job
   waits about one running job's length behind another user's burst, not the whole burst;
3. then that launcher's oldest job.

`pick` runs inside the claim's transaction, which `claiming` wraps: one host's lanes claim one at a
time (a lock on a file of the host's data directory, held until the claim is committed), so two never
both take its last free cores. The lock costs the database nothing: the host's row is the beat's to
renew (`beat`), not each claim's. Hosts race for the same job only in the compare-and-swap that takes
it (jobs.actions.claim_next), which the loser retries.
"""

import fcntl
import logging
import threading
from collections import Counter
from contextlib import contextmanager
from dataclasses import astuple, dataclass
from functools import cache

from django.conf import settings
from django.db import DatabaseError, close_old_connections, connection

from dxweb import sql
from projects.models import Container, User
from projects.permissions import level_sql

from .execution.sandbox import host as host_facts
from .models import Job, LauncherShare, State, WorkerHost

log = logging.getLogger(__name__)

# What holds a host's capacity: a job whose code runs. A job held for debugging keeps its sandbox
# and its lane, but its code has ended: jobs may start beside it, or one held job would stop a
# small host for the length of its hold (up to two days).
ACTIVE = (State.RUNNING, State.TERMINATING)
PRIORITY_ORDER = {"high": 0, "normal": 1, "low": 2}
# How often an idle worker says it is alive (claims also do), and how long after the last time it
# still counts as a live host.
HOST_BEAT_SECONDS = 10


@dataclass(frozen=True)
class Capacity:
    cores: int
    memory_mb: int

    def fits(self, need):
        return need.cores <= self.cores and need.memory_mb <= self.memory_mb

    def minus(self, need):
        return Capacity(self.cores - need.cores, self.memory_mb - need.memory_mb)

    def plus(self, need):
        return Capacity(self.cores + need.cores, self.memory_mb + need.memory_mb)

    def capped(self, need):
        """`need` cut to this capacity (what a host gives a type larger than itself)."""
        return Capacity(min(need.cores, self.cores), min(need.memory_mb, self.memory_mb))

    def __str__(self):
        return f"{self.cores} cores / {gib(self.memory_mb)} GiB"


def gib(memory_mb):
    return f"{memory_mb / 1024:.1f}".removesuffix(".0")


def capacity():
    """This worker host's capacity: detected, or the settings' override."""
    cores = settings.DXWEB_WORKER_CORES or host_facts.cpu_count()
    memory_mb = settings.DXWEB_WORKER_MEMORY_MB or host_facts.memory_mb() or 1024
    return Capacity(int(cores), int(memory_mb))


def need(instance_type):
    """The cores and memory an instance type asks for (the default type's for an unknown name)."""
    table = settings.DXWEB_INSTANCE_TYPES
    entry = table.get(instance_type) or table[settings.DXWEB_DEFAULT_INSTANCE_TYPE]
    return Capacity(int(entry["cpus"]), int(entry["memory_mb"]))


def live_since(now=None):
    """Hosts heard of after this time (ms, the database's clock, as their beats) count as live."""
    now = now or sql.database_now_ms()
    return now - max(settings.DXWEB_LEASE_SECONDS, 3 * HOST_BEAT_SECONDS) * 1000


def register(name, cap, lanes=0, ssh_host=""):
    """Record a worker host (at its start, and again as it beats), on the database's clock."""
    now = sql.database_now_ms()
    WorkerHost.objects.bulk_create(
        [
            WorkerHost(
                name=name,
                cores=cap.cores,
                memory_mb=cap.memory_mb,
                lanes=lanes,
                ssh_host=ssh_host,
                heartbeat=now,
                started=now,
            )
        ],
        update_conflicts=True,
        unique_fields=["name"],
        update_fields=["cores", "memory_mb", "lanes", "ssh_host", "heartbeat"],
    )


def beat(name, cap, lanes, stop=None):
    """Keep registering this host every HOST_BEAT_SECONDS (a worker's thread), until `stop` is set."""
    stop = stop or threading.Event()
    while True:
        try:
            register(name, cap, lanes, ssh_host=settings.DXWEB_SSH_HOST or settings.DXWEB_SSH_BIND)
        except DatabaseError:
            log.warning("worker host %s could not renew its registration", name, exc_info=True)
        finally:
            close_old_connections()
        if stop.wait(HOST_BEAT_SECONDS):
            return


def host_of(worker):
    """The host name in a job's `worker` ("<host>:<celery node>")."""
    return worker.split(":", 1)[0]


_claim_locks = {}  # host name: (a lock for this process's threads, the open lock file)
_claim_locks_lock = threading.Lock()


@contextmanager
def claiming(name):
    """Hold host `name`'s claim lock: its lanes (a worker's processes, or threads) claim one at a time.

    A file lock (flock) in the data directory, which a host's lanes share, and a thread lock beside
    it (flock does not tell apart threads that share the open file)."""
    with _claim_locks_lock:
        if name not in _claim_locks:
            folder = settings.DATA_DIR / "claims"
            folder.mkdir(parents=True, exist_ok=True)
            file_name = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)  # any DXWEB_WORKER_NAME
            _claim_locks[name] = (threading.Lock(), open(folder / f"{file_name}.lock", "a+b"))  # noqa: SIM115 (kept open)
        thread_lock, lock_file = _claim_locks[name]
    with thread_lock:
        fcntl.flock(lock_file, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock_file, fcntl.LOCK_UN)


def _oversize(cap):
    """The instance types no live host can hold whole (this one counted): they run capped, alone."""
    biggest = [cap]
    for cores, memory_mb in WorkerHost.objects.filter(heartbeat__gte=live_since()).values_list("cores", "memory_mb"):
        biggest.append(Capacity(cores, memory_mb))
    return [name for name in settings.DXWEB_INSTANCE_TYPES if not any(c.fits(need(name)) for c in biggest)]


def pick(name, cap, ending=()):
    """Inside a transaction: the runnable job host `name` (of capacity `cap`) should take next, or None.

    `ending`: the instance types of this host's jobs whose code has ended and whose end is being
    recorded (runner.Ending): still running in the database, they no longer take room.

    Two reads, under `claiming(name)`: the runnable and the unfinished-and-running jobs, grouped by
    state, launcher, priority, instance type and worker; then the job, with its launcher's level on
    its project (`launcher_level`, for its token). The job returned has `more_runnable` set when other
    jobs were runnable as well (whether or not they fit): its lane then looks again after it.
    """
    statements = _statements(connection.vendor)
    keys = ("state", "launched_by_id", "priority", "instance_type", "worker", "n", "oldest", "served")
    rows = [dict(zip(keys, row, strict=True)) for row in sql.fetch(statements["groups"], [State.RUNNABLE, *ACTIVE])]
    free, here, running, runnable = cap, 0, Counter(), []
    for row in rows:
        if row["state"] == State.RUNNABLE:
            runnable.append(row)
            continue
        running[row["launched_by_id"]] += row["n"]
        if host_of(row["worker"]) == name:
            here += row["n"]
            free = free.minus(Capacity(*(x * row["n"] for x in astuple(cap.capped(need(row["instance_type"]))))))
    for instance_type in ending:
        here -= 1
        free = free.plus(cap.capped(need(instance_type)))
    oversize = (
        set(_oversize(cap)) if here == 0 and any(not cap.fits(need(r["instance_type"])) for r in runnable) else ()
    )
    fitting = [r for r in runnable if free.fits(need(r["instance_type"])) or r["instance_type"] in oversize]
    choices = {}
    for row in fitting:  # per launcher and priority, over the types that fit
        key = (row["launched_by_id"], row["priority"])
        seen = choices.get(key)
        choices[key] = {**row, "oldest": min(row["oldest"], seen["oldest"]) if seen else row["oldest"]}
    best = min(
        choices.values(),
        key=lambda g: (
            PRIORITY_ORDER.get(g["priority"], 1),
            running[g["launched_by_id"]],
            g["served"] or 0,
            g["oldest"],
        ),
        default=None,
    )
    if best is None:
        return None
    types = sorted(
        {
            r["instance_type"]
            for r in fitting
            if (r["launched_by_id"], r["priority"]) == (best["launched_by_id"], best["priority"])
        }
    )
    found = sql.fetch(
        statements["job"].format(types=sql.placeholders(len(types))),
        [State.RUNNABLE, best["launched_by_id"], best["priority"], *types],
    )
    job = _load_job(found[0]) if found else None
    if job is not None:
        job.more_runnable = sum(r["n"] for r in runnable) > 1
    return job


JOB, PROJECT, LAUNCHER = sql.Columns(Job, "j"), sql.Columns(Container, "p"), sql.Columns(User, "u")


@cache
def _statements(vendor):
    """pick's two reads, written once per database vendor: a claim makes them for every job, and the
    ORM's building of them cost more than the database's answering (see dxweb/sql.py)."""
    job, share, container, user = sql.name(Job), sql.name(LauncherShare), sql.name(Container), sql.name(User)
    fields = ("id", "state", "launched_by", "priority", "instance_type", "worker", "created", "project")
    j = {f: sql.name(Job, f) for f in fields}
    grouped = ", ".join(f"j.{j[f]}" for f in ("state", "launched_by", "priority", "instance_type", "worker"))
    level = level_sql(f"j.{j['project']}", f"j.{j['launched_by']}")
    return {
        # Parameters: the states read (runnable, then ACTIVE's).
        "groups": (
            f"SELECT {grouped}, COUNT(*), MIN(j.{j['created']}), MAX(s.{sql.name(LauncherShare, 'last_claim')}) "
            f"FROM {job} j LEFT JOIN {share} s ON s.{sql.name(LauncherShare, 'user')} = j.{j['launched_by']} "
            f"WHERE j.{j['state']} IN ({sql.placeholders(1 + len(ACTIVE))}) GROUP BY {grouped}"
        ),
        # Parameters: runnable, the launcher, the priority, then the types ({types}: their placeholders).
        # The job with its project and launcher, and the launcher's level on the project (for its token).
        "job": (
            f"SELECT {JOB.sql}, {PROJECT.sql}, {LAUNCHER.sql}, {level} "
            f"FROM {job} j INNER JOIN {container} p ON p.{sql.name(Container, 'id')} = j.{j['project']} "
            f"INNER JOIN {user} u ON u.{sql.name(User, 'id')} = j.{j['launched_by']} "
            f"WHERE j.{j['state']} = %s AND j.{j['launched_by']} = %s AND j.{j['priority']} = %s "
            f"AND j.{j['instance_type']} IN ({{types}}) ORDER BY j.{j['created']}, j.{j['id']} LIMIT 1"
        ),
    }


def job_with_relations(row):
    """The Job of a row that starts with JOB's, PROJECT's and LAUNCHER's columns, with its project and
    launcher (as select_related("project", "launched_by") gives it)."""
    job = JOB.load(row)
    job.project = PROJECT.load(row, JOB.width)
    job.launched_by = LAUNCHER.load(row, JOB.width + PROJECT.width)
    return job


def job_with_relations_sql(also=""):
    """The SELECT ... FROM ... of job_with_relations's rows: the job `j`, its project `p`, its launcher `u`
    (then `also`, more columns of the caller's)."""
    job, container, user = sql.name(Job), sql.name(Container), sql.name(User)
    return (
        f"SELECT {JOB.sql}, {PROJECT.sql}, {LAUNCHER.sql}{also} FROM {job} j "
        f"INNER JOIN {container} p ON p.{sql.name(Container, 'id')} = j.{sql.name(Job, 'project')} "
        f"INNER JOIN {user} u ON u.{sql.name(User, 'id')} = j.{sql.name(Job, 'launched_by')}"
    )


def _load_job(row):
    """The Job of a "job" row, with its project and launcher, and `launcher_level`."""
    job = job_with_relations(row)
    job.launcher_level = row[JOB.width + PROJECT.width + LAUNCHER.width]
    return job


def served(launcher_id, now):
    """Record a claim of the launcher's job (inside the claim's transaction; one upsert, as hosts claim
    at once)."""
    LauncherShare.objects.bulk_create(
        [LauncherShare(user_id=launcher_id, last_claim=now)],
        update_conflicts=True,
        unique_fields=["user"],
        update_fields=["last_claim"],
    )


def waiting_for(job):
    """What a runnable job waits for, for its page: a worker with room for its instance type."""
    wanted = need(job.instance_type)
    hosts = list(WorkerHost.objects.filter(heartbeat__gte=live_since()).values_list("cores", "memory_mb"))
    if not hosts:
        return f"Waiting for a worker with {wanted} free (no worker host is running)"
    biggest = Capacity(max(c for c, _ in hosts), max(m for _, m in hosts))
    if not any(Capacity(c, m).fits(wanted) for c, m in hosts):
        capped = biggest.capped(wanted)
        return (
            f"Waiting for a worker with {capped} free: {job.instance_type} ({wanted}) is larger than any "
            f"worker host, so it will run alone on one, capped to it"
        )
    return f"Waiting for a worker with {wanted} free"
