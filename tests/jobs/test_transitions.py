"""The one way a job changes state: an allowed-transitions table and compare-and-swap."""

import threading

import pytest
from django.db import connection

from jobs.actions import TransitionError, finish, transition
from jobs.models import FINAL_STATES, TRANSITIONS, Job, JobDependency, State
from projects import actions as project_actions


@pytest.fixture
def job(alice):
    project = project_actions.create_container(alice.user, "runs")
    return Job.objects.create(
        id="job-" + "a" * 24, name="test", executable="applet-" + "b" * 24, project=project, launched_by=alice.user
    )


def states(job):
    return [(t.old_state, t.new_state) for t in job.transitions.all()]


def test_an_allowed_transition_changes_state_and_appends_a_row(job):
    assert transition(job.pk, State.RUNNABLE)
    assert transition(job.pk, State.RUNNING)
    job.refresh_from_db()
    assert job.state == State.RUNNING and job.started_running is not None
    assert states(job) == [("idle", "runnable"), ("runnable", "running")]


def test_a_transition_the_table_forbids_changes_nothing(job):
    assert not transition(job.pk, State.DONE)  # idle -> done is not allowed
    job.refresh_from_db()
    assert job.state == State.IDLE and states(job) == []


def test_final_states_are_final(job):
    transition(job.pk, State.FAILED, failure_reason="AppError", failure_message="bad input")
    for target in State:
        assert not transition(job.pk, target)
    job.refresh_from_db()
    assert job.state == State.FAILED and job.failure_reason == "AppError"
    assert job.stopped_running is None  # it never ran


def test_stopped_running_is_set_only_after_running(job):
    transition(job.pk, State.RUNNABLE)
    transition(job.pk, State.RUNNING)
    transition(job.pk, State.DONE)
    job.refresh_from_db()
    assert job.stopped_running >= job.started_running


def test_expected_narrows_the_states_a_caller_may_leave(job):
    assert not transition(job.pk, State.TERMINATED, expected=[State.RUNNABLE])
    assert transition(job.pk, State.TERMINATED, expected=[State.IDLE])


def test_expected_states_that_cannot_reach_the_target_are_a_programming_error(job):
    with pytest.raises(TransitionError):
        transition(job.pk, State.RUNNING, expected=[State.DONE])


def test_the_table_has_no_way_out_of_final_states():
    assert all(not TRANSITIONS[s] for s in FINAL_STATES)


@pytest.mark.django_db(transaction=True)
def test_only_one_of_two_racing_claims_wins(alice):
    project = project_actions.create_container(alice.user, "race")
    job = Job.objects.create(
        id="job-" + "c" * 24,
        name="race",
        executable="applet-" + "d" * 24,
        project=project,
        launched_by=alice.user,
        state=State.RUNNABLE,
    )
    results = []
    barrier = threading.Barrier(2)

    def claim(worker):
        barrier.wait()
        results.append(transition(job.pk, State.RUNNING, expected=[State.RUNNABLE], worker=worker))

    threads = [threading.Thread(target=claim, args=(f"w{i}",)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [False, True]
    assert job.transitions.count() == 1


@pytest.mark.django_db(transaction=True)
def test_two_jobs_ending_at_once_wake_the_job_waiting_on_both(alice, monkeypatch):
    """Each job ends in a transaction of its own; under read committed, neither sees the other done until
    both have committed. The job waiting on both must run all the same (it used to wait for ever: the
    gather of a 100-way scatter on PostgreSQL)."""
    if connection.vendor == "sqlite":
        pytest.skip("SQLite runs one write transaction at a time: two endings cannot overlap there")
    from jobs import actions, dispatch

    project = project_actions.create_container(alice.user, "race")

    def new_job(letter, state, **fields):
        return Job.objects.create(
            id="job-" + letter * 24,
            name=letter,
            executable="applet-" + "d" * 24,
            project=project,
            launched_by=alice.user,
            state=state,
            **fields,
        )

    ends = [new_job("e", State.RUNNING), new_job("f", State.RUNNING)]
    gather = new_job(
        "g",
        State.WAITING_ON_INPUT,
        input={name: {"$dnanexus_link": {"job": job.pk, "field": "v"}} for name, job in zip("xy", ends)},
    )
    for job in ends:
        JobDependency.objects.create(job=gather, on=job, stage=JobDependency.INPUT)
    sent = []
    monkeypatch.setattr(dispatch, "run_job", lambda job_id: sent.append(job_id))
    both_written = threading.Barrier(2)
    on_final = actions._on_final

    def on_final_then_wait(job_id, *args):  # inside the ending's transaction, its final state written
        on_final(job_id, *args)
        both_written.wait(timeout=30)

    monkeypatch.setattr(actions, "_on_final", on_final_then_wait)

    def end(job, value):
        try:
            assert transition(job.pk, State.DONE, expected=[State.RUNNING], output={"v": value})
        finally:
            connection.close()

    threads = [threading.Thread(target=end, args=(job, n)) for n, job in enumerate(ends, start=1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    gather.refresh_from_db()
    assert gather.state == State.RUNNABLE and gather.input == {"x": 1, "y": 2}
    assert sent == [gather.pk]  # sent to a worker once


@pytest.mark.django_db(transaction=True)
def test_a_job_that_ends_with_no_reference_opens_one_transaction(job):
    """Its end is the swap's transaction alone. On SQLite each transaction takes the write lock (BEGIN
    IMMEDIATE), for which the next job's claim waits: an empty one (a bulk insert of nothing) cost a
    lock per job. PostgreSQL's driver sends no BEGIN of its own through Django's cursors."""
    Job.objects.filter(pk=job.pk).update(state=State.RUNNING, tries=1)
    job.refresh_from_db()
    begins = []

    def spy(execute, sql, params, many, context):
        if sql.lstrip().upper().startswith("BEGIN"):
            begins.append(sql)
        return execute(sql, params, many, context)

    with connection.execute_wrapper(spy):
        assert finish(job.pk, {"n": 1}, only_if={"tries": 1}, known=job)
    assert Job.objects.get(pk=job.pk).state == State.DONE
    assert len(begins) == (1 if connection.vendor == "sqlite" else 0), begins
