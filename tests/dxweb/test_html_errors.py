"""Errors for people: a browser opening an address outside the API gets the 404 and 403 pages (with the
top navigation when signed in, and a way home); an API-shaped address opened in a browser gets a page
saying it is the API; API clients keep the JSON (tests/dxweb/test_error_boundary.py,
tests/projects/test_api_bad_input.py)."""

import asyncio
import json

import pytest
from channels.testing import HttpCommunicator
from django.test import Client

from dxweb import asgi
from projects.accounts import create_user

# What Chromium sends when an address is typed or a link followed.
BROWSER = {"HTTP_ACCEPT": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}
UNKNOWN = ["/nope", "/nope/", "/projects", "/a/b/c/", "/jobs/x/y/z", "/static-ish.txt"]


def is_page(response, status, heading):
    html = response.content.decode()
    assert response.status_code == status, (response.status_code, html[:300])
    assert response["Content-Type"].startswith("text/html")
    assert f"<h1>{heading}</h1>" in html, html
    return html


@pytest.mark.parametrize("path", UNKNOWN)
def test_a_signed_in_browser_opening_an_unknown_address_gets_the_404_page_with_the_navigation(web, path):
    html = is_page(web.get(path, **BROWSER), 404, "Not found")
    assert 'class="topnav"' in html and 'aria-label="Main"' in html and "Log out" in html
    assert 'href="/">Back to your projects</a>' in html


def test_a_visitor_opening_an_unknown_address_gets_the_404_page_with_a_way_to_log_in(db):
    html = is_page(Client().get("/nope", **BROWSER), 404, "Not found")
    assert 'class="topnav"' not in html and 'href="/login/">Log in</a>' in html


@pytest.mark.parametrize("path", UNKNOWN)
def test_other_clients_keep_the_json_404(alice, path):
    for headers in ({}, {"HTTP_ACCEPT": "application/json"}, {"HTTP_ACCEPT": "*/*"}):
        response = alice.client.get(path, **headers)
        assert response.status_code == 404 and response["Content-Type"] == "application/json"
        assert response.json()["error"]["type"] == "ResourceNotFound"
    # A token with the request: an API client, whatever it accepts.
    response = alice.client.get(path, HTTP_AUTHORIZATION=f"Bearer {alice.token}", **BROWSER)
    assert response["Content-Type"] == "application/json"
    response = alice.client.post(path, "{}", content_type="application/json", **BROWSER)
    assert response.status_code == 404 and response["Content-Type"] == "application/json"


def test_an_address_typed_without_its_final_slash_leads_a_browser_to_its_page(web, alice):
    response = web.get("/profile?tab=1", **BROWSER)
    assert response.status_code == 302 and response["Location"] == "/profile/?tab=1"
    assert web.get("/cli", **BROWSER)["Location"] == "/cli/"
    # The API's clients never get a redirect.
    assert alice.client.get("/profile").status_code == 404


def test_a_page_refusal_is_the_403_page_with_the_navigation(web, bob):
    project = bob.ok("/project/new", {"name": "bob's"})["id"]
    bob.ok(f"/{project}/invite", {"invitee": "user-alice", "level": "VIEW"})
    # A VIEW member opening the settings page of a project: refused, as a page.
    response = web.get(f"/projects/{project}/settings/", **BROWSER)
    html = is_page(response, 403, "Not allowed")
    assert 'class="topnav"' in html and 'href="/">Back to your projects</a>' in html


@pytest.mark.parametrize("path", ["/system/whoami", "/system/findProjects", "/file/new"])
def test_an_api_route_opened_in_a_browser_is_a_page_saying_it_is_the_api(web, path):
    response = web.get(path, **BROWSER)
    html = is_page(response, 405, "This is an API address")
    assert response["Allow"] == "POST"
    assert f"<code>{path}</code>" in html and "<code>POST</code>" in html
    assert 'href="/cli/">' in html and 'class="topnav"' in html


def test_an_object_route_opened_in_a_browser_is_the_api_page_and_a_route_that_does_not_exist_the_404(web, project):
    is_page(web.get(f"/{project}/describe", **BROWSER), 405, "This is an API address")
    is_page(web.get(f"/{project}/noSuchMethod", **BROWSER), 404, "Not found")
    is_page(web.get("/file-xxx/describe", **BROWSER), 404, "Not found")
    is_page(web.get("/nosuchclass/new", **BROWSER), 404, "Not found")


def test_api_calls_and_page_scripts_keep_the_json_on_api_routes(alice, web):
    # No Accept, JSON, */*: the 405 JSON of today; with a token, JSON whatever is accepted.
    for client, headers in (
        (alice.client, {}),
        (alice.client, {"HTTP_ACCEPT": "*/*"}),
        (web, {"HTTP_ACCEPT": "application/json"}),
        (alice.client, {**BROWSER, "HTTP_AUTHORIZATION": f"Bearer {alice.token}"}),
    ):
        response = client.get("/system/whoami", **headers)
        assert response.status_code == 405 and response["Content-Type"] == "application/json"
        assert response.json()["error"]["type"] == "MethodNotAllowed"
    status, reply = alice.call("/system/whoami")
    assert status == 200 and reply["id"] == "user-alice"
    # A POST is an API call even from a browser (a form posted to it).
    response = web.post("/system/whoami", "{}", content_type="application/json", **BROWSER)
    assert response.status_code == 401 and response["Content-Type"] == "application/json"


async def asgi_get(path, headers):
    communicator = HttpCommunicator(asgi.application, "GET", path, headers=[(b"host", b"127.0.0.1"), *headers])
    return await communicator.get_response(timeout=30)


@pytest.mark.django_db(transaction=True)
def test_through_the_lean_api_handler_a_signed_in_browser_gets_the_api_page_with_its_navigation():
    """Under ASGI, API-shaped paths go to the handler without the page middleware (dxweb/asgi.py); the
    page still knows who is signed in, sets the CSRF cookie its Log out form needs, and its headers."""
    client = Client()
    client.force_login(create_user("alice"))
    cookie = f"sessionid={client.cookies['sessionid'].value}".encode()
    accept = BROWSER["HTTP_ACCEPT"].encode()

    response = asyncio.run(asgi_get("/system/whoami", [(b"accept", accept), (b"cookie", cookie)]))
    html = response["body"].decode()
    headers = {k.decode().lower(): v.decode() for k, v in response["headers"]}
    assert response["status"] == 405 and headers["content-type"].startswith("text/html")
    assert "<h1>This is an API address</h1>" in html and 'data-testid="handle">alice<' in html
    assert "csrftoken=" in headers.get("set-cookie", "") and headers["x-frame-options"] == "DENY"

    response = asyncio.run(asgi_get("/file-xxxx/describe", [(b"accept", accept)]))
    assert response["status"] == 404 and b"<h1>Not found</h1>" in response["body"]
    assert b'class="topnav"' not in response["body"]

    response = asyncio.run(asgi_get("/system/whoami", []))  # dx, curl: the JSON of today
    assert response["status"] == 405 and json.loads(response["body"])["error"]["type"] == "MethodNotAllowed"
