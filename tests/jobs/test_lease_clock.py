"""Leases on the database's clock: a worker host's heartbeats and the reaper share one clock, so hosts
whose own clocks drift apart neither lose their jobs to the reaper nor keep a lapsed lease.

The worker's clock is skewed here by an hour (Python's `time.time` in this process, which the claim,
the heartbeats and the host's registration would read). PostgreSQL's clock is the server's, which the
skew does not touch. In the embedded pass (SQLite, a file on the one host) the database's clock is
this host's by design, and there is no other host to drift from, so those run in the PostgreSQL pass.
"""

import time

import pytest
from django.db import connection

from dxweb import sql
from jobs import actions, ending, scheduler
from jobs.execution import runner
from jobs.models import Job, State
from jobs.views import waiting_reason
from tests.helpers import launch
from tests.jobs.test_scheduler import make_job  # noqa: F401 - a fixture

HOUR = 3600.0


@pytest.fixture
def several_hosts(db):
    if connection.vendor != "postgresql":
        pytest.skip("several hosts' clocks: the PostgreSQL pass (SQLite's clock is its one host's)")


@pytest.fixture
def skewed(monkeypatch):
    """Set this process's clock (time.time) `by` seconds off; undo() puts it back."""
    real = time.time

    class Skew:
        def __call__(self, by):
            monkeypatch.setattr(time, "time", lambda: real() + by)

        def undo(self):
            monkeypatch.setattr(time, "time", real)

    return Skew()


def lapsed_for_the_reaper(settings):
    """The database's now, plus a lease and a heartbeat period: when a lease renewed now is taken."""
    lease, period = settings.DXWEB_LEASE_SECONDS * 1000, round(settings.DXWEB_HEARTBEAT_SECONDS * 1000)
    return sql.database_now_ms() + lease + period + 1


def test_a_heartbeat_written_with_the_database_clock_is_now_in_ms(alice, project, nap):
    job_id = launch(alice, project, nap)
    before = int(time.time() * 1000)
    Job.objects.filter(pk=job_id).update(heartbeat=sql.DatabaseNow())
    written = Job.objects.get(pk=job_id).heartbeat
    assert before - 5_000 <= written <= int(time.time() * 1000) + 5_000  # this machine's server: one clock
    assert abs(sql.database_now_ms() - written) < 5_000
    assert Job.objects.filter(pk=job_id, heartbeat__lte=sql.DatabaseNow()).exists()  # and in a filter


def test_the_database_clock_is_the_server_s_not_this_process_s(several_hosts, skewed):
    before = sql.database_now_ms()
    skewed(-HOUR)
    assert abs(sql.database_now_ms() - before) < 60_000


def test_a_worker_whose_clock_is_an_hour_behind_keeps_its_lease(several_hosts, alice, project, nap, skewed):
    job_id = launch(alice, project, nap)
    skewed(-HOUR)
    job, _ = actions.claim(job_id, "behind:celery@behind")
    lease = runner.LeaseWatch(job, proc=None)
    lease.stop()
    assert lease.beat(State.RUNNING) == []  # renewed: the job is still this claim's
    skewed.undo()
    assert ending.reap()["retried"] == []
    assert Job.objects.get(pk=job_id).state == State.RUNNING


def test_a_worker_whose_clock_is_an_hour_ahead_still_loses_a_lease_it_stops_renewing(
    several_hosts, alice, project, nap, skewed, settings
):
    settings.DXWEB_MAX_TRIES = 2
    job_id = launch(alice, project, nap)
    skewed(HOUR)
    job, _ = actions.claim(job_id, "ahead:celery@ahead")
    skewed.undo()
    assert abs(job.heartbeat - sql.database_now_ms()) < 60_000  # the claim's copy holds the database's
    assert ending.reap(now=lapsed_for_the_reaper(settings))["retried"] == [job_id]


def test_a_host_whose_clock_is_an_hour_behind_counts_as_live(several_hosts, alice, make_job, skewed):  # noqa: F811
    job = make_job(alice.user, "mem2_ssd1_v2_x4")  # 4 cores, 16 GB
    skewed(-HOUR)
    scheduler.register("behind", scheduler.Capacity(8, 32000), lanes=2)
    skewed.undo()
    assert waiting_reason(job) == "Waiting for a worker with 4 cores / 15.6 GiB free"
