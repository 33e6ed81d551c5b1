"""A project brought from DNAnexus, with the released `dx` and dxpy unmodified against the real server and
worker: an applet made by `dx-app-wizard` itself builds, runs, comes back with `dx get` and runs again
alike; spec-less applets; folder renames, emptying a project, project settings, finding projects by time;
and the errors the clients print (docs/compat.md)."""

import json
import subprocess
import time
import urllib.request

import pytest

from tests.live import BIN

pytestmark = pytest.mark.live

# dx-app-wizard's questions, answered: name, title, summary, version; one input (reads, a file, not
# optional), no more; one output (count, an int), no more; timeout, language, template, no network,
# no project access, the default instance type.
WIZARD_ANSWERS = (
    "wizcount\nWiz count\nCounts lines\n0.0.1\nreads\nReads\nfile\nn\n\ncount\nCount\nint\n\n48h\nbash\nbasic\nn\nn\n\n"
)
READS = "ACGT\nTTTT\nGGGG\n"


def wizard(dx):
    """Run the real dx-app-wizard in dx's directory; return the app directory it wrote."""
    result = subprocess.run(
        [str(BIN / "dx-app-wizard")],
        cwd=dx.workdir,
        env=dx.env,
        input=WIZARD_ANSWERS,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return dx.workdir / "wizcount"


def finished(dx, job):
    dx("wait", job, timeout=300)
    return json.loads(dx("describe", job, "--json").stdout)


def test_a_wizard_applet_builds_runs_comes_back_with_dx_get_and_runs_again_alike(dx_as):
    dx = dx_as("alice")
    project = dx("new", "project", "from dnanexus", "--region", "aws:us-east-1", "--brief").stdout.strip()
    dx("select", project)
    assert "aws:us-east-1" in dx("describe", f"{project}:").stdout
    (dx.workdir / "reads.txt").write_text(READS)
    uploaded = dx("upload", str(dx.workdir / "reads.txt"), "--wait", "--brief").stdout.strip()
    # A sample sheet as pipelines keep one: a closed record whose details link to the reads; the runs
    # below take their input from it.
    sheet = {"sample_A": {"reads": {"$dnanexus_link": uploaded}}}
    record = dx(
        "new", "record", "samples", "--type", "SampleSheet", "--details", json.dumps(sheet), "--close", "--brief"
    ).stdout.strip()
    assert json.loads(dx("describe", record, "--json").stdout)["links"] == [uploaded]
    details = json.loads(dx("get_details", "samples").stdout)
    reads = details["sample_A"]["reads"]["$dnanexus_link"]
    assert reads == uploaded

    app = wizard(dx)
    spec = json.loads((app / "dxapp.json").read_text())
    assert spec["regionalOptions"] == {
        "aws:us-east-1": {"systemRequirements": {"*": {"instanceType": "mem1_ssd1_v2_x4"}}}
    }
    # The wizard's script downloads the input and reports `count`; it only lacks the counting, which
    # adds an offset kept in resources/ (unpacked at / in the job).
    script = app / "src" / "wizcount.sh"
    code = script.read_text()
    assert 'dx download "$reads" -o reads' in code
    script.write_text(
        code.replace(
            "    dx-jobutil-add-output count",
            "    count=$(( $(wc -l < reads) + $(cat /usr/share/wizcount/offset) ))\n    dx-jobutil-add-output count",
        )
    )
    (app / "resources" / "usr" / "share" / "wizcount").mkdir(parents=True)
    (app / "resources" / "usr" / "share" / "wizcount" / "offset").write_text("100\n")

    applet = json.loads(dx("build", str(app)).stdout)["id"]
    first = finished(dx, dx("run", applet, f"-ireads={reads}", "-y", "--brief").stdout.strip())
    assert first["state"] == "done", first
    assert first["output"] == {"count": 103} and first["instanceType"] == "mem1_ssd1_v2_x4"
    verbose = dx("describe", first["id"], "--verbose").stdout
    assert "Output" in verbose and "count = 103" in verbose and "mem1_ssd1_v2_x4" in verbose

    got = dx.workdir / "got"
    got.mkdir()
    subprocess.run([str(BIN / "dx"), "get", applet], cwd=got, env=dx.env, check=True, capture_output=True, timeout=120)
    rebuilt_spec = json.loads((got / "wizcount" / "dxapp.json").read_text())
    assert rebuilt_spec["name"] == "wizcount" and rebuilt_spec["inputSpec"] == spec["inputSpec"]
    assert rebuilt_spec["regionalOptions"] == spec["regionalOptions"]
    assert (got / "wizcount" / "resources" / "usr" / "share" / "wizcount" / "offset").read_text() == "100\n"
    assert "wc -l" in (got / "wizcount" / "src" / "code.sh").read_text()

    dx("mkdir", "/rebuilt")
    again = json.loads(dx("build", str(got / "wizcount"), "--destination", "/rebuilt/").stdout)["id"]
    assert again != applet
    second = finished(dx, dx("run", again, f"-ireads={reads}", "-y", "--brief").stdout.strip())
    assert second["state"] == "done" and second["output"] == first["output"]
    assert second["instanceType"] == first["instanceType"]


def test_spec_less_applets_pass_any_input_through_and_regions_refuse_as_dnanexus_does(dx_as):
    dx = dx_as("alice")
    project = dx("new", "project", "specless", "--brief").stdout.strip()
    dx("select", project)
    app = dx.workdir / "echo"
    (app / "src").mkdir(parents=True)
    (app / "src" / "echo.sh").write_text('main() {\n  dx-jobutil-add-output echoed "got $number" --class=string\n}\n')
    run_spec = {"interpreter": "bash", "file": "src/echo.sh", "distribution": "Ubuntu", "release": "20.04"}
    (app / "dxapp.json").write_text(json.dumps({"name": "echo", "runSpec": {**run_spec, "version": "0"}}))
    applet = json.loads(dx("build", str(app)).stdout)["id"]
    described = json.loads(dx("describe", applet, "--json").stdout)
    assert "inputSpec" not in described and "outputSpec" not in described
    job = finished(dx, dx("run", applet, "-inumber=32", "-y", "--brief").stdout.strip())
    assert job["input"] == {"number": 32} and job["output"] == {"echoed": "got 32"}

    # A dxapp.json for another region only: the client refuses it before /applet/new.
    spec = json.loads((app / "dxapp.json").read_text())
    spec["regionalOptions"] = {"azure:westus": {}}
    (app / "dxapp.json").write_text(json.dumps(spec))
    refused = dx("build", str(app), "-f", check=False)
    assert refused.returncode != 0
    assert 'destination project is in region aws:us-east-1 but "regionalOptions" do not contain' in refused.stderr

    refused = dx("new", "project", "elsewhere", "--region", "aws:eu-central-1", check=False)
    assert refused.returncode != 0 and "aws:eu-central-1" in refused.stderr and "InvalidInput" in refused.stderr


def test_everyday_commands_on_folders_and_project_settings(dx_as, live):
    dx = dx_as("alice")
    before = int(time.time() * 1000) - 1
    project = dx("new", "project", "everyday", "--brief").stdout.strip()
    dx("select", project)
    dx("mkdir", "-p", "/old/inner")
    (dx.workdir / "a.txt").write_text("a\n")
    dx("upload", str(dx.workdir / "a.txt"), "--path", "/old/inner/", "--wait", "--brief")

    dx("mv", "/old", "/new_name")
    assert dx("ls", "/").stdout.split() == ["new_name/"]
    assert "a.txt" in dx("ls", "/new_name/inner").stdout
    missing = dx("ls", "/old", check=False)
    assert missing.returncode != 0

    dx("update", "project", project, "--download-restricted", "true", "--containsPHI", "true", "--brief")
    shown = dx("describe", f"{project}:").stdout
    assert "Contains PHI" in shown and "true" in shown.split("Contains PHI")[1].splitlines()[0]
    described = json.loads(dx("describe", f"{project}:", "--json").stdout)
    assert described["downloadRestricted"] is True and described["containsPHI"] is True

    found = dx("find", "projects", "--created-after", str(before), "--brief").stdout.split()
    assert project in found
    assert project not in dx("find", "projects", "--created-before", str(before), "--brief").stdout.split()
    assert project in dx("find", "projects", "--phi", "true", "--brief").stdout.split()

    dx("rm", "-r", "-f", "/")
    assert dx("ls", "/").stdout.strip() == ""
    dx("mkdir", "/again")
    assert dx("ls", "/").stdout.split() == ["again/"]

    # Greetings, headers and nosniff, as dxpy and a browser see them.
    greeted = subprocess.run(
        [
            str(BIN / "python"),
            "-c",
            "import dxpy, json; print(json.dumps(dxpy.api.system_greet({'client': 'dxclient'})))",
        ],
        env=dx.env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert json.loads(greeted.stdout) == {"messages": [], "update": {"available": False}}
    request = urllib.request.Request(live.url + "/system/headers", data=b"{}", method="POST")
    with urllib.request.urlopen(request, timeout=30) as response:
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert "Host" in json.loads(response.read())["headers"]
