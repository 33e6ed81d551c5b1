"""Who may debug a job, and the hold's bookkeeping, without processes: access_debug, holds, the reaper."""

import pytest

from dxweb.errors import InvalidState, PermissionDenied, ResourceNotFound
from jobs import actions, ending, holds, permissions
from jobs.models import Job, State
from jobs.ssh.gateway import address_allowed
from projects.models import Level, now_ms
from projects.permissions import Principal


@pytest.fixture
def held_job(alice, bob, project):
    alice.ok(f"/{project}/invite", {"invitee": bob.user.dx_id, "level": "ADMINISTER"})
    applet = alice.ok(
        "/applet/new",
        {
            "project": project,
            "name": "x",
            "inputSpec": [],
            "outputSpec": [],
            "runSpec": {"interpreter": "bash", "code": "main() { false; }"},
        },
    )["id"]
    job_id = alice.ok(
        f"/{applet}/run", {"project": project, "allowSSH": ["10.0.0.0/8"], "debug": {"debugOn": ["AppInternalError"]}}
    )["id"]
    actions.claim(job_id, "w1")
    debug = {
        "debugOn": ["AppInternalError"],
        "failureReason": "AppInternalError",
        "failureMessage": "exit 1",
        "holdUntil": now_ms() + 60_000,
    }
    assert actions.transition(job_id, State.DEBUG_HOLD, debug=debug)
    return Job.objects.get(pk=job_id)


def as_(actor, ip="10.1.2.3"):
    return Principal(user=actor.user, client_ip=ip)


def test_only_the_launcher_may_debug_unless_admins_are_allowed(held_job, alice, bob, charlie, settings):
    assert permissions.access_debug(as_(alice), held_job.pk).pk == held_job.pk
    with pytest.raises(PermissionDenied, match="Only its launcher"):
        permissions.access_debug(as_(bob), held_job.pk)
    with pytest.raises(ResourceNotFound):
        permissions.access_debug(as_(charlie), held_job.pk)
    settings.DXWEB_DEBUG_BY_ADMINS = True
    assert permissions.access_debug(as_(bob), held_job.pk).pk == held_job.pk


def test_job_tokens_and_outside_addresses_may_not_debug(held_job, alice):
    job_token = Principal(
        user=alice.user,
        scopes={held_job.project_id: Level.ADMINISTER},
        token_id=1,
        job_id=held_job.pk,
        client_ip="10.1.2.3",
    )
    with pytest.raises(PermissionDenied):
        permissions.access_debug(job_token, held_job.pk)
    with pytest.raises(PermissionDenied, match="192.168.1.9 is not in the allowSSH list"):
        permissions.access_debug(as_(alice, "192.168.1.9"), held_job.pk)


def test_extend_pushes_the_end_and_release_fails_the_job_with_its_held_failure(held_job, alice, bob, settings):
    settings.DXWEB_DEBUG_HOLD_SECONDS = 3600
    job = holds.extend_hold(as_(alice), held_job.pk)
    assert job.debug["holdUntil"] >= now_ms() + 3590_000
    job = holds.release_hold(as_(bob), held_job.pk)  # a project administrator may end a hold
    assert job.state == State.FAILED and job.failure_reason == "AppInternalError"
    assert "released by user-bob" in job.failure_message
    with pytest.raises(InvalidState):
        holds.extend_hold(as_(alice), held_job.pk)


def test_the_reaper_fails_a_held_job_whose_worker_vanished(held_job, settings):
    lapsed = now_ms() + settings.DXWEB_LEASE_SECONDS * 1000 + round(settings.DXWEB_HEARTBEAT_SECONDS * 1000) + 1
    assert ending.reap(now=lapsed)["failed"] == [held_job.pk]
    job = Job.objects.get(pk=held_job.pk)
    assert job.state == State.FAILED and job.failure_reason == "AppInternalError"
    assert "stopped renewing its lease" in job.failure_message


@pytest.mark.parametrize(
    "address, allow, expected",
    [
        ("10.1.2.3", ["10.0.0.0/8"], True),
        ("10.1.2.3", ["10.1.2.3"], True),
        ("10.1.2.3", ["*"], True),
        ("::ffff:10.1.2.3", ["10.1.2.3"], True),
        ("10.1.2.3", ["192.168.0.0/16", "junk"], False),
        ("", ["10.0.0.0/8"], False),
        ("10.1.2.3", [], False),
    ],
)
def test_allow_ssh_takes_addresses_and_ranges(address, allow, expected):
    assert address_allowed(address, allow) is expected
