"""What a job launches holds no more than the job: applet runs and subjobs, down a chain, and from a real job."""

import time

import pytest

from jobs import actions
from jobs.models import Job, State
from projects.models import Level, Placement
from projects.permissions import Principal, job_scopes, launch_cap
from tests.conftest import ApiClient

BASH = {"interpreter": "bash", "code": "main() { true; }"}


def new_applet(client, container, name, access=None):
    body = {"project": container, "name": name, "runSpec": BASH}
    if access:
        body["access"] = {"project": access}
    return client.ok("/applet/new", body)["id"]


def start(job_id):
    """Claim the job as a worker would; return the job and an API client holding its token."""
    job, raw = actions.claim(job_id, "test-worker")
    return job, ApiClient(job.launched_by, raw)


def level_in(client, container):
    status, data = client.call(f"/{container}/describe")
    return data["level"] if status == 200 else status


def test_job_scopes_is_the_lowest_of_the_applet_the_user_and_the_launching_job(alice, bob, project):
    alice.ok(f"/{project}/invite", {"invitee": "user-bob", "level": "CONTRIBUTE"})
    ws, parent_ws = "container-own", "container-parent"
    assert job_scopes(alice.user, project, ws, Level.ADMINISTER) == {ws: 3, project: 4}
    assert job_scopes(bob.user, project, ws, Level.ADMINISTER) == {ws: 3, project: 3}
    assert job_scopes(alice.user, project, ws, Level.VIEW, cap={project: 4}) == {ws: 3, project: 1}
    assert job_scopes(alice.user, project, ws, Level.ADMINISTER, cap={parent_ws: 3, project: 1}) == {ws: 3, project: 1}
    assert job_scopes(bob.user, project, ws, Level.ADMINISTER, cap={project: 4}) == {ws: 3, project: 3}
    # A container missing from the launching job's scopes: nothing there.
    assert job_scopes(alice.user, project, ws, Level.ADMINISTER, cap={parent_ws: 3}) == {ws: 3, project: 0}
    assert launch_cap(Principal.of(alice.user)) is None
    assert launch_cap(Principal(user=alice.user, scopes={project: Level.VIEW, ws: Level.CONTRIBUTE})) == {
        project: 1,
        ws: 3,
    }


def test_an_applet_a_view_job_runs_cannot_administer_the_project(alice, charlie, project):
    launcher = new_applet(alice, project, "launcher")  # the default access: VIEW
    job, inside = start(alice.ok(f"/{launcher}/run", {"project": project})["id"])
    assert level_in(inside, project) == "VIEW"
    greedy = new_applet(inside, job.workspace_id, "greedy", access="ADMINISTER")
    child_id = inside.ok(f"/{greedy}/run", {"project": project})["id"]
    assert Job.objects.get(pk=child_id).launcher_scopes == {job.workspace_id: 3, project: 1}
    child, child_inside = start(child_id)
    assert child.token.scopes == {child.workspace_id: 3, project: 1}
    assert level_in(child_inside, project) == "VIEW"
    status, data = child_inside.call(f"/{project}/invite", {"invitee": "user-charlie", "level": "ADMINISTER"})
    assert status == 403 and data["error"]["type"] == "PermissionDenied"
    assert child_inside.call(f"/{project}/destroy")[0] == 403
    assert charlie.call(f"/{project}/describe")[0] == 404
    assert alice.ok(f"/{project}/describe")["level"] == "ADMINISTER"
    # Nor anything in the launching job's workspace (seed: a new workspace, no access to the launcher's).
    assert level_in(child_inside, job.workspace_id) == 404
    assert level_in(child_inside, child.workspace_id) == "CONTRIBUTE"


def test_down_a_chain_of_runs_and_subjobs_the_lowest_level_holds(alice, project):
    writer = new_applet(alice, project, "writer", access="CONTRIBUTE")
    viewer = new_applet(alice, project, "viewer")
    j0, t0 = start(alice.ok(f"/{writer}/run", {"project": project})["id"])
    assert level_in(t0, project) == "CONTRIBUTE"
    # A subjob of a CONTRIBUTE job keeps CONTRIBUTE: the cap takes nothing the job holds.
    sub, t_sub = start(t0.ok("/job/new", {"function": "more"})["id"])
    assert sub.workspace_id == j0.workspace_id and level_in(t_sub, project) == "CONTRIBUTE"
    j1, t1 = start(t0.ok(f"/{viewer}/run", {})["id"])
    assert level_in(t1, project) == "VIEW"
    greedy = new_applet(t1, j1.workspace_id, "greedy", access="ADMINISTER")
    j2, t2 = start(t1.ok(f"/{greedy}/run", {})["id"])
    assert level_in(t2, project) == "VIEW"  # not the writer's CONTRIBUTE, nor the ADMINISTER asked for
    j3, t3 = start(t2.ok("/job/new", {"function": "main"})["id"])
    assert j3.parent_id == j2.id and j3.workspace_id == j2.workspace_id
    assert level_in(t3, project) == "VIEW" and level_in(t3, j3.workspace_id) == "CONTRIBUTE"
    again = new_applet(t3, j3.workspace_id, "greedier", access="ADMINISTER")
    j4, t4 = start(t3.ok(f"/{again}/run", {})["id"])
    assert j4.token.scopes == {j4.workspace_id: 3, project: 1}
    assert t4.call(f"/{project}/invite", {"invitee": "user-alice", "level": "VIEW"})[0] == 403


def test_a_retried_job_keeps_its_cap(alice, project):
    launcher = new_applet(alice, project, "launcher")
    job, inside = start(alice.ok(f"/{launcher}/run", {"project": project})["id"])
    greedy = new_applet(inside, job.workspace_id, "greedy", access="ADMINISTER")
    child_id = inside.ok(f"/{greedy}/run", {"project": project})["id"]
    start(child_id)
    actions.transition(child_id, State.RUNNABLE, expected=[State.RUNNING])  # the lease lost: queued again
    child, _ = start(child_id)
    assert child.tries == 2 and child.token.scopes[project] == Level.VIEW


def test_a_job_launches_only_into_its_own_project(alice, project):
    elsewhere = alice.ok("/project/new", {"name": "elsewhere"})["id"]  # alice administers it
    launcher = new_applet(alice, project, "launcher")
    there = new_applet(alice, elsewhere, "there")
    job, inside = start(alice.ok(f"/{launcher}/run", {"project": project})["id"])
    child_id = inside.ok(f"/{launcher}/run", {"project": elsewhere})["id"]
    assert Job.objects.get(pk=child_id).project_id == project
    child, child_inside = start(child_id)
    assert level_in(child_inside, elsewhere) == 404
    assert elsewhere not in child.token.scopes
    assert inside.call(f"/{there}/run", {"project": elsewhere})[0] == 404  # an applet it cannot see
    status, data = inside.call("/applet/new", {"project": project, "name": "x", "runSpec": BASH})
    assert status == 403  # VIEW: no new applet in the project


def test_what_a_job_launched_outputs_goes_to_the_launching_job_not_the_project(alice, project):
    launcher = new_applet(alice, project, "launcher")
    job, inside = start(alice.ok(f"/{launcher}/run", {"project": project, "folder": "/out"})["id"])
    child, child_inside = start(inside.ok(f"/{launcher}/run", {"folder": "/planted"})["id"])
    planted = new_applet(child_inside, child.workspace_id, "planted")
    actions.finish(child.id, {"made": {"$dnanexus_link": planted}})
    assert Job.objects.get(pk=child.id).state == State.DONE
    assert not Placement.objects.filter(container_id=project, obj_id=planted).exists()
    assert Placement.objects.filter(container_id=job.workspace_id, obj_id=planted).exists()


# The escalation from a real job in the sandbox, as an attacker's applet would do it -----------------

ATTACKER = r"""
import os

import dxpy


@dxpy.entry_point("main")
def main(child_code):
    project, workspace = os.environ["DX_PROJECT_CONTEXT_ID"], os.environ["DX_WORKSPACE_ID"]
    applet = dxpy.api.applet_new({
        "project": workspace, "name": "escalate", "access": {"project": "ADMINISTER"},
        "outputSpec": [{"name": n, "class": "string"} for n in ("level", "invite", "destroy")],
        "runSpec": {"interpreter": "python3", "code": child_code, "distribution": "Ubuntu", "release": "24.04"},
    })["id"]
    child = dxpy.api.applet_run(applet, {"project": project, "input": {}})["id"]
    print(f"launched {child}")
    return {"child": child}


dxpy.run()
"""

CHILD = r"""
import os

import dxpy


def attempt(call):
    try:
        call()
    except dxpy.exceptions.DXAPIError as err:
        return f"REFUSED {err.name}"
    return "ALLOWED"


@dxpy.entry_point("main")
def main():
    project = os.environ["DX_PROJECT_CONTEXT_ID"]
    level = dxpy.api.project_describe(project)["level"]
    print(f"level {level}")
    invite = attempt(lambda: dxpy.api.project_invite(project, {"invitee": "user-mallory", "level": "ADMINISTER"}))
    print(f"invite {invite}")
    destroy = attempt(lambda: dxpy.api.project_destroy(project, {}))
    print(f"destroy {destroy}")
    return {"level": level, "invite": invite, "destroy": destroy}


dxpy.run()
"""


def wait_final(live, token, job_id, timeout=300):
    """The job's description once it has ended (None if it is gone with its project)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = live.api(f"/{job_id}/describe", token=token, expect=None)
        if "error" in job:
            return None
        if job["state"] in ("done", "failed", "terminated"):
            return job
        time.sleep(0.3)
    raise AssertionError(f"{job_id} did not end within {timeout} s")


@pytest.mark.live
def test_a_real_view_job_cannot_escalate_through_an_applet_it_makes_and_runs(live):
    alice, mallory = live.user("alice"), live.user("mallory")
    project = live.api("/project/new", {"name": "target"}, token=alice)["id"]
    attacker = live.api(
        "/applet/new",
        {
            "project": project,
            "name": "attacker",  # no "access": VIEW on the project
            "inputSpec": [{"name": "child_code", "class": "string"}],
            "outputSpec": [{"name": "child", "class": "string"}],
            "runSpec": {"interpreter": "python3", "code": ATTACKER, "distribution": "Ubuntu", "release": "24.04"},
        },
        token=alice,
    )["id"]
    job_id = live.api(f"/{attacker}/run", {"project": project, "input": {"child_code": CHILD}}, token=alice)["id"]
    job = wait_final(live, alice, job_id)
    if job is not None and job["state"] == "done":
        wait_final(live, alice, job["output"]["child"])
    # The project survives, and the outsider was let in nowhere.
    survived = live.api(f"/{project}/describe", token=alice, expect=None)
    assert "error" not in survived, f"the project was destroyed by what its VIEW job launched: {survived}"
    assert survived["level"] == "ADMINISTER"
    refused = live.api(f"/{project}/destroy", {}, token=mallory, expect=None)
    assert refused.get("error", {}).get("type") == "ResourceNotFound", f"the outsider was let in: {refused}"
    assert live.api(f"/{project}/describe", token=alice)["id"] == project
    # What the child job's token could do: its output.
    assert job["state"] == "done", job
    child = live.api(f"/{job['output']['child']}/describe", token=alice)
    assert child["state"] == "done" and child["parentJob"] == job_id, child
    assert child["output"] == {
        "level": "VIEW",
        "invite": "REFUSED PermissionDenied",
        "destroy": "REFUSED PermissionDenied",
    }
