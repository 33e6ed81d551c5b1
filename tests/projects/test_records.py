"""Records through the API: new, close, details with links, types, describe, find, and who may call what."""

import pytest
from django.urls import reverse

from .api_helpers import assert_error, build_world, grant


@pytest.fixture
def world(alice):
    return build_world(alice)


def new_record(client, project, **fields):
    return client.ok("/record/new", {"project": project, **fields})["id"]


def test_a_record_is_created_with_its_metadata_and_described_as_dx_reads_it(alice, world):
    details = {"genome": {"$dnanexus_link": world.closed}, "n": [1, 2]}
    record = new_record(
        alice,
        world.project,
        name="ref",
        folder="/refs",
        parents=True,
        types=["Genome"],
        tags=["t1"],
        properties={"k": "v"},
        details=details,
        hidden=True,
    )
    described = alice.ok(f"/{record}/describe", {"project": world.project})
    assert described["class"] == "record"
    assert described["state"] == "open"
    assert (described["name"], described["folder"], described["hidden"]) == ("ref", "/refs", True)
    assert (described["types"], described["tags"], described["properties"]) == (["Genome"], ["t1"], {"k": "v"})
    assert described["details"] == details
    assert described["links"] == [world.closed]
    assert alice.ok(f"/{record}/getDetails") == details
    assert "size" not in described
    assert alice.ok(f"/{record}/listProjects") == {world.project: "ADMINISTER"}


def test_new_with_close_is_closed_and_defaults_are_dnanexus_s(alice, world):
    record = new_record(alice, world.project, close=True)
    described = alice.ok(f"/{record}/describe")
    assert (described["state"], described["name"], described["details"], described["types"]) == (
        "closed",
        "Untitled record",
        {},
        [],
    )


def test_initialize_from_copies_another_record_and_the_body_wins(alice, world):
    source = new_record(alice, world.project, name="src", types=["A"], tags=["x"], details={"a": 1})
    copy = alice.ok("/record/new", {"project": world.project, "initializeFrom": {"id": source}, "name": "copy"})["id"]
    described = alice.ok(f"/{copy}/describe")
    assert (described["name"], described["types"], described["tags"], described["details"]) == (
        "copy",
        ["A"],
        ["x"],
        {"a": 1},
    )
    assert_error(
        alice.call("/record/new", {"project": world.project, "initializeFrom": {"id": world.closed}}),
        422,
        "InvalidInput",
    )


def test_close_freezes_details_and_types(alice, world):
    record = new_record(alice, world.project, types=["A"])
    assert alice.ok(f"/{record}/setDetails", {"a": [1, 2]}) == {"id": record}
    assert alice.ok(f"/{record}/addTypes", {"types": ["B", "A"]}) == {"id": record}
    assert alice.ok(f"/{record}/removeTypes", {"types": ["A"]}) == {"id": record}
    assert alice.ok(f"/{record}/describe")["types"] == ["B"]
    assert alice.ok(f"/{record}/close") == {"id": record}
    assert alice.ok(f"/{record}/close") == {"id": record}  # closing again changes nothing
    assert alice.ok(f"/{record}/describe")["state"] == "closed"
    status, data = alice.call(f"/{record}/setDetails", {"x": 1})
    assert_error((status, data), 422, "InvalidState")
    assert "is not in the open state" in data["error"]["message"]
    assert_error(alice.call(f"/{record}/addTypes", {"types": ["C"]}), 422, "InvalidState")
    assert_error(alice.call(f"/{record}/removeTypes", {"types": ["B"]}), 422, "InvalidState")
    assert alice.ok(f"/{record}/getDetails") == {"a": [1, 2]}
    # tags, properties, name and visibility still change on a closed record
    alice.ok(f"/{record}/addTags", {"tags": ["later"]})
    alice.ok(f"/{record}/rename", {"name": "renamed"})
    alice.ok(f"/{record}/setVisibility", {"hidden": True})


def test_types_and_details_methods_serve_every_open_data_object_class(alice, world):
    assert alice.ok(f"/{world.open}/addTypes", {"types": ["Reads"]}) == {"id": world.open}
    assert alice.ok(f"/{world.open}/setDetails", {"a": 1}) == {"id": world.open}
    assert alice.ok(f"/{world.open}/getDetails") == {"a": 1}
    assert alice.ok(f"/{world.open}/describe")["types"] == ["Reads"]
    assert_error(alice.call(f"/{world.closed}/addTypes", {"types": ["Reads"]}), 422, "InvalidState")


@pytest.mark.parametrize(
    "body",
    [
        {"details": "text"},
        {"details": 3},
        {"types": "Genome"},
        {"types": [1]},
        {"tags": [None]},
        {"details": {"x": {"$dnanexus_link": "file-000000000000000000000000"}}},
        {"details": {"x": {"$dnanexus_link": 5}}},
        {"close": "yes"},
        {"initializeFrom": "record-x"},
    ],
)
def test_bad_record_new_input_is_refused_and_creates_nothing(alice, world, body):
    status, data = alice.call("/record/new", {"project": world.project, **body})
    assert status in (400, 422) and data["error"]["type"] == "InvalidInput", (status, data)
    assert alice.ok("/system/findDataObjects", {"class": "record", "visibility": "either"})["results"] == []


def test_bad_types_and_details_are_refused(alice, world):
    record = new_record(alice, world.project)
    for path, body in [
        ("setDetails", {"x": {"$dnanexus_link": "record-000000000000000000000000"}}),
        ("setDetails", {"x": {"$dnanexus_link": ["file-x"]}}),
        ("addTypes", {"types": "A"}),
        ("addTypes", {"types": [1]}),
        ("removeTypes", {}),
    ]:
        status, data = alice.call(f"/{record}/{path}", body)
        assert status in (400, 422) and data["error"]["type"] == "InvalidInput", (path, body, status, data)
    assert alice.ok(f"/{record}/describe")["details"] == {}


def test_a_link_to_an_object_the_caller_cannot_see_is_refused(alice, bob, world):
    theirs = bob.ok("/project/new", {"name": "bob's"})["id"]
    record = new_record(bob, theirs)
    assert_error(
        alice.call("/record/new", {"project": world.project, "details": {"r": {"$dnanexus_link": record}}}),
        422,
        "InvalidInput",
    )
    # a link with a project, as dxpy writes them, to a visible object is fine
    linked = {"r": {"$dnanexus_link": {"project": world.project, "id": world.closed}}}
    assert new_record(alice, world.project, details=linked)


ROUTES = [
    ("describe", {}, "VIEW"),
    ("getDetails", {}, "VIEW"),
    ("setDetails", {"a": 1}, "UPLOAD"),
    ("addTypes", {"types": ["T"]}, "UPLOAD"),
    ("removeTypes", {"types": ["T"]}, "UPLOAD"),
    ("addTags", {"tags": ["t"]}, "CONTRIBUTE"),
    ("setProperties", {"properties": {"a": "b"}}, "CONTRIBUTE"),
    ("setVisibility", {"hidden": False}, "CONTRIBUTE"),
    ("rename", {"name": "n"}, "CONTRIBUTE"),
    ("listProjects", {}, "VIEW"),
    ("close", {}, "UPLOAD"),
]


@pytest.mark.parametrize("method,body,needed", ROUTES, ids=[r[0] for r in ROUTES])
def test_every_record_route_for_owner_viewer_outsider_and_anonymous(
    alice, bob, charlie, anonymous, world, method, body, needed
):
    record = new_record(alice, world.project)
    grant(world.project, bob.user.dx_id, "VIEW")
    path = f"/{record}/{method}"
    if needed == "VIEW":
        bob.ok(path, body)
    else:
        assert_error(bob.call(path, body), 403, "PermissionDenied")
    assert_error(charlie.call(path, body), 404, "ResourceNotFound")
    assert_error(anonymous.call(path, body), 401, "InvalidAuthentication")
    alice.ok(path, body)


def test_record_new_for_viewer_outsider_and_anonymous(alice, bob, charlie, anonymous, world):
    grant(world.project, bob.user.dx_id, "VIEW")
    body = {"project": world.project, "name": "r"}
    assert_error(bob.call("/record/new", body), 403, "PermissionDenied")
    assert_error(charlie.call("/record/new", body), 404, "ResourceNotFound")
    assert_error(anonymous.call("/record/new", body), 401, "InvalidAuthentication")
    assert alice.ok("/system/findDataObjects", {"class": "record"})["results"] == []


def test_find_records_by_class_type_tag_property_and_visibility(alice, charlie, world):
    genome = new_record(alice, world.project, name="g", types=["Genome"], tags=["hg38"], properties={"build": "38"})
    sheet = new_record(alice, world.project, name="s", types=["SampleSheet"], hidden=True)

    def found(**query):
        return sorted(r["id"] for r in alice.ok("/system/findDataObjects", query)["results"])

    assert found(**{"class": "record"}) == [genome]
    assert found(**{"class": "record", "visibility": "either"}) == sorted([genome, sheet])
    assert found(**{"class": "record", "visibility": "hidden"}) == [sheet]
    assert found(type="Genome") == [genome]
    assert found(type={"$or": ["Genome", "SampleSheet"]}, visibility="either") == sorted([genome, sheet])
    assert found(tags="hg38") == [genome]
    assert found(properties={"build": "38"}) == [genome]
    assert found(**{"class": "file", "type": "Genome"}) == []
    described = alice.ok("/system/findDataObjects", {"class": "record", "describe": True})["results"][0]["describe"]
    assert described["types"] == ["Genome"]
    assert charlie.ok("/system/findDataObjects", {"class": "record"})["results"] == []


def test_records_move_clone_and_remove_as_any_data_object(alice, bob, world):
    record = new_record(alice, world.project, name="r", details={"a": 1})
    alice.ok(f"/{world.project}/move", {"objects": [record], "destination": "/data"})
    assert alice.ok(f"/{record}/describe")["folder"] == "/data"
    other = alice.ok("/project/new", {"name": "other"})["id"]
    assert_error(
        alice.call(f"/{world.project}/clone", {"objects": [record], "project": other, "destination": "/"}),
        422,
        "InvalidState",
    )
    alice.ok(f"/{record}/close")
    alice.ok(f"/{world.project}/clone", {"objects": [record], "project": other, "destination": "/"})
    assert alice.ok(f"/{record}/describe", {"project": other})["details"] == {"a": 1}
    alice.ok(f"/{world.project}/removeObjects", {"objects": [record]})
    assert alice.ok(f"/{record}/describe")["project"] == other
    listed = alice.ok(f"/{other}/listFolder", {"describe": True})["objects"]
    assert [o["id"] for o in listed] == [record]


def test_the_project_page_lists_a_record_and_its_page_opens(alice, web, world):
    record = new_record(alice, world.project, name="sample-sheet", details={"a": 1}, types=["SampleSheet"])
    listing = web.get(reverse("project", args=[world.project]))
    assert listing.status_code == 200 and "sample-sheet" in listing.content.decode()
    page = web.get(reverse("file", args=[world.project, record]))
    assert page.status_code == 200 and "sample-sheet" in page.content.decode()


def test_details_may_be_an_array_set_as_the_whole_input(alice, world):
    record = new_record(alice, world.project)
    assert alice.ok(f"/{record}/setDetails", [1, {"a": 2}]) == {"id": record}
    assert alice.ok(f"/{record}/getDetails") == [1, {"a": 2}]
    # Only setDetails takes an array: other methods' input is an object.
    status, answer = alice.call(f"/{record}/describe", [1])
    assert status == 400 and answer["error"]["message"] == "The request body must be a JSON object"
