"""A worker leaves the workspace of a job it ran to the reaper, which destroys ended trees' workspaces
together (jobs.ending.destroy_idle_workspaces)."""

import pytest

from jobs import actions, ending
from jobs.models import Job, State
from projects.models import ApiToken, Container


def launch(alice, project, applet, **extra):
    return alice.ok(f"/{applet}/run", {"project": project, **extra})["id"]


@pytest.mark.parametrize("delay", [False, True])
def test_ended_trees_workspaces_go_together_at_the_next_reap(
    alice, project, nap, delay, django_capture_on_commit_callbacks
):
    ended = []
    for _ in range(3):
        job, _ = actions.claim(launch(alice, project, nap, delayWorkspaceDestruction=delay), "worker")
        with django_capture_on_commit_callbacks(execute=True):  # as the runner records it
            assert actions.finish(job.pk, {}, only_if={"tries": job.tries}, known=job)
        assert job.state == State.DONE and not ApiToken.objects.filter(job_id=job.pk).exists()
        ended.append(job.workspace_id)
    running, _ = actions.claim(launch(alice, project, nap), "worker")
    assert Container.objects.filter(pk__in=ended).count() == 3  # left to the reaper

    destroyed = ending.reap()["workspaces"]

    assert sorted(destroyed) == ([] if delay else sorted(ended))
    assert Container.objects.filter(pk__in=ended).count() == (3 if delay else 0)
    assert Container.objects.filter(pk=running.workspace_id).exists()  # its tree has not ended
    assert Job.objects.filter(workspace_id__in=ended).count() == (3 if delay else 0)
    assert ending.reap()["workspaces"] == []
