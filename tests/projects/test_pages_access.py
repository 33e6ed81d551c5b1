"""Who may open which page and post which form: every project page and action × every kind of actor.

alice administers the project; viewer, uploader and contributor hold those levels directly; orgmate
reaches it through org-lab (CONTRIBUTE); charlie is an outsider; anonymous is not logged in.
"""

import json
import re
from dataclasses import dataclass, field

import pytest
from django.contrib.messages import get_messages
from django.test import Client

from projects import actions
from projects.accounts import create_user
from projects.models import ApiToken, Container, DataObject, Folder, Grant, Level, OrgMember, Placement

LEVELS = {
    "anonymous": None,
    "charlie": Level.NONE,
    "viewer": Level.VIEW,
    "uploader": Level.UPLOAD,
    "contributor": Level.CONTRIBUTE,
    "orgmate": Level.CONTRIBUTE,
    "alice": Level.ADMINISTER,
}
MD5_OF_ABC = "900150983cd24fb0d6963f7d28e17f72"


@dataclass
class World:
    project: Container
    users: dict
    closed: str = ""
    open: str = ""
    extra: dict = field(default_factory=dict)

    def client(self, actor):
        client = Client()
        if actor != "anonymous":
            client.force_login(self.users[actor])
        return client


@pytest.fixture
def world(db):
    users = {handle: create_user(handle) for handle in LEVELS if handle != "anonymous"}
    users["dana"] = create_user("dana")
    project = actions.create_container(users["alice"], "shared results")
    for handle in ("viewer", "uploader", "contributor"):
        actions.invite(project, f"user-{handle}", LEVELS[handle].label)
    org = actions.create_org(users["alice"], "lab", "The lab")
    actions.set_org_member(org, users["orgmate"], OrgMember.MEMBER)
    actions.invite(project, "org-lab", "CONTRIBUTE")
    actions.new_folder(project, "/data/old", parents=True)
    closed = actions.new_object(users["alice"], project, "file", name="notes.txt", state=DataObject.CLOSED)
    opened = actions.new_object(users["alice"], project, "file", name="partial.bin")
    return World(project=project, users=users, closed=closed.obj_id, open=opened.obj_id)


def folders(w):
    return set(Folder.objects.filter(container=w.project).values_list("path", flat=True))


def placement(w, obj_id):
    return Placement.objects.filter(container=w.project, obj_id=obj_id).first()


def level_of(w, handle):
    grant = Grant.objects.filter(container=w.project, user__username=handle).first()
    return grant.level if grant else None


# (name, needed level, method, path under /projects/<id>/, form data or JSON body, effect seen when allowed)
CASES = [
    ("files page", Level.VIEW, "get", "", None, None),
    ("members page", Level.VIEW, "get", "members/", None, None),
    ("download", Level.VIEW, "get", "files/{closed}/download/", None, None),
    (
        "new folder",
        Level.UPLOAD,
        "post",
        "folders/new/",
        {"folder": "/", "name": "fresh"},
        lambda w: "/fresh" in folders(w),
    ),
    (
        "rename a file",
        Level.CONTRIBUTE,
        "post",
        "objects/rename/",
        {"object": "{closed}", "name": "renamed.txt"},
        lambda w: placement(w, w.closed).name == "renamed.txt",
    ),
    (
        "rename a folder",
        Level.CONTRIBUTE,
        "post",
        "folders/rename/",
        {"path": "/data", "name": "archive"},
        lambda w: "/archive/old" in folders(w),
    ),
    (
        "move",
        Level.CONTRIBUTE,
        "post",
        "objects/move/",
        {"objects": ["{closed}"], "destination": "/data"},
        lambda w: placement(w, w.closed).folder == "/data",
    ),
    (
        "delete",
        Level.CONTRIBUTE,
        "post",
        "objects/remove/",
        {"objects": ["{closed}"], "folders": ["/data"]},
        lambda w: placement(w, w.closed) is None and "/data" not in folders(w),
    ),
    (
        "invite",
        Level.ADMINISTER,
        "post",
        "members/",
        {"invitee": "dana", "level": "VIEW"},
        lambda w: level_of(w, "dana") == Level.VIEW,
    ),
    (
        "change a level",
        Level.ADMINISTER,
        "post",
        "members/change/",
        {"grantee": "user-viewer", "level": "UPLOAD"},
        lambda w: level_of(w, "viewer") == Level.UPLOAD,
    ),
    (
        "revoke",
        Level.ADMINISTER,
        "post",
        "members/revoke/",
        {"grantee": "user-viewer"},
        lambda w: level_of(w, "viewer") is None,
    ),
    (
        "delete the project",
        Level.ADMINISTER,
        "post",
        "destroy/",
        {"confirm": "shared results"},
        lambda w: not Container.objects.filter(pk=w.project.pk).exists(),
    ),
    (
        "upload: create a file",
        Level.UPLOAD,
        "json",
        "upload/",
        {"name": "new.txt", "folder": "/"},
        lambda w: Placement.objects.filter(container=w.project, name="new.txt").exists(),
    ),
    (
        "upload: sign a part",
        Level.UPLOAD,
        "json",
        "upload/{open}/part/",
        {"index": 1, "size": 3, "md5": MD5_OF_ABC},
        lambda w: DataObject.objects.get(pk=w.open).parts.filter(index=1).exists(),
    ),
    (
        "upload: close",
        Level.UPLOAD,
        "json",
        "upload/{open}/close/",
        {},
        lambda w: DataObject.objects.get(pk=w.open).state == DataObject.CLOSED,
    ),
]


def fill(value, w):
    if isinstance(value, str):
        return value.format(closed=w.closed, open=w.open)
    if isinstance(value, list):
        return [fill(v, w) for v in value]
    if isinstance(value, dict):
        return {k: fill(v, w) for k, v in value.items()}
    return value


def request(w, actor, method, path, data):
    client = w.client(actor)
    url = f"/projects/{w.project.pk}/{fill(path, w)}"
    if method == "get":
        return client.get(url)
    if method == "json":
        return client.post(url, json.dumps(fill(data, w)), content_type="application/json")
    return client.post(url, fill(data, w))


@pytest.mark.parametrize("actor", list(LEVELS))
@pytest.mark.parametrize("name,needed,method,path,data,effect", CASES, ids=[c[0] for c in CASES])
def test_each_project_page_and_action_answers_each_actor_by_level(
    world, actor, name, needed, method, path, data, effect
):
    response = request(world, actor, method, path, data)
    held = LEVELS[actor]
    if held is None:
        assert response.status_code == 302 and response["Location"].startswith("/login/?next=")
    elif held < Level.VIEW:
        assert response.status_code == 404
    elif held < needed:
        assert response.status_code == 403
    else:
        if name == "download":
            assert response.status_code == 302 and "/transfer/down/" in response["Location"]
        else:
            assert response.status_code == (302 if method == "post" else 200), response.content[:500]
        if method == "post":
            shown = list(get_messages(response.wsgi_request))
            assert shown and all(m.tags == "success" for m in shown), [str(m) for m in shown]
    if effect is not None:
        assert effect(world) == (held is not None and held >= needed)


def test_a_missing_project_looks_the_same_as_a_forbidden_one(world):
    client = world.client("charlie")
    missing = client.get("/projects/project-000000000000000000000000/")
    forbidden = client.get(f"/projects/{world.project.pk}/")
    assert missing.status_code == forbidden.status_code == 404
    # Identical but for the per-response CSRF token.
    strip = re.compile(rb'name="csrf-?(token|middlewaretoken)" (content|value)="[^"]*"')
    assert strip.sub(b"", missing.content) == strip.sub(b"", forbidden.content)


def test_a_workspace_is_not_shown_as_a_project_page(world):
    workspace = actions.create_container(world.users["alice"], "job workspace", kind=Container.WORKSPACE)
    assert world.client("alice").get(f"/projects/{workspace.pk}/").status_code == 404


@pytest.mark.parametrize("path", ["folders/new/", "objects/remove/", "members/change/", "upload/"])
def test_actions_refuse_get(world, path):
    assert world.client("alice").get(f"/projects/{world.project.pk}/{path}").status_code == 405


def test_a_file_of_another_project_cannot_be_reached_through_this_one(world):
    other = actions.create_container(world.users["alice"], "other")
    foreign = actions.new_object(world.users["alice"], other, "file", name="secret.txt", state=DataObject.CLOSED)
    client = world.client("viewer")
    assert client.get(f"/projects/{world.project.pk}/files/{foreign.obj_id}/download/").status_code == 404
    response = client.post(
        f"/projects/{world.project.pk}/upload/{foreign.obj_id}/close/", "{}", content_type="application/json"
    )
    assert response.status_code in (403, 404)


@pytest.mark.parametrize("url", ["/", "/orgs/", "/orgs/org-lab/", "/profile/", "/cli/"])
def test_every_page_sends_anonymous_visitors_to_log_in(world, url):
    response = Client().get(url)
    assert response.status_code == 302 and response["Location"] == f"/login/?next={url}"


@pytest.mark.parametrize("url", ["/", "/orgs/", "/profile/", "/cli/"])
def test_personal_pages_open_for_any_signed_in_user(world, url):
    assert world.client("charlie").get(url).status_code == 200


ORG_CASES = [
    (
        "add a member",
        "",
        {"user": "dana", "role": "MEMBER"},
        lambda w: OrgMember.objects.filter(org_id="org-lab", user__username="dana").exists(),
    ),
    (
        "change a role",
        "members/role/",
        {"user": "user-orgmate", "role": "ADMIN"},
        lambda w: OrgMember.objects.get(org_id="org-lab", user__username="orgmate").level == "ADMIN",
    ),
    (
        "remove a member",
        "members/remove/",
        {"user": "user-orgmate"},
        lambda w: not OrgMember.objects.filter(org_id="org-lab", user__username="orgmate").exists(),
    ),
]


@pytest.mark.parametrize("actor,expected", [("anonymous", 302), ("charlie", 404), ("orgmate", 200), ("alice", 200)])
def test_the_org_page_is_for_its_members(world, actor, expected):
    assert world.client(actor).get("/orgs/org-lab/").status_code == expected


@pytest.mark.parametrize("actor,expected", [("anonymous", 302), ("charlie", 404), ("orgmate", 403), ("alice", 302)])
@pytest.mark.parametrize("name,path,data,effect", ORG_CASES, ids=[c[0] for c in ORG_CASES])
def test_only_org_admins_change_membership(world, actor, expected, name, path, data, effect):
    response = world.client(actor).post(f"/orgs/org-lab/{path}", data)
    assert response.status_code == expected
    if actor == "anonymous":
        assert response["Location"].startswith("/login/")
    assert effect(world) == (actor == "alice")


def test_nobody_revokes_another_users_token(world):
    token, _ = ApiToken.issue(world.users["alice"], "laptop")
    response = world.client("charlie").post(f"/profile/tokens/{token.pk}/revoke/")
    assert response.status_code == 404
    assert ApiToken.objects.filter(pk=token.pk).exists()
