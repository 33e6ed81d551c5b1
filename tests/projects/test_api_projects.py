"""Projects, folders, finds and members through the API, as the dx client uses them."""

import pytest

from projects import actions
from projects.models import Container, DataObject, Placement
from tests.conftest import make_actor

from .api_helpers import assert_error


def ids(reply):
    return [row["id"] for row in reply["results"]]


def new_project(client, name, **fields):
    return client.ok("/project/new", {"name": name, **fields})["id"]


def new_file(client, project, name, folder="/", **fields):
    """A closed (empty) file, as tests of finds need many of them."""
    file_id = client.ok("/file/new", {"project": project, "name": name, "folder": folder, "parents": True, **fields})
    client.ok(f"/{file_id['id']}/close")
    return file_id["id"]


# findProjects ---------------------------------------------------------------------


@pytest.fixture
def three_projects(alice, bob):
    """alice holds 'alpha' (ADMINISTER), 'alphabet' (CONTRIBUTE via bob) and 'beta' (VIEW via bob)."""
    alpha = new_project(alice, "alpha", tags=["genome", "2024"], properties={"lab": "wet"})
    alphabet = new_project(bob, "alphabet", tags=["genome"])
    beta = new_project(bob, "beta", properties={"lab": "dry"})
    bob.ok(f"/{alphabet}/invite", {"invitee": "user-alice", "level": "CONTRIBUTE"})
    bob.ok(f"/{beta}/invite", {"invitee": "user-alice", "level": "VIEW"})
    return {"alpha": alpha, "alphabet": alphabet, "beta": beta}


def test_find_projects_matches_names_exactly_by_glob_or_by_regexp(alice, three_projects):
    p = three_projects
    assert ids(alice.ok("/system/findProjects", {"name": "alpha"})) == [p["alpha"]]
    assert sorted(ids(alice.ok("/system/findProjects", {"name": {"glob": "alpha*"}}))) == sorted(
        [p["alpha"], p["alphabet"]]
    )
    assert ids(alice.ok("/system/findProjects", {"name": {"glob": "b?ta"}})) == [p["beta"]]
    assert ids(alice.ok("/system/findProjects", {"name": {"regexp": "^alpha$"}})) == [p["alpha"]]
    assert ids(alice.ok("/system/findProjects", {"name": {"regexp": "^BETA$", "flags": "i"}})) == [p["beta"]]
    assert ids(alice.ok("/system/findProjects", {"name": "ALPHA"})) == []


def test_find_projects_filters_by_the_level_held(alice, three_projects):
    p = three_projects
    by_level = {
        level: sorted(ids(alice.ok("/system/findProjects", {"level": level})))
        for level in ("VIEW", "UPLOAD", "CONTRIBUTE", "ADMINISTER")
    }
    assert by_level["VIEW"] == sorted(p.values())
    assert by_level["UPLOAD"] == by_level["CONTRIBUTE"] == sorted([p["alpha"], p["alphabet"]])
    assert by_level["ADMINISTER"] == [p["alpha"]]
    levels = {row["id"]: row["level"] for row in alice.ok("/system/findProjects", {})["results"]}
    assert levels == {p["alpha"]: "ADMINISTER", p["alphabet"]: "CONTRIBUTE", p["beta"]: "VIEW"}


def test_find_projects_describes_with_the_fields_asked_for(alice, three_projects):
    full = alice.ok("/system/findProjects", {"name": "alpha", "describe": True})["results"][0]
    assert full["describe"]["name"] == "alpha" and full["describe"]["level"] == "ADMINISTER"
    assert full["describe"]["tags"] == ["genome", "2024"] and full["public"] is False
    narrow = alice.ok("/system/findProjects", {"name": "alpha", "describe": {"fields": {"name": True}}})
    assert narrow["results"][0]["describe"] == {"id": three_projects["alpha"], "name": "alpha"}
    assert "describe" not in alice.ok("/system/findProjects", {"name": "alpha"})["results"][0]


def test_find_projects_filters_by_tags_and_properties(alice, three_projects):
    p = three_projects
    found = ids(alice.ok("/system/findProjects", {"tags": {"$and": ["genome", "2024"]}}))
    assert found == [p["alpha"]]
    assert sorted(ids(alice.ok("/system/findProjects", {"tags": "genome"}))) == sorted([p["alpha"], p["alphabet"]])
    assert ids(alice.ok("/system/findProjects", {"properties": {"lab": "dry"}})) == [p["beta"]]
    assert sorted(ids(alice.ok("/system/findProjects", {"properties": {"lab": True}}))) == sorted(
        [p["alpha"], p["beta"]]
    )


def test_find_projects_pages_with_limit_next_and_starting(alice):
    made = sorted(new_project(alice, f"p{i}") for i in range(7))
    seen, starting, pages = [], None, 0
    while True:
        body = {"limit": 3, **({"starting": starting} if starting is not None else {})}
        page = alice.ok("/system/findProjects", body)
        assert len(page["results"]) <= 3
        seen += ids(page)
        pages += 1
        starting = page["next"]
        if starting is None:
            break
    assert pages == 3 and sorted(seen) == made and len(set(seen)) == 7


def test_find_projects_names_every_permission_source_including_orgs(alice, bob):
    project = new_project(alice, "shared")
    bob.ok("/org/new", {"handle": "lab"})
    alice.ok(f"/{project}/invite", {"invitee": "org-lab", "level": "CONTRIBUTE"})
    alice.ok(f"/{project}/invite", {"invitee": "user-bob", "level": "VIEW"})
    row = bob.ok("/system/findProjects", {"describe": True})["results"][0]
    assert row["id"] == project and row["level"] == "CONTRIBUTE"
    assert sorted(row["permissionSources"]) == ["org-lab", "user-bob"]
    assert row["describe"]["level"] == "CONTRIBUTE"


def test_find_projects_lists_no_job_workspaces(alice):
    workspace = actions.create_container(alice.user, "ws", kind=Container.WORKSPACE)
    assert workspace.pk not in ids(alice.ok("/system/findProjects", {}))


# Effective level through orgs -------------------------------------------------------


def test_the_effective_level_is_the_highest_of_the_direct_and_org_grants(alice, bob):
    project = new_project(alice, "p")
    bob.ok("/org/new", {"handle": "lab"})
    alice.ok(f"/{project}/invite", {"invitee": "user-bob", "level": "VIEW"})
    alice.ok(f"/{project}/invite", {"invitee": "org-lab", "level": "CONTRIBUTE"})
    assert bob.ok(f"/{project}/describe")["level"] == "CONTRIBUTE"
    bob.ok(f"/{project}/newFolder", {"folder": "/bob"})
    alice.ok(f"/{project}/invite", {"invitee": "user-bob", "level": "ADMINISTER"})
    assert bob.ok(f"/{project}/describe")["level"] == "ADMINISTER"
    alice.ok(f"/{project}/decreasePermissions", {"user-bob": None})
    assert bob.ok(f"/{project}/describe")["level"] == "CONTRIBUTE"
    alice.ok(f"/{project}/decreasePermissions", {"org-lab": "VIEW"})
    assert bob.ok(f"/{project}/describe")["level"] == "VIEW"
    assert_error(bob.call(f"/{project}/newFolder", {"folder": "/again"}), 403, "PermissionDenied")


def test_leaving_an_org_takes_away_what_it_granted(alice, bob, charlie):
    project = new_project(alice, "p")
    alice.ok("/org/new", {"handle": "lab"})
    alice.ok("/org-lab/invite", {"invitee": "user-charlie", "level": "MEMBER"})
    alice.ok(f"/{project}/invite", {"invitee": "org-lab", "level": "UPLOAD"})
    assert charlie.ok(f"/{project}/describe")["level"] == "UPLOAD"
    alice.ok("/org-lab/removeMember", {"user": "user-charlie"})
    assert_error(charlie.call(f"/{project}/describe"), 404, "ResourceNotFound")


# describe, update, tags and properties ------------------------------------------------


def test_describe_returns_what_the_client_reads(alice, project):
    described = alice.ok(f"/{project}/describe", {"folders": True})
    assert described["class"] == "project" and described["name"] == "alice's project"
    assert described["permissions"] == {"user-alice": "ADMINISTER"} and described["folders"] == ["/"]
    assert described["fileUploadParameters"]["emptyLastPartAllowed"] is True
    assert alice.ok(f"/{project}/describe", {"fields": {"fileUploadParameters": True}}) == {
        "id": project,
        "fileUploadParameters": described["fileUploadParameters"],
    }


def test_update_tags_and_properties_change_the_project(alice, project):
    alice.ok(f"/{project}/update", {"name": "renamed", "summary": "s", "description": "d"})
    alice.ok(f"/{project}/addTags", {"tags": ["a", "b", "a"]})
    alice.ok(f"/{project}/removeTags", {"tags": ["a", "never-there"]})
    alice.ok(f"/{project}/setProperties", {"properties": {"k": "v", "gone": "x"}})
    alice.ok(f"/{project}/setProperties", {"properties": {"gone": None}})
    described = alice.ok(f"/{project}/describe")
    assert (described["name"], described["summary"], described["description"]) == ("renamed", "s", "d")
    assert described["tags"] == ["b"] and described["properties"] == {"k": "v"}


# Folders ---------------------------------------------------------------------------


@pytest.fixture
def tree(alice, project):
    """/a (with x.txt), /a/b (with y.txt), /c, and z.txt at the root."""
    alice.ok(f"/{project}/newFolder", {"folder": "/a/b", "parents": True})
    alice.ok(f"/{project}/newFolder", {"folder": "/c"})
    return {
        "x": new_file(alice, project, "x.txt", "/a"),
        "y": new_file(alice, project, "y.txt", "/a/b"),
        "z": new_file(alice, project, "z.txt", "/"),
    }


def listing(client, project, folder="/", **options):
    reply = client.ok(f"/{project}/listFolder", {"folder": folder, **options})
    return reply.get("folders"), [o["id"] for o in reply.get("objects", [])]


def test_list_folder_shows_direct_children_only(alice, project, tree):
    assert listing(alice, project, "/") == (["/a", "/c"], [tree["z"]])
    assert listing(alice, project, "/a") == (["/a/b"], [tree["x"]])
    assert listing(alice, project, "/a", only="folders") == (["/a/b"], [])
    reply = alice.ok(f"/{project}/listFolder", {"folder": "/a", "only": "objects"})
    assert "folders" not in reply and [o["id"] for o in reply["objects"]] == [tree["x"]]


def test_list_folder_hides_hidden_objects_unless_asked_and_describes_on_request(alice, project, tree):
    alice.ok(f"/{tree['z']}/setVisibility", {"hidden": True})
    assert listing(alice, project, "/")[1] == []
    assert listing(alice, project, "/", includeHidden=True)[1] == [tree["z"]]
    reply = alice.ok(
        f"/{project}/listFolder",
        {
            "folder": "/a",
            "describe": {"fields": {"id": True, "class": True, "name": True}},
        },
    )
    assert reply["objects"] == [{"id": tree["x"], "describe": {"id": tree["x"], "class": "file", "name": "x.txt"}}]


def test_new_folder_needs_its_parent_unless_asked_to_make_it(alice, project):
    assert_error(alice.call(f"/{project}/newFolder", {"folder": "/p/q"}), 404, "ResourceNotFound")
    alice.ok(f"/{project}/newFolder", {"folder": "/p/q", "parents": True})
    assert_error(alice.call(f"/{project}/newFolder", {"folder": "/p/q"}), 422, "InvalidInput")
    alice.ok(f"/{project}/newFolder", {"folder": "/p/q", "parents": True})
    assert alice.ok(f"/{project}/describe", {"folders": True})["folders"] == ["/", "/p", "/p/q"]


def test_rename_folder_carries_its_subfolders_and_objects(alice, project, tree):
    alice.ok(f"/{project}/renameFolder", {"folder": "/a", "name": "renamed"})
    assert listing(alice, project, "/renamed") == (["/renamed/b"], [tree["x"]])
    assert listing(alice, project, "/renamed/b")[1] == [tree["y"]]
    assert alice.ok(f"/{tree['y']}/describe")["folder"] == "/renamed/b"
    assert_error(alice.call(f"/{project}/renameFolder", {"folder": "/renamed", "name": "c"}), 422)
    assert_error(alice.call(f"/{project}/renameFolder", {"folder": "/", "name": "c"}), 422)


def test_move_puts_objects_and_folders_with_their_contents_into_the_destination(alice, project, tree):
    alice.ok(f"/{project}/move", {"objects": [tree["z"]], "folders": ["/a"], "destination": "/c"})
    assert listing(alice, project, "/") == (["/c"], [])
    assert listing(alice, project, "/c") == (["/c/a"], [tree["z"]])
    assert listing(alice, project, "/c/a/b")[1] == [tree["y"]]
    assert_error(alice.call(f"/{project}/move", {"folders": ["/c"], "destination": "/c/a"}), 422, "InvalidInput")
    assert_error(alice.call(f"/{project}/move", {"folders": ["/"], "destination": "/c"}), 422, "InvalidInput")
    status, reply = alice.call(f"/{project}/move", {"objects": [tree["z"]], "destination": "/nowhere"})
    assert_error((status, reply), 404, "ResourceNotFound")


def test_remove_folder_needs_recurse_when_not_empty(alice, project, tree):
    assert_error(alice.call(f"/{project}/removeFolder", {"folder": "/a"}), 422, "InvalidState")
    alice.ok(f"/{project}/removeFolder", {"folder": "/c"})
    reply = alice.ok(f"/{project}/removeFolder", {"folder": "/a", "recurse": True, "force": True, "partial": True})
    assert reply["completed"] is True
    assert listing(alice, project, "/") == ([], [tree["z"]])
    assert not DataObject.objects.filter(pk__in=[tree["x"], tree["y"]]).exists()


def test_folders_differing_only_in_case_are_separate(alice, project):
    keep = new_file(alice, project, "keep.txt", "/Data/sub")
    drop = new_file(alice, project, "drop.txt", "/data/sub")
    found = alice.ok("/system/findDataObjects", {"scope": {"project": project, "folder": "/data"}})
    assert ids(found) == [drop]
    alice.ok(f"/{project}/renameFolder", {"folder": "/data", "name": "other"})
    assert alice.ok(f"/{keep}/describe")["folder"] == "/Data/sub"
    alice.ok(f"/{project}/removeFolder", {"folder": "/other", "recurse": True})
    assert alice.ok(f"/{keep}/describe")["folder"] == "/Data/sub"
    assert listing(alice, project, "/Data") == (["/Data/sub"], [])
    assert not DataObject.objects.filter(pk=drop).exists()


def test_remove_objects_removes_them_from_the_project(alice, project, tree):
    alice.ok(f"/{project}/removeObjects", {"objects": [tree["x"], tree["z"]], "force": True})
    assert listing(alice, project, "/")[1] == [] and listing(alice, project, "/a")[1] == []
    status, reply = alice.call(f"/{project}/removeObjects", {"objects": [tree["x"]]})
    assert_error((status, reply), 404, "ResourceNotFound")


# findDataObjects and resolveDataObjects ------------------------------------------------------


@pytest.fixture
def objects(alice, project):
    """Files in /, /reads and /reads/raw with tags, properties and states; one hidden; one applet."""
    made = {
        "root": new_file(alice, project, "root.txt", tags=["a"], properties={"kind": "text"}),
        "r1": new_file(alice, project, "r1.fq", "/reads", tags=["a", "b"], properties={"kind": "reads"}),
        "r2": new_file(alice, project, "r2.fq", "/reads/raw", tags=["b"]),
        "hidden": new_file(alice, project, "hidden.fq", "/reads", hidden=True),
        "open": alice.ok("/file/new", {"project": project, "name": "open.fq", "folder": "/reads"})["id"],
    }
    made["applet"] = actions.new_object(
        alice.user, Container.objects.get(pk=project), "applet", "tool", state=DataObject.CLOSED
    ).obj_id
    return made


def find(client, project, **query):
    return sorted(ids(client.ok("/system/findDataObjects", {"scope": {"project": project}, **query})))


def test_find_data_objects_by_scope_folder_and_recurse(alice, project, objects):
    o = objects
    everything_visible = sorted([o["root"], o["r1"], o["r2"], o["open"], o["applet"]])
    assert find(alice, project) == everything_visible
    scoped = alice.ok("/system/findDataObjects", {"scope": {"project": project, "folder": "/reads"}})
    assert sorted(ids(scoped)) == sorted([o["r1"], o["r2"], o["open"]])
    flat = alice.ok("/system/findDataObjects", {"scope": {"project": project, "folder": "/reads", "recurse": False}})
    assert sorted(ids(flat)) == sorted([o["r1"], o["open"]])
    assert {row["project"] for row in scoped["results"]} == {project}


def test_find_data_objects_by_class_state_visibility_and_name(alice, project, objects):
    o = objects
    assert find(alice, project, **{"class": "applet"}) == [o["applet"]]
    assert find(alice, project, state="open") == [o["open"]]
    assert o["open"] not in find(alice, project, state="closed")
    assert find(alice, project, visibility="hidden") == [o["hidden"]]
    assert o["hidden"] in find(alice, project, visibility="either")
    assert find(alice, project, name={"glob": "r?.fq"}) == sorted([o["r1"], o["r2"]])
    assert find(alice, project, name="root.txt") == [o["root"]]


def test_find_data_objects_by_tags_and_properties(alice, project, objects):
    o = objects
    assert find(alice, project, tags={"$and": ["a", "b"]}) == [o["r1"]]
    assert find(alice, project, tags={"$or": ["a", "b"]}) == sorted([o["root"], o["r1"], o["r2"]])
    assert find(alice, project, properties={"kind": "reads"}) == [o["r1"]]
    assert find(alice, project, properties={"kind": True}) == sorted([o["root"], o["r1"]])


def test_find_data_objects_describes_with_the_fields_asked_for(alice, project, objects):
    reply = alice.ok(
        "/system/findDataObjects",
        {
            "scope": {"project": project},
            "name": "r1.fq",
            "describe": {"fields": {"name": True, "folder": True}},
        },
    )
    assert reply["results"] == [
        {
            "project": project,
            "id": objects["r1"],
            "describe": {"id": objects["r1"], "name": "r1.fq", "folder": "/reads"},
        }
    ]
    full = alice.ok("/system/findDataObjects", {"scope": {"project": project}, "name": "r1.fq", "describe": True})
    described = full["results"][0]["describe"]
    assert described["tags"] == ["a", "b"] and described["state"] == "closed" and described["size"] == 0


def test_find_data_objects_pages_with_limit_next_and_starting(alice, project):
    made = sorted(new_file(alice, project, f"f{i}") for i in range(5))
    seen, starting = [], None
    while True:
        page = alice.ok(
            "/system/findDataObjects",
            {
                "scope": {"project": project},
                "limit": 2,
                **({"starting": starting} if starting is not None else {}),
            },
        )
        assert len(page["results"]) <= 2
        seen += ids(page)
        starting = page["next"]
        if starting is None:
            break
    assert sorted(seen) == made


def test_find_data_objects_without_scope_searches_every_visible_project(alice, bob, project, objects):
    other = new_project(bob, "bob's")
    theirs = new_file(bob, other, "root.txt")
    assert ids(alice.ok("/system/findDataObjects", {"name": "root.txt"})) == [objects["root"]]
    bob.ok(f"/{other}/invite", {"invitee": "user-alice", "level": "VIEW"})
    assert sorted(ids(alice.ok("/system/findDataObjects", {"name": "root.txt"}))) == sorted([objects["root"], theirs])


def test_resolve_data_objects_by_folder_and_name_or_id(alice, project, objects):
    reply = alice.ok(
        "/system/resolveDataObjects",
        {
            "project": project,
            "objects": [
                {"folder": "/reads", "name": "r1.fq"},
                {"name": "root.txt"},
                {"folder": "/reads", "name": "missing"},
                {"id": objects["r2"]},
                {"id": "file-" + "0" * 24},
            ],
        },
    )
    assert reply["results"] == [
        [{"project": project, "id": objects["r1"]}],
        [{"project": project, "id": objects["root"]}],
        [],
        [{"project": project, "id": objects["r2"]}],
        [],
    ]


# Clone -----------------------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore:StreamingHttpResponse must consume asynchronous iterators")
def test_clone_places_the_same_object_in_both_projects_and_bytes_go_only_with_the_last(
    alice, project, settings, django_capture_on_commit_callbacks, blob_dir
):
    from .api_helpers import content, get, upload_file

    settings.DXWEB_MIN_PART_SIZE = 1
    file_id = upload_file(alice, project, [b"hello ", b"world"], name="greeting.txt")
    other = new_project(alice, "other")
    reply = alice.ok(
        f"/{project}/clone", {"objects": [file_id], "project": other, "destination": "/copies", "parents": True}
    )
    assert reply == {"id": project, "project": other, "exists": []}
    in_other = alice.ok(f"/{file_id}/describe", {"project": other})
    assert (in_other["project"], in_other["folder"], in_other["name"]) == (other, "/copies", "greeting.txt")
    assert alice.ok(f"/{project}/clone", {"objects": [file_id], "project": other})["exists"] == [file_id]
    blobs = lambda: sorted(p.name for p in blob_dir.rglob("*") if p.is_file())  # noqa: E731
    stored = blobs()
    assert len(stored) == 2
    with django_capture_on_commit_callbacks(execute=True):
        alice.ok(f"/{project}/removeObjects", {"objects": [file_id]})
    assert blobs() == stored
    assert content(get(alice.ok(f"/{file_id}/download", {"project": other})["url"])) == b"hello world"
    # `project` is only a hint: the object is still reached where it remains.
    assert alice.ok(f"/{file_id}/describe", {"project": project})["project"] == other
    with django_capture_on_commit_callbacks(execute=True):
        alice.ok(f"/{other}/destroy")
    assert blobs() == [] and not DataObject.objects.filter(pk=file_id).exists()


def test_clone_copies_whole_folders_under_the_destination(alice, project, tree):
    other = new_project(alice, "other")
    alice.ok(f"/{other}/newFolder", {"folder": "/dest"})
    alice.ok(f"/{project}/clone", {"folders": ["/a"], "project": other, "destination": "/dest"})
    assert listing(alice, other, "/dest/a") == (["/dest/a/b"], [tree["x"]])
    assert listing(alice, other, "/dest/a/b")[1] == [tree["y"]]
    third = new_project(alice, "third")
    alice.ok(f"/{third}/newFolder", {"folder": "/all"})
    alice.ok(f"/{project}/clone", {"folders": ["/"], "project": third, "destination": "/all"})
    assert listing(alice, third, "/all") == (["/all/a", "/all/c"], [tree["z"]])
    assert listing(alice, third, "/all/a/b")[1] == [tree["y"]]


def test_clone_needs_upload_on_the_destination_and_closed_objects(alice, bob, project, tree):
    theirs = new_project(bob, "bob's")
    alice.ok(f"/{project}/invite", {"invitee": "user-bob", "level": "VIEW"})
    bob.ok(f"/{theirs}/invite", {"invitee": "user-alice", "level": "VIEW"})
    status, reply = alice.call(f"/{project}/clone", {"objects": [tree["z"]], "project": theirs})
    assert_error((status, reply), 403, "PermissionDenied")
    assert bob.ok(f"/{project}/clone", {"objects": [tree["z"]], "project": theirs})["exists"] == []
    open_file = alice.ok("/file/new", {"project": project, "name": "open"})["id"]
    mine = new_project(alice, "mine")
    assert_error(alice.call(f"/{project}/clone", {"objects": [open_file], "project": mine}), 422, "InvalidState")
    assert not Placement.objects.filter(container_id=mine).exists()


# Members -------------------------------------------------------------------------------


def test_invite_grants_and_replaces_a_level_and_the_reply_has_a_state(alice, bob, project):
    reply = alice.ok(f"/{project}/invite", {"invitee": "user-bob", "level": "VIEW", "suppressEmailNotification": True})
    assert reply["state"] and reply["id"] == "user-bob"
    assert bob.ok(f"/{project}/describe")["level"] == "VIEW"
    alice.ok(f"/{project}/invite", {"invitee": "user-bob", "level": "CONTRIBUTE"})
    assert alice.ok(f"/{project}/describe")["permissions"] == {"user-alice": "ADMINISTER", "user-bob": "CONTRIBUTE"}


def test_decrease_permissions_lowers_or_removes_but_never_raises(alice, bob, project):
    alice.ok(f"/{project}/invite", {"invitee": "user-bob", "level": "CONTRIBUTE"})
    alice.ok(f"/{project}/decreasePermissions", {"user-bob": "VIEW"})
    assert bob.ok(f"/{project}/describe")["level"] == "VIEW"
    assert_error(alice.call(f"/{project}/decreasePermissions", {"user-bob": "ADMINISTER"}), 422)
    alice.ok(f"/{project}/decreasePermissions", {"user-bob": None})
    assert_error(bob.call(f"/{project}/describe"), 404, "ResourceNotFound")


def test_the_last_administrator_cannot_be_removed_lowered_or_leave(alice, bob, project):
    for call, body in [
        ("decreasePermissions", {"user-alice": None}),
        ("decreasePermissions", {"user-alice": "CONTRIBUTE"}),
        ("invite", {"invitee": "user-alice", "level": "VIEW"}),
        ("leave", {}),
    ]:
        status, reply = alice.call(f"/{project}/{call}", body)
        assert_error((status, reply), 422, "InvalidState", context=call)
    assert alice.ok(f"/{project}/describe")["permissions"] == {"user-alice": "ADMINISTER"}
    alice.ok(f"/{project}/invite", {"invitee": "user-bob", "level": "ADMINISTER"})
    alice.ok(f"/{project}/decreasePermissions", {"user-alice": "VIEW"})
    assert bob.ok(f"/{project}/describe")["permissions"] == {"user-alice": "VIEW", "user-bob": "ADMINISTER"}


def test_a_failed_decrease_changes_nothing(alice, bob, charlie, project):
    alice.ok(f"/{project}/invite", {"invitee": "user-bob", "level": "CONTRIBUTE"})
    status, _ = alice.call(f"/{project}/decreasePermissions", {"user-bob": None, "user-alice": None})
    assert status == 422
    assert bob.ok(f"/{project}/describe")["level"] == "CONTRIBUTE"


def test_leave_removes_the_callers_own_membership(alice, bob, project):
    alice.ok(f"/{project}/invite", {"invitee": "user-bob", "level": "UPLOAD"})
    assert bob.ok(f"/{project}/leave") == {"id": project}
    assert_error(bob.call(f"/{project}/describe"), 404, "ResourceNotFound")


def test_destroy_removes_the_project_and_its_objects(alice, bob, project, tree):
    alice.ok(f"/{project}/invite", {"invitee": "user-bob", "level": "CONTRIBUTE"})
    assert_error(bob.call(f"/{project}/destroy"), 403, "PermissionDenied")
    alice.ok(f"/{project}/destroy")
    assert_error(alice.call(f"/{project}/describe"), 404, "ResourceNotFound")
    assert not DataObject.objects.filter(pk__in=tree.values()).exists()
    assert project not in ids(alice.ok("/system/findProjects"))


# whoami and users ----------------------------------------------------------------------


def test_whoami_returns_the_client_ip_when_asked(alice):
    response = alice.raw("/system/whoami", '{"fields": {"clientIp": true}}', REMOTE_ADDR="203.0.113.7")
    assert response.json() == {"id": "user-alice", "clientIp": "203.0.113.7"}
    assert alice.ok("/system/whoami") == {"id": "user-alice"}


@pytest.mark.parametrize(
    "key",
    [
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJ8 alice@laptop\n",
        "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQC7 no newline",
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJ8 two spaces  and a CRLF\r\n",
    ],
)
def test_the_ssh_public_key_round_trips_byte_for_byte_and_null_revokes_it(alice, key):
    assert alice.ok("/user-alice/update", {"sshPublicKey": key}) == {"id": "user-alice"}
    assert alice.ok("/user-alice/describe")["sshPublicKey"] == key
    alice.ok("/user-alice/update", {"sshPublicKey": None})
    assert alice.ok("/user-alice/describe")["sshPublicKey"] is None


def test_a_refused_user_update_changes_nothing(alice):
    alice.ok("/user-alice/update", {"sshPublicKey": "ssh-ed25519 AAAA key\n", "first": "Alice"})
    status, _ = alice.call("/user-alice/update", {"sshPublicKey": "ssh-ed25519 BBBB new\n", "first": "x" * 500})
    assert status == 422
    described = alice.ok("/user-alice/describe")
    assert described["sshPublicKey"] == "ssh-ed25519 AAAA key\n" and described["first"] == "Alice"


def test_describing_the_handle_for_dx_whoami(alice, bob):
    assert alice.ok("/user-alice/describe")["handle"] == "alice"
    assert bob.ok("/user-alice/describe") == {"id": "user-alice", "class": "user", "handle": "alice"}
    assert make_actor("dora").ok("/system/whoami") == {"id": "user-dora"}


def test_describe_reports_the_data_usage_of_the_projects_files(alice, project):
    from projects import actions as project_actions
    from projects.models import Container, DataObject

    container = Container.objects.get(pk=project)
    for size in (1_500_000_000, 250_000_000):
        project_actions.new_object(alice.user, container, "file", name=f"f{size}", state=DataObject.CLOSED, size=size)
    described = alice.ok(f"/{project}/describe", {})
    assert described["dataUsage"] == 1.75 and isinstance(described["dataUsage"], float)
