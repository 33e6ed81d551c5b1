"""The app API through the Django test client: building versions from applets, describing them by ID,
name and alias, publishing, developers, authorized users, tags, installs, findApps, running, and the
bad input that must leave nothing behind."""

import pytest

from jobs import dispatch
from jobs.models import App, AppVersion, Job
from projects.models import Container, Placement
from tests.projects.api_helpers import assert_error

BASH = {"interpreter": "bash", "code": 'main() { dx-jobutil-add-output greeting "hi $who"; }'}
INPUT = [{"name": "who", "class": "string"}]
OUTPUT = [{"name": "greeting", "class": "string"}]


@pytest.fixture(autouse=True)
def no_workers(monkeypatch):
    monkeypatch.setattr(dispatch, "run_job", lambda job_id: None)


def make_applet(client, project, name="hello"):
    body = {"project": project, "name": name, "inputSpec": INPUT, "outputSpec": OUTPUT, "runSpec": BASH}
    return client.ok("/applet/new", body)["id"]


def app_body(applet, name="hello", version="1.0.0", **extra):
    return {"name": name, "version": version, "regionalOptions": {"aws:us-east-1": {"applet": applet}}, **extra}


def build(client, project, name="hello", version="1.0.0", **extra):
    return client.ok("/app/new", app_body(make_applet(client, project, name), name, version, **extra))["id"]


def test_new_describe_by_id_name_and_alias(alice, project):
    app_id = build(alice, project, title="Hello", summary="Says hi", details={"whatsNew": "first"})
    described = alice.ok(f"/{app_id}/describe")
    assert described["class"] == "app" and described["name"] == "hello" and described["version"] == "1.0.0"
    assert described["createdBy"] == "user-alice" and described["isDeveloperFor"] is True
    assert "published" not in described  # unpublished: absent, never null
    assert described["inputSpec"] == INPUT and described["runSpec"]["interpreter"] == "bash"
    assert described["title"] == "Hello" and described["details"] == {"whatsNew": "first"}
    assert described["authorizedUsers"] == [] and described["installed"] is False and described["deleted"] is False
    assert Container.objects.get(pk=described["resources"]).kind == Container.WORKSPACE
    assert alice.ok("/app-hello/1.0.0/describe")["id"] == app_id
    # No default yet: the developer's newest version.
    assert alice.ok("/app-hello/describe")["id"] == app_id
    alice.ok(f"/{app_id}/addTags", {"tags": ["default"]})
    assert alice.ok("/app-hello/default/describe")["aliases"] == ["1.0.0", "default"]
    assert alice.ok("/app-hello/describe", {"fields": {"isDeveloperFor": True, "version": True}}) == {
        "id": app_id,
        "isDeveloperFor": True,
        "version": "1.0.0",
    }


def test_the_version_outlives_the_project_it_was_built_in(alice, project):
    app_id = build(alice, project)
    alice.ok(f"/{project}/destroy", {})
    other = alice.ok("/project/new", {"name": "runs"})["id"]
    alice.ok(f"/{app_id}/publish", {"makeDefault": True})
    job = alice.ok(f"/{app_id}/run", {"project": other, "input": {"who": "you"}})["id"]
    described = alice.ok(f"/{job}/describe")
    assert described["app"] == app_id and "applet" not in described
    assert described["executableName"] == "hello" and described["project"] == other
    assert Job.objects.get(pk=job).spec["runSpec"]["code"] == BASH["code"]


def test_publish_moves_default_and_twice_is_invalid_state(alice, project):
    first = build(alice, project)
    alice.ok(f"/{first}/publish", {"makeDefault": True})
    published = alice.ok(f"/{first}/describe")["published"]
    assert isinstance(published, int)
    assert_error(alice.call(f"/{first}/publish", {"makeDefault": True}), 422, "InvalidState")
    assert_error(alice.call(f"/{first}/update", {"title": "changed"}), 422, "InvalidState")
    second = build(alice, project, version="1.1.0")
    alice.ok(f"/{second}/publish", {"makeDefault": False})
    assert alice.ok("/app-hello/describe")["id"] == first
    third = build(alice, project, version="2.0.0")
    alice.ok(f"/{third}/publish", {"makeDefault": True})
    assert alice.ok("/app-hello/describe")["id"] == third
    assert alice.ok(f"/{first}/describe")["aliases"] == ["1.0.0"]


def test_update_of_an_unpublished_version(alice, project):
    app_id = build(alice, project)
    applet = make_applet(alice, project, "other")
    alice.ok("/app-hello/1.0.0/update", app_body(applet, title="Again"))
    described = alice.ok(f"/{app_id}/describe")
    assert described["title"] == "Again" and described["applet"] == applet


def test_bad_input_is_refused_and_leaves_nothing(alice, bob, project):
    build(alice, project)
    applet = make_applet(alice, project, "x")
    counts = (App.objects.count(), AppVersion.objects.count(), Container.objects.count())
    conflict = alice.call("/app/new", app_body(applet))
    assert_error(conflict, 422, "InvalidInput")
    assert conflict[1]["error"]["message"] == "Specified name and version conflict with an existing alias"
    for version in ("1.0", "v1.0.0", "1.0.0.0", "01.0.0", "", None):
        assert_error(alice.call("/app/new", app_body(applet, version=version)), 422, "InvalidInput")
    for name in ("", "a b", "x/y", "n" * 129):
        assert_error(alice.call("/app/new", app_body(applet, name=name)), 422, "InvalidInput")
    assert_error(alice.call("/app/new", {"name": "n", "version": "1.0.0"}), 422, "InvalidInput")
    # A name taken by another developer.
    bob_project = bob.ok("/project/new", {"name": "bob's"})["id"]
    bob_applet = make_applet(bob, bob_project)
    assert_error(bob.call("/app/new", app_body(bob_applet, version="9.0.0")), 403, "PermissionDenied")
    # An applet the caller cannot see.
    assert_error(bob.call("/app/new", app_body(applet, name="mine")), 404, "ResourceNotFound")
    assert (App.objects.count(), AppVersion.objects.count(), Container.objects.count()) == (
        counts[0],
        counts[1],
        counts[2] + 1,  # bob's project
    )


def test_unpublished_versions_are_the_developers_alone(alice, bob, project):
    app_id = build(alice, project)
    alice.ok(f"/{app_id}/addAuthorizedUsers", {"authorizedUsers": ["user-bob"]})
    bob_project = bob.ok("/project/new", {"name": "bob's"})["id"]
    for path in (f"/{app_id}/describe", "/app-hello/describe", "/app-hello/1.0.0/describe"):
        assert_error(bob.call(path), 404, "ResourceNotFound")
    assert_error(bob.call(f"/{app_id}/run", {"project": bob_project}), 404, "ResourceNotFound")
    assert not Job.objects.exists()
    alice.ok(f"/{app_id}/publish", {"makeDefault": True})
    assert "code" not in bob.ok("/app-hello/describe")["runSpec"]  # the developers' (unless open source)
    assert alice.ok("/app-hello/describe")["runSpec"]["code"] == BASH["code"]
    assert alice.ok("/app-hello/describe")["billTo"] == "user-alice"
    job = bob.ok("/app-hello/default/run", {"project": bob_project, "input": {"who": "bob"}})["id"]
    assert Job.objects.get(pk=job).launched_by == bob.user
    assert bob.ok("/app-hello/describe")["isDeveloperFor"] is False
    # Authorized users run; only developers change.
    assert_error(bob.call(f"/{app_id}/addTags", {"tags": ["mine"]}), 403, "PermissionDenied")
    assert_error(bob.call(f"/{app_id}/addDevelopers", {"developers": ["user-bob"]}), 403, "PermissionDenied")


def test_developers_authorized_users_categories_and_installs(alice, bob, charlie, project):
    app_id = build(alice, project, categories=["Reads"])
    assert alice.ok(f"/{app_id}/listCategories") == {"categories": ["Reads"]}
    alice.ok(f"/{app_id}/addCategories", {"categories": ["QC"]})
    alice.ok(f"/{app_id}/removeCategories", {"categories": ["Reads"]})
    assert alice.ok(f"/{app_id}/listCategories") == {"categories": ["QC"]}
    alice.ok(f"/{app_id}/addDevelopers", {"developers": ["user-bob"]})
    assert alice.ok(f"/{app_id}/listDevelopers") == {"developers": ["user-alice", "user-bob"]}
    assert bob.ok(f"/{app_id}/describe")["isDeveloperFor"] is True  # developers see unpublished versions
    bob.ok(f"/{app_id}/removeDevelopers", {"developers": ["user-alice"]})
    assert_error(bob.call(f"/{app_id}/removeDevelopers", {"developers": ["user-bob"]}), 422, "InvalidInput")
    assert_error(alice.call(f"/{app_id}/describe"), 404, "ResourceNotFound")
    bob.ok(f"/{app_id}/publish", {"makeDefault": True})
    assert_error(charlie.call("/app-hello/describe"), 404, "ResourceNotFound")
    bob.ok(f"/{app_id}/addAuthorizedUsers", {"authorizedUsers": ["PUBLIC"]})
    assert charlie.ok("/app-hello/describe")["authorizedUsers"] == ["PUBLIC"]
    assert bob.ok(f"/{app_id}/listAuthorizedUsers") == {"authorizedUsers": ["PUBLIC"]}
    assert_error(bob.call(f"/{app_id}/addAuthorizedUsers", {"authorizedUsers": ["user-nobody"]}), 422)
    charlie.ok("/app-hello/install")
    assert charlie.ok("/app-hello/describe")["installed"] is True
    assert charlie.ok("/user-charlie/describe")["appsInstalled"] == {"hello": app_id}
    assert "appsInstalled" not in alice.ok("/user-charlie/describe")
    charlie.ok(f"/{app_id}/uninstall")
    assert charlie.ok("/user-charlie/describe")["appsInstalled"] == {}
    bob.ok(f"/{app_id}/removeAuthorizedUsers", {"authorizedUsers": ["PUBLIC"]})
    assert_error(charlie.call("/app-hello/describe"), 404, "ResourceNotFound")


def test_org_members_are_authorized_through_their_org(alice, bob, project):
    org = bob.ok("/org/new", {"handle": "lab"})["id"]
    app_id = build(alice, project)
    alice.ok(f"/{app_id}/publish", {"makeDefault": True})
    assert_error(bob.call(f"/{app_id}/describe"), 404, "ResourceNotFound")
    alice.ok(f"/{app_id}/addAuthorizedUsers", {"authorizedUsers": [org]})
    assert bob.ok(f"/{app_id}/describe")["authorizedUsers"] == [org]


def test_delete_and_tags(alice, project):
    first = build(alice, project)
    alice.ok(f"/{first}/publish", {"makeDefault": True})
    second = build(alice, project, version="1.0.1")
    alice.ok(f"/{second}/addTags", {"tags": ["default", "stable"]})
    assert alice.ok(f"/{first}/describe")["aliases"] == ["1.0.0"]
    assert alice.ok("/app-hello/stable/describe")["id"] == second
    assert_error(alice.call(f"/{second}/addTags", {"tags": ["2.0.0"]}), 422, "InvalidInput")
    alice.ok(f"/{second}/removeTags", {"tags": ["stable"]})
    assert_error(alice.call("/app-hello/stable/describe"), 404, "ResourceNotFound")
    alice.ok(f"/{second}/delete")
    described = alice.ok(f"/{second}/describe")
    assert described["deleted"] is True and "inputSpec" not in described
    project2 = alice.ok("/project/new", {"name": "p"})["id"]
    assert_error(alice.call(f"/{second}/run", {"project": project2}), 422, "InvalidState")


def test_find_apps(alice, bob, project):
    first = build(alice, project, title="Hello", billTo="org-x")
    alice.ok(f"/{first}/publish", {"makeDefault": True})
    second = build(alice, project, version="1.1.0")
    other = build(alice, project, name="other", categories=["QC"])
    fields = {"name": True, "version": True, "billTo": True, "title": True, "installed": True}
    found = alice.ok("/system/findApps", {"published": True, "describe": {"fields": fields}, "limit": 100})
    assert [r["id"] for r in found["results"]] == [first]
    assert found["results"][0]["describe"] == {
        "id": first,
        "name": "hello",
        "version": "1.0.0",
        "billTo": "org-x",
        "title": "Hello",
        "installed": False,
    }
    assert found["next"] is None
    every = alice.ok("/system/findApps", {"allVersions": True})["results"]
    assert {r["id"] for r in every} == {first, second, other}
    assert alice.ok("/system/findApps", {"name": "hello", "published": True, "limit": 1})["results"] == [{"id": first}]
    assert [r["id"] for r in alice.ok("/system/findApps", {"name": {"glob": "oth*"}})["results"]] == [other]
    assert [r["id"] for r in alice.ok("/system/findApps", {"category": "QC"})["results"]] == [other]
    assert [r["id"] for r in alice.ok("/system/findApps", {"published": False})["results"]] == [second, other]
    assert len(alice.ok("/system/findApps", {"developer": "user-alice", "allVersions": True})["results"]) == 3
    assert alice.ok("/system/findApps", {"developer": "user-bob"})["results"] == []
    assert alice.ok("/system/findApps", {"createdBy": "user-alice", "billTo": "org-x"})["results"] == [{"id": first}]
    assert alice.ok("/system/findApps", {"developer": "org-nobody"})["results"] == []
    page = alice.ok("/system/findApps", {"allVersions": True, "limit": 2})
    rest = alice.ok("/system/findApps", {"allVersions": True, "limit": 2, "starting": page["next"]})
    assert len(page["results"]) == 2 and rest["next"] is None
    assert {r["id"] for r in page["results"] + rest["results"]} == {first, second, other}
    assert bob.ok("/system/findApps", {})["results"] == []  # not authorized
    assert_error(alice.call("/system/findApps", {"name": 3}), 422, "InvalidInput")
    assert_error(alice.call("/system/findApps", {"starting": "app-nope"}), 422, "InvalidInput")
    for bad in ({"created": {"after": "yesterday"}}, {"modified": 5}, {"allVersions": "yes"}, {"describe": 3}):
        assert_error(alice.call("/system/findApps", bad), 422, "InvalidInput")
    for bad in ({"tags": "default"}, {"tags": [3]}, {"tags": ["x" * 300]}):
        assert_error(alice.call(f"/{first}/addTags", bad), 422, "InvalidInput")
    for path, bad in (("addDevelopers", {"developers": "user-bob"}), ("addAuthorizedUsers", {"authorizedUsers": [1]})):
        assert_error(alice.call(f"/{first}/{path}", bad), 422, "InvalidInput")


def test_a_job_of_an_app_sees_its_resources(alice, project):
    upload = alice.ok("/file/new", {"project": project, "name": "resources.tar.gz"})["id"]
    alice.ok(f"/{upload}/close")
    runspec = {**BASH, "bundledDepends": [{"name": "resources.tar.gz", "id": {"$dnanexus_link": upload}}]}
    applet = alice.ok(
        "/applet/new", {"project": project, "name": "r", "runSpec": runspec, "inputSpec": INPUT, "outputSpec": OUTPUT}
    )["id"]
    app_id = alice.ok("/app/new", app_body(applet, name="withres"))["id"]
    resources = alice.ok(f"/{app_id}/describe")["resources"]
    assert set(Placement.objects.filter(container_id=resources).values_list("obj_id", flat=True)) == {applet, upload}
    alice.ok(f"/{project}/destroy", {})
    other = alice.ok("/project/new", {"name": "runs"})["id"]
    job = Job.objects.get(pk=alice.ok(f"/{app_id}/run", {"project": other, "input": {"who": "x"}})["id"])
    assert Placement.objects.filter(container_id=job.workspace_id, obj_id=upload).exists()
    from jobs import actions
    from jobs.execution import runner

    assert actions.app_resources(job) == resources
    assert runner.job_environment(job, "token")["DX_RESOURCES_ID"] == resources


def test_an_app_as_a_workflow_stage(alice, bob, project):
    app_id = build(alice, project)
    alice.ok(f"/{app_id}/publish", {"makeDefault": True})
    workflow = alice.ok("/workflow/new", {"project": project, "name": "w"})["id"]
    stage = alice.ok(f"/{workflow}/addStage", {"executable": "app-hello", "input": {"who": "stage"}, "editVersion": 0})[
        "stage"
    ]
    alice.ok(f"/{workflow}/addStage", {"executable": app_id, "id": "again", "editVersion": 1})
    described = alice.ok(f"/{workflow}/describe")
    assert [s["executable"] for s in described["stages"]] == [app_id, app_id]
    assert_error(
        alice.call(f"/{workflow}/addStage", {"executable": "app-nothing", "editVersion": 2}), 404, "ResourceNotFound"
    )
    alice.ok(f"/{workflow}/close")
    analysis = alice.ok(f"/{workflow}/run", {"project": project, "input": {"again.who": "two"}})["id"]
    jobs = {j.stage: j for j in Job.objects.filter(analysis_id=analysis)}
    assert jobs[stage].executable == app_id and jobs[stage].input == {"who": "stage"}
    assert alice.ok(f"/{jobs['again'].id}/describe")["app"] == app_id
    # Someone who may not run the app may not run the workflow either (once they can see it).
    alice.ok(f"/{project}/invite", {"invitee": "user-bob", "level": "CONTRIBUTE"})
    assert_error(bob.call(f"/{workflow}/run", {"project": project}), 404, "ResourceNotFound")


def test_an_app_is_in_its_applets_region(alice, project):
    applet = make_applet(alice, project)
    status, error = alice.call(
        "/app/new", {"name": "elsewhere", "version": "1.0.0", "regionalOptions": {"azure:westus": {"applet": applet}}}
    )
    assert status == 422 and "azure:westus" in error["error"]["message"]
    app_id = alice.ok("/app/new", {"name": "here", "version": "1.0.0", "applet": applet})["id"]
    assert list(alice.ok(f"/{app_id}/describe")["regionalOptions"]) == ["aws:us-east-1"]
