"""Workflows through the API: making and editing them (editVersion, links between stages), running them
as analyses, and following an analysis through its stage jobs."""

import pytest

from jobs import actions, dispatch
from jobs.models import Job
from projects.models import DataObject
from tests.conftest import ApiClient
from tests.projects.api_helpers import assert_error

BASH = {"interpreter": "bash", "code": "main() { true; }"}


def applet(client, project, name, inputs, outputs):
    return client.ok(
        "/applet/new",
        {"project": project, "name": name, "inputSpec": inputs, "outputSpec": outputs, "runSpec": BASH},
    )["id"]


@pytest.fixture
def qc(alice, project):
    return applet(
        alice,
        project,
        "qc",
        [{"name": "reads", "class": "file"}, {"name": "min_quality", "class": "int", "default": 20}],
        [{"name": "filtered_reads", "class": "file"}, {"name": "kept", "class": "int"}],
    )


@pytest.fixture
def align(alice, project):
    return applet(
        alice,
        project,
        "align",
        [{"name": "reads", "class": "file"}, {"name": "genome", "class": "string"}],
        [{"name": "bam", "class": "file"}],
    )


@pytest.fixture
def reads(alice, project):
    file_id = alice.ok("/file/new", {"project": project, "name": "sample.fastq"})["id"]
    alice.ok(f"/{file_id}/close")
    return file_id


@pytest.fixture
def no_dispatch(monkeypatch):
    """Runnable stage jobs are not sent to a worker: the tests play the worker (claim, finish, fail)."""
    sent = []
    monkeypatch.setattr(dispatch, "run_job", sent.append)
    return sent


def new_workflow(client, project, **body):
    return client.ok("/workflow/new", {"project": project, "name": "pipeline", **body})["id"]


def describe(client, workflow):
    return client.ok(f"/{workflow}/describe", {})


def add_stage(client, workflow, executable, **body):
    version = describe(client, workflow)["editVersion"]
    return client.ok(f"/{workflow}/addStage", {"executable": executable, "editVersion": version, **body})["stage"]


def link(stage, field, kind="outputField"):
    return {"$dnanexus_link": {"stage": stage, kind: field}}


@pytest.fixture
def two_stages(alice, project, qc, align, reads):
    """qc then align, align's reads linked to qc's filtered_reads; qc's reads left for the run."""
    workflow = new_workflow(alice, project)
    first = add_stage(alice, workflow, qc, name="Quality Control", folder="qc")
    second = add_stage(
        alice, workflow, align, name="Alignment", folder="/alignment", input={"reads": link(first, "filtered_reads")}
    )
    return workflow, first, second


# Making and editing ------------------------------------------------------------------


def test_a_new_workflow_describes_as_the_client_needs(alice, project):
    workflow = new_workflow(alice, project, summary="qc and alignment")
    data = describe(alice, workflow)
    assert data["class"] == "workflow" and data["state"] == "open" and data["editVersion"] == 0
    assert data["title"] == "pipeline"  # untitled: the name, never null
    assert data["stages"] == [] and data["inputSpec"] == [] and data["outputSpec"] == []
    assert data["outputFolder"] is None and data["summary"] == "qc and alignment" and data["description"] == ""
    assert "initializedFrom" not in data  # null crashes `dx describe`


def test_adding_stages_counts_edit_versions_and_fills_the_input_spec(alice, two_stages, qc):
    workflow, first, second = two_stages
    data = describe(alice, workflow)
    assert data["editVersion"] == 2
    assert [s["id"] for s in data["stages"]] == [first, second]
    assert data["stages"][0]["name"] == "Quality Control" and data["stages"][0]["folder"] == "qc"
    assert data["stages"][0]["executable"] == qc and data["stages"][0]["accessible"] is True
    spec = {entry["name"]: entry for entry in data["inputSpec"]}
    assert set(spec) == {f"{first}.reads", f"{first}.min_quality", f"{second}.reads", f"{second}.genome"}
    assert "default" not in spec[f"{first}.reads"]  # the run must give it
    assert spec[f"{second}.reads"]["default"] == link(first, "filtered_reads")  # bound: not asked for
    assert {e["name"] for e in data["outputSpec"]} == {f"{first}.filtered_reads", f"{first}.kept", f"{second}.bam"}


def test_a_stage_id_may_be_chosen_once(alice, project, qc):
    workflow = new_workflow(alice, project)
    assert add_stage(alice, workflow, qc, id="stage_qc") == "stage_qc"
    reply = alice.call(f"/{workflow}/addStage", {"executable": qc, "id": "stage_qc", "editVersion": 1})
    assert_error(reply, 422, "InvalidInput")
    assert_error(alice.call(f"/{workflow}/addStage", {"executable": qc, "id": "9bad", "editVersion": 1}), 422)


def test_a_stale_edit_version_is_refused_and_changes_nothing(alice, project, qc):
    workflow = new_workflow(alice, project)
    add_stage(alice, workflow, qc)
    reply = alice.call(f"/{workflow}/addStage", {"executable": qc, "editVersion": 0})
    assert_error(reply, 422, "InvalidState")
    assert "stale" in reply[1]["error"]["message"] and "compatible" not in reply[1]["error"]["message"]
    assert_error(alice.call(f"/{workflow}/addStage", {"executable": qc}), 422, "InvalidInput")
    data = describe(alice, workflow)
    assert data["editVersion"] == 1 and len(data["stages"]) == 1


@pytest.mark.parametrize(
    "bad, says",
    [
        ("self", "its own stage"),
        ("later", "a later stage"),
        ("unknown", "not a stage of this workflow"),
        ("no such output", "does not have"),
        ("wrong class", "is of class"),
        ("wrong value", "expected a value of class int"),
        ("unknown input", "has no such input"),
    ],
)
def test_bad_stage_inputs_are_refused_and_change_nothing(alice, project, qc, align, bad, says):
    workflow = new_workflow(alice, project)
    first = add_stage(alice, workflow, qc, id="first")
    second = add_stage(alice, workflow, align, id="second")
    stage, value = {
        "self": (first, {"reads": link(first, "filtered_reads")}),
        "later": (first, {"reads": link(second, "bam")}),
        "unknown": (second, {"reads": link("nowhere", "bam")}),
        "no such output": (second, {"reads": link(first, "bam")}),
        "wrong class": (second, {"reads": link(first, "kept")}),
        "wrong value": (first, {"min_quality": "high"}),
        "unknown input": (first, {"colour": "blue"}),
    }[bad]
    reply = alice.call(f"/{workflow}/update", {"editVersion": 2, "stages": {stage: {"input": value}}})
    assert_error(reply, 422, "InvalidInput")
    assert says in reply[1]["error"]["message"]
    data = describe(alice, workflow)
    assert data["editVersion"] == 2 and all(s["input"] == {} for s in data["stages"])


def test_update_sets_and_unsets_fields_and_bindings(alice, two_stages):
    workflow, first, second = two_stages
    alice.ok(
        f"/{workflow}/update",
        {
            "editVersion": 2,
            "title": "QC + alignment",
            "outputFolder": "/out",
            "stages": {first: {"name": "QC", "input": {"min_quality": 30}}, second: {"input": {"genome": "hg38"}}},
        },
    )
    data = describe(alice, workflow)
    assert data["title"] == "QC + alignment" and data["outputFolder"] == "/out" and data["editVersion"] == 3
    assert data["stages"][0]["name"] == "QC" and data["stages"][0]["input"] == {"min_quality": 30}
    assert data["stages"][1]["input"] == {"reads": link(first, "filtered_reads"), "genome": "hg38"}
    alice.ok(f"/{workflow}/update", {"editVersion": 3, "title": None, "stages": {second: {"input": {"genome": None}}}})
    data = describe(alice, workflow)
    assert data["title"] == "pipeline" and data["stages"][1]["input"] == {"reads": link(first, "filtered_reads")}
    assert_error(alice.call(f"/{workflow}/update", {"editVersion": 4, "stages": {"nope": {}}}), 404)


def test_a_stage_others_take_from_cannot_be_removed_or_moved_after_them(alice, two_stages):
    workflow, first, second = two_stages
    reply = alice.call(f"/{workflow}/removeStage", {"stage": first, "editVersion": 2})
    assert_error(reply, 422, "InvalidState")
    assert second in reply[1]["error"]["message"]
    assert_error(alice.call(f"/{workflow}/moveStage", {"stage": first, "newIndex": 1, "editVersion": 2}), 422)
    assert_error(alice.call(f"/{workflow}/moveStage", {"stage": first, "newIndex": 5, "editVersion": 2}), 422)
    assert describe(alice, workflow)["editVersion"] == 2
    alice.ok(f"/{workflow}/removeStage", {"stage": second, "editVersion": 2})
    assert [s["id"] for s in describe(alice, workflow)["stages"]] == [first]


def test_move_stage_reorders_independent_stages(alice, project, qc, align):
    workflow = new_workflow(alice, project)
    first, second = add_stage(alice, workflow, qc), add_stage(alice, workflow, align)
    alice.ok(f"/{workflow}/moveStage", {"stage": second, "newIndex": 0, "editVersion": 2})
    assert [s["id"] for s in describe(alice, workflow)["stages"]] == [second, first]


def test_an_incompatible_executable_needs_force_and_says_why(alice, project, two_stages, align):
    workflow, first, second = two_stages
    reply = alice.call(f"/{workflow}/updateStageExecutable", {"stage": first, "executable": align, "editVersion": 2})
    assert_error(reply, 422, "InvalidState")
    assert "compatible" in reply[1]["error"]["message"]
    assert any("filtered_reads" in why for why in reply[1]["error"]["details"]["incompatibilities"])
    compat = alice.ok(f"/{workflow}/isStageCompatible", {"stage": first, "executable": align})
    assert compat["compatible"] is False and compat["incompatibilities"]
    assert describe(alice, workflow)["editVersion"] == 2
    same = applet(alice, project, "align2", [{"name": "reads", "class": "file"}], [{"name": "bam", "class": "file"}])
    alice.ok(f"/{workflow}/updateStageExecutable", {"stage": second, "executable": same, "editVersion": 2})
    assert describe(alice, workflow)["stages"][1]["executable"] == same


def test_a_closed_workflow_is_not_edited_and_an_open_one_is_not_run(alice, project, two_stages, reads):
    workflow, first, second = two_stages
    reply = alice.call(f"/{workflow}/run", {"project": project, "input": {f"{first}.reads": {"$dnanexus_link": reads}}})
    assert_error(reply, 422, "InvalidState")
    assert "close it" in reply[1]["error"]["message"]
    alice.ok(f"/{workflow}/close")
    assert describe(alice, workflow)["state"] == "closed"
    assert_error(alice.call(f"/{workflow}/update", {"editVersion": 2, "title": "x"}), 422, "InvalidState")


def test_new_workflow_takes_its_stages_from_another_workflow(alice, project, two_stages):
    workflow, first, second = two_stages
    copy = new_workflow(alice, project, initializeFrom={"id": workflow})
    data = describe(alice, copy)
    assert [s["id"] for s in data["stages"]] == [first, second]
    assert data["initializedFrom"] == {"id": workflow}


def test_workflows_use_the_generic_object_methods(alice, project, two_stages):
    workflow, first, second = two_stages
    alice.ok(f"/{workflow}/rename", {"project": project, "name": "renamed"})
    alice.ok(f"/{workflow}/addTags", {"project": project, "tags": ["t"]})
    alice.ok(f"/{workflow}/setProperties", {"project": project, "properties": {"k": "v"}})
    data = describe(alice, workflow)
    assert data["name"] == "renamed" and data["tags"] == ["t"] and data["properties"] == {"k": "v"}
    found = alice.ok("/system/findDataObjects", {"class": "workflow", "scope": {"project": project}})["results"]
    assert [r["id"] for r in found] == [workflow]


# Running ---------------------------------------------------------------------------


def both_inputs(first, reads):
    """The inputs two_stages needs to run: the first stage's reads, the second's genome."""
    return {f"{first}.reads": {"$dnanexus_link": reads}, "1.genome": "hg38"}


def run(client, workflow, project, **body):
    return client.ok(f"/{workflow}/run", {"project": project, **body})


def play(job_id, output=None, failure=None):
    """What a worker does with a stage job: take it, then finish or fail it."""
    assert actions.claim(job_id, "test-worker")
    if failure:
        actions.fail(Job.objects.get(pk=job_id), "AppError", failure)
    else:
        actions.finish(job_id, output or {})


def test_the_subjobs_of_a_stage_job_describe_their_analysis_as_root_execution(
    alice, project, two_stages, reads, no_dispatch, django_capture_on_commit_callbacks
):
    """A stage job's subjob belongs to the analysis (rootExecution), though its parent is a job
    (parentJob, no parentAnalysis), and says so to its own token as to its launcher."""
    workflow, first, _ = two_stages
    alice.ok(f"/{workflow}/close")
    with django_capture_on_commit_callbacks(execute=True):
        analysis = run(alice, workflow, project, input=both_inputs(first, reads))["id"]
    stage_job = no_dispatch[0]
    _, raw = actions.claim(stage_job, "test-worker")
    child = ApiClient(alice.user, raw).ok("/job/new", {"function": "more"})["id"]
    _, child_raw = actions.claim(child, "test-worker")
    for client in (ApiClient(alice.user, child_raw), alice):
        data = client.ok(f"/{child}/describe")
        assert (data["rootExecution"], data["parentJob"], data["parentAnalysis"]) == (analysis, stage_job, None)


def test_running_a_workflow_makes_an_analysis_with_one_job_per_stage(
    alice, project, two_stages, reads, no_dispatch, django_capture_on_commit_callbacks
):
    workflow, first, second = two_stages
    alice.ok(f"/{workflow}/close")
    with django_capture_on_commit_callbacks(execute=True):
        reply = run(alice, workflow, project, input=both_inputs(first, reads))
    analysis = reply["id"]
    assert analysis.startswith("analysis-") and len(reply["stages"]) == 2
    data = alice.ok(f"/{analysis}/describe")
    assert data["class"] == "analysis" and data["state"] == "in_progress" and data["executable"] == workflow
    assert data["workflow"]["id"] == workflow and [s["id"] for s in data["workflow"]["stages"]] == [first, second]
    assert data["rootExecution"] == analysis and data["parentJob"] is None and data["output"] is None
    assert data["input"][f"{first}.reads"] == {"$dnanexus_link": reads} and data["input"][f"{second}.genome"] == "hg38"
    qc_job, align_job = (s["execution"] for s in data["stages"])
    assert qc_job["state"] == "runnable" and qc_job["folder"] == "/qc" and qc_job["name"] == "Quality Control"
    assert qc_job["analysis"] == analysis and qc_job["parentAnalysis"] == analysis and qc_job["stage"] == first
    assert qc_job["rootExecution"] == analysis and qc_job["parentJob"] is None
    assert align_job["state"] == "waiting_on_input" and align_job["folder"] == "/alignment"
    assert align_job["input"]["reads"] == {"$dnanexus_link": {"job": qc_job["id"], "field": "filtered_reads"}}
    assert no_dispatch == [qc_job["id"]]

    with django_capture_on_commit_callbacks(execute=True):
        play(qc_job["id"], {"filtered_reads": {"$dnanexus_link": reads}, "kept": 7})
    data = alice.ok(f"/{analysis}/describe")
    assert data["state"] == "in_progress" and data["output"] == {
        f"{first}.filtered_reads": {"$dnanexus_link": reads},
        f"{first}.kept": 7,
    }
    assert data["stages"][1]["execution"]["state"] == "runnable"
    assert data["stages"][1]["execution"]["input"]["reads"] == {"$dnanexus_link": reads}
    with django_capture_on_commit_callbacks(execute=True):
        play(align_job["id"], {"bam": {"$dnanexus_link": reads}})
    data = alice.ok(f"/{analysis}/describe")
    assert data["state"] == "done" and data["output"][f"{second}.bam"] == {"$dnanexus_link": reads}
    assert [t["newState"] for t in data["stateTransitions"]] == ["in_progress", "done"]
    # No null for `dx describe` to print: the analysis has no workspace, its done stage jobs no longer do.
    assert "workspace" not in data and not any("workspace" in s["execution"] for s in data["stages"])


def test_a_failed_stage_fails_the_analysis_and_names_itself(
    alice, project, qc, align, reads, no_dispatch, django_capture_on_commit_callbacks
):
    workflow = new_workflow(alice, project)
    first = add_stage(alice, workflow, qc, input={"reads": {"$dnanexus_link": reads}})
    add_stage(alice, workflow, align, input={"reads": link(first, "filtered_reads"), "genome": "hg38"})
    independent = add_stage(alice, workflow, qc, input={"reads": {"$dnanexus_link": reads}})
    alice.ok(f"/{workflow}/close")
    with django_capture_on_commit_callbacks(execute=True):
        analysis = run(alice, workflow, project)["id"]
    jobs = [s["execution"]["id"] for s in alice.ok(f"/{analysis}/describe")["stages"]]
    with django_capture_on_commit_callbacks(execute=True):
        play(jobs[0], failure="no reads passed")
    data = alice.ok(f"/{analysis}/describe")
    assert data["state"] == "failed"
    assert data["failureReason"] == "AppError" and data["failureMessage"] == "no reads passed"
    assert data["failureFrom"]["id"] == jobs[0]
    states = {s["id"]: s["execution"]["state"] for s in data["stages"]}
    assert states[independent] == "terminated"  # the rest ended with it
    assert "failed" in [t["newState"] for t in data["stateTransitions"]]


def test_terminating_an_analysis_terminates_its_stage_jobs(
    alice, project, two_stages, reads, no_dispatch, django_capture_on_commit_callbacks
):
    workflow, first, second = two_stages
    alice.ok(f"/{workflow}/close")
    with django_capture_on_commit_callbacks(execute=True):
        analysis = run(alice, workflow, project, input=both_inputs(first, reads))["id"]
    with django_capture_on_commit_callbacks(execute=True):
        alice.ok(f"/{analysis}/terminate")
    data = alice.ok(f"/{analysis}/describe")
    assert data["state"] == "terminated"
    assert {s["execution"]["state"] for s in data["stages"]} == {"terminated"}
    assert_error(alice.call(f"/{analysis}/terminate"), 422, "InvalidState")


@pytest.mark.parametrize(
    "body, says",
    [
        ({"input": {"nostage.reads": 1}}, "names no stage"),
        ({"input": {"reads": 1}}, "<stage ID>.<field>"),
        ({"input": {"0.min_quality": "high"}}, "expected a value of class int"),
        ({"input": {}}, "is required"),
        ({"input": {"0.colour": 1}}, "has no such input"),
        ({"systemRequirements": {"*": {"instanceType": "mem9_huge"}}}, "unknown instance type"),
    ],
)
def test_a_bad_run_is_refused_and_makes_nothing(alice, project, two_stages, body, says):
    workflow, first, second = two_stages
    alice.ok(f"/{workflow}/close")
    if "reads" not in str(body["input"] if "input" in body else ""):
        body.setdefault("input", {})
    reply = alice.call(f"/{workflow}/run", {"project": project, **body})
    assert_error(reply, 422)
    assert says in reply[1]["error"]["message"], reply
    assert not Job.objects.exists()
    assert not alice.ok("/system/findExecutions", {"class": "analysis"})["results"]


def test_dry_run_checks_and_makes_nothing(alice, project, two_stages, reads):
    workflow, first, second = two_stages
    alice.ok(f"/{workflow}/close")
    given = both_inputs(first, reads)
    reply = alice.ok(f"/{workflow}/dryRun", {"project": project, "input": given})
    assert reply["id"].startswith("analysis-") and reply["stages"] == []
    assert not Job.objects.exists()
    assert_error(alice.call(f"/{workflow}/dryRun", {"project": project}), 422)


def test_analyses_are_found_with_their_stage_jobs_as_a_tree(alice, project, two_stages, reads, no_dispatch):
    workflow, first, second = two_stages
    alice.ok(f"/{workflow}/close")
    analysis = run(alice, workflow, project, input=both_inputs(first, reads))["id"]
    found = alice.ok("/system/findExecutions", {"class": "analysis", "project": project, "describe": {"io": False}})
    assert [r["id"] for r in found["results"]] == [analysis]
    assert found["results"][0]["describe"]["rootExecution"] == analysis
    assert "stages" in found["results"][0]["describe"]
    tree = alice.ok("/system/findExecutions", {"project": project, "rootExecution": [analysis], "describe": True})
    ids = {r["id"] for r in tree["results"]}
    assert ids == {analysis, *Job.objects.filter(analysis_id=analysis).values_list("id", flat=True)}
    assert len(ids) == 3
    everything = alice.ok("/system/findExecutions", {"project": project})["results"]
    assert {r["id"] for r in everything} == ids
    assert alice.ok("/system/findAnalyses", {"project": project})["results"][0]["id"] == analysis
    tagged = alice.ok(f"/{analysis}/addTags", {"tags": ["batch1"]})
    assert tagged == {"id": analysis}
    alice.ok(f"/{analysis}/setProperties", {"properties": {"run": "1"}})
    data = alice.ok(f"/{analysis}/describe")
    assert data["tags"] == ["batch1"] and data["properties"] == {"run": "1"}
    found = alice.ok("/system/findExecutions", {"class": "analysis", "tags": ["batch1"]})["results"]
    assert [r["id"] for r in found] == [analysis]


def test_cloning_an_analysis_binds_its_inputs(alice, project, two_stages, reads, no_dispatch):
    workflow, first, second = two_stages
    alice.ok(f"/{workflow}/close")
    analysis = run(alice, workflow, project, input=both_inputs(first, reads))["id"]
    copy = new_workflow(alice, project, initializeFrom={"id": analysis}, temporary=True)
    data = describe(alice, copy)
    assert data["state"] == "closed"  # runs at once, as `dx run --clone` does
    spec = {entry["name"]: entry for entry in data["inputSpec"]}
    assert spec[f"{first}.reads"]["default"] == {"$dnanexus_link": reads}
    assert run(alice, copy, project)["id"].startswith("analysis-")


# Who may do what -------------------------------------------------------------------


def test_an_outsider_gets_the_not_found_of_a_missing_workflow_or_analysis(
    alice, bob, project, two_stages, reads, no_dispatch
):
    workflow, first, second = two_stages
    alice.ok(f"/{workflow}/close")
    analysis = run(alice, workflow, project, input=both_inputs(first, reads))["id"]
    for path in (
        f"/{workflow}/describe",
        f"/{workflow}/addStage",
        f"/{workflow}/run",
        f"/{analysis}/describe",
        f"/{analysis}/terminate",
        f"/{analysis}/addTags",
    ):
        assert_error(bob.call(path, {"project": project, "editVersion": 2}), 404, "ResourceNotFound", path)
    assert not bob.ok("/system/findExecutions", {"class": "analysis"})["results"]


def test_view_sees_and_contribute_edits_and_runs(alice, bob, project, qc, reads, no_dispatch):
    workflow = new_workflow(alice, project)
    alice.ok(f"/{project}/invite", {"invitee": bob.user.dx_id, "level": "VIEW"})
    assert bob.ok(f"/{workflow}/describe")["id"] == workflow
    assert_error(bob.call(f"/{workflow}/addStage", {"executable": qc, "editVersion": 0}), 403, "PermissionDenied")
    add_stage(alice, workflow, qc, input={"reads": {"$dnanexus_link": reads}})
    alice.ok(f"/{workflow}/close")
    assert_error(bob.call(f"/{workflow}/run", {"project": project}), 403, "PermissionDenied")
    analysis = run(alice, workflow, project)["id"]
    assert bob.ok(f"/{analysis}/describe")["id"] == analysis
    assert_error(bob.call(f"/{analysis}/terminate"), 403, "PermissionDenied")
    alice.ok(f"/{project}/invite", {"invitee": bob.user.dx_id, "level": "CONTRIBUTE"})
    assert bob.ok(f"/{workflow}/run", {"project": project})["id"].startswith("analysis-")
    assert DataObject.objects.filter(cls="workflow").count() == 1


def test_an_analysis_output_reference_waits_on_that_stages_job(
    alice, project, two_stages, reads, qc, no_dispatch, django_capture_on_commit_callbacks
):
    workflow, first, second = two_stages
    alice.ok(f"/{workflow}/close")
    analysis = run(alice, workflow, project, input={f"{first}.reads": {"$dnanexus_link": reads}, "1.genome": "g"})["id"]
    qc_job = Job.objects.get(analysis_id=analysis, stage=first).pk
    ref = {"$dnanexus_link": {"analysis": analysis, "field": f"{first}.filtered_reads"}}  # DXAnalysis.get_output_ref
    job = alice.ok(f"/{qc}/run", {"project": project, "input": {"reads": ref}})["id"]
    described = alice.ok(f"/{job}/describe")
    assert described["state"] == "waiting_on_input"
    assert described["input"]["reads"] == {"$dnanexus_link": {"job": qc_job, "field": "filtered_reads"}}
    again = run(alice, workflow, project, input={f"{first}.reads": ref, "1.genome": "g"})["id"]
    assert Job.objects.get(analysis_id=again, stage=first).state == "waiting_on_input"
    bad = {"$dnanexus_link": {"analysis": analysis, "field": "nostage.x"}}
    reply = alice.call(f"/{qc}/run", {"project": project, "input": {"reads": bad}})
    assert_error(reply, 422, "InvalidInput")
    assert "has no stage output" in reply[1]["error"]["message"]


def test_a_temporary_workflow_is_hidden(alice, project, two_stages):
    workflow, first, second = two_stages
    copy = new_workflow(alice, project, initializeFrom={"id": workflow}, temporary=True)
    assert describe(alice, copy)["hidden"] is True
    listed = alice.ok(f"/{project}/listFolder", {"folder": "/"})["objects"]
    assert copy not in [o["id"] for o in listed]
