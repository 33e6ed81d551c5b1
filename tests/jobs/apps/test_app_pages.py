"""The app pages: the catalog, an app's page, its launch form and its developers' forms, for each of
alice (the app's developer), bob (an authorized user), dana (a member of an authorized org), charlie
(an outsider) and anonymous.

`counter` 1.0.0 is published (bob and org-lab may run it); 2.0.0 is not yet (its developers alone see
it); `secret` 1.0.0 is published with no authorized users (charlie's hidden app).
"""

import re
from html import unescape

import pytest
from django.test import Client

from jobs import actions as job_actions
from jobs.apps import actions
from jobs.models import Job
from projects import actions as project_actions
from projects.accounts import create_user
from projects.models import DataObject, OrgMember
from projects.permissions import Principal

ACTORS = ("anonymous", "charlie", "dana", "bob", "alice")
SPEC = [
    {"name": "n", "class": "int", "default": 3, "help": "How many"},
    {"name": "reads", "class": "file", "optional": True},
]
OUTPUT = [{"name": "total", "class": "int"}]
WHATS_NEW = "* 1.0.0: counts to n\n* 0.9.0: first try"


def make_app(user, project, name, version, **extra):
    """A new (unpublished) app version built from an applet in `project`, as `dx build --app` makes one."""
    applet = job_actions.new_applet(
        user,
        project,
        {
            "name": name,
            "inputSpec": SPEC,
            "outputSpec": OUTPUT,
            "runSpec": {"interpreter": "bash", "code": "main() { :; }"},
        },
    )
    body = {
        "name": name,
        "version": version,
        "title": name.title(),
        "summary": f"The {name} app",
        "inputSpec": SPEC,
        "outputSpec": OUTPUT,
        "runSpec": {"interpreter": "bash"},
        "details": {"whatsNew": WHATS_NEW},
        "regionalOptions": {project.region: {"applet": applet.obj_id}},
        **extra,
    }
    return actions.new_app(Principal.of(user), body)


@pytest.fixture
def world(db):
    users = {handle: create_user(handle) for handle in ACTORS if handle != "anonymous"}
    alice = Principal.of(users["alice"])
    lab = project_actions.create_org(users["alice"], "lab", "The lab")
    project_actions.set_org_member(lab, users["dana"], OrgMember.MEMBER)
    build = project_actions.create_container(users["alice"], "builds")
    # Everyone has a project of their own to run apps in; bob may only view alice's builds.
    own = {h: project_actions.create_container(u, f"{h}'s runs") for h, u in users.items()}
    project_actions.invite(build, "user-bob", "VIEW")
    published = make_app(users["alice"], build, "counter", "1.0.0")
    actions.publish(alice, published)
    actions.add_authorized_users(alice, published, ["user-bob", "org-lab"])
    draft = make_app(users["alice"], build, "counter", "2.0.0")
    secret = make_app(users["alice"], build, "secret", "1.0.0")
    actions.publish(alice, secret)
    reads = project_actions.new_object(users["bob"], own["bob"], "file", name="reads.txt", state=DataObject.CLOSED)
    return {
        "users": users,
        "build": build,
        "own": own,
        "published": published,
        "draft": draft,
        "secret": secret,
        "reads": reads,
    }


def client(world, actor):
    c = Client()
    if actor != "anonymous":
        c.force_login(world["users"][actor])
    return c


def statuses(world, method, path, data=None):
    return {actor: getattr(client(world, actor), method)(path, data or {}).status_code for actor in ACTORS}


def text(response):
    return unescape(re.sub(r"<[^>]+>", " ", response.content.decode()))


# Who may open what ---------------------------------------------------------------------------------

PAGES = {
    # path: status for anonymous, charlie, dana, bob, alice
    "/apps/": (302, 200, 200, 200, 200),
    "/apps/counter/": (302, 404, 200, 200, 200),
    "/apps/counter/1.0.0/": (302, 404, 200, 200, 200),
    "/apps/counter/1.0.0/run/": (302, 404, 200, 200, 200),
    "/apps/counter/2.0.0/": (302, 404, 404, 404, 200),
    "/apps/counter/2.0.0/run/": (302, 404, 404, 404, 200),
    "/apps/secret/": (302, 404, 404, 404, 200),
    "/apps/secret/1.0.0/run/": (302, 404, 404, 404, 200),
    "/apps/nothing/": (302, 404, 404, 404, 404),
    "/apps/counter/9.9.9/": (302, 404, 404, 404, 404),
}


@pytest.mark.parametrize("path", sorted(PAGES))
def test_who_may_open_each_page(world, path):
    got = statuses(world, "get", path)
    assert tuple(got[actor] for actor in ACTORS) == PAGES[path]


def test_anonymous_is_sent_to_log_in(world):
    response = Client().get("/apps/counter/")
    assert response.status_code == 302 and response["Location"] == "/login/?next=/apps/counter/"


def test_a_hidden_app_is_the_same_not_found_as_a_missing_one(world):
    c = client(world, "charlie")
    hidden, missing = c.get("/apps/secret/"), c.get("/apps/nothing/")
    assert hidden.status_code == missing.status_code == 404
    assert text(hidden).replace("secret", "NAME") == text(missing).replace("nothing", "NAME")


# The catalog and the app page ------------------------------------------------------------------------


def catalog_rows(world, actor):
    html = client(world, actor).get("/apps/").content.decode()
    return dict(re.findall(r'<tr data-app="([^"]+)" data-version="([^"]+)">', html)), html


def test_the_catalog_lists_the_apps_each_may_run_with_their_latest_version(world):
    assert catalog_rows(world, "alice")[0] == {"counter": "1.0.0", "secret": "1.0.0"}
    assert catalog_rows(world, "bob")[0] == {"counter": "1.0.0"}
    assert catalog_rows(world, "dana")[0] == {"counter": "1.0.0"}
    rows, html = catalog_rows(world, "charlie")
    assert rows == {} and "No apps you may run yet" in html


def test_a_catalog_row_says_title_summary_developers_and_who_may_run_it(world):
    _, html = catalog_rows(world, "bob")
    row = unescape(re.sub(r"<[^>]+>", " ", html.split('data-app="counter"')[1].split("</tr>")[0]))
    for expected in ("Counter", "The counter app", "1.0.0", "alice", "bob", "lab", "org", "Run"):
        assert expected in row, expected
    assert 'href="/apps/counter/1.0.0/run/"' in html


def test_the_app_page_shows_its_spec_versions_and_change_log(world):
    page = client(world, "bob").get("/apps/counter/")
    html, words = page.content.decode(), text(page)
    assert "Counter" in words and "1.0.0" in words and "default" in words
    assert "How many" in words and "total" in words and "reads" in words
    assert "counts to n" in words and "first try" in words
    assert re.findall(r'<tr data-version="([^"]+)"', html) == ["1.0.0"]
    # Not a developer: no publish, add or remove forms.
    assert 'id="publish"' not in html and "developers-form" not in html and ">Remove<" not in html


def test_a_developer_sees_every_version_and_the_forms(world):
    html = client(world, "alice").get("/apps/counter/2.0.0/").content.decode()
    assert re.findall(r'<tr data-version="([^"]+)"', html) == ["2.0.0", "1.0.0"]
    assert 'id="publish"' in html and 'id="developers-form"' in html and 'id="users-form"' in html
    assert "unpublished" in html


# Launching -------------------------------------------------------------------------------------------


def launch(world, actor, version="1.0.0", **fields):
    data = {"folder": "/", "instance_type": "mem1_ssd1_x2", "priority": "normal", **fields}
    return client(world, actor).post(f"/apps/counter/{version}/run/", data)


def test_the_launch_form_offers_the_projects_the_user_may_launch_in(world):
    html = client(world, "bob").get("/apps/counter/1.0.0/run/").content.decode()
    options = re.findall(r'<option value="(project-[^"]+)"', html)
    assert options == [world["own"]["bob"].pk]  # not alice's builds: bob only views it
    assert 'name="in_n"' in html and 'data-picker="file"' in html and "dx run app-counter/1.0.0" in html


@pytest.mark.parametrize("actor", ["bob", "dana", "alice"])
def test_launching_creates_a_job_in_the_chosen_project_and_opens_it(world, actor):
    project = world["own"][actor]
    response = launch(world, actor, project=project.pk, in_n="7", name="from the catalog")
    assert response.status_code == 302, text(response)[:2000]
    job = Job.objects.get(pk=response["Location"].strip("/").rsplit("/", 1)[1])
    assert response["Location"] == f"/jobs/{job.pk}/"
    assert job.project_id == project.pk and job.name == "from the catalog" and job.original_input == {"n": 7}
    assert job.launched_by.username == actor


def test_a_file_input_is_found_by_name_in_the_chosen_project(world):
    response = launch(world, "bob", project=world["own"]["bob"].pk, in_reads="reads.txt")
    assert response.status_code == 302, text(response)[:2000]
    job = Job.objects.latest("created")
    assert job.original_input["reads"]["$dnanexus_link"]["id"] == world["reads"].obj_id


@pytest.mark.parametrize("project", ["build", "other", "missing"])
def test_a_project_the_user_may_not_launch_in_is_a_form_error(world, project):
    ids = {"build": world["build"].pk, "other": world["own"]["charlie"].pk, "missing": "project-nope"}
    before = Job.objects.count()
    response = launch(world, "bob", project=ids[project])
    assert response.status_code == 422
    assert "You cannot launch jobs in that project" in text(response)
    assert Job.objects.count() == before


def test_bad_input_is_a_form_error_never_a_500(world):
    before = Job.objects.count()
    response = launch(world, "bob", project=world["own"]["bob"].pk, in_n="seven", priority="urgent")
    assert response.status_code == 422
    words = text(response)
    assert "Expected int" in words and "Select a valid choice" in words
    assert Job.objects.count() == before


def test_outsiders_cannot_launch_and_anonymous_is_sent_to_log_in(world):
    before = Job.objects.count()
    assert launch(world, "charlie", project=world["own"]["charlie"].pk).status_code == 404
    assert launch(world, "anonymous").status_code == 302
    assert launch(world, "bob", version="2.0.0", project=world["own"]["bob"].pk).status_code == 404
    assert Job.objects.count() == before


def test_a_developer_may_run_an_unpublished_version(world):
    response = launch(world, "alice", version="2.0.0", project=world["own"]["alice"].pk)
    assert response.status_code == 302


# Developers' forms -----------------------------------------------------------------------------------


def describe(version, user):
    version.refresh_from_db()
    return actions.describe_app(version, Principal.of(user))


def test_a_developer_publishes_a_version_which_becomes_the_default(world):
    response = client(world, "alice").post("/apps/counter/2.0.0/publish/", {"make_default": "on"})
    assert response.status_code == 302 and response["Location"] == "/apps/counter/2.0.0/"
    described = describe(world["draft"], world["users"]["alice"])
    assert described["published"] and "default" in described["aliases"]
    # Publishing twice is a form error, not a 500.
    again = client(world, "alice").post("/apps/counter/2.0.0/publish/", {"make_default": "on"})
    assert again.status_code == 422 and "has already been published" in text(again)


def test_only_developers_may_publish(world):
    got = statuses(world, "post", "/apps/counter/2.0.0/publish/", {"make_default": "on"})
    assert got == {"anonymous": 302, "charlie": 404, "dana": 404, "bob": 404, "alice": 302}


@pytest.mark.parametrize("kind", ["developers", "users"])
def test_non_developers_may_not_change_who_develops_or_runs_an_app(world, kind):
    got = statuses(world, "post", f"/apps/counter/1.0.0/{kind}/", {"action": "add", "ids": "charlie"})
    assert {a: s for a, s in got.items() if a != "alice"} == {"anonymous": 302, "charlie": 404, "dana": 403, "bob": 403}
    assert got["alice"] == 302


def test_a_developer_adds_and_removes_authorized_users_and_public(world):
    alice = client(world, "alice")
    assert client(world, "charlie").get("/apps/counter/").status_code == 404
    response = alice.post("/apps/counter/1.0.0/users/", {"action": "add", "ids": "charlie, PUBLIC"})
    assert response.status_code == 302
    assert {"user-charlie", "PUBLIC"} <= set(describe(world["published"], world["users"]["alice"])["authorizedUsers"])
    assert client(world, "charlie").get("/apps/counter/").status_code == 200
    response = alice.post("/apps/counter/1.0.0/users/", {"action": "remove", "ids": "user-bob"})
    assert response.status_code == 302
    assert "user-bob" not in describe(world["published"], world["users"]["alice"])["authorizedUsers"]


def test_a_developer_adds_a_developer_who_may_then_publish(world):
    alice = client(world, "alice")
    assert alice.post("/apps/counter/1.0.0/developers/", {"action": "add", "ids": "bob"}).status_code == 302
    assert client(world, "bob").post("/apps/counter/2.0.0/publish/", {}).status_code == 302
    assert alice.post("/apps/counter/1.0.0/developers/", {"action": "remove", "ids": "user-bob"}).status_code == 302
    assert (
        client(world, "bob").post("/apps/counter/1.0.0/developers/", {"action": "add", "ids": "bob"}).status_code == 403
    )


@pytest.mark.parametrize(
    "kind,ids,message",
    [
        ("users", "", "This field is required"),
        ("users", "bad name!", "Not a user or org"),
        ("developers", "PUBLIC", "PUBLIC can run an app, not develop it"),
    ],
)
def test_bad_principals_are_form_errors(world, kind, ids, message):
    response = client(world, "alice").post(f"/apps/counter/1.0.0/{kind}/", {"action": "add", "ids": ids})
    assert response.status_code == 422 and message in text(response)


@pytest.mark.parametrize("kind", ["developers", "users"])
@pytest.mark.parametrize("action", ["add", "remove"])
def test_an_unknown_user_or_org_is_a_form_error_and_changes_nothing(world, kind, action):
    before = describe(world["published"], world["users"]["alice"])
    data = {"action": action, "ids": "bob, nobody, org-nolab"}
    response = client(world, "alice").post(f"/apps/counter/1.0.0/{kind}/", data)
    assert response.status_code == 422
    assert "No such user or org: user-nobody, org-nolab" in text(response)
    after = describe(world["published"], world["users"]["alice"])
    assert (after["developers"], after["authorizedUsers"]) == (before["developers"], before["authorizedUsers"])


@pytest.mark.parametrize("action", ["", "grant"])
def test_a_bad_action_is_said_on_the_form(world, action):
    response = client(world, "alice").post("/apps/counter/1.0.0/users/", {"action": action, "ids": "charlie"})
    assert response.status_code == 422 and "Choose whether to add or remove" in text(response)
    assert "user-charlie" not in describe(world["published"], world["users"]["alice"])["authorizedUsers"]


def test_removing_the_last_developer_is_a_form_error(world):
    response = client(world, "alice").post("/apps/counter/1.0.0/developers/", {"action": "remove", "ids": "alice"})
    assert response.status_code == 422 and "must keep at least one developer" in text(response)
    assert describe(world["published"], world["users"]["alice"])["developers"] == ["user-alice"]


def test_without_a_project_to_launch_in_the_form_says_so_and_launches_nothing(world):
    erin = create_user("erin")
    actions.add_authorized_users(Principal.of(world["users"]["alice"]), world["published"], ["PUBLIC"])
    c = Client()
    c.force_login(erin)
    html = c.get("/apps/counter/1.0.0/run/").content.decode()
    assert "No project where you may launch jobs" in html and '<fieldset class="bare stack" disabled>' in html
    before = Job.objects.count()
    response = c.post("/apps/counter/1.0.0/run/", {"project": world["own"]["bob"].pk, "folder": "/"})
    assert response.status_code == 422 and "You cannot launch jobs in that project" in text(response)
    assert Job.objects.count() == before


def test_the_launch_form_starts_from_a_jobs_launch(world):
    response = launch(world, "bob", project=world["own"]["bob"].pk, in_n="7", name="first", tags="a, b")
    job_id = response["Location"].strip("/").rsplit("/", 1)[1]
    html = client(world, "bob").get(f"/apps/counter/1.0.0/run/?from={job_id}").content.decode()
    assert f'<option value="{world["own"]["bob"].pk}" selected>' in html
    assert 'value="7"' in html and 'value="first"' in html and 'value="a, b"' in html
    assert "Starting from" in html and job_id in html
    # Another user's job is not found, as a missing one.
    assert client(world, "dana").get(f"/apps/counter/1.0.0/run/?from={job_id}").status_code == 404


def test_an_app_jobs_page_names_the_app_and_reruns_or_clones_it(world):
    response = launch(world, "bob", project=world["own"]["bob"].pk, in_n="5", name="counted")
    job_id = response["Location"].strip("/").rsplit("/", 1)[1]
    html = client(world, "bob").get(f"/jobs/{job_id}/").content.decode()
    assert "<dt>App</dt>" in html and 'href="/apps/counter/1.0.0/"' in html
    assert f'href="/apps/counter/1.0.0/run/?from={job_id}"' in html  # clone with edits
    rerun = client(world, "bob").post(f"/jobs/{job_id}/rerun/")
    again = Job.objects.exclude(pk=job_id).get(name="counted")
    assert rerun["Location"] == f"/jobs/{again.pk}/"
    assert again.executable == world["published"].pk and again.original_input == {"n": 5}
    # Once bob may no longer run the app, its job's page offers neither, and a rerun says why.
    actions.remove_authorized_users(Principal.of(world["users"]["alice"]), world["published"], ["user-bob"])
    html = client(world, "bob").get(f"/jobs/{job_id}/").content.decode()
    assert "/apps/counter/" not in html
    client(world, "bob").post(f"/jobs/{job_id}/rerun/")
    assert Job.objects.filter(name="counted").count() == 2
