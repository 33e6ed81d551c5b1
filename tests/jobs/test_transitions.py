"""The one way a job changes state: an allowed-transitions table and compare-and-swap."""
import threading

import pytest

from jobs.actions import TransitionError, transition
from jobs.models import FINAL_STATES, TRANSITIONS, Job, State
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
        id="job-" + "c" * 24, name="race", executable="applet-" + "d" * 24, project=project,
        launched_by=alice.user, state=State.RUNNABLE,
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
