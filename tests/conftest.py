"""Shared fixtures: named actors and API helpers.

alice owns `project`; bob starts as a stranger to it and each test that needs a member invites him at
the level it tests (VIEW, CONTRIBUTE or ADMINISTER); charlie is never let in.
"""

import json
import time

import pytest
from asgiref.sync import SyncToAsync
from django.core.cache import caches
from django.db import connections
from django.test import Client

from jobs.execution import runner
from jobs.logs import store
from projects.accounts import create_user
from projects.models import ApiToken

pytest_plugins = ["tests.live"]


@pytest.fixture(autouse=True)
def fast_passwords(settings):
    """Hash test passwords with MD5: the production hasher is slow by design (see test_deploy_settings)."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def blob_dir(settings, tmp_path):
    """Keep test blobs out of the data directory."""
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": tmp_path / "blobs"},
        },
    }
    return tmp_path / "blobs"


@pytest.fixture(autouse=True)
def fresh_throttle(settings):
    """Failed token lookups are counted in a cache, not the database: each test starts from none, in a
    cache of the test process's own (never a Redis shared with servers the test starts)."""
    settings.CACHES = {
        **settings.CACHES,
        "throttle": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "throttle-tests"},
    }
    caches["throttle"].clear()


@pytest.fixture(autouse=True)
def threads_release_their_connections():
    """Threads that outlive a test keep database connections by design: the log store thread
    (jobs/logs/store.py), the pooled request threads (dxweb/asgi.py) and asgiref's thread for sync code
    called from async code. After each test they close them: a connection must not outlive the
    test database (PostgreSQL refuses to drop a database in use), nor hide a new one from a test.
    So does the job runner's ending thread (jobs/execution/runner.py), when a test runs a lane's turn."""
    yield
    store.close_store_connection()
    runner.close_ending_connections()
    from dxweb import asgi

    for app in (asgi.api_asgi_app, asgi.page_asgi_app):
        app.close_connections()
    executor = SyncToAsync.single_thread_executor
    if getattr(executor, "_threads", None):  # only once it has run something
        executor.submit(connections.close_all).result(10)


class ApiClient:
    """Call the API as a user would: POST JSON with a Bearer token."""

    def __init__(self, user=None, token=None):
        self.user = user
        self.token = token
        self.client = Client()

    def raw(self, path, body=b"{}", content_type="application/json", **headers):
        if self.token:
            headers["HTTP_AUTHORIZATION"] = f"Bearer {self.token}"
        return self.client.post(path, data=body, content_type=content_type, **headers)

    def call(self, path, body=None):
        """POST a JSON body; return (status, decoded JSON)."""
        response = self.raw(path, json.dumps(body if body is not None else {}))
        assert response["Content-Type"].startswith("application/json"), response.content[:200]
        return response.status_code, response.json()

    def ok(self, path, body=None):
        status, data = self.call(path, body)
        assert status == 200, (path, status, data)
        return data


class Clock:
    """The wall clock of the modules it is installed in, moved on by `advance` instead of sleeping."""

    def __init__(self, monkeypatch):
        self.monkeypatch = monkeypatch
        self.offset = 0.0

    def install(self, *modules):
        """Stand for the `time` module these modules imported (they call `time.time()`)."""
        for module in modules:
            self.monkeypatch.setattr(module, "time", self)
        return self

    def time(self):
        return time.time() + self.offset

    def advance(self, seconds):
        self.offset += seconds

    def __getattr__(self, name):  # monotonic, sleep...: the real ones
        return getattr(time, name)


@pytest.fixture
def clock(monkeypatch):
    """A clock to move on instead of sleeping: `clock.install(module)`, then `clock.advance(seconds)`."""
    return Clock(monkeypatch)


def make_actor(handle):
    """A user (password `<handle>-password`) calling the API with a token of their own."""
    user = create_user(handle, password=f"{handle}-password")
    _, raw = ApiToken.issue(user, "test")
    return ApiClient(user, raw)


@pytest.fixture
def alice(db):
    return make_actor("alice")


@pytest.fixture
def bob(db):
    """A second user, not yet a member of anything: tests invite him at the level they need."""
    return make_actor("bob")


@pytest.fixture
def charlie(db):
    return make_actor("charlie")


@pytest.fixture
def anonymous(db):
    return ApiClient()


@pytest.fixture
def web(alice):
    """alice's browser, logged in."""
    alice.client.force_login(alice.user)
    return alice.client


@pytest.fixture
def project(alice):
    """A project alice administers."""
    return alice.ok("/project/new", {"name": "alice's project"})["id"]
