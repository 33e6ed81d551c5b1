"""Helpers shared by the API tests: a small project world, uploads and error checks."""

import hashlib
import json
from types import SimpleNamespace

from django.test import Client

from dxweb.ids import new_id
from projects import actions
from projects.models import DataObject, Folder, Grant, Level, Placement


def md5(data):
    return hashlib.md5(data).hexdigest()


def is_error(status, data, expected_status, expected_type=None):
    """True when a reply is `{"error": {"type", "message"}}` with the expected status (and type)."""
    error = data.get("error") if isinstance(data, dict) else None
    return (
        status == expected_status
        and isinstance(error, dict)
        and isinstance(error.get("type"), str)
        and isinstance(error.get("message"), str)
        and (expected_type is None or error["type"] == expected_type)
    )


def reply_of(response):
    """A test client's response as the `(status, data)` pair `ApiClient.call` returns."""
    return response.status_code, response.json()


def assert_error(reply, status, type=None, context=None):
    """Assert a `(status, data)` reply is the API's error with this status (and type), showing it if not."""
    assert is_error(*reply, status, type), (context, reply) if context is not None else reply


def build_world(owner):
    """A project `owner` administers, with /data, a closed file in / and in /data, and an open file.

    Built with plain inserts: hundreds of cases build one each, so it has to be cheap.
    """
    user = owner.user
    container = actions.create_container(user, "world")
    Folder.objects.create(container=container, path="/data", parent="/")
    files = {
        "closed": ("/", "closed.txt", DataObject.CLOSED),
        "inside": ("/data", "inside.txt", DataObject.CLOSED),
        "open": ("/", "open.txt", DataObject.OPEN),
    }
    objects = {
        key: DataObject(id=new_id("file"), cls="file", state=state, created_by=user)
        for key, (_, _, state) in files.items()
    }
    DataObject.objects.bulk_create(objects.values())
    Placement.objects.bulk_create(
        Placement(container=container, obj=objects[key], folder=folder, name=name)
        for key, (folder, name, _) in files.items()
    )
    return SimpleNamespace(project=container.pk, container=container, **{k: o.pk for k, o in objects.items()})


def grant(project_id, grantee_id, level):
    """Give a user (`user-x`) or an org (`org-x`) a level on a project, replacing any grant."""
    user, org = actions.resolve_grantee(grantee_id)
    Grant.objects.update_or_create(container_id=project_id, user=user, org=org, defaults={"level": Level[level]})


def put(url, data, **headers):
    """PUT bytes to a signed upload URL as the dx client does: no Authorization, no Content-Type."""
    return Client().generic("PUT", url, data, content_type="", **headers)


def get(url, **headers):
    return Client().get(url, **headers)


def content(response):
    """The body of a (possibly streaming) response."""
    return b"".join(response) if response.streaming else response.content


def upload_part(client, file_id, index, data, project=None, **announce):
    """Sign part `index` and PUT `data`; return the PUT response."""
    body = {"index": index, "size": len(data), "md5": md5(data), **announce}
    if project:
        body["project"] = project
    signed = client.ok(f"/{file_id}/upload", body)
    return put(signed["url"], data)


def upload_file(client, project, parts, name="data.bin", folder="/", **fields):
    """Create a file, upload `parts` (bytes each) and close it; return its ID."""
    file_id = client.ok("/file/new", {"project": project, "name": name, "folder": folder, **fields})["id"]
    for index, data in enumerate(parts, start=1):
        response = upload_part(client, file_id, index, data)
        assert response.status_code == 200, response.content
    client.ok(f"/{file_id}/close", {})
    return file_id


def post_json(client, path, raw, content_type="application/json"):
    """POST raw bytes; return (status, decoded JSON) and insist the reply is JSON."""
    response = client.raw(path, raw, content_type=content_type)
    assert response["Content-Type"].startswith("application/json"), response.content[:200]
    return response.status_code, json.loads(response.content)
