"""Apps with the real clients, unmodified (`dx` and dxpy 0.417.1), against the real server and worker:
`dx build --app` (with --version and --publish), running by name and version, describing, finding,
developers and authorized users, installing, cloning an app's job, and seed 004's DXApp(name=...).run.

The app is tests/jobs/apps/greeter_app: its answer comes from a file of its resources bundle, and it
reports its DX_RESOURCES_ID; the project it was built in is gone by the time it runs.
"""

import json
import subprocess
import textwrap
from pathlib import Path
from types import SimpleNamespace

import pytest

from tests.live import BIN, Dx

pytestmark = pytest.mark.live

SOURCE = Path(__file__).parent / "greeter_app"


@pytest.fixture(scope="module")
def world(live_server_proc, tmp_path_factory):
    """alice builds greeter 1.0.0 (published) and 1.1.0 (not); bob has a project of his own."""
    live = live_server_proc
    users = {h: Dx(live, live.user(h), tmp_path_factory.mktemp(h)) for h in ("alice", "bob", "charlie")}
    alice = users["alice"]
    project = alice("new", "project", "greeter runs", "--brief").stdout.strip()
    alice("select", project)
    published = json.loads(alice("build", "--app", str(SOURCE), "--version", "1.0.0", "--publish").stdout)["id"]
    draft = json.loads(alice("build", "--app", str(SOURCE), "--version", "1.1.0").stdout)["id"]
    bob_project = users["bob"]("new", "project", "bob runs", "--brief").stdout.strip()
    users["bob"]("select", bob_project)
    names = {"project": project, "bob_project": bob_project, "published": published, "draft": draft}
    return SimpleNamespace(live=live, **names, **users)


def run_to_done(dx, *args):
    job = dx("run", *args, "-y", "--brief", "--wait", timeout=300).stdout.strip().splitlines()[-1]
    described = json.loads(dx("describe", job, "--json").stdout)
    assert described["state"] == "done", described
    return described


def test_dx_build_app_describe_and_find(world):
    alice = world.alice
    described = json.loads(alice("describe", "app-greeter", "--json").stdout)
    assert described["id"] == world.published and described["version"] == "1.0.0"
    assert "default" in described["aliases"] and isinstance(described["published"], int)
    assert described["categories"] == ["Examples"] and described["title"] == "Greeter"
    draft = json.loads(alice("describe", "app-greeter/1.1.0", "--json").stdout)
    assert draft["id"] == world.draft and "published" not in draft
    text = alice("describe", "app-greeter").stdout
    assert world.published in text and "greeter" in text
    found = alice("find", "apps").stdout
    assert "greeter" in found and "1.0.0" in found
    unpublished = alice("find", "apps", "--unpublished", "--all").stdout
    assert "1.1.0" in unpublished
    assert world.published in alice("describe", "greeter").stdout  # by bare name: through findApps
    as_json = json.loads(alice("find", "apps", "--json").stdout)
    # The server is shared with other modules' tests, whose apps alice may see too: greeter's versions here.
    greeter = [(r["id"], r["describe"]["version"]) for r in as_json if r["describe"]["name"] == "greeter"]
    assert greeter == [(world.published, "1.0.0")]
    # A name held by another developer cannot be built on.
    taken = world.bob("build", "--app", str(SOURCE), "--version", "5.0.0", check=False)
    assert taken.returncode != 0 and "belongs to other developers" in taken.stderr + taken.stdout
    # A second build of a published version is refused, with autonumbering off.
    again = alice("build", "--app", str(SOURCE), "--version", "1.0.0", "--no-version-autonumbering", check=False)
    assert again.returncode != 0


def test_dx_run_by_name_and_version_with_resources(world):
    alice = world.alice
    done = run_to_done(alice, "app-greeter", "-i", "who=alice")
    assert done["app"] == world.published and done["executableName"] == "greeter"
    resources = json.loads(alice("describe", "app-greeter", "--json").stdout)["resources"]
    assert done["output"] == {"greeting": "Greetings, alice", "resources": resources}
    draft = run_to_done(alice, "app-greeter/1.1.0", "-i", "who=draft")
    assert draft["app"] == world.draft and draft["output"]["greeting"] == "Greetings, draft"
    # dx run --clone of an app's job runs the same app version again.
    clone = alice("run", "--clone", done["id"], "-y", "--brief", "--wait", timeout=300).stdout.strip().splitlines()[-1]
    cloned = json.loads(alice("describe", clone, "--json").stdout)
    assert cloned["state"] == "done" and cloned["app"] == world.published
    assert cloned["output"]["greeting"] == "Greetings, alice" and cloned["name"].endswith("(re-run)")


def test_authorized_users_developers_and_installs(world):
    alice, bob, charlie = world.alice, world.bob, world.charlie
    assert bob("describe", "app-greeter", check=False).returncode != 0
    assert bob("run", "app-greeter", "-y", "--brief", check=False).returncode != 0
    alice("add", "users", "app-greeter", "bob")
    assert "user-bob" in alice("list", "users", "app-greeter").stdout
    done = run_to_done(bob, "app-greeter", "-i", "who=bob")
    assert done["output"]["greeting"] == "Greetings, bob" and done["project"] == world.bob_project
    assert bob("run", "app-greeter/1.1.0", "-y", "--brief", check=False).returncode != 0  # unpublished
    bob("install", "app-greeter")
    assert json.loads(bob("describe", "app-greeter", "--json").stdout)["installed"] is True
    bob("uninstall", "app-greeter")
    assert json.loads(bob("describe", "app-greeter", "--json").stdout)["installed"] is False
    alice("add", "developers", "app-greeter", "charlie")
    assert "user-charlie" in alice("list", "developers", "app-greeter").stdout
    assert json.loads(charlie("describe", "app-greeter/1.1.0", "--json").stdout)["isDeveloperFor"] is True


def test_seed_004_dxapp_by_name(world):
    world.alice("add", "users", "app-greeter", "bob")  # idempotent: the test may run alone
    script = """
        import json, sys
        import dxpy
        job = dxpy.DXApp(name="greeter").run({"who": "seed"}, project=sys.argv[1])
        job.wait_on_done(timeout=240)
        print(json.dumps(job.describe()))
    """
    result = subprocess.run(
        [str(BIN / "python"), "-c", textwrap.dedent(script), world.bob_project],
        env={**world.bob.env, "DX_PROJECT_CONTEXT_ID": world.bob_project},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    described = json.loads(result.stdout.strip().splitlines()[-1])
    assert described["state"] == "done" and described["app"] == world.published
    assert described["output"]["greeting"] == "Greetings, seed"


def test_an_app_as_a_workflow_stage_with_dx(world):
    alice = world.alice
    workflow = alice("new", "workflow", "greeting pipeline", "--brief").stdout.strip()
    stage = alice("add", "stage", workflow, "app-greeter", "-i", "who=pipeline", "--brief").stdout.strip()
    described = json.loads(alice("describe", workflow, "--json").stdout)
    assert [s["executable"] for s in described["stages"]] == [world.published]
    alice("close", workflow)
    analysis = alice("run", workflow, "-y", "--brief", "--wait", timeout=300).stdout.strip().splitlines()[-1]
    done = json.loads(alice("describe", analysis, "--json").stdout)
    assert done["state"] == "done", done
    assert done["output"][f"{stage}.greeting"] == "Greetings, pipeline"
