"""DNAnexus habits through the API: regions, optional specs, emptying a project, folder renames, project
settings, finding projects by time, and the error contract (docs/compat.md)."""

import pytest
from django.core.management import call_command
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from projects.models import Container, DataObject, Placement

from .api_helpers import assert_error, build_world, content, get

WIZARD_REGIONAL = {"aws:us-east-1": {"systemRequirements": {"*": {"instanceType": "mem1_ssd1_v2_x4"}}}}
BASH = {"interpreter": "bash", "code": "main() { echo hi; }", "distribution": "Ubuntu", "release": "20.04"}

# Downloads stream from an async iterator, which the test client consumes synchronously.
pytestmark = pytest.mark.filterwarnings("ignore:StreamingHttpResponse must consume asynchronous iterators")


@pytest.fixture
def world(alice):
    return build_world(alice)


def applet(project, **extra):
    return {"project": project, "name": "wiz", "runSpec": dict(BASH), **extra}


# Regions ------------------------------------------------------------------------------------


def test_projects_are_in_the_deployments_region_unless_they_name_another_it_has(alice, settings):
    project = alice.ok("/project/new", {"name": "p"})["id"]
    assert alice.ok(f"/{project}/describe", {"fields": {"region": True}}) == {"id": project, "region": "aws:us-east-1"}
    settings.DXWEB_REGIONS = ["aws:us-east-1", "azure:westus"]
    other = alice.ok("/project/new", {"name": "q", "region": "azure:westus"})["id"]
    assert alice.ok(f"/{other}/describe")["region"] == "azure:westus"
    found = alice.ok("/system/findProjects", {"region": "azure:westus"})["results"]
    assert [r["id"] for r in found] == [other]


def test_a_region_the_deployment_does_not_have_is_refused_and_nothing_is_made(alice):
    status, reply = alice.call("/project/new", {"name": "p", "region": "aws:eu-central-1"})
    assert_error((status, reply), 422, "InvalidInput")
    assert "aws:eu-central-1" in reply["error"]["message"]
    assert not Container.objects.filter(name="p").exists()


def test_the_region_setting_names_the_default(alice, settings):
    settings.DXWEB_REGION, settings.DXWEB_REGIONS = "local", ["local"]
    project = alice.ok("/project/new", {"name": "p"})["id"]
    assert alice.ok(f"/{project}/describe")["region"] == "local"


def test_the_migration_moves_local_projects_to_the_default_region(alice, transactional_db):
    project = alice.ok("/project/new", {"name": "p"})["id"]
    Container.objects.filter(pk=project).update(region="local")
    executor = MigrationExecutor(connection)
    executor.migrate([("projects", "0005_object_created_by_job")])
    try:
        executor = MigrationExecutor(connection)
        executor.loader.build_graph()
        executor.migrate([("projects", "0006_region_and_project_flags")])
    finally:
        call_command("migrate", verbosity=0)
    assert Container.objects.get(pk=project).region == "aws:us-east-1"


def test_regional_options_for_the_projects_region_are_merged_into_the_run_spec(alice, project):
    regional = {"aws:us-east-1": {**WIZARD_REGIONAL["aws:us-east-1"]}, "azure:westus": {}}
    applet_id = alice.ok("/applet/new", applet(project, regionalOptions=regional))["id"]
    run_spec = alice.ok(f"/{applet_id}/describe")["runSpec"]
    assert run_spec["systemRequirements"] == {"*": {"instanceType": "mem1_ssd1_v2_x4"}}
    assert run_spec["systemRequirementsByRegion"] == {"aws:us-east-1": {"*": {"instanceType": "mem1_ssd1_v2_x4"}}}
    assert run_spec["bundledDependsByRegion"] == {"aws:us-east-1": []}


def test_regional_resources_become_a_bundled_dependency(alice, project, world):
    body = applet(project, regionalOptions={"aws:us-east-1": {"resources": world.closed}})
    run_spec = alice.ok(f"/{alice.ok('/applet/new', body)['id']}/describe")["runSpec"]
    assert run_spec["bundledDepends"] == [{"name": "resources.tar.gz", "id": {"$dnanexus_link": world.closed}}]
    assert run_spec["bundledDependsByRegion"]["aws:us-east-1"] == run_spec["bundledDepends"]


def test_regional_options_without_the_projects_region_are_refused_with_dnanexuss_message(alice, project):
    status, reply = alice.call("/applet/new", applet(project, regionalOptions={"azure:westus": {}}))
    assert_error((status, reply), 422, "InvalidInput")
    assert reply["error"]["message"].startswith(
        'destination project is in region aws:us-east-1 but "regionalOptions" do not contain this region'
    )
    assert not DataObject.objects.filter(cls="applet").exists()


@pytest.mark.parametrize("regional", [["aws:us-east-1"], {"aws:us-east-1": 3}])
def test_malformed_regional_options_are_refused(alice, project, regional):
    assert_error(alice.call("/applet/new", applet(project, regionalOptions=regional)), 422, "InvalidInput")


# Optional specs ---------------------------------------------------------------------------


def test_an_applet_without_specs_describes_without_them_and_takes_any_input(alice, project):
    applet_id = alice.ok("/applet/new", applet(project))["id"]
    described = alice.ok(f"/{applet_id}/describe")
    assert "inputSpec" not in described and "outputSpec" not in described
    assert "inputSpec" not in alice.ok(f"/{applet_id}/get")
    job = alice.ok(f"/{applet_id}/run", {"project": project, "input": {"number": 32, "who": "moon"}})["id"]
    assert alice.ok(f"/{job}/describe")["input"] == {"number": 32, "who": "moon"}


def test_null_specs_are_as_absent_and_given_specs_are_still_checked(alice, project):
    applet_id = alice.ok("/applet/new", applet(project, inputSpec=None, outputSpec=None))["id"]
    assert "inputSpec" not in alice.ok(f"/{applet_id}/describe")
    bad = applet(project, inputSpec=[{"name": "n", "class": "integer"}])
    assert_error(alice.call("/applet/new", bad), 422, "InvalidInput")
    typed = alice.ok("/applet/new", applet(project, inputSpec=[{"name": "n", "class": "int"}], outputSpec=[]))["id"]
    assert alice.ok(f"/{typed}/describe")["outputSpec"] == []
    assert_error(alice.call(f"/{typed}/run", {"project": project, "input": {"m": 1}}), 422, "InvalidInput")


def test_applet_get_answers_what_dx_get_writes_into_dxapp_json(alice, project):
    body = applet(project, title="T", types=["x"], tags=["t"], properties={"k": "v"}, details={"d": 1})
    got = alice.ok(f"/{alice.ok('/applet/new', body)['id']}/get")
    assert {k: got[k] for k in ("name", "title", "types", "tags", "properties", "details")} == {
        "name": "wiz",
        "title": "T",
        "types": ["x"],
        "tags": ["t"],
        "properties": {"k": "v"},
        "details": {"d": 1},
    }


def test_a_users_and_an_orgs_describe_name_their_permitted_regions(alice):
    me = alice.ok("/user-alice/describe")
    assert me["billTo"] == "user-alice" and me["permittedRegions"] == ["aws:us-east-1"]
    alice.ok("/org/new", {"handle": "lab"})
    assert alice.ok("/org-lab/describe")["permittedRegions"] == ["aws:us-east-1"]


# Folders ---------------------------------------------------------------------------------


def test_removing_the_root_folder_with_recurse_empties_the_project_and_keeps_the_root(alice, world):
    alice.ok(f"/{world.project}/newFolder", {"folder": "/data/deep/er", "parents": True})
    reply = alice.ok(f"/{world.project}/removeFolder", {"folder": "/", "recurse": True, "partial": True})
    assert reply["completed"] is True
    assert alice.ok(f"/{world.project}/listFolder", {"includeHidden": True}) == {"folders": [], "objects": []}
    assert not DataObject.objects.filter(pk=world.closed).exists()
    assert alice.ok(f"/{world.project}/describe", {"folders": True})["folders"] == ["/"]
    alice.ok(f"/{world.project}/newFolder", {"folder": "/again"})


def test_the_root_folder_without_recurse_is_still_refused(alice, world):
    assert_error(alice.call(f"/{world.project}/removeFolder", {"folder": "/"}), 422, "InvalidInput")
    assert Placement.objects.filter(container_id=world.project).count() == 3


def test_emptying_a_project_needs_contribute(alice, bob, world):
    alice.ok(f"/{world.project}/invite", {"invitee": "user-bob", "level": "UPLOAD"})
    body = {"folder": "/", "recurse": True}
    assert_error(bob.call(f"/{world.project}/removeFolder", body), 403, "PermissionDenied")
    assert Placement.objects.filter(container_id=world.project).count() == 3


def test_rename_folder_takes_the_new_path_dx_mv_sends(alice, world):
    alice.ok(f"/{world.project}/newFolder", {"folder": "/data/sub"})
    alice.ok(f"/{world.project}/renameFolder", {"folder": "/data", "newpath": "/renamed"})
    listing = alice.ok(f"/{world.project}/listFolder", {"folder": "/renamed"})
    assert listing["folders"] == ["/renamed/sub"] and [o["id"] for o in listing["objects"]] == [world.inside]
    alice.ok(f"/{world.project}/renameFolder", {"folder": "/renamed", "name": "data"})
    assert "/data" in alice.ok(f"/{world.project}/listFolder")["folders"]


@pytest.mark.parametrize(
    "body, status",
    [
        ({"folder": "/data"}, 422),
        ({"folder": "/data", "newpath": "/nowhere/x"}, 404),
        ({"folder": "/data", "newpath": "/data/inner"}, 422),
        ({"folder": "/", "newpath": "/x"}, 422),
        ({"folder": "/data", "newpath": "relative"}, 422),
    ],
)
def test_bad_folder_renames_are_refused(alice, world, body, status):
    assert_error(alice.call(f"/{world.project}/renameFolder", body), status)
    assert "/data" in alice.ok(f"/{world.project}/listFolder")["folders"]


def test_a_missing_folder_answers_as_dnanexus_does(alice, world):
    status, reply = alice.call(f"/{world.project}/listFolder", {"folder": "/nope"})
    assert_error((status, reply), 404, "ResourceNotFound")
    assert reply["error"]["message"] == f"The specified folder could not be found in {world.project}"
    assert reply["error"]["details"] == {"folder": "/nope"}


def test_cloning_a_folder_onto_an_existing_folder_fails_and_copies_nothing(alice, world):
    other = alice.ok("/project/new", {"name": "other"})["id"]
    alice.ok(f"/{other}/newFolder", {"folder": "/data"})
    status, reply = alice.call(f"/{world.project}/clone", {"project": other, "folders": ["/data"], "destination": "/"})
    assert_error((status, reply), 422, "InvalidInput")
    assert "already exists" in reply["error"]["message"]
    assert not Placement.objects.filter(container_id=other).exists()
    alice.ok(f"/{world.project}/clone", {"project": other, "folders": ["/data"], "destination": "/data"})
    assert Placement.objects.get(container_id=other).folder == "/data/data"


# Project settings and finding projects -------------------------------------------------------

FLAGS = ("protected", "restricted", "downloadRestricted", "containsPHI", "databaseUIViewOnly")


def test_project_settings_are_described_false_then_set_by_administer(alice, world):
    described = alice.ok(f"/{world.project}/describe")
    assert all(described[flag] is False for flag in (*FLAGS, "externalUploadRestricted"))
    alice.ok(f"/{world.project}/update", {flag: True for flag in FLAGS})
    described = alice.ok(f"/{world.project}/describe")
    assert all(described[flag] is True for flag in FLAGS)
    alice.ok(f"/{world.project}/update", {"downloadRestricted": False})
    assert alice.ok(f"/{world.project}/describe")["downloadRestricted"] is False
    assert_error(alice.call(f"/{world.project}/update", {"containsPHI": False}), 422, "InvalidInput")
    assert_error(alice.call(f"/{world.project}/update", {"protected": "yes"}), 422, "InvalidInput")


def test_project_settings_are_refused_to_contributors_who_may_still_rename(alice, bob, world):
    alice.ok(f"/{world.project}/invite", {"invitee": "user-bob", "level": "CONTRIBUTE"})
    assert_error(bob.call(f"/{world.project}/update", {"downloadRestricted": True}), 403, "PermissionDenied")
    assert alice.ok(f"/{world.project}/describe")["downloadRestricted"] is False
    bob.ok(f"/{world.project}/update", {"name": "renamed"})


def test_new_project_takes_settings_and_find_projects_filters_by_them(alice):
    phi = alice.ok("/project/new", {"name": "phi", "containsPHI": True, "databaseUIViewOnly": True})["id"]
    plain = alice.ok("/project/new", {"name": "plain"})["id"]
    assert alice.ok(f"/{phi}/describe")["databaseUIViewOnly"] is True
    ids = [r["id"] for r in alice.ok("/system/findProjects", {"containsPHI": True})["results"]]
    assert ids == [phi]
    ids = [r["id"] for r in alice.ok("/system/findProjects", {"containsPHI": False})["results"]]
    assert ids == [plain]


def test_find_projects_by_created_and_modified(alice):
    ids = [alice.ok("/project/new", {"name": f"p{i}"})["id"] for i in range(3)]
    for i, project in enumerate(ids):
        Container.objects.filter(pk=project).update(created=1000 * (i + 1), modified=5000 * (i + 1))

    def found(query):
        return sorted(r["id"] for r in alice.ok("/system/findProjects", query)["results"])

    assert found({"created": {"after": 2000}}) == sorted(ids[1:])
    assert found({"created": {"before": 2000}}) == sorted(ids[:2])
    assert found({"created": {"after": 1500, "before": 2500}}) == [ids[1]]
    assert found({"modified": {"after": 10000}}) == sorted(ids[1:])
    for bad in ({"created": 3}, {"created": {"since": 1}}, {"created": {"after": "yesterday"}}):
        assert_error(alice.call("/system/findProjects", bad), 422, "InvalidInput")


# The error contract ---------------------------------------------------------------------------


def test_a_download_url_asked_with_a_project_the_file_is_not_in_is_not_found(alice, world):
    other = alice.ok("/project/new", {"name": "other"})["id"]
    status, reply = alice.call(f"/{world.closed}/download", {"project": other})
    assert_error((status, reply), 404, "ResourceNotFound")
    url = alice.ok(f"/{world.closed}/download", {"project": world.project})["url"]
    assert get(url).status_code == 200 and content(get(url)) == b""


def test_an_upload_to_a_closed_file_is_not_in_the_open_state(alice, world):
    status, reply = alice.call(f"/{world.closed}/upload", {"index": 1})
    assert_error((status, reply), 422, "InvalidState")
    assert reply["error"]["message"].startswith(f"{world.closed} is not in the open state")


def test_an_unknown_token_answers_invalid_authentication(anonymous):
    anonymous.token = "no-such-token"
    status, reply = anonymous.call("/system/whoami")
    assert_error((status, reply), 401, "InvalidAuthentication")
    assert reply["error"]["message"] == "The token could not be found"


def test_invites_and_uninvites_name_the_input_key_in_their_errors(alice, world):
    status, reply = alice.call(f"/{world.project}/invite", {"invitee": "user-nobody", "level": "VIEW"})
    assert_error((status, reply), 422, "InvalidInput")
    assert reply["error"]["message"].startswith('Expected key "invitee" of input')
    status, reply = alice.call(f"/{world.project}/invite", {"invitee": "user-alice", "level": "OWNER"})
    assert reply["error"]["message"].startswith('Expected key "level" of input')
    status, reply = alice.call(f"/{world.project}/decreasePermissions", {"user-alice": "OWNER"})
    assert_error((status, reply), 422, "InvalidInput")
    assert reply["error"]["message"].startswith('Expected key "user-alice" of input')


def test_cloning_into_a_project_of_another_region_is_refused_as_dnanexus_does(alice, world, settings):
    settings.DXWEB_REGIONS = ["aws:us-east-1", "azure:westus"]
    other = alice.ok("/project/new", {"name": "other", "region": "azure:westus"})["id"]
    status, reply = alice.call(f"/{world.project}/clone", {"project": other, "objects": [world.closed]})
    assert_error((status, reply), 422, "InvalidInput")
    assert reply["error"]["message"] == "Cannot clone into a project in a different region"
    assert not Placement.objects.filter(container_id=other).exists()


@pytest.mark.parametrize(
    "method, body",
    [
        ("removeFolder", {"folder": "/", "recurse": True}),
        ("renameFolder", {"folder": "/data", "newpath": "/x"}),
        ("update", {"downloadRestricted": True}),
    ],
)
def test_outsiders_and_anonymous_callers_change_nothing(alice, bob, anonymous, world, method, body):
    assert_error(bob.call(f"/{world.project}/{method}", body), 404, "ResourceNotFound")
    assert_error(anonymous.call(f"/{world.project}/{method}", body), 401, "InvalidAuthentication")
    described = alice.ok(f"/{world.project}/describe", {"folders": True})
    assert described["folders"] == ["/", "/data"] and described["downloadRestricted"] is False
    assert Placement.objects.filter(container_id=world.project).count() == 3
