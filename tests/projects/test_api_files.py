"""Files through the API: create, multi-part upload, close, describe, download with Range, metadata."""

import os
import time

import pytest

from projects import transfer
from projects.models import ApiToken, FilePart
from tests.conftest import ApiClient

from .api_helpers import assert_error, content, get, md5, put, reply_of, upload_file, upload_part

pytestmark = pytest.mark.filterwarnings("ignore:StreamingHttpResponse must consume asynchronous iterators")


@pytest.fixture(autouse=True)
def small_parts(settings):
    """Parts of at least 1 kB, so multi-part files stay small."""
    settings.DXWEB_MIN_PART_SIZE = 1024


@pytest.fixture
def parts():
    """Three parts of random bytes: 2 kB, 1 kB + 17, and a 5-byte tail."""
    return [os.urandom(2048), os.urandom(1024 + 17), os.urandom(5)]


def test_a_multi_part_upload_closes_into_one_file_with_its_parts_described(alice, project, parts):
    file_id = alice.ok("/file/new", {"project": project, "name": "reads.bin", "folder": "/", "nonce": "n"})["id"]
    assert alice.ok(f"/{file_id}/describe")["state"] == "open"
    for index in (3, 1, 2):  # the client sends parts in parallel, in any order
        assert upload_part(alice, file_id, index, parts[index - 1], project=project).status_code == 200
    described = alice.ok(f"/{file_id}/describe", {"fields": {"parts": True, "state": True}, "project": project})
    assert described["state"] == "open"
    assert described["parts"] == {
        str(i): {"size": len(data), "md5": md5(data), "state": "complete"} for i, data in enumerate(parts, start=1)
    }
    assert alice.ok(f"/{file_id}/close") == {"id": file_id}
    described = alice.ok(f"/{file_id}/describe")
    assert described["state"] == "closed" and described["size"] == sum(map(len, parts))
    assert alice.ok(f"/{file_id}/close") == {"id": file_id}  # closing again is harmless


def test_a_download_returns_the_exact_bytes_whole_and_by_range(alice, project, parts):
    file_id = upload_file(alice, project, parts)
    whole = b"".join(parts)
    signed = alice.ok(f"/{file_id}/download", {"preauthenticated": False, "project": project})
    assert signed["url"].startswith("http") and signed["headers"] == {} and signed["expires"] > 0
    response = get(signed["url"])
    assert response.status_code == 200 and response["Content-Length"] == str(len(whole))
    assert response["Accept-Ranges"] == "bytes" and content(response) == whole
    # The client's 16 MiB chunks, scaled down: ranges that start, end and cross inside parts.
    chunk = 1000
    pieces = []
    for start in range(0, len(whole), chunk):
        end = min(start + chunk, len(whole)) - 1
        response = get(signed["url"], HTTP_RANGE=f"bytes={start}-{end}")
        assert response.status_code == 206
        assert response["Content-Range"] == f"bytes {start}-{end}/{len(whole)}"
        pieces.append(content(response))
    assert b"".join(pieces) == whole
    # dx cat: one GET of bytes 0..size-1.
    assert content(get(signed["url"], HTTP_RANGE=f"bytes=0-{len(whole) - 1}")) == whole
    assert content(get(signed["url"], HTTP_RANGE="bytes=2040-2060")) == whole[2040:2061]


def test_a_file_is_named_in_the_download_url(alice, project):
    file_id = upload_file(alice, project, [b"x"], name="report.txt")
    response = get(alice.ok(f"/{file_id}/download")["url"])
    assert "report.txt" in response["Content-Disposition"]
    response = get(alice.ok(f"/{file_id}/download", {"filename": "other name.txt"})["url"])
    assert "other name.txt" in response["Content-Disposition"]


def test_an_empty_file_is_one_empty_part(alice, project):
    file_id = upload_file(alice, project, [b""])
    assert alice.ok(f"/{file_id}/describe")["size"] == 0
    assert content(get(alice.ok(f"/{file_id}/download")["url"])) == b""


def test_a_part_sent_again_replaces_the_first_attempt(alice, project, django_capture_on_commit_callbacks, blob_dir):
    file_id = alice.ok("/file/new", {"project": project, "name": "a"})["id"]
    with django_capture_on_commit_callbacks(execute=True):
        assert upload_part(alice, file_id, 1, b"first try").status_code == 200
        assert upload_part(alice, file_id, 1, b"second try").status_code == 200
    alice.ok(f"/{file_id}/close")
    assert content(get(alice.ok(f"/{file_id}/download")["url"])) == b"second try"
    assert len([p for p in blob_dir.rglob("*") if p.is_file()]) == 1


def test_an_upload_may_announce_nothing_but_the_index(alice, project):
    file_id = alice.ok("/file/new", {"project": project, "name": "a"})["id"]
    signed = alice.ok(f"/{file_id}/upload", {"index": 1})
    assert put(signed["url"], b"unannounced").status_code == 200
    alice.ok(f"/{file_id}/close")
    assert alice.ok(f"/{file_id}/describe")["size"] == len(b"unannounced")


def test_the_md5_may_be_announced_in_upper_case(alice, project):
    file_id = alice.ok("/file/new", {"project": project, "name": "a"})["id"]
    signed = alice.ok(f"/{file_id}/upload", {"index": 1, "size": 3, "md5": md5(b"abc").upper()})
    assert put(signed["url"], b"abc").status_code == 200
    assert FilePart.objects.get(file_id=file_id).state == FilePart.COMPLETE


def test_file_new_records_its_metadata_and_makes_parent_folders_on_request(alice, project):
    file_id = alice.ok(
        "/file/new",
        {
            "project": project,
            "name": "a.vcf",
            "folder": "/x/y",
            "parents": True,
            "tags": ["t"],
            "types": ["VCF"],
            "properties": {"k": "v"},
            "details": {"d": [1, 2]},
            "media": "text/plain",
            "hidden": True,
        },
    )["id"]
    described = alice.ok(f"/{file_id}/describe")
    expected = {
        "class": "file",
        "project": project,
        "folder": "/x/y",
        "name": "a.vcf",
        "tags": ["t"],
        "types": ["VCF"],
        "properties": {"k": "v"},
        "details": {"d": [1, 2]},
        "media": "text/plain",
        "hidden": True,
        "state": "open",
        "createdBy": {"user": "user-alice"},
    }
    assert {k: described[k] for k in expected} == expected
    assert "drive" not in described
    assert alice.ok(f"/{project}/describe", {"folders": True})["folders"] == ["/", "/x", "/x/y"]
    assert_error(alice.call("/file/new", {"project": project, "folder": "/nope"}), 404, "ResourceNotFound")


def test_metadata_changes_show_in_describe(alice, project):
    file_id = upload_file(alice, project, [b"x"], name="a.txt")
    alice.ok(f"/{file_id}/rename", {"project": project, "name": "b.txt"})
    alice.ok(f"/{file_id}/addTags", {"project": project, "tags": ["x", "y"]})
    alice.ok(f"/{file_id}/removeTags", {"project": project, "tags": ["x"]})
    alice.ok(f"/{file_id}/setProperties", {"project": project, "properties": {"a": "1", "b": "2"}})
    alice.ok(f"/{file_id}/setProperties", {"project": project, "properties": {"a": None}})
    alice.ok(f"/{file_id}/setVisibility", {"project": project, "hidden": True})
    described = alice.ok(
        f"/{file_id}/describe", {"fields": {"name": True, "tags": True, "properties": True, "hidden": True}}
    )
    assert described == {"id": file_id, "name": "b.txt", "tags": ["y"], "properties": {"b": "2"}, "hidden": True}


def test_details_are_set_while_open_and_read_back_as_given(alice, project):
    file_id = alice.ok("/file/new", {"project": project, "name": "a"})["id"]
    alice.ok(f"/{file_id}/setDetails", {"a": [{"a": 1}, "b"]})  # the whole input is the details, as dxpy sends
    assert alice.ok(f"/{file_id}/getDetails") == {"a": [{"a": 1}, "b"]}
    alice.ok(f"/{file_id}/setDetails", {"x": None})
    alice.ok(f"/{file_id}/close")
    assert alice.ok(f"/{file_id}/getDetails") == {"x": None}
    assert_error(alice.call(f"/{file_id}/setDetails", {}), 422, "InvalidState")
    assert alice.ok(f"/{file_id}/getDetails") == {"x": None}


def test_only_closed_files_are_downloaded_and_closed_files_take_no_parts(alice, project):
    file_id = alice.ok("/file/new", {"project": project, "name": "a"})["id"]
    assert_error(alice.call(f"/{file_id}/download"), 422, "InvalidState")
    upload_part(alice, file_id, 1, b"abc")
    alice.ok(f"/{file_id}/close")
    assert_error(alice.call(f"/{file_id}/upload", {"index": 2}), 422, "InvalidState")


def test_a_viewer_downloads_but_cannot_upload(alice, bob, project):
    file_id = upload_file(alice, project, [b"shared bytes"])
    open_id = alice.ok("/file/new", {"project": project, "name": "open"})["id"]
    alice.ok(f"/{project}/invite", {"invitee": "user-bob", "level": "VIEW"})
    assert content(get(bob.ok(f"/{file_id}/download")["url"])) == b"shared bytes"
    assert_error(bob.call(f"/{open_id}/upload", {"index": 1}), 403, "PermissionDenied")
    assert_error(bob.call("/file/new", {"project": project}), 403, "PermissionDenied")


def test_the_project_hint_picks_which_placement_describe_shows(alice, project):
    file_id = upload_file(alice, project, [b"x"], name="here.txt")
    other = alice.ok("/project/new", {"name": "other"})["id"]
    alice.ok(f"/{project}/clone", {"objects": [file_id], "project": other})
    alice.ok(f"/{file_id}/rename", {"project": other, "name": "there.txt"})
    assert alice.ok(f"/{file_id}/describe", {"project": project})["name"] == "here.txt"
    assert alice.ok(f"/{file_id}/describe", {"project": other})["name"] == "there.txt"
    described = alice.ok("/system/describeDataObjects", {"objects": [{"id": file_id, "project": other}, file_id]})
    assert described["results"][0]["describe"]["name"] == "there.txt"
    assert "describe" in described["results"][1]


def test_a_job_workspace_hint_that_is_not_visible_does_not_hide_the_object(alice, project):
    file_id = upload_file(alice, project, [b"x"])
    assert alice.ok(f"/{file_id}/describe", {"project": "container-" + "0" * 24})["project"] == project


def test_an_object_in_many_containers_is_reached_through_the_best_one_read_alone(alice, bob, project, monkeypatch):
    """As an applet is, with a placement in the workspace of each job it ran: the database picks the
    placement (visible, then the hint, then the highest level) and only its row is read."""
    from dxweb import sql
    from projects import permissions

    file_id = upload_file(alice, project, [b"x"], name="first.txt")
    projects = [alice.ok("/project/new", {"name": f"p{i}"})["id"] for i in range(12)]
    for i, other in enumerate(projects):
        alice.ok(f"/{project}/clone", {"objects": [file_id], "project": other})
        alice.ok(f"/{file_id}/rename", {"project": other, "name": f"in-{i}.txt"})
    alice.ok(f"/{projects[3]}/invite", {"invitee": "user-bob", "level": "VIEW"})
    alice.ok(f"/{projects[7]}/invite", {"invitee": "user-bob", "level": "CONTRIBUTE"})
    read = []
    real = sql.fetch
    monkeypatch.setattr(sql, "fetch", lambda *args: read.append(rows := real(*args)) or rows)
    assert bob.ok(f"/{file_id}/describe")["name"] == "in-7.txt"  # his highest level
    assert bob.ok(f"/{file_id}/describe", {"project": projects[3]})["name"] == "in-3.txt"  # the hint
    assert bob.ok(f"/{file_id}/describe", {"project": projects[5]})["name"] == "in-7.txt"  # a hint he cannot see
    bob.ok(f"/{file_id}/rename", {"name": "renamed.txt"})  # CONTRIBUTE, where he has it
    assert alice.ok(f"/{file_id}/describe", {"project": projects[7]})["name"] == "renamed.txt"
    assert_error(bob.call(f"/{file_id}/rename", {"project": projects[3], "name": "x"}), 403, "PermissionDenied")
    width = permissions.PLACEMENT.width + permissions.OBJECT.width + permissions.CONTAINER.width
    placements = [rows for rows in read if rows and len(rows[0]) > width]
    assert placements and all(len(rows) == 1 for rows in placements)


def test_a_file_is_reached_with_the_best_of_direct_and_org_grants_checked_again_on_every_call(alice, bob, project):
    file_id = alice.ok("/file/new", {"project": project, "name": "a.txt"})["id"]
    assert_error(bob.call(f"/{file_id}/describe", {"project": project}), 404, "ResourceNotFound")
    bob.ok("/org/new", {"handle": "lab"})
    alice.ok(f"/{project}/invite", {"invitee": "user-bob", "level": "VIEW"})
    alice.ok(f"/{project}/invite", {"invitee": "org-lab", "level": "CONTRIBUTE"})
    bob.ok(f"/{file_id}/rename", {"project": project, "name": "b.txt"})
    alice.ok(f"/{project}/decreasePermissions", {"org-lab": "VIEW"})
    assert_error(bob.call(f"/{file_id}/rename", {"name": "c.txt"}), 403, "PermissionDenied")
    assert bob.ok(f"/{file_id}/describe")["name"] == "b.txt"
    alice.ok(f"/{project}/decreasePermissions", {"user-bob": None, "org-lab": None})
    # Not yours any more: as if it did not exist.
    assert_error(bob.call(f"/{file_id}/describe"), 404, "ResourceNotFound")
    assert_error(bob.call("/file-" + "0" * 24 + "/describe"), 404, "ResourceNotFound")


def test_a_scoped_token_reaches_files_with_its_scopes_not_its_users_grants(alice, project):
    file_id = alice.ok("/file/new", {"project": project, "name": "a.txt"})["id"]
    token, raw = ApiToken.issue(alice.user, "job")
    job = ApiClient(alice.user, raw)
    token.scopes = {project: 1}  # VIEW, although alice administers the project
    token.save()
    assert job.ok(f"/{file_id}/describe")["id"] == file_id
    assert_error(job.call(f"/{file_id}/rename", {"name": "b.txt"}), 403, "PermissionDenied")
    token.scopes = {}
    token.save()
    assert_error(job.call(f"/{file_id}/describe"), 404, "ResourceNotFound")
    token.delete()
    assert_error(job.call(f"/{file_id}/describe"), 401, "InvalidAuthentication")


def expires_in(reply):
    return reply["expires"] / 1000 - time.time()


def test_a_download_url_lives_as_long_as_the_token_that_asked_for_it_and_its_access(
    alice, bob, project, settings, clock
):
    """dxpy takes a non-preauthenticated URL as good forever (it never asks again): a download that outlasts a
    short TTL must not break part-way. Such a URL lives while its token lives and still reaches the file."""
    clock.install(transfer)
    settings.DXWEB_TRANSFER_URL_TTL = 1  # what the pages' and the uploads' URLs live: not these
    file_id = upload_file(alice, project, [b"long download"])
    alice.ok(f"/{project}/invite", {"invitee": "user-bob", "level": "VIEW"})
    token, raw = ApiToken.issue(bob.user, "laptop")
    laptop = ApiClient(bob.user, raw)
    reply = laptop.ok(f"/{file_id}/download", {"preauthenticated": False, "project": project})
    assert expires_in(reply) > 6 * 24 * 3600
    clock.advance(1.1)
    assert content(get(reply["url"], HTTP_RANGE="bytes=5-12")) == b"download"
    # bob loses access: the URL stops, with the answer an outsider gets
    alice.ok(f"/{project}/decreasePermissions", {"user-bob": None})
    assert_error(reply_of(get(reply["url"])), 404, "ResourceNotFound")
    alice.ok(f"/{project}/invite", {"invitee": "user-bob", "level": "VIEW"})
    assert content(get(reply["url"])) == b"long download"
    # the token is revoked: the URL stops too
    token.delete()
    assert_error(reply_of(get(reply["url"])), 401, "InvalidAuthentication")
    # and it never outlives the most a URL may live
    settings.DXWEB_DOWNLOAD_URL_MAX_TTL = 1
    reply = bob.ok(f"/{file_id}/download")
    clock.advance(1.1)
    assert_error(reply_of(get(reply["url"])), 400, "InvalidInput")


def test_a_preauthenticated_url_is_good_for_anyone_for_its_duration(alice, project, settings, clock):
    clock.install(transfer)
    file_id = upload_file(alice, project, [b"for anyone"])
    reply = alice.ok(f"/{file_id}/download", {"preauthenticated": True})
    assert 24 * 3600 - 60 < expires_in(reply) <= 24 * 3600
    assert 59 < expires_in(alice.ok(f"/{file_id}/download", {"preauthenticated": True, "duration": 60})) <= 60
    settings.DXWEB_DOWNLOAD_URL_MAX_TTL = 3600  # longer asks are cut to the most a URL may live
    assert expires_in(alice.ok(f"/{file_id}/download", {"preauthenticated": True, "duration": 10**9})) <= 3600
    for bad in (0, -5, "60", 1.5):
        assert_error(
            alice.call(f"/{file_id}/download", {"preauthenticated": True, "duration": bad}), 422, "InvalidInput"
        )
    ApiToken.objects.filter(user=alice.user).delete()  # not tied to a token
    assert content(get(reply["url"])) == b"for anyone"
    reply = ApiClient(alice.user, ApiToken.issue(alice.user, "t")[1]).ok(
        f"/{file_id}/download", {"preauthenticated": True, "duration": 1}
    )
    clock.advance(1.1)
    assert_error(reply_of(get(reply["url"])), 400, "InvalidInput")


def test_a_job_tokens_download_url_dies_with_the_token(alice, project):
    file_id = upload_file(alice, project, [b"job input"])
    token, raw = ApiToken.issue(alice.user, "job")
    token.scopes, token.job_id = {project: 1}, "job-" + "J" * 24
    token.save()
    url = ApiClient(alice.user, raw).ok(f"/{file_id}/download")["url"]
    assert content(get(url)) == b"job input"
    token.delete()  # the job ended
    assert get(url).status_code == 401
