"""The ASGI entry point: which handler serves a path, and on which threads."""

import asyncio
import threading

import pytest
from channels.testing import HttpCommunicator
from django.core.signals import request_started

from dxweb import asgi

pytestmark = pytest.mark.django_db(transaction=True)


async def threads_serving(path, times=3):
    """Run `times` GETs of `path` through the ASGI application.

    Return (statuses, the thread names of their sync code)."""
    names, statuses = [], []

    def record(**kwargs):
        names.append(threading.current_thread().name)

    request_started.connect(record)
    try:
        for _ in range(times):
            communicator = HttpCommunicator(asgi.application, "GET", path, headers=[(b"host", b"127.0.0.1")])
            response = await communicator.get_response(timeout=30)
            statuses.append(response["status"])
    finally:
        request_started.disconnect(record)
    return statuses, names


def test_pages_run_on_a_pool_of_long_lived_threads():
    """Not a new thread (and a new database connection) per page: a pooled thread keeps its connection."""
    statuses, names = asyncio.run(threads_serving("/login/"))
    assert statuses == [200, 200, 200]
    assert all(name.startswith("page-") for name in names), names
    assert len(set(names)) <= asgi.page_asgi_app.threads


def test_api_calls_run_on_their_own_pool():
    statuses, names = asyncio.run(threads_serving("/system/whoami"))
    assert all(400 <= s < 500 for s in statuses), statuses  # no token
    assert all(name.startswith("api-") for name in names), names


def test_the_pooled_threads_close_their_connections_when_asked():
    """They keep them between requests; before a database is dropped (a test's), they let them go."""
    from django.db import connection

    from projects.models import Container

    asyncio.run(threads_serving("/login/", times=1))
    executor = next(e for e in asgi.page_asgi_app.executors if e._threads)
    executor.submit(Container.objects.exists).result(10)
    assert executor.submit(lambda: connection.connection is not None).result(10)
    asgi.page_asgi_app.close_connections()
    assert executor.submit(lambda: connection.connection is None).result(10)
