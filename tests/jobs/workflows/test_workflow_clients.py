"""Workflows and analyses with the real clients, unmodified (dxpy 0.417.1 and `dx`), against the real server
and worker: seed 004's dxpy pipeline, the `dx` verbs that make, edit, run and follow a workflow, and what
the clients make of bad requests.

The pipeline is two bash applets (tests/jobs/workflows/apps): "filter" drops the reads holding an N and
counts those kept; "summarise" writes a report on a file of reads (or fails, when told to).
"""

import json
import re
import subprocess
import textwrap
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from tests.live import BIN, Dx

pytestmark = pytest.mark.live

APPS = Path(__file__).parent / "apps"
READS = "ACGT\nANNA\nTTTT\nACGT\nGNGN\n"  # filtered: 3 reads, 2 distinct
OTHER = "AAAA\nCCCC\nGGNG\n"  # filtered: 2 reads, 2 distinct
FAILED = "Analysis has failed because of AppError: summarise was asked to fail"


@pytest.fixture(scope="module")
def tools(live_server_proc, tmp_path_factory):
    """The two applets, built once with `dx build` into a project of their own."""
    live = live_server_proc
    dx = Dx(live, live.user("alice"), tmp_path_factory.mktemp("tools"))
    project = dx("new", "project", "pipeline tools", "--brief").stdout.strip()
    dx("select", project)
    built = {name: json.loads(dx("build", str(APPS / name)).stdout)["id"] for name in ("filter", "summarise")}
    return SimpleNamespace(project=project, **built)


@pytest.fixture
def bench(dx_as, tmp_path):
    """alice's own project for one test, selected, with reads.txt and other.txt uploaded."""
    dx = dx_as("alice")
    project = dx("new", "project", "pipelines", "--brief").stdout.strip()
    dx("select", project)
    files = {}
    for name, text in (("reads.txt", READS), ("other.txt", OTHER)):
        (dx.workdir / name).write_text(text)
        files[name] = dx("upload", str(dx.workdir / name), "--wait", "--brief").stdout.strip()
    return SimpleNamespace(dx=dx, project=project, reads=files["reads.txt"], other=files["other.txt"])


def dxpy_as(dx, project, script, *args):
    """Run a Python script with the real dxpy as dx's user, in `project`; return what it printed last, as JSON."""
    result = subprocess.run(
        [str(BIN / "python"), "-c", textwrap.dedent(script), *args],
        env={**dx.env, "DX_PROJECT_CONTEXT_ID": project},
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def describe(dx, execution_or_object):
    return json.loads(dx("describe", execution_or_object, "--json").stdout)


def link(stage, field):
    return {"$dnanexus_link": {"stage": stage, "outputField": field}}


def closed_pipeline(live, token, project, tools, reads, name="pipeline"):
    """filter ("qc", folder /qc, reads bound) then summarise ("report", folder "report", reads from qc), closed,
    made through the API (the `dx` verbs that make one have their own test); return (workflow, qc, report)."""
    workflow = live.api("/workflow/new", {"project": project, "name": name}, token=token)["id"]
    qc = live.api(
        f"/{workflow}/addStage",
        {
            "executable": tools.filter,
            "name": "qc",
            "folder": "/qc",
            "input": {"reads": {"$dnanexus_link": reads}},
            "editVersion": 0,
        },
        token=token,
    )["stage"]
    report = live.api(
        f"/{workflow}/addStage",
        {
            "executable": tools.summarise,
            "name": "report",
            "folder": "report",
            "input": {"reads": link(qc, "filtered_reads")},
            "editVersion": 1,
        },
        token=token,
    )["stage"]
    live.api(f"/{workflow}/close", {}, token=token)
    return workflow, qc, report


def wait_for_state(dx, job_id, state, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if describe(dx, job_id)["state"] == state:
            return
        time.sleep(0.5)
    raise AssertionError(f"{job_id} never reached {state}")


# 1. Seed 004 with dxpy -----------------------------------------------------------------------------

SEED_004 = """
    import json, sys
    import dxpy

    project, filter_applet, summarise_applet, reads = sys.argv[1:]

    # "Creating a Workflow", as printed, with this test's applets and project.
    workflow = dxpy.new_dxworkflow(name="My Analysis Pipeline", project=project)
    stage1 = workflow.add_stage(dxpy.DXApplet(filter_applet), name="Quality Control", folder="/qc")
    stage2 = workflow.add_stage(dxpy.DXApplet(summarise_applet), name="Alignment", folder="/alignment")

    # The seed's `stage2.set_input("reads", stage1.get_output_ref("filtered_reads"))` cannot run with dxpy
    # 0.417.1: add_stage returns the stage ID, a str (bindings/dxworkflow.py, add_stage: `return
    # result['stage']`), and no stage handle with set_input or get_output_ref exists. The same link is a
    # stage input, bound with update_stage (or given to add_stage as stage_input=).
    assert isinstance(stage1, str) and not hasattr(stage1, "set_input") and not hasattr(stage1, "get_output_ref")
    reads_from_stage1 = {"$dnanexus_link": {"stage": stage1, "outputField": "filtered_reads"}}
    workflow.update_stage(stage2, stage_input={"reads": reads_from_stage1})
    workflow.close()

    # "Running a Workflow": the seed's "stage-xxxx.input1" is stage1's ID and its input "reads".
    analysis = workflow.run({stage1 + ".reads": {"$dnanexus_link": reads}})
    analysis.wait_on_done()
    outputs = analysis.describe()["output"]

    report = dxpy.open_dxfile(outputs[stage2 + ".report"]["$dnanexus_link"]).read()
    print(json.dumps({
        "stages": [stage1, stage2],
        "analysis": analysis.describe(),
        "workflow": workflow.describe(),
        "outputs": outputs,
        "report": report,
    }))
"""


def test_seed_004_builds_runs_and_reads_a_two_stage_pipeline_with_dxpy(tools, bench):
    seen = dxpy_as(bench.dx, bench.project, SEED_004, bench.project, tools.filter, tools.summarise, bench.reads)
    stage1, stage2 = seen["stages"]
    assert stage1.startswith("stage-") and stage2.startswith("stage-")
    workflow = seen["workflow"]
    assert workflow["state"] == "closed" and workflow["editVersion"] == 3  # two addStage, one update
    assert [(s["name"], s["folder"]) for s in workflow["stages"]] == [
        ("Quality Control", "/qc"),
        ("Alignment", "/alignment"),
    ]
    assert workflow["stages"][1]["input"] == {"reads": link(stage1, "filtered_reads")}

    analysis = seen["analysis"]
    assert analysis["state"] == "done" and analysis["executable"] == workflow["id"]
    assert set(seen["outputs"]) == {f"{stage1}.filtered_reads", f"{stage1}.count", f"{stage2}.report"}
    assert seen["outputs"][f"{stage1}.count"] == 3
    assert seen["report"] == "reads.filtered.txt: 3 reads, 2 distinct\n"
    jobs = [stage["execution"] for stage in analysis["stages"]]
    assert [job["folder"] for job in jobs] == ["/qc", "/alignment"]
    assert [job["name"] for job in jobs] == ["Quality Control", "Alignment"]
    assert all(job["state"] == "done" and job["parentAnalysis"] == analysis["id"] for job in jobs)
    assert jobs[1]["input"]["reads"] == seen["outputs"][f"{stage1}.filtered_reads"]

    # Each stage's outputs are in its own folder of the project.
    dx = bench.dx
    assert dx("ls", "/qc").stdout.split() == ["reads.filtered.txt"]
    assert dx("ls", "/alignment").stdout.split() == ["reads.filtered.report.txt"]
    assert dx("cat", "/alignment/reads.filtered.report.txt").stdout == seen["report"]


FAILING = """
    import json, sys
    import dxpy

    project, filter_applet, summarise_applet, reads = sys.argv[1:]
    workflow = dxpy.new_dxworkflow(name="failing pipeline", project=project, output_folder="/runs/failing")
    qc = workflow.add_stage(filter_applet, name="qc", folder="qc")
    workflow.add_stage(
        summarise_applet,
        name="report",
        folder="report",
        stage_input={"reads": {"$dnanexus_link": {"stage": qc, "outputField": "filtered_reads"}}, "fail": True},
    )
    workflow.close()
    analysis = workflow.run({"0.reads": dxpy.dxlink(reads)})  # a stage by its index
    try:
        analysis.wait_on_done()
        error = None
    except dxpy.exceptions.DXJobFailureError as err:
        error = str(err)
    print(json.dumps({"qc": qc, "error": error, "analysis": analysis.describe()}))
"""


def test_a_failing_stage_fails_the_analysis_and_wait_on_done_says_why(tools, bench):
    seen = dxpy_as(bench.dx, bench.project, FAILING, bench.project, tools.filter, tools.summarise, bench.reads)
    analysis, qc = seen["analysis"], seen["qc"]
    qc_job, report_job = (stage["execution"] for stage in analysis["stages"])
    assert seen["error"] == f"{FAILED} (failure from {report_job['id']})"
    assert analysis["state"] == "failed" and analysis["failureReason"] == "AppError"
    assert analysis["failureFrom"]["id"] == report_job["id"]
    assert (qc_job["state"], report_job["state"]) == ("done", "failed")
    # The workflow's output folder is the analysis's; relative stage folders go under it.
    assert analysis["folder"] == "/runs/failing"
    assert (qc_job["folder"], report_job["folder"]) == ("/runs/failing/qc", "/runs/failing/report")
    assert analysis["output"] == {f"{qc}.filtered_reads": qc_job["output"]["filtered_reads"], f"{qc}.count": 3}
    assert bench.dx("ls", "/runs/failing/qc").stdout.split() == ["reads.filtered.txt"]


# 2. The dx CLI --------------------------------------------------------------------------------------


def test_dx_makes_edits_describes_and_closes_a_workflow(tools, bench):
    dx = bench.dx
    workflow = dx("new", "workflow", "pipeline", "--brief").stdout.strip()
    assert workflow.startswith("workflow-")
    shown = dx("new", "workflow", "another").stdout
    assert re.search(r"^Name\s+another$", shown, re.M) and re.search(r"^Edit Version\s+0$", shown, re.M)

    add = ("add", "stage", workflow)
    qc = dx(*add, tools.filter, "-ireads=reads.txt", "--name", "qc", "--output-folder", "/qc", "--brief").stdout.strip()
    spare = dx(*add, tools.summarise, "--name", "spare", "--brief").stdout.strip()
    # A link to an earlier stage's output, through -j (-i parses values for the executable's input classes).
    linked = json.dumps({"reads": link(qc, "filtered_reads")})
    added = dx(*add, tools.summarise, "--name", "report", "--relative-output-folder", "report", "-j", linked).stdout
    assert re.search(r"^Stage 2\s+report \(stage-\w+\)$", added, re.M)  # non-brief prints the workflow
    report = describe(dx, workflow)["stages"][2]["id"]
    assert all(stage.startswith("stage-") for stage in (qc, spare, report))

    dx("update", "stage", workflow, "1", "-ireads=other.txt", "-ifail=true")
    dx("update", "stage", workflow, "1", "--name", "renamed")
    spare_now = describe(dx, workflow)["stages"][1]
    assert spare_now["name"] == "renamed" and spare_now["input"]["fail"] is True
    assert spare_now["input"]["reads"]["$dnanexus_link"]["id"] == bench.other
    assert dx("remove", "stage", workflow, "1").stdout.strip() == f"Removed stage {spare}"

    described = describe(dx, workflow)
    assert described["editVersion"] == 6 and described["state"] == "open"
    assert [(s["id"], s["name"], s["folder"]) for s in described["stages"]] == [
        (qc, "qc", "/qc"),
        (report, "report", "report"),
    ]
    assert described["stages"][0]["input"] == {
        "reads": {"$dnanexus_link": {"project": bench.project, "id": bench.reads}}
    }
    assert described["stages"][1]["input"] == {"reads": link(qc, "filtered_reads")}
    spec = {entry["name"]: entry for entry in described["inputSpec"]}
    assert spec[f"{qc}.reads"]["default"] == described["stages"][0]["input"]["reads"]
    assert spec[f"{report}.reads"]["default"] == link(qc, "filtered_reads")
    text = dx("describe", workflow).stdout
    assert re.search(rf"^Stage 0\s+qc \({qc}\)$", text, re.M)
    assert re.search(rf"^Stage 1\s+report \({report}\)$", text, re.M)
    listed = dx("list", "stages", workflow).stdout
    assert f"Stage 0: qc ({qc})" in listed and f"Stage 1: report ({report})" in listed
    assert re.search(r"Output Folder\s+/qc", listed) and "<workflow output folder>/report" in listed

    # An open workflow is not run: the client shows the server's reason.
    refused = dx("run", workflow, "-y", "--brief", check=False)
    assert refused.returncode == 3 and "InvalidState" in refused.stderr
    assert f"{workflow} is open: close it before running it" in refused.stderr

    dx("close", workflow)
    assert describe(dx, workflow)["state"] == "closed"
    analysis = dx("run", workflow, "-y", "--brief", "--folder", "/cli").stdout.strip()
    dx("wait", analysis)
    jobs = [stage["execution"] for stage in describe(dx, analysis)["stages"]]
    assert [job["folder"] for job in jobs] == ["/qc", "/cli/report"]
    assert dx("cat", "/cli/report/reads.filtered.report.txt").stdout == "reads.filtered.txt: 3 reads, 2 distinct\n"


def test_dx_runs_a_workflow_by_index_id_and_name_and_follows_its_analyses(live, tools, bench):
    dx = bench.dx
    workflow, qc, report = closed_pipeline(live, dx.token, bench.project, tools, bench.reads)

    by_index = dx("run", workflow, "-i0.reads=other.txt", "-y", "--brief").stdout.strip()
    by_id = dx("run", workflow, f"-i{qc}.reads=reads.txt", "--folder", "/by-id", "-y", "--brief").stdout.strip()
    by_name = dx("run", workflow, "-iqc.reads=other.txt", "-ireport.fail=true", "-y", "--brief").stdout.strip()
    # Without --brief, dx asks /workflow-x/dryRun first, then runs.
    shown = dx("run", workflow, "-i0.reads=other.txt", "--folder", "/shown", "-y").stdout
    assert "Using input JSON" in shown and f'"{qc}.reads"' in shown
    verbose = re.search(r"^Analysis ID: (analysis-\w+)$", shown, re.M).group(1)
    assert live.log_path.read_text().count(f'"POST /{workflow}/dryRun" 200') == 1  # the --brief runs skip it
    runs = {by_index, by_id, by_name, verbose}
    assert all(run.startswith("analysis-") for run in runs) and len(runs) == 4

    assert dx("wait", by_index).stdout.strip().endswith("Done")
    waited = dx("wait", by_name, check=False)
    assert waited.returncode == 3 and FAILED in waited.stderr
    for run in (by_id, verbose):
        dx("wait", run)

    described = describe(dx, by_index)
    assert described["class"] == "analysis" and described["state"] == "done" and described["executable"] == workflow
    assert described["input"][f"{qc}.reads"]["$dnanexus_link"]["id"] == bench.other  # the run's, not the bound one
    assert described["output"][f"{qc}.count"] == 2
    jobs = [stage["execution"] for stage in described["stages"]]
    assert [job["folder"] for job in jobs] == ["/qc", "/report"] and [job["stage"] for job in jobs] == [qc, report]
    assert [job["folder"] for job in (s["execution"] for s in describe(dx, by_id)["stages"])] == [
        "/qc",
        "/by-id/report",
    ]
    assert describe(dx, by_id)["output"][f"{qc}.count"] == 3
    failed = describe(dx, by_name)
    assert failed["state"] == "failed" and failed["input"][f"{report}.fail"] is True
    text = dx("describe", by_index).stdout
    assert re.search(r"^Class\s+analysis$", text, re.M) and re.search(r"^State\s+done$", text, re.M)
    assert re.search(rf"^Stage 0\s+qc \({qc}\)$", text, re.M)
    assert re.search(rf"^\s+Execution\s+{jobs[0]['id']} \(done\)$", text, re.M)
    assert re.search(r"^Failure reason\s+AppError$", dx("describe", by_name).stdout, re.M)
    assert re.search(rf"^Analysis\s+{by_index}$", dx("describe", jobs[1]["id"]).stdout, re.M)  # a stage job

    found = dx("find", "analyses").stdout
    assert f"(failed) {by_name}" in found and f"(done) {by_index}" in found
    assert {row["id"] for row in json.loads(dx("find", "analyses", "--json").stdout)} == runs
    executions = dx("find", "executions").stdout
    assert f"(done) {by_index}" in executions
    assert f"qc (filter:main) (done) {jobs[0]['id']}" in executions  # the stage jobs under their analysis
    assert f"report (summarise:main) (done) {jobs[1]['id']}" in executions

    dx("tag", by_index, "t1", "t2")
    dx("set_properties", by_index, "k=v")
    described = describe(dx, by_index)
    assert described["tags"] == ["t1", "t2"] and described["properties"] == {"k": "v"}
    assert dx("find", "analyses", "--tag", "t1", "--brief").stdout.split() == [by_index]

    # --clone: a temporary workflow made from the analysis, run with the same inputs (the run's other.txt).
    clone = dx("run", "--clone", by_index, "-y", "--brief").stdout.strip()
    dx("wait", clone)
    cloned = describe(dx, clone)
    assert cloned["state"] == "done" and cloned["name"] == "pipeline (re-run)"
    assert cloned["input"] == describe(dx, by_index)["input"] and cloned["output"][f"{qc}.count"] == 2
    temporary = describe(dx, cloned["executable"])
    assert cloned["executable"] != workflow and temporary["initializedFrom"] == {"id": by_index}
    assert [stage["id"] for stage in temporary["stages"]] == [qc, report]


def test_dx_terminates_a_running_analysis(live, tools, bench):
    dx = bench.dx
    workflow, qc, report = closed_pipeline(live, dx.token, bench.project, tools, bench.reads)
    analysis = dx("run", workflow, "-iqc.pause=120", "-y", "--brief").stdout.strip()
    qc_job = describe(dx, analysis)["stages"][0]["execution"]["id"]
    wait_for_state(dx, qc_job, "running")
    dx("terminate", analysis)
    waited = dx("wait", analysis, check=False)
    assert waited.returncode == 3 and "Analysis was terminated." in waited.stderr
    described = describe(dx, analysis)
    assert described["state"] == "terminated"
    assert [stage["execution"]["state"] for stage in described["stages"]] == ["terminated", "terminated"]
    assert re.search(r"^State\s+terminated$", dx("describe", analysis).stdout, re.M)
    again = dx("terminate", analysis, check=False)
    assert again.returncode == 3 and "InvalidState" in again.stderr


# 3. Bad requests through the clients ------------------------------------------------------------------

STALE = """
    import json, sys
    import dxpy

    workflow = sys.argv[1]
    first, second = dxpy.DXWorkflow(workflow), dxpy.DXWorkflow(workflow)
    first.describe(), second.describe()  # both at the same editVersion
    first.update_stage(0, name="first")
    try:
        second.update_stage(0, name="second")
        refused = None
    except dxpy.exceptions.DXAPIError as err:
        refused = [type(err).__name__, err.name, err.code, err.msg]
    second.update_stage(0, name="second")  # the refusal made it describe again: now at the current editVersion
    print(json.dumps({"refused": refused, "stage": second.get_stage(0), "editVersion": second.editVersion}))
"""


def test_a_stale_edit_version_is_refused_through_dxpy_and_a_fresh_one_succeeds(tools, bench):
    dx = bench.dx
    workflow = dx("new", "workflow", "shared", "--brief").stdout.strip()
    dx("add", "stage", workflow, tools.filter, "--name", "qc", "--brief")
    seen = dxpy_as(dx, bench.project, STALE, workflow)
    kind, name, code, message = seen["refused"]
    assert (kind, name, code) == ("InvalidState", "InvalidState", 422)
    assert "editVersion 1 is stale" in message and "compatible" not in message  # dx would read it as a swap
    assert seen["stage"]["name"] == "second" and seen["editVersion"] == 3


def test_dx_run_asks_for_unbound_inputs_refuses_unknown_stages_and_runs_the_seeds_line(tools, bench):
    dx = bench.dx
    workflow = dx("new", "workflow", "unbound", "--brief").stdout.strip()
    # Seed 004's `dx run workflow-xxxx -i stage-1.input=file-yyyy` needs a stage whose ID (or name) is
    # "stage-1": a stage ID the caller may choose.
    assert dx("add", "stage", workflow, tools.filter, "--id", "stage-1", "--brief").stdout.strip() == "stage-1"
    dx("close", workflow)
    # reads is bound nowhere: the client asks for it (without a terminal, it stops).
    missing = dx("run", workflow, "-y", "--brief", check=False)
    assert missing.returncode == 3 and "stage-1.reads" in missing.stdout + missing.stderr
    unknown = dx("run", workflow, "-inope.reads=reads.txt", "-y", "--brief", check=False)
    assert unknown.returncode != 0 and "nope" in unknown.stderr
    assert dx("find", "analyses", "--brief").stdout.split() == []

    analysis = dx("run", workflow, "-i", f"stage-1.reads={bench.reads}", "-y", "--brief").stdout.strip()
    dx("wait", analysis)
    described = describe(dx, analysis)
    assert described["input"] == {"stage-1.reads": {"$dnanexus_link": bench.reads}}
    assert described["output"]["stage-1.count"] == 3 and described["stages"][0]["execution"]["stage"] == "stage-1"
