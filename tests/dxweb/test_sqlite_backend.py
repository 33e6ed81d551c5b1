"""dxweb/db/sqlite3: writers wait for SQLite's write lock in short steps, up to the same timeout."""

import sqlite3
import threading

import pytest
from django.db import OperationalError, connection, transaction

from dxweb.db.sqlite3 import base
from projects.models import User


@pytest.fixture
def sqlite():
    if connection.vendor != "sqlite":
        pytest.skip("the SQLite backend's own test: it runs in the embedded pass")


@pytest.fixture
def pauses(monkeypatch):
    """The backend's pauses between tries, recorded (and still taken)."""
    taken, real = [], base.time.sleep

    def sleep(seconds):
        taken.append(seconds)
        real(seconds)

    monkeypatch.setattr(base.time, "sleep", sleep)
    return taken


class Holder:
    """Another connection to the same file holding its write lock (BEGIN IMMEDIATE) until released."""

    def __init__(self):
        connection.ensure_connection()
        self.other = sqlite3.connect(connection.settings_dict["NAME"], isolation_level=None, check_same_thread=False)
        self.other.execute("BEGIN IMMEDIATE")

    def release_after(self, seconds):
        timer = threading.Timer(seconds, self.release)
        timer.start()
        return timer

    def release(self):
        if self.other.in_transaction:
            self.other.execute("COMMIT")
        self.other.close()


def busy_timeout():
    with connection.cursor() as cursor:
        cursor.execute("PRAGMA busy_timeout")
        return cursor.fetchone()[0]


@pytest.mark.django_db(transaction=True)
def test_sqlites_own_wait_is_off_and_a_transaction_waits_for_the_lock_in_short_steps(sqlite, pauses):
    assert busy_timeout() == 0
    holder = Holder()
    timer = holder.release_after(0.2)
    try:
        with transaction.atomic():  # BEGIN IMMEDIATE: refused until the holder commits
            User.objects.create(username="waited")
    finally:
        timer.join()
    assert User.objects.filter(username="waited").exists()
    assert pauses, "the transaction began while the other connection held the write lock"
    assert pauses[0] == base.FIRST_PAUSE and max(pauses) == base.LONGEST_PAUSE
    assert busy_timeout() == 0


@pytest.mark.django_db(transaction=True)
def test_a_statement_outside_a_transaction_waits_too(sqlite, pauses):
    User.objects.create(username="before")
    holder = Holder()
    timer = holder.release_after(0.1)
    try:
        assert User.objects.filter(username="before").update(username="after") == 1
    finally:
        timer.join()
    assert pauses
    assert list(User.objects.values_list("username", flat=True)) == ["after"]


@pytest.mark.django_db(transaction=True)
def test_a_lock_held_past_the_timeout_fails_as_sqlite_would_and_writes_nothing(sqlite, pauses, monkeypatch):
    monkeypatch.setitem(connection.settings_dict["OPTIONS"], "timeout", 0.05)
    holder = Holder()
    try:
        with pytest.raises(OperationalError, match="database is locked"), transaction.atomic():
            User.objects.create(username="never")
    finally:
        holder.release()
    assert len(pauses) > 3  # it tried again until the timeout passed
    assert not User.objects.filter(username="never").exists()


@pytest.mark.django_db(transaction=True)
def test_executemany_outside_a_transaction_waits_in_sqlites_handler_then_turns_it_off_again(sqlite):
    holder = Holder()
    timer = holder.release_after(0.1)
    table = User._meta.db_table
    try:
        with connection.cursor() as cursor:
            cursor.executemany(f"UPDATE {table} SET first_name = %s WHERE username = %s", [("a", "x"), ("b", "y")])
    finally:
        timer.join()
    assert busy_timeout() == 0


@pytest.mark.django_db(transaction=True)
def test_other_errors_are_not_retried(sqlite, pauses):
    with pytest.raises(OperationalError, match="no such table"), connection.cursor() as cursor:
        cursor.execute("SELECT * FROM no_such_table")
    assert pauses == []
