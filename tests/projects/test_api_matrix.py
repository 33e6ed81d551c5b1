"""Who may call what: every project, data-object and system route against every kind of caller.

Each case builds its own project (a folder, closed files, an open file), so destructive calls
never see each other's leftovers. A refused call must leave the project exactly as it was.
"""

import pytest

from projects import actions
from projects.models import ApiToken, Container, Folder, Grant, OrgMember, Placement
from tests.conftest import ApiClient, make_actor

from .api_helpers import assert_error, build_world, grant, md5

LEVELS = ["VIEW", "UPLOAD", "CONTRIBUTE", "ADMINISTER"]
CALLERS = ["anonymous", "outsider", *LEVELS, "org CONTRIBUTE"]
RANK = {level: rank for rank, level in enumerate(LEVELS, start=1)}

# route name -> (path, body, level needed on the project; None: any signed-in caller).
ROUTES = {
    "system/whoami": ("/system/whoami", lambda w: {}, None),
    "system/findProjects": ("/system/findProjects", lambda w: {"describe": True}, None),
    "system/findApps": ("/system/findApps", lambda w: {}, None),
    "system/findGlobalWorkflows": ("/system/findGlobalWorkflows", lambda w: {}, None),
    "system/describeDataObjects": ("/system/describeDataObjects", lambda w: {"objects": [w.closed]}, None),
    "system/findDataObjects": ("/system/findDataObjects", lambda w: {"scope": {"project": w.project}}, "VIEW"),
    "system/resolveDataObjects": (
        "/system/resolveDataObjects",
        lambda w: {"objects": [{"project": w.project, "folder": "/", "name": "closed.txt"}]},
        "VIEW",
    ),
    "project/new": ("/project/new", lambda w: {"name": "mine"}, None),
    "project describe": ("/{project}/describe", lambda w: {}, "VIEW"),
    "project listFolder": ("/{project}/listFolder", lambda w: {"folder": "/data"}, "VIEW"),
    "project clone": (
        "/{project}/clone",
        lambda w: {"objects": [w.closed], "project": w.destination},
        "VIEW",
    ),
    "project leave": ("/{project}/leave", lambda w: {}, "VIEW"),
    "project newFolder": ("/{project}/newFolder", lambda w: {"folder": "/new"}, "UPLOAD"),
    "project update": ("/{project}/update", lambda w: {"name": "renamed"}, "CONTRIBUTE"),
    "project removeFolder": ("/{project}/removeFolder", lambda w: {"folder": "/data", "recurse": True}, "CONTRIBUTE"),
    "project renameFolder": ("/{project}/renameFolder", lambda w: {"folder": "/data", "name": "d2"}, "CONTRIBUTE"),
    "project removeObjects": ("/{project}/removeObjects", lambda w: {"objects": [w.closed]}, "CONTRIBUTE"),
    "project move": (
        "/{project}/move",
        lambda w: {"objects": [w.closed], "destination": "/data"},
        "CONTRIBUTE",
    ),
    "project addTags": ("/{project}/addTags", lambda w: {"tags": ["t"]}, "CONTRIBUTE"),
    "project removeTags": ("/{project}/removeTags", lambda w: {"tags": ["t"]}, "CONTRIBUTE"),
    "project setProperties": ("/{project}/setProperties", lambda w: {"properties": {"k": "v"}}, "CONTRIBUTE"),
    "project invite": (
        "/{project}/invite",
        lambda w: {"invitee": "user-spare", "level": "UPLOAD"},
        "ADMINISTER",
    ),
    "project decreasePermissions": ("/{project}/decreasePermissions", lambda w: {"user-spare": None}, "ADMINISTER"),
    "project destroy": ("/{project}/destroy", lambda w: {}, "ADMINISTER"),
    "file describe": ("/{closed}/describe", lambda w: {"project": w.project}, "VIEW"),
    "file getDetails": ("/{closed}/getDetails", lambda w: {}, "VIEW"),
    "file download": ("/{closed}/download", lambda w: {"project": w.project}, "VIEW"),
    "file/new": ("/file/new", lambda w: {"project": w.project, "name": "new.txt"}, "UPLOAD"),
    "file upload": ("/{open}/upload", lambda w: {"index": 1, "size": 3, "md5": md5(b"abc")}, "UPLOAD"),
    "file close": ("/{open}/close", lambda w: {}, "UPLOAD"),
    "file setDetails": ("/{open}/setDetails", lambda w: {"details": {"k": 1}}, "UPLOAD"),
    "file rename": ("/{closed}/rename", lambda w: {"project": w.project, "name": "other.txt"}, "CONTRIBUTE"),
    "file addTags": ("/{closed}/addTags", lambda w: {"tags": ["t"]}, "CONTRIBUTE"),
    "file removeTags": ("/{closed}/removeTags", lambda w: {"tags": ["t"]}, "CONTRIBUTE"),
    "file setProperties": ("/{closed}/setProperties", lambda w: {"properties": {"k": "v"}}, "CONTRIBUTE"),
    "file setVisibility": ("/{closed}/setVisibility", lambda w: {"hidden": True}, "CONTRIBUTE"),
}


def expected_status(caller, needed, route):
    if caller == "anonymous":
        return 401
    if needed is None:
        return 200
    if caller == "outsider":
        return 404
    held = RANK["CONTRIBUTE"] if caller == "org CONTRIBUTE" else RANK[caller]
    if held < RANK[needed]:
        return 403
    if route == "project leave" and caller == "org CONTRIBUTE":
        return 422  # nothing direct to leave: the org's grant is the org admins' to remove
    return 200


def world_for(caller):
    """A fresh project owned by alice, and the caller reaching it as `caller` says."""
    alice = make_actor("alice")
    w = build_world(alice)
    grant(w.project, make_actor("spare").user.dx_id, "VIEW")
    if caller == "anonymous":
        client = ApiClient()
        w.destination = w.project
        return w, client
    client = make_actor("caller")
    w.destination = actions.create_container(client.user, "destination").pk
    if caller in RANK:
        grant(w.project, client.user.dx_id, caller)
    elif caller == "org CONTRIBUTE":
        org = actions.create_org(alice.user, "lab")
        actions.set_org_member(org, client.user, OrgMember.MEMBER)
        grant(w.project, org.id, "CONTRIBUTE")
    return w, client


def snapshot(project_id):
    """Everything a call on the project could change."""
    container = Container.objects.filter(pk=project_id).values("name", "tags", "properties").first()
    return (
        container,
        sorted(Folder.objects.filter(container_id=project_id).values_list("path", flat=True)),
        list(
            Placement.objects.filter(container_id=project_id)
            .order_by("obj_id")
            .values_list(
                "obj_id",
                "folder",
                "name",
                "hidden",
                "tags",
                "properties",
                "obj__state",
                "obj__details",
            )
        ),
        list(Grant.objects.filter(container_id=project_id).order_by("pk").values_list("user_id", "org_id", "level")),
    )


@pytest.mark.parametrize("caller", CALLERS)
@pytest.mark.parametrize("route", ROUTES)
def test_every_route_answers_each_caller_as_their_level_allows(db, route, caller):
    path, body, needed = ROUTES[route]
    w, client = world_for(caller)
    before = snapshot(w.project)
    status, reply = client.call(path.format(**vars(w)), body(w))
    want = expected_status(caller, needed, route)
    if want == 200:
        assert status == 200, (status, reply)
        return
    expected_type = {
        401: "InvalidAuthentication",
        403: "PermissionDenied",
        404: "ResourceNotFound",
        422: "InvalidState",
    }[want]
    assert_error((status, reply), want, expected_type)
    assert snapshot(w.project) == before


def test_outsider_gets_the_same_reply_for_a_hidden_project_as_for_a_missing_one(db):
    w, charlie = world_for("outsider")
    missing = "project-" + "0" * 24
    for method in ("describe", "listFolder", "invite", "destroy"):
        hidden = charlie.call(f"/{w.project}/{method}", {})
        absent = charlie.call(f"/{missing}/{method}", {})
        assert hidden[0] == absent[0] == 404
        assert hidden[1]["error"]["message"].replace(w.project, "X") == absent[1]["error"]["message"].replace(
            missing, "X"
        )


def test_outsider_sees_only_errors_in_describe_data_objects_and_nothing_in_finds(db):
    w, charlie = world_for("outsider")
    described = charlie.ok("/system/describeDataObjects", {"objects": [w.closed, {"id": w.inside}]})
    assert [set(r) for r in described["results"]] == [{"error"}, {"error"}]
    assert charlie.ok("/system/findDataObjects", {"name": "closed.txt"}) == {"results": [], "next": None}
    assert w.project not in [r["id"] for r in charlie.ok("/system/findProjects", {})["results"]]


def test_a_job_token_cannot_create_projects_or_orgs_or_update_its_user(db):
    alice = make_actor("alice")
    w = build_world(alice)
    token, raw = ApiToken.issue(alice.user, "job")
    token.scopes = {w.project: 3}
    token.save()
    job = ApiClient(alice.user, raw)
    assert_error(job.call("/project/new", {"name": "x"}), 403, "PermissionDenied")
    assert_error(job.call("/org/new", {"handle": "joborg"}), 403, "PermissionDenied")
    assert_error(job.call("/user-alice/update", {"first": "J"}), 403, "PermissionDenied")
    assert job.ok(f"/{w.project}/describe")["level"] == "CONTRIBUTE"


# Orgs ---------------------------------------------------------------------------

ORG_ROUTES = {
    "describe": ({}, False),
    "invite": ({"invitee": "user-newcomer", "level": "MEMBER"}, True),
    "removeMember": ({"user": "user-member"}, True),
    "setMemberAccess": ({"user-member": {"level": "ADMIN"}}, True),
}


@pytest.fixture
def org_world(db):
    admin, member, outsider = make_actor("orgadmin"), make_actor("member"), make_actor("nonmember")
    make_actor("newcomer")
    admin.ok("/org/new", {"handle": "lab", "name": "The Lab"})
    admin.ok("/org-lab/invite", {"invitee": "user-member", "level": "MEMBER"})
    return {"ADMIN": admin, "MEMBER": member, "non-member": outsider, "anonymous": ApiClient()}


def org_members():
    return sorted(OrgMember.objects.filter(org_id="org-lab").values_list("user__username", "level"))


@pytest.mark.parametrize("role", ["anonymous", "non-member", "MEMBER", "ADMIN"])
@pytest.mark.parametrize("method", ORG_ROUTES)
def test_org_methods_answer_by_membership(org_world, method, role):
    body, admin_only = ORG_ROUTES[method]
    before = org_members()
    status, reply = org_world[role].call(f"/org-lab/{method}", body)
    if role == "anonymous":
        assert_error((status, reply), 401, "InvalidAuthentication")
    elif role == "non-member":
        assert_error((status, reply), 404, "ResourceNotFound")
        assert org_world[role].call(f"/org-nosuchorg/{method}", body)[0] == 404
    elif role == "MEMBER" and admin_only:
        assert_error((status, reply), 403, "PermissionDenied")
    else:
        assert status == 200, reply
        return
    assert org_members() == before


# Users --------------------------------------------------------------------------


def test_users_can_only_update_themselves(db):
    alice, bob = make_actor("alice"), make_actor("bob")
    key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB0b alice@laptop\n"
    assert alice.ok("/user-alice/update", {"sshPublicKey": key}) == {"id": "user-alice"}
    assert_error(bob.call("/user-alice/update", {"sshPublicKey": "ssh-ed25519 AAAA bob"}), 403, "PermissionDenied")
    assert_error(bob.call("/user-alice/update", {"first": "Mallory"}), 403, "PermissionDenied")
    assert_error(bob.call("/user-nobody/update", {"first": "x"}), 404, "ResourceNotFound")
    assert_error(ApiClient().call("/user-alice/update", {"first": "x"}), 401, "InvalidAuthentication")
    assert alice.ok("/user-alice/describe")["sshPublicKey"] == key


def test_other_users_see_only_a_users_public_face(db):
    alice, bob = make_actor("alice"), make_actor("bob")
    alice.ok("/user-alice/update", {"sshPublicKey": "ssh-ed25519 AAAA alice", "first": "Alice"})
    seen = bob.ok("/user-alice/describe")
    assert seen == {"id": "user-alice", "class": "user", "handle": "alice"}
    assert_error(ApiClient().call("/user-alice/describe"), 401, "InvalidAuthentication")
