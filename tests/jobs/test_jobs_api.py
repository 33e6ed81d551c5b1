"""Launching jobs through the API: who may run, what describe says, waiting on references, finding and terminating."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from dxweb.errors import ResourceNotFound
from jobs import actions
from jobs.models import Job, JobDependency, State
from jobs.permissions import access_job, check_jobs_visible
from projects.models import ApiToken, Level
from projects.permissions import Principal
from tests.conftest import ApiClient

BASH = {"interpreter": "bash", "code": "main() { echo hi; }"}


@pytest.fixture
def applet(alice, project):
    return alice.ok(
        "/applet/new",
        {
            "project": project,
            "name": "counter",
            "inputSpec": [
                {"name": "n", "class": "int", "default": 3},
                {"name": "f", "class": "file", "optional": True},
            ],
            "outputSpec": [{"name": "total", "class": "int"}],
            "runSpec": dict(BASH, timeoutPolicy={"*": {"minutes": 30}}),
        },
    )["id"]


def run(client, applet, project, **body):
    return client.call(f"/{applet}/run", {"project": project, **body})


def test_running_an_applet_creates_a_runnable_origin_job_with_every_field_the_client_reads(
    alice, project, applet, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks() as callbacks:
        status, data = run(alice, applet, project, input={"n": 5}, name="count to five", tags=["t"])
    assert status == 200 and callbacks  # a wake-up is queued once the launch commits
    job = alice.ok(f"/{data['id']}/describe")
    for key in (
        "id",
        "class",
        "name",
        "executableName",
        "function",
        "state",
        "project",
        "launchedBy",
        "created",
        "modified",
        "input",
        "originalInput",
        "output",
        "parentJob",
        "originJob",
        "rootExecution",
        "workspace",
        "folder",
        "runInput",
        "stateTransitions",
        "applet",
    ):
        assert key in job, key
    assert job["state"] == "runnable" and job["parentJob"] is None
    assert job["originJob"] == job["id"] == job["rootExecution"]
    assert job["launchedBy"] == "user-alice" and job["function"] == "main" and job["output"] is None
    assert job["input"] == {"n": 5} and job["workspace"].startswith("container-")
    assert job["name"] == "count to five" and job["tags"] == ["t"]
    assert [t["newState"] for t in job["stateTransitions"]] == ["runnable"]
    assert job["timeout"] == 30 * 60 * 1000


def test_defaults_fill_the_input_but_not_the_original_input(alice, project, applet):
    job_id = run(alice, applet, project)[1]["id"]
    job = alice.ok(f"/{job_id}/describe")
    assert job["input"] == {"n": 3} and job["originalInput"] == {}


def test_input_is_checked_against_the_spec(alice, project, applet):
    status, data = run(alice, applet, project, input={"n": "five"})
    assert status == 422 and 'input "n"' in data["error"]["message"]
    status, data = run(alice, applet, project, input={"m": 1})
    assert status == 422 and "unknown field" in data["error"]["message"]


def test_a_view_member_cannot_run_and_an_outsider_cannot_see(alice, bob, charlie, project, applet):
    alice.ok(f"/{project}/invite", {"invitee": "user-bob", "level": "VIEW"})
    status, data = run(bob, applet, project)
    assert status == 403 and data["error"]["type"] == "PermissionDenied"
    assert run(charlie, applet, project)[0] == 404
    job_id = run(alice, applet, project)[1]["id"]
    assert bob.call(f"/{job_id}/describe")[0] == 200
    assert charlie.call(f"/{job_id}/describe")[0] == 404
    assert bob.call(f"/{job_id}/terminate")[0] == 403
    assert charlie.call(f"/{job_id}/terminate")[0] == 404


def test_a_job_reference_input_waits_on_input(alice, project, applet):
    first = run(alice, applet, project)[1]["id"]
    second = run(alice, applet, project, input={"n": {"$dnanexus_link": {"job": first, "field": "total"}}})[1]["id"]
    assert alice.ok(f"/{second}/describe")["state"] == "waiting_on_input"
    bare = run(alice, applet, project, input={"n": {"job": first, "field": "total"}})[1]["id"]
    assert alice.ok(f"/{bare}/describe")["state"] == "waiting_on_input"
    depends = run(alice, applet, project, dependsOn=[first])[1]["id"]
    assert alice.ok(f"/{depends}/describe")["state"] == "waiting_on_input"
    assert JobDependency.objects.filter(on_id=first).count() == 3


def test_a_waiting_job_runs_with_the_resolved_value_once_its_reference_is_done(
    alice, project, applet, django_capture_on_commit_callbacks
):
    first = run(alice, applet, project)[1]["id"]
    second = run(alice, applet, project, input={"n": {"$dnanexus_link": {"job": first, "field": "total"}}})[1]["id"]
    actions.claim(first, "test-worker")
    with django_capture_on_commit_callbacks(execute=True):  # what waits on a job looks again once it commits
        actions.finish(first, {"total": 42})
    assert alice.ok(f"/{first}/describe")["state"] == "done"
    job = alice.ok(f"/{second}/describe")
    assert job["state"] == "runnable" and job["input"] == {"n": 42}
    assert job["originalInput"] == {"n": {"$dnanexus_link": {"job": first, "field": "total"}}}


def test_a_reference_to_a_failed_job_fails_the_waiting_job(alice, project, applet, django_capture_on_commit_callbacks):
    first = run(alice, applet, project)[1]["id"]
    second = run(alice, applet, project, dependsOn=[first])[1]["id"]
    actions.claim(first, "test-worker")
    with django_capture_on_commit_callbacks(execute=True):
        actions.fail(Job.objects.get(pk=first), "AppError", "bad")
    job = alice.ok(f"/{second}/describe")
    assert job["state"] == "failed" and job["failureReason"] == "DependencyFailed"


def test_a_job_waiting_on_many_reads_their_states_not_their_rows_until_all_are_done(
    alice, project, applet, django_capture_on_commit_callbacks
):
    """A gather of n subjobs hears from each as it ends: each time it reads states alone (reading n rows
    each time made a scatter of n quadratic)."""
    firsts = [run(alice, applet, project)[1]["id"] for _ in range(3)]
    refs = [{"$dnanexus_link": {"job": first, "field": "total"}} for first in firsts]
    gather = run(alice, applet, project, input={"n": refs[0]}, dependsOn=firsts[1:])[1]["id"]
    for first in firsts[:2]:
        actions.claim(first, "test-worker")
        with django_capture_on_commit_callbacks(execute=True):
            actions.finish(first, {"total": 1})
    with CaptureQueriesContext(connection) as queries:
        actions.advance_inputs(gather)
    assert Job.objects.get(pk=gather).state == State.WAITING_ON_INPUT
    assert len(queries.captured_queries) == 1  # its state and the first job it still waits on, at once
    assert not [q["sql"] for q in queries.captured_queries if '"output"' in q["sql"] or '"input"' in q["sql"]]
    actions.claim(firsts[2], "test-worker")
    with django_capture_on_commit_callbacks(execute=True):
        actions.finish(firsts[2], {"total": 7})
    job = alice.ok(f"/{gather}/describe")
    assert job["state"] == "runnable" and job["input"] == {"n": 1}


def test_an_output_referencing_a_job_of_another_tree_fails_the_job(
    alice, project, applet, django_capture_on_commit_callbacks
):
    first, other = (run(alice, applet, project)[1]["id"] for _ in range(2))
    actions.claim(first, "test-worker")
    with django_capture_on_commit_callbacks(execute=True):
        actions.finish(first, {"total": {"$dnanexus_link": {"job": other, "field": "total"}}})
    job = alice.ok(f"/{first}/describe")
    assert job["state"] == "failed" and job["failureReason"] == "AppError"
    assert f"references {other}, which is not a job of this execution tree" in job["failureMessage"]


def test_the_jobs_of_a_tree_among_many_are_read_in_chunks(alice, project, applet):
    jobs = [run(alice, applet, project)[1]["id"] for _ in range(3)]  # each the root of its own tree
    assert actions._in_tree([*jobs, "job-" + "x" * 24], jobs[1], chunk=2) == {jobs[1]}


def test_a_job_may_wait_only_on_jobs_its_launcher_can_see(alice, charlie, project, applet):
    """Waiting on a job is reading its output: an outsider's dependsOn or reference to alice's job finds
    nothing there, as describe would, among any number of jobs of their own."""
    hers = run(alice, applet, project)[1]["id"]
    theirs = charlie.ok("/project/new", {"name": "charlie's"})["id"]
    own_applet = charlie.ok(
        "/applet/new",
        {
            "project": theirs,
            "name": "c",
            "runSpec": BASH,
            "inputSpec": [{"name": "n", "class": "int"}],
            "outputSpec": [],
        },
    )["id"]
    own = [run(charlie, own_applet, theirs, input={"n": 1})[1]["id"] for _ in range(3)]
    ref = {"$dnanexus_link": {"job": hers, "field": "total"}}
    missing = "job-" + "x" * 24
    for body in ({"dependsOn": [*own, hers]}, {"input": {"n": ref}, "dependsOn": own}, {"dependsOn": [missing]}):
        status, data = run(charlie, own_applet, theirs, **{"input": {"n": 1}, **body})
        assert status == 404 and data["error"]["type"] == "ResourceNotFound", data
        assert (missing if "dependsOn" in body and missing in body["dependsOn"] else hers) in data["error"]["message"]
    assert Job.objects.filter(project_id=theirs).count() == 3  # nothing made by the refused calls
    with pytest.raises(ResourceNotFound):  # the same answer read in chunks of 2
        check_jobs_visible(Principal.of(charlie.user), [*own, hers], chunk=2)
    check_jobs_visible(Principal.of(charlie.user), own, chunk=2)
    check_jobs_visible(Principal.of(alice.user), [hers], chunk=2)


def test_reaching_a_job_reads_it_with_its_project_and_launcher_at_once(alice, project, applet):
    job_id = run(alice, applet, project, input={"n": 5})[1]["id"]
    with CaptureQueriesContext(connection) as queries:
        job = access_job(Principal.of(alice.user), job_id)
        assert (job.project.name, job.launched_by.username, job.input) == ("alice's project", "alice", {"n": 5})
    assert len(queries.captured_queries) == 2  # the job with both, and alice's level on the project
    assert job.level == Level.ADMINISTER
    with pytest.raises(ResourceNotFound):
        access_job(Principal.of(alice.user), "job-" + "x" * 24)


def test_terminate_ends_a_waiting_job_and_says_who(alice, project, applet):
    first = run(alice, applet, project)[1]["id"]
    second = run(alice, applet, project, dependsOn=[first])[1]["id"]
    alice.ok(f"/{second}/terminate")
    job = alice.ok(f"/{second}/describe")
    assert job["state"] == "terminated" and "user-alice" in job["failureMessage"]
    status, data = alice.call(f"/{second}/terminate")
    assert status == 422 and data["error"]["type"] == "InvalidState"


def test_job_new_needs_a_job_token(alice):
    status, data = alice.call("/job/new", {"function": "process", "input": {}})
    assert status == 403 and "job's token" in data["error"]["message"]


def test_a_subjob_inherits_from_its_parent_and_holds_it_in_waiting_on_output(
    alice, project, applet, django_capture_on_commit_callbacks
):
    parent = run(alice, applet, project)[1]["id"]
    job, _token = actions.claim(parent, "test-worker")
    principal = Principal(user=alice.user, job_id=parent, scopes={job.workspace_id: 3, project: 1})
    child = actions.new_subjob(principal, {"function": "process", "input": {"i": 1}})
    child.refresh_from_db()
    assert child.parent_id == parent and child.origin_id == parent and child.workspace_id == job.workspace_id
    assert child.name == "counter:process" and child.state == State.RUNNABLE
    actions.finish(parent, {"total": {"$dnanexus_link": {"job": child.id, "field": "n"}}})
    assert Job.objects.get(pk=parent).state == State.WAITING_ON_OUTPUT
    actions.claim(child.id, "test-worker")
    with django_capture_on_commit_callbacks(execute=True):
        actions.finish(child.id, {"n": 7})
    parent_job = alice.ok(f"/{parent}/describe")
    assert parent_job["state"] == "done" and parent_job["output"] == {"total": 7}


def test_a_subjob_of_a_subjob_is_made_from_its_caller_as_read_in_four_statements(alice, project, applet):
    """A scatter's root makes its subjobs one /job/new each: the call reads its token and the calling
    job (with project and launcher), then inserts the job and its transition; the caller's applet,
    workspace, origin and root go by their ids, not read again for each subjob."""
    parent = run(alice, applet, project)[1]["id"]
    job, raw = actions.claim(parent, "test-worker")
    child_id = ApiClient(alice.user, raw).ok("/job/new", {"function": "process", "input": {"i": 1}})["id"]
    child, child_raw = actions.claim(child_id, "test-worker")
    inside_child = ApiClient(alice.user, child_raw)
    with CaptureQueriesContext(connection) as queries:
        grandchild_id = inside_child.ok("/job/new", {"function": "process", "input": {"i": 2}})["id"]
    statements = [q["sql"] for q in queries.captured_queries if "SAVEPOINT" not in q["sql"]]
    assert len(statements) == 4, statements
    grandchild = Job.objects.get(pk=grandchild_id)
    assert (grandchild.parent_id, grandchild.origin_id, grandchild.root_id) == (child_id, parent, parent)
    assert (grandchild.applet_id, grandchild.workspace_id) == (job.applet_id, job.workspace_id)
    assert (grandchild.project_id, grandchild.launched_by_id, grandchild.state) == (
        project,
        alice.user.pk,
        State.RUNNABLE,
    )


def test_a_subjob_describes_itself_in_three_statements(alice, project, applet):
    """dxpy.run() describes its job in every subjob: the token, the job with its project, launcher and
    root's analysis (rootExecution), then its transitions."""
    parent = run(alice, applet, project)[1]["id"]
    _, raw = actions.claim(parent, "test-worker")
    child_id = ApiClient(alice.user, raw).ok("/job/new", {"function": "process"})["id"]
    _, child_raw = actions.claim(child_id, "test-worker")
    with CaptureQueriesContext(connection) as queries:
        data = ApiClient(alice.user, child_raw).ok(f"/{child_id}/describe")
    assert (data["rootExecution"], data["parentJob"], data["originJob"]) == (parent, parent, parent)
    statements = [q["sql"] for q in queries.captured_queries if "SAVEPOINT" not in q["sql"]]
    assert len(statements) == 3, statements


def test_a_jobs_token_records_no_use_where_a_users_does(alice, project, applet):
    """A user's token records its last use (the profile page lists it); a job's token, never listed and
    gone with its job, writes nothing when its job calls the API."""
    alice.ok(f"/{project}/describe")
    assert ApiToken.objects.get(user=alice.user, job_id="").last_used is not None
    job, raw = actions.claim(run(alice, applet, project)[1]["id"], "test-worker")
    with CaptureQueriesContext(connection) as queries:
        assert ApiClient(alice.user, raw).ok(f"/{job.id}/describe")["state"] == "running"
    assert not [q["sql"] for q in queries.captured_queries if q["sql"].startswith("UPDATE")]
    assert ApiToken.objects.get(job_id=job.id).last_used is None


def test_a_parent_waits_for_every_child_not_only_those_its_output_references(
    alice, project, applet, django_capture_on_commit_callbacks
):
    parent = run(alice, applet, project)[1]["id"]
    job, _token = actions.claim(parent, "test-worker")
    principal = Principal(user=alice.user, job_id=parent, scopes={job.workspace_id: 3, project: 1})
    named, unnamed = (actions.new_subjob(principal, {"function": "process"}) for _ in range(2))
    actions.finish(parent, {"total": {"$dnanexus_link": {"job": named.id, "field": "n"}}})
    for child, n in ((named, 7), (unnamed, 1)):
        actions.claim(child.id, "test-worker")
        with django_capture_on_commit_callbacks(execute=True):
            actions.finish(child.id, {"n": n})
        if child is named:  # the other child is still running: one look says so
            assert Job.objects.get(pk=parent).state == State.WAITING_ON_OUTPUT
            with CaptureQueriesContext(connection) as queries:
                actions.complete_outputs(parent)
            assert len(queries.captured_queries) == 1
    parent_job = alice.ok(f"/{parent}/describe")
    assert parent_job["state"] == "done" and parent_job["output"] == {"total": 7}


def test_a_failed_child_fails_its_origin_and_terminates_the_rest(alice, project, applet):
    parent = run(alice, applet, project)[1]["id"]
    job, _ = actions.claim(parent, "test-worker")
    principal = Principal(user=alice.user, job_id=parent, scopes={job.workspace_id: 3, project: 1})
    bad = actions.new_subjob(principal, {"function": "process"})
    other = actions.new_subjob(principal, {"function": "process"})
    actions.claim(bad.id, "test-worker")
    actions.fail(Job.objects.get(pk=bad.id), "AppError", "x must be positive")
    origin = alice.ok(f"/{parent}/describe")
    assert origin["state"] == "failed" and origin["failureFrom"]["id"] == bad.id
    assert origin["failureReason"] == "AppError" and origin["failureMessage"] == "x must be positive"
    assert alice.ok(f"/{other.id}/describe")["state"] == "terminated"


def test_find_executions_filters_by_origin_job_arrays_and_pages(alice, project, applet):
    ids = [run(alice, applet, project)[1]["id"] for _ in range(3)]
    found = alice.ok(
        "/system/findExecutions",
        {"class": "job", "project": project, "originJob": ids[:2], "describe": {"defaultFields": True}},
    )
    assert {r["id"] for r in found["results"]} == set(ids[:2])
    assert all(r["describe"]["originJob"] == r["id"] for r in found["results"])
    page = alice.ok("/system/findExecutions", {"project": project, "limit": 2})
    rest = alice.ok("/system/findExecutions", {"project": project, "limit": 2, "starting": page["next"]})
    assert len(page["results"]) == 2 and len(rest["results"]) == 1 and rest["next"] is None
    assert {r["id"] for r in page["results"] + rest["results"]} == set(ids)
    origins = alice.ok("/system/findExecutions", {"project": project, "parentJob": None})
    assert len(origins["results"]) == 3


def test_outsiders_find_no_executions(alice, charlie, project, applet):
    run(alice, applet, project)
    assert charlie.ok("/system/findExecutions", {})["results"] == []
    assert charlie.call("/system/findExecutions", {"project": project})[0] == 404


@pytest.mark.parametrize("delay", [False, True])
def test_the_workspace_goes_when_the_origin_is_done_unless_destruction_is_delayed(
    alice, project, applet, delay, django_capture_on_commit_callbacks
):
    job_id = run(alice, applet, project, delayWorkspaceDestruction=delay)[1]["id"]
    job, _ = actions.claim(job_id, "test-worker")
    with django_capture_on_commit_callbacks(execute=True):
        actions.finish(job_id, {"total": 1})
    described = alice.ok(f"/{job_id}/describe")
    assert described["state"] == "done"
    from projects.models import Container

    assert Container.objects.filter(pk=job.workspace_id).exists() is delay
    # A destroyed workspace is absent from the describe, never null: `dx describe` prints it as text.
    assert described.get("workspace", "absent") == (job.workspace_id if delay else "absent")


def test_a_job_token_dies_with_its_job(alice, project, applet):
    job_id = run(alice, applet, project)[1]["id"]
    job, token = actions.claim(job_id, "test-worker")
    from tests.conftest import ApiClient

    inside = ApiClient(alice.user, token)
    assert inside.ok("/system/whoami") == {"id": "user-alice"}
    assert inside.call(f"/{project}/describe")[0] == 200
    actions.finish(job_id, {"total": 1})
    assert inside.call("/system/whoami")[0] == 401


def test_a_job_run_in_another_project_can_describe_its_applet(alice, project, applet):
    other = alice.ok("/project/new", {"name": "elsewhere"})["id"]
    job_id = run(alice, applet, other)[1]["id"]
    job, token = actions.claim(job_id, "test-worker")
    from tests.conftest import ApiClient

    inside = ApiClient(alice.user, token)
    assert inside.ok(f"/{applet}/describe")["inputSpec"][0]["name"] == "n"
    assert inside.call(f"/{project}/describe")[0] == 404  # the applet's project itself stays out of reach
