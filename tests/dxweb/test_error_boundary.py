"""The error boundary (dxweb/middleware.py): a DXError raised by a view is the API's JSON or the 404/403 page."""

import asyncio
import json

import pytest
from channels.testing import HttpCommunicator
from django.test import Client
from django.urls import path

import dxweb.urls
from dxweb import asgi
from dxweb.errors import (
    BadRequest,
    DXError,
    InternalError,
    InvalidAuthentication,
    InvalidInput,
    InvalidState,
    InvalidType,
    MethodNotAllowed,
    PayloadTooLarge,
    PermissionDenied,
    ResourceNotFound,
    TooManyRequests,
)
from dxweb.middleware import answers_json

KINDS = {
    cls.__name__: cls
    for cls in (
        BadRequest,
        InternalError,
        InvalidAuthentication,
        InvalidInput,
        InvalidState,
        InvalidType,
        MethodNotAllowed,
        PayloadTooLarge,
        PermissionDenied,
        ResourceNotFound,
    )
}


def error_of(kind):
    if kind == "TooManyRequests":
        return TooManyRequests("Slow down", retry_after=7)
    return KINDS[kind](f"A {kind} for the test")


def page_view(request, kind):
    raise error_of(kind)


@answers_json
def api_view(request, kind):
    raise error_of(kind)


def bug_view(request):
    raise ValueError("not a DXError")


# Test-only routes first; the project's own after them (the 404 and 403 pages link to the dashboard).
urlpatterns = [
    path("test-errors/page/<str:kind>", page_view),
    path("test-errors/api/<str:kind>", api_view),
    path("test-errors/bug", bug_view),
    *dxweb.urls.urlpatterns,
]

ALL_KINDS = [*KINDS, "TooManyRequests"]


@pytest.fixture
def visitor(db):
    """Someone not signed in, whose client answers a server error as the 500 page instead of raising."""
    return Client(raise_request_exception=False)


@pytest.mark.urls(__name__)
@pytest.mark.parametrize("kind", ALL_KINDS)
def test_a_page_shows_resource_not_found_as_the_404_page_and_any_other_refusal_as_the_403_page(visitor, kind):
    response = visitor.get(f"/test-errors/page/{kind}")
    html = response.content.decode()
    if kind == "ResourceNotFound":
        assert response.status_code == 404
        assert "<h1>Not found</h1>" in html and "A ResourceNotFound" not in html
    else:
        assert response.status_code == 403
        assert "<h1>Not allowed</h1>" in html and error_of(kind).message in html
    assert response["Content-Type"].startswith("text/html")


@pytest.mark.urls(__name__)
@pytest.mark.parametrize("kind", ALL_KINDS)
def test_an_api_view_answers_every_dxerror_as_json_with_its_status(visitor, kind):
    error = error_of(kind)
    response = visitor.get(f"/test-errors/api/{kind}")
    assert response.status_code == error.status
    assert response["Content-Type"] == "application/json"
    assert json.loads(response.content) == {"error": {"type": error.type, "message": error.message}}
    assert response.get("Retry-After") == ("7" if kind == "TooManyRequests" else None)


@pytest.mark.urls(__name__)
def test_other_exceptions_are_left_to_django(visitor):
    assert visitor.get("/test-errors/bug").status_code == 500


@pytest.mark.urls(__name__)
def test_errors_carry_their_field_without_changing_the_json(visitor):
    error = InvalidInput("Bad", field="name")
    assert error.field == "name" and error.to_dict() == {"error": {"type": "InvalidInput", "message": "Bad"}}
    assert DXError("x").field is None


def test_the_lean_api_handler_answers_the_dispatchers_errors_as_json(db):
    """The API runs without the page middleware (dxweb/asgi.py) but keeps the error boundary."""

    async def call(path, method="POST"):
        communicator = HttpCommunicator(asgi.application, method, path, headers=[(b"host", b"127.0.0.1")])
        return await communicator.get_response(timeout=30)

    response = asyncio.run(call("/system/whoami"))
    assert response["status"] == 401
    assert json.loads(response["body"]) == {
        "error": {"type": "InvalidAuthentication", "message": "An Authorization: Bearer <token> header is required"}
    }
    response = asyncio.run(call("/system/whoami", method="GET"))
    assert response["status"] == 405 and json.loads(response["body"])["error"]["type"] == "MethodNotAllowed"
