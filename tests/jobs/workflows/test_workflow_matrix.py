"""Who may call what, for workflows, analyses and jobs: every route against every kind of caller, as
tests/projects/test_api_matrix.py does for projects and data objects. A refused call changes nothing."""

import pytest

from jobs import dispatch
from jobs.models import Analysis, Job
from projects.models import ApiToken, DataObject, Placement, User
from tests.conftest import ApiClient
from tests.projects.api_helpers import assert_error
from tests.projects.test_api_matrix import CALLERS, expected_status, world_for

BASH = {"interpreter": "bash", "code": "main() { true; }"}


def stage_body(w):
    return {"executable": w.applet, "editVersion": 1}


# route name -> (path, body, level needed on the project; None: any signed-in caller).
ROUTES = {
    "workflow/new": ("/workflow/new", lambda w: {"project": w.project, "name": "new"}, "UPLOAD"),
    "workflow describe": ("/{open_workflow}/describe", lambda w: {}, "VIEW"),
    "workflow isStageCompatible": (
        "/{open_workflow}/isStageCompatible",
        lambda w: {"stage": "one", "executable": w.applet},
        "VIEW",
    ),
    "workflow addStage": ("/{open_workflow}/addStage", stage_body, "CONTRIBUTE"),
    "workflow update": ("/{open_workflow}/update", lambda w: {"editVersion": 1, "title": "t"}, "CONTRIBUTE"),
    "workflow updateStageExecutable": (
        "/{open_workflow}/updateStageExecutable",
        lambda w: {"stage": "one", "executable": w.applet, "editVersion": 1},
        "CONTRIBUTE",
    ),
    "workflow moveStage": (
        "/{open_workflow}/moveStage",
        lambda w: {"stage": "one", "newIndex": 0, "editVersion": 1},
        "CONTRIBUTE",
    ),
    "workflow removeStage": (
        "/{open_workflow}/removeStage",
        lambda w: {"stage": "one", "editVersion": 1},
        "CONTRIBUTE",
    ),
    "workflow close": ("/{open_workflow}/close", lambda w: {}, "CONTRIBUTE"),
    "workflow rename": ("/{open_workflow}/rename", lambda w: {"project": w.project, "name": "x"}, "CONTRIBUTE"),
    "workflow addTags": ("/{open_workflow}/addTags", lambda w: {"tags": ["t"]}, "CONTRIBUTE"),
    "workflow run": ("/{closed_workflow}/run", lambda w: {"project": w.project}, "CONTRIBUTE"),
    "workflow dryRun": ("/{closed_workflow}/dryRun", lambda w: {"project": w.project}, "CONTRIBUTE"),
    "analysis describe": ("/{analysis}/describe", lambda w: {}, "VIEW"),
    "analysis terminate": ("/{analysis}/terminate", lambda w: {}, "CONTRIBUTE"),
    "analysis addTags": ("/{analysis}/addTags", lambda w: {"tags": ["t"]}, "CONTRIBUTE"),
    "analysis removeTags": ("/{analysis}/removeTags", lambda w: {"tags": ["t"]}, "CONTRIBUTE"),
    "analysis setProperties": ("/{analysis}/setProperties", lambda w: {"properties": {"k": "v"}}, "CONTRIBUTE"),
    "applet describe": ("/{applet}/describe", lambda w: {}, "VIEW"),
    "applet get": ("/{applet}/get", lambda w: {}, "VIEW"),
    "applet run": ("/{applet}/run", lambda w: {"project": w.project}, "CONTRIBUTE"),
    "applet/new": ("/applet/new", lambda w: {"project": w.project, "name": "b", "runSpec": BASH}, "UPLOAD"),
    "job describe": ("/{job}/describe", lambda w: {}, "VIEW"),
    "job getLog": ("/{job}/getLog", lambda w: {}, "VIEW"),
    "job update": ("/{job}/update", lambda w: {"name": "renamed"}, "CONTRIBUTE"),
    "job addTags": ("/{job}/addTags", lambda w: {"tags": ["t"]}, "CONTRIBUTE"),
    "job terminate": ("/{job}/terminate", lambda w: {}, "CONTRIBUTE"),
    "system/findExecutions": ("/system/findExecutions", lambda w: {}, None),
    "system/findAnalyses": ("/system/findAnalyses", lambda w: {}, None),
    "system/findJobs": ("/system/findJobs", lambda w: {}, None),
}


def snapshot(w):
    return (
        list(
            DataObject.objects.filter(cls__in=["workflow", "applet"]).order_by("pk").values_list("pk", "state", "spec")
        ),
        list(Placement.objects.filter(container_id=w.project).order_by("obj_id").values_list("obj_id", "name", "tags")),
        list(Analysis.objects.order_by("pk").values_list("pk", "state", "tags", "properties")),
        list(Job.objects.order_by("pk").values_list("pk", "state", "name", "tags")),
    )


@pytest.mark.parametrize("caller", CALLERS)
@pytest.mark.parametrize("route", ROUTES)
def test_every_execution_route_answers_each_caller_as_their_level_allows(db, monkeypatch, route, caller):
    monkeypatch.setattr(dispatch, "run_job", lambda job_id: None)
    path, body, needed = ROUTES[route]
    w, client = world_for(caller)
    # alice's applet, a job of it, an open workflow (stage "one"), a closed one and an analysis of it.
    owner = User.objects.get(username="alice")
    _, raw = ApiToken.issue(owner, "matrix")
    alice = ApiClient(owner, raw)
    w.applet = alice.ok("/applet/new", {"project": w.project, "name": "a", "runSpec": BASH})["id"]
    w.job = alice.ok(f"/{w.applet}/run", {"project": w.project})["id"]
    w.open_workflow = alice.ok("/workflow/new", {"project": w.project, "name": "open"})["id"]
    alice.ok(f"/{w.open_workflow}/addStage", {"executable": w.applet, "id": "one", "editVersion": 0})
    w.closed_workflow = alice.ok("/workflow/new", {"project": w.project, "name": "closed"})["id"]
    alice.ok(f"/{w.closed_workflow}/addStage", {"executable": w.applet, "editVersion": 0})
    alice.ok(f"/{w.closed_workflow}/close", {})
    w.analysis = alice.ok(f"/{w.closed_workflow}/run", {"project": w.project})["id"]
    before = snapshot(w)
    status, reply = client.call(path.format(**vars(w)), body(w))
    want = expected_status(caller, needed, route)
    if want == 200:
        assert status == 200, (status, reply)
        if caller == "outsider" and route.startswith("system/find"):
            assert reply["results"] == []  # finds show an outsider nothing of the project
        return
    expected_type = {401: "InvalidAuthentication", 403: "PermissionDenied", 404: "ResourceNotFound"}[want]
    assert_error((status, reply), want, expected_type)
    assert snapshot(w) == before
