"""Django's SQLite backend, whose writers wait for the database's write lock in short steps.

SQLite has one write lock per database. A connection that finds it taken waits in SQLite's busy
handler, which sleeps 1, 2, 5, 10, 15, 20, 25, 25, 25, 50, 50 then 100 ms between its looks, however
soon the lock is free: a claim that finds a lane's 2 ms end in its way sleeps 3 to 8 ms. The
embedded mode's writers (the web server's submits, each lane's claim, the ending and log store
threads) meet often, and in a burst of trivial jobs the lanes spent a third of their time asleep in
it (bench/README, "the write lock").

Here SQLite's own wait is off (busy_timeout 0) once the connection is set up, and a statement the
lock refuses is tried again after 0.25 ms, then 0.5, 1 and 2 ms at most, until OPTIONS' `timeout`
(as SQLite would have waited) has passed. Only what is safe to run again is: a statement outside a
transaction (one that starts it, BEGIN IMMEDIATE, among them), which the refusal left undone, and a
COMMIT, which a refusal leaves pending. (An executemany outside a transaction commits row by row:
it waits in SQLite's handler, as before.)
"""

import sqlite3
import time

from django.db import OperationalError
from django.db.backends.sqlite3 import base

FIRST_PAUSE = 0.00025
LONGEST_PAUSE = 0.002


def _busy(exc):
    while exc is not None and not isinstance(exc, sqlite3.OperationalError):
        exc = exc.__cause__
    return exc is not None and getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_BUSY


def retrying(call, timeout):
    """call(), again after short pauses while the database is busy, for up to `timeout` seconds."""
    deadline, pause = None, FIRST_PAUSE
    while True:
        try:
            return call()
        except (sqlite3.OperationalError, OperationalError) as exc:
            if not _busy(exc):
                raise
            now = time.monotonic()
            deadline = deadline or now + timeout
            if now >= deadline:
                raise
        time.sleep(pause)
        pause = min(2 * pause, LONGEST_PAUSE)


class Cursor(base.SQLiteCursorWrapper):
    timeout = 5.0

    def execute(self, query, params=None):
        if self.connection.in_transaction:
            return super().execute(query, params)
        return retrying(lambda: super(Cursor, self).execute(query, params), self.timeout)

    def executemany(self, query, param_list):
        if self.connection.in_transaction:
            return super().executemany(query, param_list)
        # Outside a transaction each row commits alone: a refusal at the third would have the first
        # two done. SQLite waits, as it did, for the rows' locks.
        self.connection.execute(f"PRAGMA busy_timeout = {int(self.timeout * 1000)}")
        try:
            return super().executemany(query, param_list)
        finally:
            self.connection.execute("PRAGMA busy_timeout = 0")


class DatabaseWrapper(base.DatabaseWrapper):
    def _timeout(self):
        return float(self.settings_dict["OPTIONS"].get("timeout", 5.0))

    def get_new_connection(self, conn_params):
        conn = super().get_new_connection(conn_params)  # its set-up waits as SQLite does
        conn.execute("PRAGMA busy_timeout = 0")
        return conn

    def create_cursor(self, name=None):
        cursor = self.connection.cursor(factory=Cursor)
        cursor.timeout = self._timeout()
        return cursor

    def _commit(self):
        return retrying(super()._commit, self._timeout())
