"""Celery workers on the real stack: duplicate wake-ups, a worker killed mid-job, two workers sharing a queue.

Everything runs in real processes: `manage.py serve --no-worker` for the web side and
our own `celery -A dxweb worker` process groups, so a test can kill one with SIGKILL.
"""

import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import urlparse, urlunparse

import psutil
import pytest

from jobs import actions, ending
from jobs.execution import runner
from jobs.models import Job, LogLine, State
from tests.dxweb.test_scaled_out import POSTGRES_URL, REDIS_URL, check_postgres, check_redis, require
from tests.helpers import launch, sleeping, unique_seconds, wait_for
from tests.live import BIN, ROOT, Dx, LiveServer

APPS = Path(__file__).parent.parent / "apps"
LEASE_SECONDS = 3
# A short lease, renewed twice a second, checked every second: a vanished worker is noticed in seconds.
SHORT_LEASE = {"DXWEB_LEASE_SECONDS": str(LEASE_SECONDS), "DXWEB_HEARTBEAT_SECONDS": "0.5", "DXWEB_REAP_SECONDS": "1"}
# A Redis database of its own, flushed at the start, so no other test's messages reach these workers.
WORKERS_REDIS_URL = urlunparse(urlparse(REDIS_URL)._replace(path="/5"))


class Worker:
    """One `celery -A dxweb worker` of our own, in its own process group, on a live server's data."""

    def __init__(self, server, nodename, beat=False, concurrency=2, env=None):
        self.nodename = nodename
        self.log_path = server.tmp / f"worker-{nodename.split('@')[0]}.log"
        args = [
            str(BIN / "celery"),
            "-A",
            "dxweb",
            "worker",
            "-l",
            "INFO",
            "-n",
            nodename,
            "-c",
            str(concurrency),
            "--without-mingle",
            "--without-gossip",
        ]  # a second less to start; jobs are claimed in the database
        if beat:
            # The embedded beat sends the reaper; each worker keeps its own schedule file.
            args += ["-B", "-s", str(server.tmp / f"beat-{nodename.split('@')[0]}")]
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                args,
                cwd=ROOT,
                env={**server.env, **(env or {})},
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        wait_for(lambda: self.proc.poll() is not None or " ready." in self.log(), 60, f"worker {nodename} to start")
        assert self.proc.poll() is None, f"worker {nodename} exited:\n{self.log()[-3000:]}"

    def log(self):
        return self.log_path.read_text(errors="replace")

    def kill(self):
        """SIGKILL the worker's whole process group: main process, pool children and beat."""
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()

    def handled(self, task):
        """How many `task` messages this worker has finished handling."""
        return len(re.findall(rf"Task {re.escape(task)}\[\S+\] succeeded", self.log()))

    def stop(self):
        """Ask for a warm shutdown; the main process stops its pool and beat itself."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGCONT)  # in case a test froze it
            self.proc.terminate()

    def wait_stopped(self):
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            pass
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)  # whatever it left behind
        except ProcessLookupError:
            pass
        self.proc.wait()


class Fleet:
    """A web server without a worker, alice's project with the `nap` applet, and workers started on demand."""

    def __init__(self, server, tmp):
        self.server = server
        self.token = server.user("alice")
        self.dx = Dx(server, self.token, tmp)
        self.project = self.dx("new", "project", "workers", "--brief").stdout.strip()
        self.dx("select", self.project)
        self.applet = json.loads(self.dx("build", str(APPS / "nap")).stdout)["id"]
        self.workers = []

    def worker(self, nodename, **kwargs):
        worker = Worker(self.server, nodename, **kwargs)
        self.workers.append(worker)
        return worker

    def stop_workers(self):
        # All at once: a warm shutdown on the filesystem transport takes a few seconds each.
        for worker in self.workers:
            worker.stop()
        for worker in self.workers:
            worker.wait_stopped()
        self.workers = []

    def run(self, seconds, tag="nap"):
        body = {"project": self.project, "input": {"seconds": seconds, "tag": tag}}
        return self.server.api(f"/{self.applet}/run", body, self.token)["id"]

    def describe(self, job_id):
        return self.server.api(f"/{job_id}/describe", {}, self.token)

    def leases(self, job_ids):
        """{job id: [worker, tries]}, read from the database."""
        code = (
            "import json; from jobs.models import Job; "
            f"print(json.dumps({{j.id: [j.worker, j.tries] for j in Job.objects.filter(pk__in={list(job_ids)!r})}}))"
        )
        return json.loads(self.server.manage("shell", "-c", code).stdout.strip().splitlines()[-1])

    def wake(self, job_id, times):
        """Send `times` extra run_job messages for the job through the real broker; return the broker's URL."""
        calls = "; ".join([f"run_job.delay({job_id!r})"] * times)
        code = (
            f"from django.conf import settings; from jobs.tasks import run_job; {calls}; "
            "print(settings.CELERY_BROKER_URL)"
        )
        return self.server.manage("shell", "-c", code).stdout.strip().splitlines()[-1]

    def log(self, job_id):
        return self.dx("watch", job_id, "--no-wait").stdout

    def waiting_wake_ups(self):
        """How many wake-ups wait in the broker, delivered to no worker (jobs/dispatch.py)."""
        code = "from jobs import dispatch; print(dispatch.waiting())"
        return int(self.server.manage("shell", "-c", code).stdout.strip().splitlines()[-1])


def states(job):
    return [t["newState"] for t in job["stateTransitions"]]


# The lease in the database, without processes: what the live tests below rely on --------------


def test_a_worker_keeps_its_database_connection_from_task_to_task(transactional_db):
    """Celery's Django fix-up, as the worker runs it around every task, leaves the connection open:
    without CELERY_DB_REUSE_MAX it closes it, and on PostgreSQL each job would start a server process."""
    from celery.fixups.django import DjangoWorkerFixup
    from django.db import connection

    from dxweb.celery import app
    from jobs.tasks import run_job

    fixup = DjangoWorkerFixup(app)
    assert fixup.db_reuse_max and fixup.db_reuse_max >= 100
    Job.objects.exists()
    opened = connection.connection
    assert opened is not None
    for _ in range(20):
        fixup.on_task_prerun(sender=run_job)
        Job.objects.exists()
        fixup.on_task_postrun(sender=run_job)
    assert connection.connection is opened


def test_a_claim_that_lost_its_lease_cannot_record_a_result(alice, project, nap, settings):
    settings.DXWEB_MAX_TRIES = 2
    job_id = launch(alice, project, nap)
    first, _ = actions.claim(job_id, "stalled")
    assert ending.reap(now=expiry(first, settings))["retried"] == [job_id]
    second, _ = actions.claim(job_id, "survivor")
    assert (first.tries, second.tries) == (1, 2)
    actions.finish(job_id, {"from": "stalled"}, only_if={"tries": first.tries})
    assert not actions.fail(second, "AppError", "from the stalled try", only_if={"tries": first.tries})
    assert Job.objects.get(pk=job_id).state == State.RUNNING
    actions.finish(job_id, {"from": "survivor"}, only_if={"tries": second.tries})
    job = Job.objects.get(pk=job_id)
    assert job.state == State.DONE and job.output == {"from": "survivor"}


def expiry(job, settings):
    """The first time at which the reaper takes the job's lease: a heartbeat period past the lease."""
    return job.heartbeat + settings.DXWEB_LEASE_SECONDS * 1000 + round(settings.DXWEB_HEARTBEAT_SECONDS * 1000) + 1


def test_the_reaper_takes_a_lease_a_heartbeat_period_after_it_lapsed_and_logs_why(alice, project, nap, settings):
    settings.DXWEB_MAX_TRIES = 2
    job_id = launch(alice, project, nap)
    job, _ = actions.claim(job_id, "host:slow@host")
    # Lapsed, but a heartbeat from a worker that is merely slow may still be on its way.
    assert ending.reap(now=job.heartbeat + settings.DXWEB_LEASE_SECONDS * 1000 + 1)["retried"] == []
    assert ending.reap(now=expiry(job, settings) - 1)["retried"] == []
    assert Job.objects.get(pk=job_id).state == State.RUNNING
    assert ending.reap(now=expiry(job, settings))["retried"] == [job_id]
    retry = LogLine.objects.filter(job_id=job_id).order_by("-seq").first()
    age = (expiry(job, settings) - job.heartbeat) / 1000
    assert (retry.source, retry.level) == ("SYSTEM", "WARNING")
    assert retry.msg == (
        f"Retrying: worker host:slow@host stopped renewing this job's lease (last heartbeat "
        f"{age:.1f} s ago, the lease is {settings.DXWEB_LEASE_SECONDS} s); try 1 → try 2 (of at most 2)"
    )
    # The last try is not retried: its log says so.
    job, _ = actions.claim(job_id, "host:slow@host")
    assert ending.reap(now=expiry(job, settings))["failed"] == [job_id]
    last = LogLine.objects.filter(job_id=job_id).order_by("-seq").first()
    assert last.level == "ERROR" and last.msg.startswith("Not retried: worker host:slow@host stopped renewing")
    assert last.msg.endswith("try 2 was the last of at most 2") and last.seq == retry.seq + 1


def test_a_worker_that_stalled_during_a_heartbeat_beats_again_at_once(alice, project, nap, monkeypatch, tmp_path):
    """A stall (SIGSTOP, a paused VM) can land inside a heartbeat: the beat went through just before it,
    the reaper took the lease during it. The next beat is due at once on waking, not a period later,
    and finding the lease lost it kills the sandbox before anything else."""
    job, _ = actions.claim(launch(alice, project, nap), "stalled")
    now = [0.0]
    events = []

    class Sandbox:
        def wait(self, timeout=None):
            events.append(("wait", timeout))
            now[0] += timeout
            return None

        def kill_tree(self):
            events.append(("kill",))

    def beat(state):
        events.append(("beat",))
        if events.count(("beat",)) == 1:
            now[0] += 3600  # the stall, after the renewal was written
            return []
        return None  # the reaper took the lease meanwhile

    monkeypatch.setattr(runner, "time", SimpleNamespace(monotonic=lambda: now[0]))
    lease = SimpleNamespace(beat=beat, expired=False)  # the lease's heartbeats (runner.LeaseWatch)
    outcome = runner._supervise(job, Sandbox(), SimpleNamespace(check=lambda allow_ssh: None), tmp_path, lease)
    assert outcome == runner.Lost()
    after_stall = events[events.index(("beat",)) + 1 :]
    assert after_stall[-2:] == [("beat",), ("kill",)], events
    assert sum(event[1] for event in after_stall if event[0] == "wait") == 0, events


def test_the_reaper_spares_a_lease_renewed_after_it_looked(alice, project, nap):
    job_id = launch(alice, project, nap)
    job, _ = actions.claim(job_id, "slow")
    lapsed = job.heartbeat + 1  # the reaper read the job when this heartbeat was stale...
    Job.objects.filter(pk=job_id).update(heartbeat=lapsed + 5)  # ...and the worker renewed it since
    assert not actions.fail(job, "ExecutionError", "lease lapsed", only_if={"heartbeat__lt": lapsed})
    assert Job.objects.get(pk=job_id).state == State.RUNNING


def test_an_unclaimed_job_is_woken_again_with_backoff(alice, project, nap, settings):
    job_id = launch(alice, project, nap)
    born, lease = Job.objects.get(pk=job_id).modified, settings.DXWEB_LEASE_SECONDS * 1000
    woken = [age for age in range(0, 20 * lease, lease // 4) if job_id in ending.reap(now=born + age + 1)["woken"]]
    # One wake-up after a lease, then each at least twice as old as the last: not one per reaper tick.
    assert woken[0] == lease and 3 <= len(woken) <= 5, woken
    assert all(later >= 2 * earlier for earlier, later in zip(woken, woken[1:])), woken


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("workers")
    server = LiveServer(tmp, extra_env=SHORT_LEASE, extra_args=["--no-worker"]).start()
    try:
        yield Fleet(server, tmp)
    finally:
        server.stop()


@pytest.fixture
def workers(fleet):
    yield fleet
    fleet.stop_workers()


@pytest.mark.live
def test_a_burst_sends_one_wake_up_and_still_runs_on_every_lane(workers):
    """Jobs launched while a wake-up waits send none of their own; the lane that takes it wakes the
    other while jobs remain runnable, so the burst still runs two at once (jobs/dispatch.py)."""
    fleet = workers
    jobs = [fleet.run("1", tag=f"burst{i}") for i in range(6)]
    assert fleet.waiting_wake_ups() == 1  # no worker yet: the first launch's wake-up waits; the rest sent none
    worker = fleet.worker("burst@%h")  # two lanes
    for job_id in jobs:
        wait_for(lambda job_id=job_id: fleet.describe(job_id)["state"] == "done", 90, f"{job_id} to finish")
    spans = sorted((d["startedRunning"], d["stoppedRunning"]) for d in map(fleet.describe, jobs))
    assert any(later[0] < earlier[1] for earlier, later in zip(spans, spans[1:])), spans  # two ran at once
    wait_for(lambda: worker.handled("jobs.run_job") >= 2, 30, "the two lanes' turns to end")
    wait_for(lambda: fleet.waiting_wake_ups() == 0, 30, "the last wake-up to be taken")
    assert worker.handled("jobs.run_job") < len(jobs)  # one message a job, before


@pytest.mark.live
def test_duplicated_messages_run_the_job_once(workers):
    fleet = workers
    job_id = fleet.run("4", tag="once")
    assert fleet.describe(job_id)["state"] == "runnable"  # no worker yet: its message waits in the queue
    # The embedded default is kombu's filesystem transport; the suite's scaled-out pass sets REDIS_URL.
    broker = os.environ.get("REDIS_URL") or "filesystem://localhost//"
    assert fleet.wake(job_id, 2) == broker
    worker = fleet.worker("solo@%h")  # two pool processes: the duplicates race the first claim
    # dxweb/broker.py's FilesystemTransport is kombu's, with messages renamed into place.
    transport = "redis" if broker.startswith("redis") else "dxweb.broker:FilesystemTransport"
    assert f"Connected to {transport}://" in worker.log()
    wait_for(lambda: fleet.describe(job_id)["state"] != "runnable", 30, "the job to be claimed")
    fleet.wake(job_id, 2)
    assert fleet.describe(job_id)["state"] == "running"  # these two arrive while it runs
    wait_for(lambda: fleet.describe(job_id)["state"] == "done", 60, "the job to finish")
    # All five messages were delivered and handled; four of them found the job taken.
    wait_for(lambda: worker.handled("jobs.run_job") == 5, 30, "the five messages to be handled")
    job = fleet.describe(job_id)
    assert states(job).count("running") == 1, states(job)
    log = fleet.log(job_id)
    assert log.count("once is going to sleep") == 1 and log.count("once woke up") == 1, log
    assert log.count("Running nap (main) on") == 1, log
    assert fleet.leases([job_id])[job_id][1] == 1


@pytest.mark.live
def test_a_worker_killed_mid_job_leaves_it_failed_with_execution_error(workers):
    fleet = workers
    one_try = {"DXWEB_MAX_TRIES": "1"}
    doomed = fleet.worker("a@%h", beat=True, env=one_try)
    seconds = unique_seconds(600)
    job_id = fleet.run(seconds)
    wait_for(lambda: sleeping(seconds), 60, "the job's sleep to start")
    assert fleet.describe(job_id)["state"] == "running"

    doomed.kill()
    killed_at = time.monotonic()
    # The sandbox dies with the worker process that started it (bubblewrap's --die-with-parent).
    wait_for(lambda: not sleeping(seconds), 10, "no process of the job left")
    fleet.worker("b@%h", beat=True, env=one_try)
    seen = set()

    def failed():
        job = fleet.describe(job_id)
        seen.add(job["state"])
        return job if job["state"] == "failed" else None

    job = wait_for(failed, LEASE_SECONDS + 30, "the reaper to fail the job")
    assert time.monotonic() - killed_at < LEASE_SECONDS + 30
    assert seen <= {"running", "failed"}, seen  # never re-queued: one try allowed
    assert job["failureReason"] == "ExecutionError"
    assert "stopped renewing its lease" in job["failureMessage"] and "a@" in job["failureMessage"]
    assert states(job).count("running") == 1
    assert not sleeping(seconds)


@pytest.mark.live
def test_a_worker_killed_mid_job_is_retried_on_the_survivor(workers):
    fleet = workers
    two_tries = {"DXWEB_MAX_TRIES": "2"}
    doomed = fleet.worker("c@%h", beat=True, env=two_tries)
    seconds = unique_seconds(3)
    job_id = fleet.run(seconds, tag="retried")
    wait_for(lambda: sleeping(seconds), 60, "the job's sleep to start")
    doomed.kill()
    wait_for(lambda: not sleeping(seconds), 10, "no process of the first try left")
    fleet.worker("d@%h", beat=True, env=two_tries)

    job = wait_for(lambda: (j := fleet.describe(job_id))["state"] in ("done", "failed") and j, 60, "the retry to end")
    assert job["state"] == "done", job.get("failureMessage")
    assert states(job) == ["runnable", "running", "runnable", "running", "done"]
    worker, tries = fleet.leases([job_id])[job_id]
    assert tries == 2 and "d@" in worker
    assert job["try"] == 1
    log = fleet.log(job_id)
    assert log.count("retried is going to sleep") == 2 and log.count("retried woke up") == 1, log


@pytest.mark.live
def test_a_stalled_worker_that_lost_its_lease_records_nothing(workers):
    fleet = workers
    two_tries = {"DXWEB_MAX_TRIES": "2"}
    stalled = fleet.worker("e@%h", env=two_tries)
    seconds = unique_seconds(6)
    job_id = fleet.run(seconds, tag="stalled")
    wait_for(lambda: sleeping(seconds), 60, "the first try's sleep to start")
    # The worker freezes (a paused VM, a long GC); its sandbox, in a session of its own, sleeps on.
    os.killpg(stalled.proc.pid, signal.SIGSTOP)
    fleet.worker("f@%h", beat=True, env=two_tries)
    wait_for(
        lambda: (j := fleet.describe(job_id))["state"] == "running" and j["try"] == 1,
        30,
        "the reaper to hand the job to the survivor",
    )
    os.killpg(stalled.proc.pid, signal.SIGCONT)

    job = wait_for(lambda: (j := fleet.describe(job_id))["state"] in ("done", "failed") and j, 60, "the job to end")
    assert states(job) == ["runnable", "running", "runnable", "running", "done"], job
    second_try = [t["setAt"] for t in job["stateTransitions"] if t["newState"] == "running"][1]
    # The result is the second try's, whose sleep alone took 6 s; the first try recorded nothing.
    assert job["stateTransitions"][-1]["setAt"] - second_try >= 6000
    worker, tries = fleet.leases([job_id])[job_id]
    assert tries == 2 and "f@" in worker
    log = fleet.log(job_id)
    assert "lost this job's lease (try 1)" in log and "The job was terminated" not in log, log
    # The second try's log goes on after the first's end (its late lines refused, see below).
    assert "stalled woke up" in log[log.index("f@") :], log
    wait_for(lambda: len(sleeping(seconds)) == 0, 10, "no process of either try left")


# Every 0.2 s each try appends "<its name> <epoch ms>" to a file the test reads (the pip cache is the
# one host directory a job writes that outlives its try) and logs a tick. The first try ticks for a
# minute (only a kill ends it here); a later one finds the file started and ends after 2 s. Once
# started it needs no file but the one it holds open: a later try's setup replaces the job's
# directory, and with it the first try's home and root layer.
TICKER = """
import os, time
ticks = os.open(f"/opt/dnanexus/pip-cache/ticks-{os.environ['DX_JOB_ID']}", os.O_WRONLY | os.O_APPEND | os.O_CREAT)
me = "try-" + os.urandom(6).hex()
count = 10 if os.fstat(ticks).st_size else 300
for i in range(1, count + 1):
    os.write(ticks, f"{me} {time.time_ns() // 1000000}\\n".encode())
    print(f"tick {i} of {me}", flush=True)
    time.sleep(0.2)
"""


def sandboxed_descendants(pid):
    """The processes below `pid` in a session other than its own: the sandboxes it started."""
    found = []
    for proc in psutil.Process(pid).children(recursive=True):
        try:
            if os.getsid(proc.pid) != os.getsid(pid):
                found.append(proc)
        except ProcessLookupError:
            pass
    return found


@pytest.mark.live
def test_a_stalled_worker_kills_its_stale_copy_at_its_first_heartbeat(workers):
    fleet = workers
    two_tries = {"DXWEB_MAX_TRIES": "2"}
    heartbeat = float(SHORT_LEASE["DXWEB_HEARTBEAT_SECONDS"])
    applet = fleet.server.api(
        "/applet/new",
        {
            "project": fleet.project,
            "name": "ticker",
            "inputSpec": [],
            "outputSpec": [],
            "runSpec": {"interpreter": "python3", "code": TICKER},
        },
        fleet.token,
    )["id"]
    stalled = fleet.worker("g@%h", env=two_tries)
    job_id = fleet.server.api(f"/{applet}/run", {"project": fleet.project}, fleet.token)["id"]
    caches = Path(fleet.server.env["DXWEB_DATA_DIR"]) / "pip-cache"  # one per user: the launcher's holds the file

    def ticks():
        """[(try name, epoch ms)] in the order written."""
        tick_file = next(caches.glob(f"user-*/ticks-{job_id}"), None)
        text = tick_file.read_text() if tick_file else ""
        return [(name, int(ms)) for name, ms in (line.split() for line in text.splitlines() if len(line.split()) == 2)]

    first = wait_for(ticks, 60, "the first try to tick")[0][0]
    first_try = sandboxed_descendants(stalled.proc.pid)
    assert first_try, "the first try's sandbox was not found"
    # The worker freezes past its lease; its sandbox, in a session of its own, ticks on.
    os.killpg(stalled.proc.pid, signal.SIGSTOP)
    fleet.worker("h@%h", beat=True, env=two_tries)
    wait_for(lambda: len([n for n, _ in ticks() if n != first]) >= 2, 30, "the second try to tick")
    resumed = time.time() * 1000
    os.killpg(stalled.proc.pid, signal.SIGCONT)
    # Its first heartbeat finds the lease lost and kills the sandbox.
    _, alive = psutil.wait_procs(first_try, timeout=10)
    assert not alive, alive

    job = wait_for(lambda: (j := fleet.describe(job_id))["state"] in ("done", "failed") and j, 60, "the job to end")
    assert states(job) == ["runnable", "running", "runnable", "running", "done"], job
    record = ticks()
    second = next(name for name, _ in record if name != first)
    assert {name for name, _ in record} == {first, second}
    first_last = max(ms for name, ms in record if name == first)
    second_first = min(ms for name, ms in record if name == second)
    # The two copies overlapped while the first's worker was frozen (nothing in it could run), and
    # the first ran on for less than one heartbeat period once its worker woke.
    assert first_last > second_first, record
    assert first_last - resumed < heartbeat * 1000, (first_last - resumed, record)

    log = fleet.log(job_id)
    retry = re.search(
        r"Retrying: worker (\S+) stopped renewing this job's lease \(last heartbeat ([0-9.]+) s ago"
        r"[^\n]*try 1 → try 2",
        log,
    )
    assert retry, log
    assert "g@" in retry[1]
    # Re-queued only once the lease had lapsed by more than a heartbeat period.
    assert float(retry[2]) >= LEASE_SECONDS + heartbeat, retry[0]
    second_run = log.index("Running ticker (main) on", log.index(retry[0]))
    assert "h@" in log[second_run:].splitlines()[0]
    # The stale try's late lines (written while its worker was frozen, read when it woke) are not
    # stored after the second try began; its worker's own line about the lost lease is.
    assert f"of {first}" not in log[second_run:], log
    assert "lost this job's lease (try 1)" in log[second_run:], log
    assert log.count(f"of {second}") == 10, log


@pytest.fixture(scope="module")
def scaled_fleet(tmp_path_factory):
    require("PostgreSQL", check_postgres)
    require("Redis", check_redis)
    import redis

    redis.Redis.from_url(WORKERS_REDIS_URL).flushdb()
    tmp = tmp_path_factory.mktemp("scaled-workers")
    server = LiveServer(
        tmp,
        extra_env={"DATABASE_URL": POSTGRES_URL, "REDIS_URL": WORKERS_REDIS_URL},
        extra_args=["--no-worker"],
    ).start()
    fleet = None
    try:
        fleet = Fleet(server, tmp)
        yield fleet
    finally:
        if fleet is not None:
            fleet.stop_workers()
        server.stop()


@pytest.mark.live
def test_two_workers_share_the_queue_and_never_run_a_job_twice(scaled_fleet):
    fleet = scaled_fleet
    first = fleet.worker("w1@hostA", beat=True)
    fleet.worker("w2@hostB")
    assert "Connected to redis://" in first.log()
    job_ids = [fleet.run("0.5", tag=f"job{i}") for i in range(20)]
    pending = set(job_ids)
    described = {}

    def all_final():
        for job_id in list(pending):
            job = fleet.describe(job_id)
            if job["state"] in ("done", "failed", "terminated"):
                described[job_id] = job
                pending.discard(job_id)
        return not pending

    wait_for(all_final, 90, "all 20 jobs to end")
    assert {job["state"] for job in described.values()} == {"done"}
    for job in described.values():
        assert states(job).count("running") == 1, (job["id"], states(job))
    leases = fleet.leases(job_ids)
    names = {}
    for job_id, (worker, tries) in leases.items():
        holders = [name for name in ("w1@hostA", "w2@hostB") if worker.endswith(f":{name}")]
        assert len(holders) == 1 and tries == 1, (job_id, worker, tries)
        names.setdefault(holders[0], []).append(job_id)
    assert set(names) == {"w1@hostA", "w2@hostB"}, {k: len(v) for k, v in names.items()}
