"""Claims: a worker host takes only what fits its free capacity, priority first, then fair between
launchers (jobs/scheduler.py, jobs.actions.claim_next)."""

import itertools
import threading

import pytest
from django.db import transaction

from jobs import scheduler
from jobs.actions import claim_next, transition
from jobs.models import Job, State, WorkerHost
from jobs.views import waiting_reason
from projects import actions as project_actions
from projects.models import ApiToken, now_ms

ids = itertools.count()


@pytest.fixture
def make_job(alice):
    project = project_actions.create_container(alice.user, "runs")

    def make(user, instance_type="mem1_ssd1_x2", priority="normal", state=State.RUNNABLE, worker=""):
        job = Job.objects.create(
            id=f"job-{next(ids):024d}",
            name="j",
            executable="applet-" + "b" * 24,
            project=project,
            launched_by=user,
            instance_type=instance_type,
            priority=priority,
            state=state,
            worker=worker,
            created=now_ms() + next(ids),  # in order of making
        )
        return job

    return make


def pick(host="h1", cores=4, memory_mb=16000):
    with transaction.atomic():
        job = scheduler.pick(host, scheduler.Capacity(cores, memory_mb))
    return job and job.pk


def take(host="h1", cores=4, memory_mb=16000):
    claimed = claim_next(f"{host}:celery@{host}", host, scheduler.Capacity(cores, memory_mb))
    return claimed and claimed[0].pk


def test_a_host_claims_only_what_fits_its_free_cores(alice, make_job):
    jobs = [make_job(alice.user).pk for _ in range(3)]  # 2 cores each
    assert take() == jobs[0] and take() == jobs[1]
    assert take() is None  # 4 cores, both taken
    assert Job.objects.get(pk=jobs[2]).state == State.RUNNABLE
    transition(jobs[0], State.DONE)
    assert take() == jobs[2]
    running = Job.objects.filter(state=State.RUNNING)
    assert {j.worker for j in running} == {"h1:celery@h1"} and all(j.tries == 1 for j in running)


def test_memory_counts_as_well_as_cores(alice, make_job):
    big = make_job(alice.user, "mem3_ssd1_x2").pk  # 2 cores, 15 GB
    small = make_job(alice.user, "mem1_ssd1_x2").pk  # 2 cores, 3.8 GB
    assert take(cores=8, memory_mb=16000) == big
    assert pick(cores=8, memory_mb=16000) is None  # 6 cores free, but 1 GB of memory
    transition(big, State.DONE)
    assert take(cores=8, memory_mb=16000) == small


def test_a_job_whose_end_is_being_recorded_leaves_its_room_to_the_next(alice, make_job):
    ended = make_job(alice.user, state=State.RUNNING, worker="h1:celery@h1")  # 2 cores, code ended
    waiting = make_job(alice.user).pk
    assert take(cores=2) is None  # still running in the database
    claimed = claim_next("h1:celery@h1", "h1", scheduler.Capacity(2, 16000), ending=[ended.instance_type])
    assert claimed[0].pk == waiting
    assert take(cores=2) is None  # the room was given once, not for good


def test_other_hosts_jobs_take_nothing_of_this_hosts_capacity(alice, make_job):
    make_job(alice.user, state=State.RUNNING, worker="h2:celery@h2")
    make_job(alice.user, state=State.RUNNING, worker="h2:celery@h2")
    mine = make_job(alice.user).pk
    assert take(cores=2) == mine


def test_a_type_larger_than_every_host_runs_alone_on_an_idle_host(alice, make_job):
    huge = make_job(alice.user, "mem1_ssd1_x8").pk  # 8 cores: more than this 4-core host
    small = make_job(alice.user).pk
    busy = make_job(alice.user, state=State.RUNNING, worker="h1:celery@h1").pk
    assert pick() == small  # not idle: the huge one waits, the small one fits
    transition(busy, State.DONE)
    assert take() == huge  # idle: it takes the whole host...
    assert pick() is None  # ...alone
    transition(huge, State.DONE)
    assert take() == small


def test_a_type_some_live_host_can_hold_is_left_to_it(alice, make_job):
    WorkerHost.objects.create(name="big", cores=16, memory_mb=64000, heartbeat=now_ms())
    make_job(alice.user, "mem1_ssd1_x8")
    assert pick() is None  # the big host will take it whole: this small one does not cap it
    WorkerHost.objects.filter(pk="big").update(heartbeat=now_ms() - 3600_000)  # gone
    assert pick() is not None


def test_claims_interleave_launchers(alice, bob, make_job):
    burst = [make_job(alice.user).pk for _ in range(5)]
    late = make_job(bob.user).pk
    assert take(cores=100) == burst[0]  # nobody runs anything: the oldest first
    assert take(cores=100) == late  # alice has one running, bob none: bob's job, though newer
    assert take(cores=100) == burst[1]


def test_priority_comes_before_fair_share(alice, bob, make_job):
    make_job(alice.user, state=State.RUNNING, worker="h9:x")
    make_job(alice.user, state=State.RUNNING, worker="h9:x")
    low = make_job(bob.user, priority="low").pk
    normal = make_job(bob.user).pk
    high = make_job(alice.user, priority="high").pk
    assert [take(cores=100) for _ in range(3)] == [high, normal, low]


def test_a_lost_swap_is_retried_and_leaves_no_token(alice, make_job, monkeypatch):
    first, second = make_job(alice.user), make_job(alice.user).pk
    Job.objects.filter(pk=first.pk).update(state=State.RUNNING, worker="h2:x", tries=1)  # another host won
    real_pick, picks = scheduler.pick, []

    def stale_then_real(*args, **kwargs):  # the first choice was read before the other host's swap
        picks.append(1)
        return first if len(picks) == 1 else real_pick(*args, **kwargs)

    monkeypatch.setattr(scheduler, "pick", stale_then_real)
    assert take() == second and len(picks) == 2
    assert Job.objects.get(pk=first.pk).worker == "h2:x"
    assert not ApiToken.objects.filter(job_id=first.pk).exists()  # the lost attempt's token is gone
    assert ApiToken.objects.filter(job_id=second).count() == 1


def test_the_waiting_explainer_names_what_the_job_needs(alice, make_job):
    job = make_job(alice.user, "mem2_ssd1_v2_x4")  # 4 cores, 16 GB
    assert waiting_reason(job).startswith("Waiting for a worker with 4 cores / 15.6 GiB free (no worker host")
    WorkerHost.objects.create(name="h1", cores=8, memory_mb=32000, heartbeat=now_ms())
    assert waiting_reason(job) == "Waiting for a worker with 4 cores / 15.6 GiB free"
    WorkerHost.objects.filter(pk="h1").update(cores=2)
    assert waiting_reason(job) == (
        "Waiting for a worker with 2 cores / 15.6 GiB free: mem2_ssd1_v2_x4 (4 cores / 15.6 GiB) is larger "
        "than any worker host, so it will run alone on one, capped to it"
    )


def test_a_host_registers_its_capacity(db, settings):
    settings.DXWEB_WORKER_CORES, settings.DXWEB_WORKER_MEMORY_MB = 3, 5000
    cap = scheduler.capacity()
    assert (cap.cores, cap.memory_mb) == (3, 5000)
    scheduler.register("w1", cap, lanes=2, ssh_host="10.0.0.2")
    host = WorkerHost.objects.get(pk="w1")
    assert (host.cores, host.memory_mb, host.lanes, host.ssh_host) == (3, 5000, 2, "10.0.0.2")
    settings.DXWEB_WORKER_CORES = settings.DXWEB_WORKER_MEMORY_MB = 0
    detected = scheduler.capacity()
    assert detected.cores >= 1 and detected.memory_mb > 0


def test_launchers_take_turns_on_a_host_with_room_for_one(alice, bob, make_job):
    burst = [make_job(alice.user).pk for _ in range(3)]
    late = make_job(bob.user).pk
    assert take(cores=2) == burst[0]
    transition(burst[0], State.DONE)  # nothing runs now: alice was served last, so bob's turn
    assert take(cores=2) == late
    transition(late, State.DONE)
    assert take(cores=2) == burst[1]


def test_a_job_held_for_debugging_leaves_its_share_to_others(alice, make_job):
    make_job(alice.user, state=State.DEBUG_HOLD, worker="h1:celery@h1")
    waiting = make_job(alice.user).pk
    assert take(cores=2) == waiting  # the held job's code has ended: its 2 cores are free


@pytest.mark.django_db(transaction=True)
def test_two_lanes_of_a_host_claiming_at_once_never_both_take_its_last_cores(alice, make_job, monkeypatch):
    """A host of 2 cores, 2-core jobs. The first lane's claim stays open (up to 2 s, or until the second
    lane has chosen) while a high-priority job comes: a second lane choosing then, beside the first,
    would see the 2 cores free and take the new job as the first takes the old one."""
    from django.db import connection

    make_job(alice.user)
    real_pick = scheduler.pick
    first_chose, second_chose, taken, errors = threading.Event(), threading.Event(), [], []

    def slow_pick(*args, **kwargs):
        job = real_pick(*args, **kwargs)
        if not first_chose.is_set():
            first_chose.set()
            second_chose.wait(timeout=2)  # the claim lock keeps the second lane out until this commits
        else:
            second_chose.set()
        return job

    monkeypatch.setattr(scheduler, "pick", slow_pick)

    def lane():
        try:
            taken.append(take(host="small", cores=2))
        except Exception as err:  # noqa: BLE001 - the test reports it
            errors.append(repr(err))
        finally:
            connection.close()

    threads = [threading.Thread(target=lane) for _ in range(2)]
    threads[0].start()
    assert first_chose.wait(timeout=30)
    make_job(alice.user, priority="high")
    threads[1].start()
    for t in threads:
        t.join()
    assert errors == []
    assert len([t for t in taken if t]) == 1, taken
    assert Job.objects.filter(state=State.RUNNING).count() == 1


@pytest.mark.django_db(transaction=True)
def test_a_lane_starts_the_next_job_while_the_last_ones_end_is_recorded(alice, make_job, monkeypatch):
    """runner.work hands a job's end to the process's ending thread and claims the next at once, even
    on a host with room for one job (the ended job's room is the next one's); its turn returns only
    once every end is recorded."""
    from jobs.execution import runner

    first, second = make_job(alice.user).pk, make_job(alice.user).pk  # 2 cores each, on a 2-core host
    seen = {}

    def run_to_end(job, token, worker):
        def record():
            if job.pk == first:  # the end of the first waits (up to 10 s) for the second's claim
                for _ in range(200):
                    if Job.objects.filter(pk=second, state=State.RUNNING).exists():
                        seen["second running while the first ended"] = True
                        break
                    threading.Event().wait(0.05)
            transition(job.pk, State.DONE, expected=[State.RUNNING])

        return record

    monkeypatch.setattr(runner, "_run_to_end", run_to_end)
    ran = runner.work("h1:celery@h1", host="h1", cap=scheduler.Capacity(2, 16000))
    assert ran == 2
    assert seen == {"second running while the first ended": True}
    assert set(Job.objects.filter(pk__in=[first, second]).values_list("state", flat=True)) == {State.DONE}
