"""Bad input never gets a 500 or half-written data: every mistake is a clear 4xx JSON error."""

import json
import time

import pytest
from django.test import Client

from jobs.models import Job, State
from projects import transfer
from projects.models import DataObject, FilePart, Folder, Nonce, Placement
from tests.conftest import ApiClient, make_actor

from .api_helpers import assert_error, build_world, content, get, md5, post_json, put, reply_of, upload_part

ZEROS = "0" * 24

# Downloads stream from an async iterator, which the test client consumes synchronously.
pytestmark = pytest.mark.filterwarnings("ignore:StreamingHttpResponse must consume asynchronous iterators")


@pytest.fixture
def alice(db):
    return make_actor("alice")


@pytest.fixture
def world(alice):
    return build_world(alice)


@pytest.fixture(autouse=True)
def small_parts(settings):
    settings.DXWEB_MIN_PART_SIZE = 4
    settings.DXWEB_MAX_PART_SIZE = 64


def folders(world):
    return sorted(Folder.objects.filter(container_id=world.project).values_list("path", flat=True))


def names(world):
    return sorted(Placement.objects.filter(container_id=world.project).values_list("folder", "name"))


# Paths and names ------------------------------------------------------------------

BAD_PATHS = {
    "parent traversal": "../etc",
    "traversal inside": "/a/../b",
    "dot component": "/a/./b",
    "trailing dot-dot": "/data/..",
    "relative": "data/sub",
    "empty": "",
    "NUL": "/a\x00b",
    "newline": "/a\nb",
    "escape": "/a\x1b[31mb",
    "DEL": "/a\x7f",
    "10 kB component": "/" + "x" * 10_000,
    "10 kB path": "/a" * 5_000,
}

PATH_CALLS = {
    "newFolder": lambda w, p: (f"/{w.project}/newFolder", {"folder": p, "parents": True}),
    "file/new folder": lambda w, p: ("/file/new", {"project": w.project, "name": "f", "folder": p, "parents": True}),
    "listFolder": lambda w, p: (f"/{w.project}/listFolder", {"folder": p}),
    "move destination": lambda w, p: (f"/{w.project}/move", {"objects": [w.closed], "destination": p}),
    "move folders": lambda w, p: (f"/{w.project}/move", {"folders": [p], "destination": "/data"}),
    "removeFolder": lambda w, p: (f"/{w.project}/removeFolder", {"folder": p, "recurse": True}),
    "renameFolder": lambda w, p: (f"/{w.project}/renameFolder", {"folder": p, "name": "x"}),
    "clone destination": lambda w, p: (
        f"/{w.project}/clone",
        {"objects": [w.closed], "project": w.project, "destination": p, "parents": True},
    ),
    "findDataObjects scope": lambda w, p: ("/system/findDataObjects", {"scope": {"project": w.project, "folder": p}}),
    "resolveDataObjects folder": lambda w, p: (
        "/system/resolveDataObjects",
        {"objects": [{"project": w.project, "folder": p, "name": "closed.txt"}]},
    ),
}


@pytest.mark.parametrize("path", BAD_PATHS.values(), ids=BAD_PATHS.keys())
@pytest.mark.parametrize("call", PATH_CALLS)
def test_bad_folder_paths_are_refused_and_change_nothing(alice, world, call, path):
    before = folders(world), names(world)
    route, body = PATH_CALLS[call](world, path)
    status, reply = alice.call(route, body)
    assert_error((status, reply), 422, "InvalidInput")
    assert (folders(world), names(world)) == before


BAD_NAMES = {
    "dot-dot": "..",
    "dot": ".",
    "slash": "a/b",
    "traversal": "../../etc/passwd",
    "empty": "",
    "blank": "   ",
    "NUL": "a\x00b",
    "newline": "a\nb",
    "tab": "a\tb",
    "DEL": "a\x7fb",
    "10 kB": "n" * 10_000,
}

NAME_CALLS = {
    "file/new": lambda w, n: ("/file/new", {"project": w.project, "name": n}),
    "rename": lambda w, n: (f"/{w.closed}/rename", {"project": w.project, "name": n}),
    "renameFolder": lambda w, n: (f"/{w.project}/renameFolder", {"folder": "/data", "name": n}),
    "project/new": lambda w, n: ("/project/new", {"name": n}),
    "project update": lambda w, n: (f"/{w.project}/update", {"name": n}),
}


@pytest.mark.parametrize("name", BAD_NAMES.values(), ids=BAD_NAMES.keys())
@pytest.mark.parametrize("call", NAME_CALLS)
def test_bad_names_are_refused_and_change_nothing(alice, world, call, name):
    before = folders(world), names(world), alice.ok(f"/{world.project}/describe")["name"]
    route, body = NAME_CALLS[call](world, name)
    status, reply = alice.call(route, body)
    assert_error((status, reply), 422, "InvalidInput")
    assert (folders(world), names(world), alice.ok(f"/{world.project}/describe")["name"]) == before


def test_odd_but_harmless_names_round_trip_exactly(alice, world):
    for name in ["..hidden", "a b", "ünïcødé ✓", "a\\b", "<script>", "name.with.dots", "%2e%2e"]:
        file_id = alice.ok("/file/new", {"project": world.project, "name": name})["id"]
        assert alice.ok(f"/{file_id}/describe")["name"] == name
        alice.ok(f"/{world.project}/newFolder", {"folder": f"/d/{name}", "parents": True})
    listed = alice.ok(f"/{world.project}/listFolder", {"folder": "/d"})["folders"]
    assert "/d/..hidden" in listed and "/d/%2e%2e" in listed


def test_redundant_slashes_are_normalised(alice, world):
    alice.ok(f"/{world.project}/newFolder", {"folder": "//x///y/", "parents": True})
    assert {"/x", "/x/y"} <= set(folders(world))


def test_moves_and_renames_that_would_make_a_path_too_long_are_refused(alice, world):
    deep = "".join("/" + c * 200 for c in "abcde")  # 1005 characters
    alice.ok(f"/{world.project}/newFolder", {"folder": deep, "parents": True})
    alice.ok(f"/{world.project}/newFolder", {"folder": "/" + "z" * 100})
    before = folders(world)
    status, reply = alice.call(f"/{world.project}/move", {"folders": ["/" + "a" * 200], "destination": "/" + "z" * 100})
    assert_error((status, reply), 422, "InvalidInput")
    status, reply = alice.call(f"/{world.project}/renameFolder", {"folder": "/" + "a" * 200, "name": "n" * 255})
    assert_error((status, reply), 422, "InvalidInput")
    assert folders(world) == before


def test_odd_names_survive_the_download_url(alice, world):
    for name in ["a?b#c.txt", "100%.txt", "ünï cødé.txt", "semi;colon\"quote'.txt"]:
        file_id = alice.ok("/file/new", {"project": world.project, "name": name})["id"]
        assert upload_part(alice, file_id, 1, b"bytes").status_code == 200
        alice.ok(f"/{file_id}/close")
        response = get(alice.ok(f"/{file_id}/download")["url"])
        assert response.status_code == 200 and content(response) == b"bytes"


# Bodies ------------------------------------------------------------------------------

BAD_BODIES = {
    "truncated": b'{"name": ',
    "not JSON": b"name=alice",
    "invalid UTF-8": b'{"name": "\xff\xfe"}',
    "NaN": b'{"limit": NaN}',
    "Infinity": b'{"limit": Infinity}',
    "deeply nested": b"[" * 100_000 + b"]" * 100_000,
    "trailing garbage": b'{"a": 1} {"b": 2}',
}


@pytest.mark.parametrize("raw", BAD_BODIES.values(), ids=BAD_BODIES.keys())
def test_a_body_that_is_not_json_gets_a_400_json_error(alice, world, raw):
    status, reply = post_json(alice, f"/{world.project}/describe", raw)
    assert_error((status, reply), 400, "InvalidInput")


@pytest.mark.parametrize("raw", [b"[1, 2]", b'"a string"', b"null", b"42", b"true"])
def test_a_json_body_that_is_not_an_object_is_refused(alice, world, raw):
    before = names(world)
    status, reply = post_json(alice, "/file/new", raw)
    assert_error((status, reply), 400, "InvalidInput")
    assert names(world) == before


def test_an_empty_body_is_an_empty_object(alice, world):
    assert post_json(alice, f"/{world.project}/describe", b"")[0] == 200


def test_a_body_larger_than_the_limit_gets_a_413_json_error(alice, world, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1024
    raw = json.dumps({"project": world.project, "name": "big", "details": {"x": "y" * 4096}}).encode()
    status, reply = post_json(alice, "/file/new", raw)
    assert_error((status, reply), 413)


def test_nul_anywhere_in_a_body_is_refused(alice, world):
    for body in (
        {"name": "a\x00"},
        {"scope": {"project": world.project}, "name": {"glob": "\x00*"}},
        {"objects": ["file-\x00"]},
    ):
        status, reply = alice.call("/system/findDataObjects", body)
        assert_error((status, reply), 422, "InvalidInput")
    status, reply = alice.call(f"/{world.open}/setDetails", {"details": {"k": "v\x00"}})
    assert_error((status, reply), 422, "InvalidInput")


def test_the_reply_says_which_key_is_wrong(alice, world):
    status, reply = alice.call("/file/new", {"project": world.project, "name": 5})
    assert status == 422 and '"name"' in reply["error"]["message"]


# Wrong types for common keys ------------------------------------------------------------

WRONG_TYPES = {
    "project/new name int": lambda w: ("/project/new", {"name": 5}),
    "project/new tags string": lambda w: ("/project/new", {"name": "p", "tags": "t"}),
    "project/new tags of ints": lambda w: ("/project/new", {"name": "p", "tags": [1]}),
    "project/new property int": lambda w: ("/project/new", {"name": "p", "properties": {"k": 1}}),
    "project/new properties array": lambda w: ("/project/new", {"name": "p", "properties": ["k"]}),
    "project/new summary int": lambda w: ("/project/new", {"name": "p", "summary": 1}),
    "file/new project int": lambda w: ("/file/new", {"project": 5, "name": "f"}),
    "file/new name int": lambda w: ("/file/new", {"project": w.project, "name": 5}),
    "file/new folder int": lambda w: ("/file/new", {"project": w.project, "folder": 5}),
    "file/new parents string": lambda w: ("/file/new", {"project": w.project, "parents": "yes"}),
    "file/new hidden string": lambda w: ("/file/new", {"project": w.project, "hidden": "no"}),
    "file/new tags string": lambda w: ("/file/new", {"project": w.project, "tags": "t"}),
    "file/new types string": lambda w: ("/file/new", {"project": w.project, "types": "t"}),
    "file/new property list": lambda w: ("/file/new", {"project": w.project, "properties": {"k": ["v"]}}),
    "file/new property null": lambda w: ("/file/new", {"project": w.project, "properties": {"k": None}}),
    "file/new details string": lambda w: ("/file/new", {"project": w.project, "details": "d"}),
    "file/new media int": lambda w: ("/file/new", {"project": w.project, "media": 5}),
    "findProjects limit bool": lambda w: ("/system/findProjects", {"limit": True}),
    "findProjects limit string": lambda w: ("/system/findProjects", {"limit": "10"}),
    "findProjects limit zero": lambda w: ("/system/findProjects", {"limit": 0}),
    "findProjects limit float": lambda w: ("/system/findProjects", {"limit": 2.5}),
    "findProjects limit huge": lambda w: ("/system/findProjects", {"limit": 10**40}),
    "findProjects starting bool": lambda w: ("/system/findProjects", {"starting": True}),
    "findProjects starting object": lambda w: ("/system/findProjects", {"starting": {"x": 1}}),
    "findProjects level unknown": lambda w: ("/system/findProjects", {"level": "OWNER"}),
    "findProjects level int": lambda w: ("/system/findProjects", {"level": 3}),
    "findProjects name int": lambda w: ("/system/findProjects", {"name": 5}),
    "findProjects glob int": lambda w: ("/system/findProjects", {"name": {"glob": 5}}),
    "findProjects bad regexp": lambda w: ("/system/findProjects", {"name": {"regexp": "(("}}),
    "findProjects describe string": lambda w: ("/system/findProjects", {"describe": "yes"}),
    "findProjects tags int": lambda w: ("/system/findProjects", {"tags": 5}),
    "findProjects properties string": lambda w: ("/system/findProjects", {"properties": "k"}),
    "findProjects billTo object": lambda w: ("/system/findProjects", {"billTo": {"a": 1}}),
    "findProjects id string": lambda w: ("/system/findProjects", {"id": w.project}),
    "findDataObjects scope string": lambda w: ("/system/findDataObjects", {"scope": w.project}),
    "findDataObjects scope project int": lambda w: ("/system/findDataObjects", {"scope": {"project": 5}}),
    "findDataObjects recurse string": lambda w: (
        "/system/findDataObjects",
        {"scope": {"project": w.project, "recurse": "yes"}},
    ),
    "findDataObjects class int": lambda w: ("/system/findDataObjects", {"class": 5}),
    "findDataObjects state list": lambda w: ("/system/findDataObjects", {"state": ["closed"]}),
    "findDataObjects visibility unknown": lambda w: ("/system/findDataObjects", {"visibility": "all"}),
    "findDataObjects limit bool": lambda w: ("/system/findDataObjects", {"limit": False}),
    "findDataObjects tags $and string": lambda w: ("/system/findDataObjects", {"tags": {"$and": "t"}}),
    "findDataObjects tags $and of ints": lambda w: ("/system/findDataObjects", {"tags": {"$and": ["t", 5]}}),
    "findDataObjects properties list": lambda w: ("/system/findDataObjects", {"properties": ["k"]}),
    "findDataObjects describe int": lambda w: ("/system/findDataObjects", {"describe": 5}),
    "findDataObjects starting string": lambda w: ("/system/findDataObjects", {"starting": "abc"}),
    "findDataObjects starting huge": lambda w: ("/system/findDataObjects", {"starting": 10**30}),
    "findDataObjects id string": lambda w: ("/system/findDataObjects", {"id": w.closed}),
    "resolveDataObjects objects string": lambda w: ("/system/resolveDataObjects", {"objects": "x"}),
    "resolveDataObjects entry int": lambda w: ("/system/resolveDataObjects", {"objects": [5]}),
    "resolveDataObjects name int": lambda w: (
        "/system/resolveDataObjects",
        {"objects": [{"project": w.project, "name": 5}]},
    ),
    "resolveDataObjects no project": lambda w: ("/system/resolveDataObjects", {"objects": [{"name": "a"}]}),
    "describeDataObjects objects string": lambda w: ("/system/describeDataObjects", {"objects": w.closed}),
    "listFolder folder int": lambda w: (f"/{w.project}/listFolder", {"folder": 5}),
    "listFolder only unknown": lambda w: (f"/{w.project}/listFolder", {"only": "some"}),
    "listFolder includeHidden string": lambda w: (f"/{w.project}/listFolder", {"includeHidden": "yes"}),
    "listFolder describe int": lambda w: (f"/{w.project}/listFolder", {"describe": 5}),
    "newFolder folder missing": lambda w: (f"/{w.project}/newFolder", {}),
    "newFolder parents string": lambda w: (f"/{w.project}/newFolder", {"folder": "/x", "parents": "true"}),
    "removeFolder recurse string": lambda w: (f"/{w.project}/removeFolder", {"folder": "/data", "recurse": "1"}),
    "move objects string": lambda w: (f"/{w.project}/move", {"objects": w.closed, "destination": "/data"}),
    "move objects of ints": lambda w: (f"/{w.project}/move", {"objects": [5], "destination": "/data"}),
    "move folders string": lambda w: (f"/{w.project}/move", {"folders": "/data", "destination": "/"}),
    "move destination missing": lambda w: (f"/{w.project}/move", {"objects": [w.closed]}),
    "removeObjects objects string": lambda w: (f"/{w.project}/removeObjects", {"objects": w.closed}),
    "removeObjects objects of ints": lambda w: (f"/{w.project}/removeObjects", {"objects": [5]}),
    "clone project int": lambda w: (f"/{w.project}/clone", {"project": 5, "objects": [w.closed]}),
    "clone objects of ints": lambda w: (f"/{w.project}/clone", {"project": w.project, "objects": [5]}),
    "update name int": lambda w: (f"/{w.project}/update", {"name": 5}),
    "addTags string": lambda w: (f"/{w.closed}/addTags", {"tags": "t"}),
    "addTags null": lambda w: (f"/{w.closed}/addTags", {"tags": [None]}),
    "addTags missing": lambda w: (f"/{w.closed}/addTags", {}),
    "addTags empty tag": lambda w: (f"/{w.project}/addTags", {"tags": [""]}),
    "removeTags object": lambda w: (f"/{w.project}/removeTags", {"tags": {"t": 1}}),
    "setProperties value int": lambda w: (f"/{w.closed}/setProperties", {"properties": {"k": 1}}),
    "setProperties value object": lambda w: (f"/{w.project}/setProperties", {"properties": {"k": {"v": 1}}}),
    "setProperties string": lambda w: (f"/{w.project}/setProperties", {"properties": "k=v"}),
    "setProperties 10 kB value": lambda w: (f"/{w.project}/setProperties", {"properties": {"k": "v" * 10_000}}),
    "rename name int": lambda w: (f"/{w.closed}/rename", {"name": 5}),
    "rename name missing": lambda w: (f"/{w.closed}/rename", {}),
    "setVisibility string": lambda w: (f"/{w.closed}/setVisibility", {"hidden": "true"}),
    "setDetails bad link": lambda w: (f"/{w.open}/setDetails", {"d": {"$dnanexus_link": 5}}),
    "invite invitee int": lambda w: (f"/{w.project}/invite", {"invitee": 5, "level": "VIEW"}),
    "invite level int": lambda w: (f"/{w.project}/invite", {"invitee": "user-alice", "level": 4}),
    "invite level unknown": lambda w: (f"/{w.project}/invite", {"invitee": "user-alice", "level": "OWNER"}),
    "decreasePermissions level int": lambda w: (f"/{w.project}/decreasePermissions", {"user-alice": 1}),
    "upload index string": lambda w: (f"/{w.open}/upload", {"index": "1"}),
    "upload index zero": lambda w: (f"/{w.open}/upload", {"index": 0}),
    "upload index bool": lambda w: (f"/{w.open}/upload", {"index": True}),
    "upload index too high": lambda w: (f"/{w.open}/upload", {"index": 10_001}),
    "upload size negative": lambda w: (f"/{w.open}/upload", {"index": 1, "size": -1}),
    "upload size string": lambda w: (f"/{w.open}/upload", {"index": 1, "size": "3"}),
    "upload size over the part limit": lambda w: (f"/{w.open}/upload", {"index": 1, "size": 65}),
    "upload md5 not hex": lambda w: (f"/{w.open}/upload", {"index": 1, "md5": "z" * 32}),
    "upload md5 int": lambda w: (f"/{w.open}/upload", {"index": 1, "md5": 5}),
    "download filename int": lambda w: (f"/{w.closed}/download", {"filename": 5}),
    "download filename with slash": lambda w: (f"/{w.closed}/download", {"filename": "a/b"}),
    "download filename empty": lambda w: (f"/{w.closed}/download", {"filename": ""}),
    "user update key int": lambda w: ("/user-alice/update", {"sshPublicKey": 5}),
    "user update key not a key": lambda w: ("/user-alice/update", {"sshPublicKey": "hello"}),
    "user update first int": lambda w: ("/user-alice/update", {"first": 5}),
    "org new handle int": lambda w: ("/org/new", {"handle": 5}),
    "org new handle with spaces": lambda w: ("/org/new", {"handle": "my org"}),
    "nonce int": lambda w: ("/file/new", {"project": w.project, "nonce": 5}),
    "nonce empty": lambda w: ("/file/new", {"project": w.project, "nonce": ""}),
    "nonce over 128 bytes": lambda w: ("/file/new", {"project": w.project, "nonce": "é" * 65}),
}


@pytest.mark.parametrize("call", WRONG_TYPES)
def test_wrong_types_for_common_keys_are_invalid_input(alice, world, call):
    before = folders(world), names(world)
    route, body = WRONG_TYPES[call](world)
    status, reply = alice.call(route, body)
    assert_error((status, reply), 422, "InvalidInput")
    assert (folders(world), names(world)) == before


# Unknown IDs, IDs of the wrong class, malformed IDs, unknown routes ------------------------


def test_unknown_ids_are_resource_not_found(alice, world):
    missing_file, missing_project = f"file-{ZEROS}", f"project-{ZEROS}"
    for route, body in [
        (f"/{missing_project}/describe", {}),
        (f"/container-{ZEROS}/listFolder", {}),
        (f"/{missing_file}/describe", {}),
        (f"/{missing_file}/close", {}),
        ("/file/new", {"project": missing_project}),
        (f"/{world.project}/clone", {"objects": [world.closed], "project": missing_project}),
        (f"/{world.project}/removeObjects", {"objects": [missing_file]}),
        (f"/{world.project}/move", {"objects": [missing_file], "destination": "/"}),
        ("/system/findDataObjects", {"scope": {"project": missing_project}}),
        (f"/{world.project}/listFolder", {"folder": "/nowhere"}),
        (f"/{world.project}/removeFolder", {"folder": "/nowhere"}),
        ("/user-nobody/describe", {}),
        ("/org-nobody/describe", {}),
    ]:
        status, reply = alice.call(route, body)
        assert_error((status, reply), 404, "ResourceNotFound", context=route)
    assert alice.ok("/system/describeDataObjects", {"objects": [missing_file]})["results"][0]["error"]["type"] == (
        "ResourceNotFound"
    )
    assert alice.ok("/system/resolveDataObjects", {"objects": [{"id": missing_file}]}) == {"results": [[]]}


def test_ids_of_the_wrong_class_are_resource_not_found(alice, world):
    file_suffix = world.closed.split("-", 1)[1]
    project_suffix = world.project.split("-", 1)[1]
    for route, body in [
        (f"/file-{project_suffix}/listFolder", {}),
        (f"/file-{project_suffix}/describe", {}),
        (f"/record-{file_suffix}/describe", {}),
        (f"/applet-{file_suffix}/describe", {}),
        (f"/container-{project_suffix}/describe", {}),
        (f"/project-{file_suffix}/describe", {}),
        (f"/{world.project}/close", {}),
        (f"/{world.project}/upload", {}),
        (f"/{world.closed}/listFolder", {}),
        (f"/{world.closed}/invite", {"invitee": "user-alice", "level": "VIEW"}),
        ("/file/new", {"project": world.closed, "name": "x"}),
        (f"/{world.project}/clone", {"objects": [world.closed], "project": world.closed}),
        (f"/{world.project}/removeObjects", {"objects": [world.project]}),
        ("/system/findDataObjects", {"scope": {"project": world.closed}}),
    ]:
        status, reply = alice.call(route, body)
        assert_error((status, reply), 404, "ResourceNotFound", context=route)
    assert "error" in alice.ok("/system/describeDataObjects", {"objects": [world.project]})["results"][0]
    status, reply = alice.call(f"/{world.project}/invite", {"invitee": world.project, "level": "VIEW"})
    assert_error((status, reply), 422, "InvalidInput")


@pytest.mark.parametrize(
    "route",
    [
        "/file-abc/describe",
        f"/file-{ZEROS[:23]}/describe",
        f"/file-{ZEROS}0/describe",
        f"/file-{ZEROS[:23]}_/describe",
        "/file-/describe",
        "/FILE-000000000000000000000000/describe",
        "/project-../describe",
        "/project-%2e%2e/describe",
        "/user-/describe",
        "/user-Alice/describe",
        "/org-/describe",
        "/org-a b/describe",
        "/app-foo/describe",
        "/globalworkflow-foo/describe",
        "/app-bwa_mem/run",
        f"/app-{ZEROS}/describe",
        "/system/noSuchMethod",
        "/project/describe",
        "/file/describe",
        "/system",
        "/nothing",
        "/a/b/c",
        "/project-000000000000000000000000/describe/",
        "/project-000000000000000000000000/no-such-method",
        f"/file-{ZEROS}/nonexistentMethod",
    ],
)
def test_malformed_ids_and_unknown_routes_get_a_json_404(alice, route):
    status, reply = post_json(alice, route, b"{}")
    assert_error((status, reply), 404, "ResourceNotFound", context=route)


@pytest.mark.parametrize("method", ["get", "put", "delete", "head", "options", "patch"])
def test_api_calls_are_made_with_post(alice, world, method):
    response = getattr(alice.client, method)(f"/{world.project}/describe", HTTP_AUTHORIZATION=f"Bearer {alice.token}")
    assert response.status_code == 405
    if method != "head":
        assert_error(reply_of(response), 405, "MethodNotAllowed")
    assert response["Content-Type"].startswith("application/json")


@pytest.mark.parametrize("header", ["", "Bearer", "Bearer ", "Bearer nope", "Basic YWxpY2U6eA==", "bearer"])
def test_missing_or_bad_tokens_are_invalid_authentication(world, header):
    response = Client().post("/system/whoami", "{}", content_type="application/json", HTTP_AUTHORIZATION=header)
    assert_error(reply_of(response), 401, "InvalidAuthentication")


def test_an_unauthenticated_caller_learns_nothing_from_a_broken_body(world):
    status, reply = post_json(ApiClient(), f"/{world.project}/describe", b"{not json")
    assert_error((status, reply), 401, "InvalidAuthentication")


def test_an_unexpected_failure_is_still_a_json_error(alice, monkeypatch):
    from dxweb import api, urls  # noqa: F401  (the URLconf registers the real handlers first)

    def broken(principal, body):
        raise RuntimeError("a bug")

    monkeypatch.setitem(api.HANDLERS, ("system", "findApps"), broken)
    status, reply = alice.call("/system/findApps")
    assert_error((status, reply), 500, "InternalError")
    assert "a bug" not in reply["error"]["message"]


# Invites --------------------------------------------------------------------------------


@pytest.mark.parametrize("invitee", ["user-nobody", "org-nobody", "bob", "user-", "org-", "", "file-" + ZEROS])
def test_invites_of_unknown_users_or_orgs_are_refused(alice, world, invitee):
    before = alice.ok(f"/{world.project}/describe")["permissions"]
    status, reply = alice.call(f"/{world.project}/invite", {"invitee": invitee, "level": "VIEW"})
    assert_error((status, reply), 422, "InvalidInput")
    assert alice.ok(f"/{world.project}/describe")["permissions"] == before
    alice.ok("/org/new", {"handle": "lab"})
    status, reply = alice.call("/org-lab/invite", {"invitee": invitee, "level": "MEMBER"})
    assert_error((status, reply), 422, "InvalidInput")
    status, reply = alice.call(f"/{world.project}/decreasePermissions", {invitee: None})
    assert_error((status, reply), 422, "InvalidInput")


# Uploads --------------------------------------------------------------------------------


def parts_of(alice, file_id):
    return alice.ok(f"/{file_id}/describe", {"fields": {"parts": True, "state": True}})


def test_putting_more_bytes_than_announced_is_refused_and_the_part_stays_pending(alice, world):
    response = upload_part(alice, world.open, 1, b"abc", size=3, md5=md5(b"abc"))
    assert response.status_code == 200
    signed = alice.ok(f"/{world.open}/upload", {"index": 2, "size": 3, "md5": md5(b"abc")})
    response = put(signed["url"], b"abcdef")
    assert 400 <= response.status_code < 500 and "error" in response.json()
    assert parts_of(alice, world.open)["parts"]["2"]["state"] == "pending"


def test_bytes_past_the_content_length_are_never_read(alice, world):
    signed = alice.ok(f"/{world.open}/upload", {"index": 1})
    response = put(signed["url"], b"x" * 65, CONTENT_LENGTH="10")
    assert response.status_code == 200 and response.json()["size"] == 10


def test_a_part_over_the_maximum_part_size_is_refused(alice, world):
    status, reply = alice.call(f"/{world.open}/upload", {"index": 1, "size": 65})
    assert_error((status, reply), 422, "InvalidInput")
    signed = alice.ok(f"/{world.open}/upload", {"index": 1})
    response = put(signed["url"], b"x" * 65)
    assert_error(reply_of(response), 413)
    assert parts_of(alice, world.open)["parts"]["1"]["state"] == "pending"
    assert put(alice.ok(f"/{world.open}/upload", {"index": 1})["url"], b"x" * 64).status_code == 200


def test_a_part_whose_md5_does_not_match_is_refused_and_not_complete(alice, world):
    signed = alice.ok(f"/{world.open}/upload", {"index": 1, "size": 4, "md5": md5(b"good")})
    response = put(signed["url"], b"evil")
    assert response.status_code == 400 and "md5" in response.json()["error"]["message"]
    assert parts_of(alice, world.open)["parts"]["1"]["state"] == "pending"
    assert_error(alice.call(f"/{world.open}/close"), 422, "InvalidState")


def test_a_part_whose_size_does_not_match_is_refused_and_not_complete(alice, world):
    signed = alice.ok(f"/{world.open}/upload", {"index": 1, "size": 8})
    response = put(signed["url"], b"four")
    assert response.status_code == 400 and response.json()["error"]["type"] == "InvalidInput"
    assert parts_of(alice, world.open)["parts"]["1"]["state"] == "pending"


def test_closing_with_a_requested_but_missing_part_keeps_the_file_open_and_out_of_sight(alice, world):
    assert upload_part(alice, world.open, 1, b"first").status_code == 200
    alice.ok(f"/{world.open}/upload", {"index": 2, "size": 5, "md5": md5(b"later")})
    status, reply = alice.call(f"/{world.open}/close")
    assert_error((status, reply), 422, "InvalidState")
    assert "2" in reply["error"]["message"], reply
    assert parts_of(alice, world.open)["state"] == "open"
    closed = alice.ok("/system/findDataObjects", {"scope": {"project": world.project}, "state": "closed"})
    assert world.open not in [r["id"] for r in closed["results"]]
    assert_error(alice.call(f"/{world.open}/download"), 422, "InvalidState")


def test_a_non_final_part_smaller_than_the_minimum_is_refused_at_close(alice, world):
    assert upload_part(alice, world.open, 1, b"abc").status_code == 200
    assert upload_part(alice, world.open, 2, b"tail").status_code == 200
    status, reply = alice.call(f"/{world.open}/close")
    assert_error((status, reply), 422, "InvalidState")
    assert "at least 4" in reply["error"]["message"], reply
    assert parts_of(alice, world.open)["state"] == "open"
    assert upload_part(alice, world.open, 1, b"abcd").status_code == 200
    assert alice.ok(f"/{world.open}/close") == {"id": world.open}


def test_an_old_upload_url_cannot_change_a_closed_file(alice, world):
    signed = alice.ok(f"/{world.open}/upload", {"index": 1, "size": 4, "md5": md5(b"okay")})
    assert put(signed["url"], b"okay").status_code == 200
    alice.ok(f"/{world.open}/close")
    response = put(signed["url"], b"okay")
    assert 400 <= response.status_code < 500 and "error" in response.json()
    url = alice.ok(f"/{world.open}/download")["url"]
    assert content(get(url)) == b"okay"


def test_transfer_urls_are_refused_once_expired(alice, world, monkeypatch):
    upload_part(alice, world.open, 1, b"data")
    alice.ok(f"/{world.open}/close")
    real_time = time.time
    clock = type("Clock", (), {"time": staticmethod(lambda: real_time() - 8 * 24 * 3600)})  # past every lifetime
    monkeypatch.setattr(transfer, "time", clock)
    stale_down = alice.ok(f"/{world.open}/download")["url"]
    file_id = alice.ok("/file/new", {"project": world.project})["id"]
    stale_up = alice.ok(f"/{file_id}/upload", {"index": 1})["url"]
    monkeypatch.undo()
    response = get(stale_down)
    assert 400 <= response.status_code < 500 and "expired" in response.json()["error"]["message"]
    response = put(stale_up, b"data")
    assert 400 <= response.status_code < 500 and "expired" in response.json()["error"]["message"]


def test_forged_or_swapped_transfer_urls_are_refused(alice, world):
    upload_part(alice, world.open, 1, b"data")
    alice.ok(f"/{world.open}/close")
    down = alice.ok(f"/{world.open}/download")["url"]
    file_id = alice.ok("/file/new", {"project": world.project})["id"]
    up = alice.ok(f"/{file_id}/upload", {"index": 1})["url"]
    down_token = down.split("/transfer/down/")[1].split("/")[0]
    up_token = up.split("/transfer/up/")[1]
    forged = up_token[:-3] + ("AAA" if not up_token.endswith("AAA") else "BBB")
    for response in [
        put(f"http://testserver/transfer/up/{forged}", b"data"),
        put(f"http://testserver/transfer/up/{down_token}", b"data"),
        get(f"http://testserver/transfer/down/{up_token}/x"),
        get(f"http://testserver/transfer/down/{down_token[:-2]}xx/x"),
        get("http://testserver/transfer/down/garbage/x"),
    ]:
        assert response.status_code == 404 and response.json()["error"]["type"] == "ResourceNotFound"
    assert Client().get(up).status_code == 405
    assert Client().post(down).status_code == 405
    assert FilePart.objects.get(file_id=file_id).state == FilePart.PENDING


@pytest.fixture
def ten_bytes(alice, world):
    """A closed file of three parts: 0123 | 4567 | 89."""
    for index, data in enumerate([b"0123", b"4567", b"89"], start=1):
        assert upload_part(alice, world.open, index, data).status_code == 200
    alice.ok(f"/{world.open}/close")
    return alice.ok(f"/{world.open}/download")["url"]


@pytest.mark.parametrize(
    "header,status,body,content_range",
    [
        (None, 200, b"0123456789", None),
        ("bytes=0-9", 206, b"0123456789", "bytes 0-9/10"),
        ("bytes=2-5", 206, b"2345", "bytes 2-5/10"),
        ("bytes=3-3", 206, b"3", "bytes 3-3/10"),
        ("bytes=7-", 206, b"789", "bytes 7-9/10"),
        ("bytes=8-100", 206, b"89", "bytes 8-9/10"),
        ("bytes=-3", 206, b"789", "bytes 7-9/10"),
        ("bytes=-100", 206, b"0123456789", "bytes 0-9/10"),
        ("bytes=10-", 416, None, "bytes */10"),
        ("bytes=10-20", 416, None, "bytes */10"),
        ("bytes=-0", 416, None, "bytes */10"),
        ("bytes=5-2", 200, b"0123456789", None),
        ("bytes=0-1,4-5", 200, b"0123456789", None),
        ("items=0-1", 200, b"0123456789", None),
        ("bytes=abc", 200, b"0123456789", None),
    ],
)
def test_downloads_honour_ranges_byte_for_byte(ten_bytes, header, status, body, content_range):
    response = get(ten_bytes, **({"HTTP_RANGE": header} if header else {}))
    assert response.status_code == status
    assert response.get("Content-Range") == content_range
    if body is not None:
        assert content(response) == body and response["Content-Length"] == str(len(body))


def test_an_empty_file_downloads_empty_and_refuses_every_range(alice, world):
    assert upload_part(alice, world.open, 1, b"").status_code == 200
    alice.ok(f"/{world.open}/close")
    url = alice.ok(f"/{world.open}/download")["url"]
    assert content(get(url)) == b""
    assert get(url, HTTP_RANGE="bytes=0-").status_code == 416


# Nonces ---------------------------------------------------------------------------------


def test_a_repeated_nonce_gets_the_same_reply_and_creates_one_object(alice, world):
    body = {"project": world.project, "name": "once.txt", "nonce": "n-1"}
    first = alice.ok("/file/new", body)
    assert alice.ok("/file/new", body) == first
    assert Placement.objects.filter(container_id=world.project, name="once.txt").count() == 1


def test_a_nonce_reused_with_a_different_input_is_refused(alice, world):
    alice.ok("/file/new", {"project": world.project, "name": "a.txt", "nonce": "n-2"})
    status, reply = alice.call("/file/new", {"project": world.project, "name": "b.txt", "nonce": "n-2"})
    assert_error((status, reply), 422, "InvalidInput")
    assert not Placement.objects.filter(name="b.txt").exists()


def test_a_nonce_reused_on_a_different_route_is_refused(alice, world):
    alice.ok("/file/new", {"project": world.project, "name": "a.txt", "nonce": "n-3"})
    status, reply = alice.call("/project/new", {"name": "p", "nonce": "n-3"})
    assert_error((status, reply), 422, "InvalidInput")
    assert Nonce.objects.filter(nonce="n-3").count() == 1


def test_a_failed_call_does_not_use_up_its_nonce(alice, world):
    body = {"project": world.project, "name": "x", "folder": "/later", "nonce": "n-4"}
    assert alice.call("/file/new", body)[0] == 404
    alice.ok(f"/{world.project}/newFolder", {"folder": "/later"})
    assert alice.ok("/file/new", body)["id"].startswith("file-")


def test_nonces_belong_to_their_caller(alice, world):
    bob = make_actor("bob")
    alice.ok(f"/{world.project}/invite", {"invitee": "user-bob", "level": "UPLOAD"})
    body = {"project": world.project, "name": "mine.txt", "nonce": "shared"}
    assert alice.ok("/file/new", body) != bob.ok("/file/new", body)


def test_an_expired_nonce_no_longer_replays(alice, world, settings):
    body = {"project": world.project, "name": "again.txt", "nonce": "n-5"}
    first = alice.ok("/file/new", body)
    settings.DXWEB_NONCE_TTL = -1
    assert alice.ok("/file/new", body) != first
    assert DataObject.objects.filter(placements__name="again.txt").count() == 2


# Lone UTF-16 surrogates ------------------------------------------------------------------

LONE = "\ud800"  # json.dumps writes it as the escape "\ud800", which decodes back to a lone surrogate
JOB_ID = "job-" + "S" * 24

SURROGATE_CALLS = {
    "findJobs project": lambda w: ("/system/findJobs", {"project": LONE}),
    "findExecutions project": lambda w: ("/system/findExecutions", {"project": w.project + LONE}),
    "project/new name": lambda w: ("/project/new", {"name": "p" + LONE}),
    "file/new name": lambda w: ("/file/new", {"project": w.project, "name": LONE}),
    "rename name": lambda w: (f"/{w.closed}/rename", {"project": w.project, "name": "x" + LONE}),
    "nonce": lambda w: ("/file/new", {"project": w.project, "name": "n", "nonce": LONE}),
    "clone project": lambda w: (f"/{w.project}/clone", {"objects": [w.closed], "project": LONE}),
    "clone destination": lambda w: (
        f"/{w.project}/clone",
        {"objects": [w.closed], "project": w.project, "destination": "/" + LONE},
    ),
    "download filename": lambda w: (f"/{w.closed}/download", {"filename": LONE}),
    "user/update": lambda w: ("/user-alice/update", {"first": LONE}),
    "job/update": lambda w: (f"/{JOB_ID}/update", {"name": LONE}),
    "a key": lambda w: (f"/{w.project}/describe", {LONE: True}),
    "deep in a value": lambda w: (f"/{w.open}/setDetails", {"details": {"a": [{"b": "\udfff"}]}}),
}


@pytest.fixture
def job(alice, world):
    return Job.objects.create(
        id=JOB_ID,
        name="j",
        executable="applet-" + ZEROS,
        project=world.container,
        launched_by=alice.user,
        state=State.RUNNING,
    )


@pytest.mark.parametrize("call", SURROGATE_CALLS)
def test_lone_surrogates_are_invalid_input_and_change_nothing(alice, world, job, call):
    path, body = SURROGATE_CALLS[call](world)
    before = (names(world), list(Nonce.objects.all()), alice.ok("/user-alice/describe"))
    status, reply = alice.call(path, body)
    assert_error((status, reply), 400, "InvalidInput")
    assert "surrogate" in reply["error"]["message"]
    assert (names(world), list(Nonce.objects.all()), alice.ok("/user-alice/describe")) == before
    assert Job.objects.get(pk=job.pk).name == "j"


def test_surrogate_pairs_are_characters_and_round_trip(alice, world):
    raw = b'{"project": "%s", "name": "\\ud83d\\ude00.txt"}' % world.project.encode()
    status, reply = post_json(alice, "/file/new", raw)
    assert status == 200, reply
    assert ("/", "\U0001f600.txt") in names(world)
