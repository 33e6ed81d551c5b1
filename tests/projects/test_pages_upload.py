"""The project page's upload endpoints (session + CSRF): create a file, sign each part, close it."""

import hashlib
import json

import pytest
from django.test import Client

from projects import actions
from projects.models import Container, DataObject, Placement


@pytest.fixture(autouse=True)
def small_parts(settings):
    """Parts of at least 8 bytes, so multi-part files stay tiny in tests."""
    settings.DXWEB_MIN_PART_SIZE = 8


def post(client, url, body):
    response = client.post(url, json.dumps(body), content_type="application/json")
    return response.status_code, response.json()


def md5(data):
    return hashlib.md5(data).hexdigest()


class Uploader:
    """What static/projects/upload.js does, step by step."""

    def __init__(self, client, project):
        self.client, self.base = client, f"/projects/{project}/upload/"

    def create(self, name, folder="/"):
        status, data = post(self.client, self.base, {"name": name, "folder": folder, "media": "text/plain"})
        assert status == 200, data
        return data["id"]

    def sign(self, file_id, index, data, announced_md5=None):
        return post(
            self.client,
            f"{self.base}{file_id}/part/",
            {"index": index, "size": len(data), "md5": announced_md5 or md5(data)},
        )

    def put(self, url, data):
        return Client().put(url, data, content_type="application/octet-stream")

    def close(self, file_id):
        return post(self.client, f"{self.base}{file_id}/close/", {})


@pytest.fixture
def uploader(web, project):
    return Uploader(web, project)


@pytest.mark.filterwarnings("ignore:StreamingHttpResponse must consume asynchronous iterators")
def test_a_file_is_uploaded_in_parts_and_closed(uploader, web, project):
    parts = [b"first part, 24 bytes....", b"second part also 24 byte", b"tail"]
    file_id = uploader.create("reads.fq", "/")
    for index, data in enumerate(parts, start=1):
        status, signed = uploader.sign(file_id, index, data)
        assert status == 200 and "/transfer/up/" in signed["url"] and signed["expires"] > 0
        assert uploader.put(signed["url"], data).status_code == 200
    status, closed = uploader.close(file_id)
    assert status == 200 and closed == {"id": file_id, "state": "closed", "size": sum(map(len, parts))}
    placement = Placement.objects.select_related("obj").get(obj_id=file_id)
    assert placement.name == "reads.fq" and placement.obj.media == "text/plain"
    download = Client().get(web.get(f"/projects/{project}/files/{file_id}/download/")["Location"])
    assert b"".join(download) == b"".join(parts)


def test_a_part_whose_bytes_do_not_match_its_md5_is_refused_and_can_be_sent_again(uploader):
    data = b"twelve bytes"
    file_id = uploader.create("a.txt")
    _, signed = uploader.sign(file_id, 1, data)
    refused = uploader.put(signed["url"], b"twelve byteZ")
    assert refused.status_code == 400 and "md5" in refused.json()["error"]["message"]
    assert uploader.close(file_id)[0] == 422
    # The page retries the part alone with a freshly signed URL.
    _, fresh = uploader.sign(file_id, 1, data)
    assert uploader.put(fresh["url"], data).status_code == 200
    assert uploader.close(file_id)[1]["state"] == "closed"


def test_an_empty_file_is_one_empty_part(uploader):
    file_id = uploader.create("empty.txt")
    _, signed = uploader.sign(file_id, 1, b"")
    assert signed["url"] and uploader.put(signed["url"], b"").status_code == 200
    assert uploader.close(file_id)[1] == {"id": file_id, "state": "closed", "size": 0}


def test_closing_with_a_missing_part_says_which_one(uploader):
    file_id = uploader.create("a.txt")
    uploader.sign(file_id, 1, b"0123456789")
    status, error = uploader.close(file_id)
    assert status == 422 and "part(s) 1 not uploaded" in error["error"]["message"]
    assert DataObject.objects.get(pk=file_id).state == DataObject.OPEN


def test_a_small_part_before_the_last_is_refused_at_close(uploader):
    file_id = uploader.create("a.txt")
    for index, data in enumerate([b"tiny", b"0123456789"], start=1):
        uploader.put(uploader.sign(file_id, index, data)[1]["url"], data)
    status, error = uploader.close(file_id)
    assert status == 422 and "every part but the last needs at least 8" in error["error"]["message"]


def test_a_closed_file_takes_no_more_parts(uploader):
    file_id = uploader.create("a.txt")
    uploader.put(uploader.sign(file_id, 1, b"x")[1]["url"], b"x")
    uploader.close(file_id)
    status, error = uploader.sign(file_id, 2, b"y")
    assert status == 422 and "only open files take parts" in error["error"]["message"]


def test_files_are_created_in_the_current_folder(uploader, project):
    actions.new_folder(Container.objects.get(pk=project), "/data")
    file_id = uploader.create("in-data.txt", "/data")
    assert Placement.objects.get(obj_id=file_id).folder == "/data"


BAD_CREATE = {
    "no name": {"folder": "/"},
    "name with a slash": {"name": "../../etc/passwd"},
    "NUL in the name": {"name": "a\x00b"},
    "10 kB name": {"name": "n" * 10_000},
    "empty name": {"name": ""},
    "traversal folder": {"name": "a", "folder": "/../.."},
    "missing folder": {"name": "a", "folder": "/nowhere"},
    "name not a string": {"name": ["a"]},
}


@pytest.mark.parametrize("body", BAD_CREATE.values(), ids=BAD_CREATE.keys())
def test_bad_input_when_creating_a_file_is_a_json_error(web, project, body):
    status, data = post(web, f"/projects/{project}/upload/", body)
    assert 400 <= status < 500 and data["error"]["message"]
    assert not Placement.objects.exists()


BAD_SIGN = {
    "index 0": {"index": 0, "size": 1, "md5": "0" * 32},
    "index not a number": {"index": "1", "size": 1, "md5": "0" * 32},
    "negative size": {"index": 1, "size": -1, "md5": "0" * 32},
    "md5 not hex": {"index": 1, "size": 1, "md5": "z" * 32},
    "no md5": {"index": 1, "size": 1},
}


@pytest.mark.parametrize("body", BAD_SIGN.values(), ids=BAD_SIGN.keys())
def test_bad_input_when_signing_a_part_is_a_json_error(uploader, body):
    file_id = uploader.create("a.txt")
    status, data = post(uploader.client, f"{uploader.base}{file_id}/part/", body)
    assert 400 <= status < 500 and data["error"]["message"]


def test_a_body_that_is_not_json_is_a_json_error(web, project):
    response = web.post(f"/projects/{project}/upload/", b"{not json", content_type="application/json")
    assert response.status_code == 400 and "not valid JSON" in response.json()["error"]["message"]


def test_the_upload_endpoints_need_the_csrf_token(alice, project):
    client = Client(enforce_csrf_checks=True)
    client.force_login(alice.user)
    body = json.dumps({"name": "a.txt"})
    assert client.post(f"/projects/{project}/upload/", body, content_type="application/json").status_code == 403
    client.get(f"/projects/{project}/")
    token = client.cookies["csrftoken"].value
    response = client.post(
        f"/projects/{project}/upload/", body, content_type="application/json", headers={"X-CSRFToken": token}
    )
    assert response.status_code == 200 and response.json()["id"].startswith("file-")


def test_the_project_page_gives_the_script_its_upload_settings(web, project, settings):
    settings.DXWEB_MIN_PART_SIZE = 5 * 1024 * 1024
    html = web.get(f"/projects/{project}/").content.decode()
    assert f'data-upload-url="/projects/{project}/upload/"' in html
    assert f'data-part-url="/projects/{project}/upload/FILE_ID/part/"' in html
    assert f'data-part-size="{16 * 1024 * 1024}"' in html and 'data-max-parts="10000"' in html
    assert "projects/md5.js" in html and "projects/upload.js" in html
