"""`dx build` and `dx run --watch` with the real client against the real server and worker."""

import json
from pathlib import Path

import pytest

pytestmark = pytest.mark.live

APPS = Path(__file__).parent / "apps"


@pytest.fixture
def alice_project(dx_as):
    dx = dx_as("alice")
    project = dx("new", "project", "runs", "--brief").stdout.strip()
    dx("select", project)
    return dx, project


def test_a_bash_applet_builds_runs_and_streams_its_log(alice_project):
    dx, project = alice_project
    built = json.loads(dx("build", str(APPS / "hello_bash")).stdout)
    assert built["id"].startswith("applet-")
    watched = dx("run", "hello_bash", "-iwho=dxweb", "-in=2", "-y", "--watch")
    out = watched.stdout
    assert "count 1" in out and "count 2" in out and "to stderr" in out
    assert "hello-tool from the resources bundle" in out  # bundledDepends unpacked to /
    assert "a line through dx-log-stream" in out
    job_id = json.loads(dx("find", "jobs", "--json").stdout)[0]["id"]
    described = json.loads(dx("describe", job_id, "--json").stdout)
    assert described["state"] == "done" and described["output"] == {"greeting": "hello dxweb"}


def test_a_python_applet_runs_with_dxpy_and_its_log_handler(alice_project):
    dx, project = alice_project
    dx("build", str(APPS / "hello_py"))
    watched = dx("run", "hello_py", "-iwho=python", "-y", "--watch")
    assert "python says hello to python" in watched.stdout
    assert "an INFO line through the log socket" in watched.stdout
    assert "ExecDependsInstalled" in watched.stdout


def test_a_file_goes_in_and_a_report_file_comes_out_into_the_project(alice_project, tmp_path):
    dx, project = alice_project
    dx("build", str(APPS / "wc_file"))
    reads = tmp_path / "sample.txt"
    reads.write_text("a\nb\nc\n")
    dx("upload", str(reads), "--wait", "--brief")
    dx("run", "wc_file", "-ireads=sample.txt", "--folder", "/results", "-y", "--wait")
    job = json.loads(dx("find", "jobs", "--json").stdout)[0]
    described = json.loads(dx("describe", job["id"], "--json").stdout)
    assert described["state"] == "done" and described["output"]["lines"] == 3
    assert "sample.report.txt" in dx("ls", "/results").stdout
    assert dx("cat", "/results/sample.report.txt").stdout == "sample.txt has 3 lines\n"


def test_the_python_scatter_gather_pattern_gathers_the_right_count(alice_project, tmp_path):
    dx, project = alice_project
    dx("build", str(APPS / "scatter_py"))
    data = tmp_path / "rows.txt"
    data.write_text("AAA\nACGT\nA\nTTT\nAA\nGA\nAAAA\n")
    dx("upload", str(data), "--wait", "--brief")
    dx("run", "scatter_py", "-iinput_file=rows.txt", "-inum_subjobs=3", "-y", "--wait")
    origin = [j for j in json.loads(dx("find", "jobs", "--json").stdout) if j["parentJob"] is None]
    described = json.loads(dx("describe", origin[0]["id"], "--json").stdout)
    assert described["state"] == "done" and described["output"] == {"count": 4}
    tree = json.loads(dx("find", "jobs", "--origin-jobs", "--json").stdout)
    assert len(tree) >= 1


def test_the_bash_subjob_pattern_with_depends_on_and_jobref_output(alice_project):
    dx, project = alice_project
    dx("build", str(APPS / "scatter_bash"))
    job_id = dx("run", "scatter_bash", "-in=4", "-y", "--brief").stdout.strip()
    watched = dx("watch", job_id, "--tree")
    assert "squaring 4" in watched.stdout and "total is 30" in watched.stdout
    described = json.loads(dx("describe", job_id, "--json").stdout)
    assert described["state"] == "done" and described["output"] == {"total": 30}
