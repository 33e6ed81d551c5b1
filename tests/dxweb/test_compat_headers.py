"""Every API answer says nosniff; /system/greet and /system/headers answer without a token."""

import json

import pytest

from tests.conftest import make_actor


@pytest.fixture
def alice(db):
    return make_actor("alice")


@pytest.mark.parametrize(
    "path, body",
    [
        ("/system/whoami", {}),  # an answer
        ("/system/nothing", {}),  # no such route
        ("/project-000000000000000000000000/describe", {}),  # not found
        ("/project/new", {"name": 3}),  # bad input
    ],
)
def test_every_api_answer_says_nosniff(alice, path, body):
    response = alice.raw(path, json.dumps(body))
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Content-Type"].startswith("application/json")


def test_an_answer_to_a_bad_token_says_nosniff(anonymous):
    anonymous.token = "wrong"
    response = anonymous.raw("/system/whoami")
    assert response.status_code == 401 and response["X-Content-Type-Options"] == "nosniff"


def test_transfer_answers_say_nosniff(alice):
    project = alice.ok("/project/new", {"name": "p"})["id"]
    file_id = alice.ok("/file/new", {"project": project, "name": "f"})["id"]
    url = alice.ok(f"/{file_id}/upload", {"index": 1, "size": 0})["url"]
    response = alice.client.generic("PUT", url, b"", content_type="")
    assert response.status_code == 200 and response["X-Content-Type-Options"] == "nosniff"


@pytest.mark.parametrize("token", [None, "wrong"])
def test_greet_answers_anyone_with_no_news(anonymous, token):
    anonymous.token = token
    status, reply = anonymous.call("/system/greet", {"client": "dxclient", "version": "v0.417.1"})
    assert status == 200 and reply == {"messages": [], "update": {"available": False}}


def test_headers_echo_the_request_but_never_its_credentials(alice, anonymous):
    response = alice.raw("/system/headers", "{}", HTTP_USER_AGENT="dxpy/0.417.1", HTTP_COOKIE="sessionid=x")
    headers = response.json()["headers"]
    assert headers["User-Agent"] == "dxpy/0.417.1"
    assert not {"Authorization", "Cookie"} & set(headers)
    assert anonymous.call("/system/headers")[0] == 200


def test_other_system_routes_still_need_a_token(anonymous):
    status, reply = anonymous.call("/system/whoami")
    assert status == 401 and reply["error"]["type"] == "InvalidAuthentication"
