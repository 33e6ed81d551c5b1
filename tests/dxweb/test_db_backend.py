"""dxweb/db/postgresql: kept connections are health-checked once idle, not before every request."""

import psycopg
import pytest
from django.db import connection, connections

from dxweb.db.postgresql import base
from projects.models import User


@pytest.fixture
def postgresql():
    if connection.vendor != "postgresql":
        pytest.skip("the PostgreSQL backend's own test: it runs in the PostgreSQL pass (DATABASE_URL)")


@pytest.fixture
def checks(monkeypatch):
    """The health checks made, counted."""
    made, wrapper = [], type(connections["default"])
    real = wrapper.is_usable

    def counted(self):
        made.append(1)
        return real(self)

    monkeypatch.setattr(wrapper, "is_usable", counted)
    return made


def a_request():
    """What a request does with the connection: the checks armed at its start, then a statement."""
    connection.close_if_unusable_or_obsolete()
    return User.objects.count()


@pytest.mark.django_db(transaction=True)
def test_a_connection_busy_a_moment_ago_is_not_checked_and_an_idle_one_is(postgresql, checks):
    a_request()
    checks.clear()
    a_request()
    assert checks == []  # its last statement was just now
    connection.last_used -= base.RECHECK_AFTER + 1
    a_request()
    assert checks == [1]


@pytest.mark.django_db(transaction=True)
def test_an_idle_connection_the_server_dropped_is_replaced_not_failed(postgresql):
    a_request()
    pid = connection.connection.info.backend_pid
    params = connection.get_connection_params()
    with psycopg.connect(**params, autocommit=True) as other:
        other.execute("SELECT pg_terminate_backend(%s)", [pid])
    connection.last_used -= base.RECHECK_AFTER + 1
    assert a_request() >= 0
    assert connection.connection.info.backend_pid != pid
