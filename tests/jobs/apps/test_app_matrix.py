"""Who may call what, for apps: every app route against the developer, an authorized user, a member of an
authorized org, an outsider when PUBLIC is authorized, an outsider, and an anonymous caller. A published
version is seen and run by its authorized users; an unpublished one, and every change, is the
developers' alone. Hidden answers as missing does; a refused call changes nothing."""

import pytest

from jobs import dispatch
from jobs.models import AppAuthorization, AppDeveloper, AppInstall, AppVersion, Job
from projects.models import ApiToken, User
from tests.conftest import ApiClient, make_actor
from tests.projects.api_helpers import assert_error

BASH = {"interpreter": "bash", "code": "main() { true; }"}
CALLERS = ("developer", "authorized", "org_member", "public_outsider", "outsider", "anonymous")
SEE, CHANGE, ANY = "see", "change", "any"

# route -> (path, body, which version ("published", "draft"), what it needs).
ROUTES = {
    "app/new": ("/app/new", lambda w: {"name": "hello", "version": "3.0.0", **w.regional}, None, CHANGE),
    "describe": ("/{published}/describe", lambda w: {}, "published", SEE),
    "describe by name": ("/app-hello/describe", lambda w: {}, "published", SEE),
    "describe by version": ("/app-hello/1.0.0/describe", lambda w: {}, "published", SEE),
    "describe draft": ("/{draft}/describe", lambda w: {}, "draft", SEE),
    "describe draft by version": ("/app-hello/2.0.0/describe", lambda w: {}, "draft", SEE),
    "get": ("/{published}/get", lambda w: {}, "published", SEE),
    "listCategories": ("/{published}/listCategories", lambda w: {}, "published", SEE),
    "listDevelopers": ("/{published}/listDevelopers", lambda w: {}, "published", SEE),
    "listAuthorizedUsers": ("/{published}/listAuthorizedUsers", lambda w: {}, "published", SEE),
    "install": ("/{published}/install", lambda w: {}, "published", SEE),
    "uninstall": ("/{published}/uninstall", lambda w: {}, "published", SEE),
    "run": ("/{published}/run", lambda w: {"project": w.project}, "published", SEE),
    "run by alias": ("/app-hello/default/run", lambda w: {"project": w.project}, "published", SEE),
    "run draft": ("/{draft}/run", lambda w: {"project": w.project}, "draft", SEE),
    "install draft": ("/{draft}/install", lambda w: {}, "draft", SEE),
    "update draft": ("/{draft}/update", lambda w: {"title": "t"}, "draft", CHANGE),
    "publish draft": ("/{draft}/publish", lambda w: {"makeDefault": True}, "draft", CHANGE),
    "addTags": ("/{published}/addTags", lambda w: {"tags": ["stable"]}, "published", CHANGE),
    "removeTags": ("/{published}/removeTags", lambda w: {"tags": ["default"]}, "published", CHANGE),
    "addCategories": ("/{published}/addCategories", lambda w: {"categories": ["QC"]}, "published", CHANGE),
    "removeCategories": ("/{published}/removeCategories", lambda w: {"categories": ["Reads"]}, "published", CHANGE),
    "addDevelopers": ("/{published}/addDevelopers", lambda w: {"developers": [w.caller_id]}, "published", CHANGE),
    "removeDevelopers": (
        "/{published}/removeDevelopers",
        lambda w: {"developers": ["user-erin"]},
        "published",
        CHANGE,
    ),
    "addAuthorizedUsers": (
        "/{published}/addAuthorizedUsers",
        lambda w: {"authorizedUsers": ["PUBLIC"]},
        "published",
        CHANGE,
    ),
    "removeAuthorizedUsers": (
        "/{published}/removeAuthorizedUsers",
        lambda w: {"authorizedUsers": ["user-bob"]},
        "published",
        CHANGE,
    ),
    "delete": ("/{published}/delete", lambda w: {}, "published", CHANGE),
    "delete draft": ("/{draft}/delete", lambda w: {}, "draft", CHANGE),
    "system/findApps": ("/system/findApps", lambda w: {"allVersions": True}, None, ANY),
}


class World:
    pass


def build_world(caller):
    """alice's app "hello" (erin develops it too): 1.0.0 published (default), 2.0.0 not; authorized: bob,
    org-lab (carol), and PUBLIC for the public_outsider case. Return (world, the caller's client)."""
    alice = make_actor("alice")
    w = World()
    project = alice.ok("/project/new", {"name": "built in"})["id"]
    applet = alice.ok("/applet/new", {"project": project, "name": "a", "runSpec": BASH})["id"]
    w.regional = {"regionalOptions": {"aws:us-east-1": {"applet": applet}}}
    w.published = alice.ok("/app/new", {"name": "hello", "version": "1.0.0", "categories": ["Reads"], **w.regional})[
        "id"
    ]
    alice.ok(f"/{w.published}/publish", {"makeDefault": True})
    w.draft = alice.ok("/app/new", {"name": "hello", "version": "2.0.0", **w.regional})["id"]
    bob, carol = make_actor("bob"), make_actor("carol")
    make_actor("erin")
    alice.ok(f"/{w.published}/addDevelopers", {"developers": ["user-erin"]})
    org = alice.ok("/org/new", {"handle": "lab"})["id"]
    alice.ok(f"/{org}/invite", {"invitee": "user-carol", "level": "MEMBER"})
    alice.ok(f"/{w.published}/addAuthorizedUsers", {"authorizedUsers": ["user-bob", org]})
    if caller == "public_outsider":
        alice.ok(f"/{w.published}/addAuthorizedUsers", {"authorizedUsers": ["PUBLIC"]})
    client = {"developer": alice, "authorized": bob, "org_member": carol}.get(caller)
    if caller in ("public_outsider", "outsider"):
        client = make_actor("dave")
    if caller == "anonymous":
        client = ApiClient()
        w.project, w.caller_id = "project-000000000000000000000000", "user-nobody"
    else:
        w.project = client.ok("/project/new", {"name": "runs"})["id"]
        w.caller_id = client.user.dx_id
    return w, client


def expected_status(caller, needs, which):
    if caller == "anonymous":
        return 401
    if caller == "developer" or needs == ANY:
        return 200
    if needs == CHANGE and which is None:  # the name belongs to alice
        return 403
    sees = which == "published" and caller != "outsider"
    if not sees:
        return 404
    return 200 if needs == SEE else 403


def snapshot():
    return (
        list(AppVersion.objects.order_by("pk").values_list("pk", "tags", "published", "deleted", "title")),
        list(AppDeveloper.objects.order_by("pk").values_list("user_id", "org_id")),
        list(AppAuthorization.objects.order_by("pk").values_list("user_id", "org_id", "public")),
        list(AppInstall.objects.order_by("pk").values_list("user_id", "app_id")),
        list(Job.objects.order_by("pk").values_list("pk")),
    )


@pytest.mark.parametrize("caller", CALLERS)
@pytest.mark.parametrize("route", ROUTES)
def test_every_app_route_answers_each_caller_as_they_may(db, monkeypatch, route, caller):
    monkeypatch.setattr(dispatch, "run_job", lambda job_id: None)
    path, body, which, needs = ROUTES[route]
    w, client = build_world(caller)
    before = snapshot()
    status, reply = client.call(path.format(**vars(w)), body(w))
    want = expected_status(caller, needs, which)
    if want == 200:
        assert status == 200, (status, reply)
        if route == "system/findApps":
            seen = {r["id"] for r in reply["results"]}
            expected = {
                "developer": {w.published, w.draft},
                "outsider": set(),
            }.get(caller, {w.published})
            assert seen == expected
        return
    expected_type = {401: "InvalidAuthentication", 403: "PermissionDenied", 404: "ResourceNotFound"}[want]
    assert_error((status, reply), want, expected_type)
    assert snapshot() == before


def test_a_job_token_runs_but_does_not_change_apps(db, monkeypatch):
    monkeypatch.setattr(dispatch, "run_job", lambda job_id: None)
    w, alice = build_world("developer")
    job = alice.ok(f"/{w.published}/run", {"project": w.project})["id"]
    _, raw = ApiToken.issue(User.objects.get(username="alice"), "job", scopes={w.project: 3}, job_id=job)
    token = ApiClient(alice.user, raw)
    assert token.ok(f"/{w.published}/describe")["id"] == w.published
    assert_error(token.call(f"/{w.published}/addTags", {"tags": ["x"]}), 403, "PermissionDenied")
