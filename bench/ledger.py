"""The bookkeeping the jobs target allows, with none of the platform's logic: bench/jobs.py's fourth
baseline (a task per job with the allowance).

The issue's target for a trivial job is at most 8 committed transactions and 20 statements, submit to
done. dxweb's job makes 6 and 20 (`bench jobs` counts them; bench/dbcount.py): the submit, 1
transaction of 7 statements (2 reads, 5 inserts); the worker, 5 transactions of 13 (the claim: 2
reads, an insert, an update, an insert, an upsert; a log line; the end: an update, an insert, a delete,
an insert; the look for jobs waiting on it; the look for more runnable jobs). `submit()` and `run()`
make the same transactions, of the same statements' kinds, in the same order, on three narrow scratch
tables of the server's own database: what that shape of work costs this stack, with no token, no
permission, no scheduler, no log store. A narrow table with one index costs the engine less than
dxweb's (wider rows, more indexes), so this baseline errs on the fast side: it is a ceiling for the
jobs, not a par.

Used by bench/views.py's launch_true (the submit, in the web server's request) and bench/tasks.py's
boxed_true (the worker's transactions, around the sandbox, in the server's Celery worker).
"""

import time

from django.db import connection, transaction

JOB, EVENT, SHARE = "bench_ledger_job", "bench_ledger_event", "bench_ledger_share"
RUNNABLE, RUNNING, DONE = "runnable", "running", "done"


def ensure():
    """Create the scratch tables if they are not there (once, before a burst: not from two processes
    at once, which PostgreSQL's CREATE TABLE IF NOT EXISTS does not survive)."""
    serial = "BIGSERIAL PRIMARY KEY" if connection.vendor == "postgresql" else "INTEGER PRIMARY KEY AUTOINCREMENT"
    with connection.cursor() as cursor:
        cursor.execute(
            f"CREATE TABLE IF NOT EXISTS {JOB} (tag VARCHAR(64) PRIMARY KEY, state VARCHAR(16) NOT NULL, "
            "worker VARCHAR(64) NOT NULL DEFAULT '', tries INTEGER NOT NULL DEFAULT 0, "
            "token VARCHAR(64), created BIGINT NOT NULL, modified BIGINT NOT NULL)"
        )
        cursor.execute(f"CREATE INDEX IF NOT EXISTS {JOB}_state ON {JOB} (state)")
        cursor.execute(
            f"CREATE TABLE IF NOT EXISTS {EVENT} (id {serial}, tag VARCHAR(64) NOT NULL, "
            "kind VARCHAR(16) NOT NULL, body VARCHAR(200) NOT NULL, at BIGINT NOT NULL)"
        )
        cursor.execute(f"CREATE INDEX IF NOT EXISTS {EVENT}_tag ON {EVENT} (tag, kind)")
        cursor.execute(f"CREATE TABLE IF NOT EXISTS {SHARE} (launcher VARCHAR(64) PRIMARY KEY, last_claim BIGINT)")


def _event(cursor, tag, kind, body=""):
    cursor.execute(f"INSERT INTO {EVENT} (tag, kind, body, at) VALUES (%s, %s, %s, %s)", [tag, kind, body, _now()])


def _now():
    return int(time.time() * 1000)


def submit(tag):
    """The submit's transaction: 2 reads (the caller, its access), 5 inserts (a workspace and its root
    folder, the job, its placement, its first transition)."""
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(f"SELECT launcher, last_claim FROM {SHARE} WHERE launcher = %s", ["bench"])
        cursor.fetchall()
        cursor.execute(f"SELECT id, tag, kind FROM {EVENT} WHERE tag = %s AND kind = %s", [tag, "grant"])
        cursor.fetchall()
        _event(cursor, tag, "workspace")
        _event(cursor, tag, "folder", "/")
        now = _now()
        cursor.execute(
            f"INSERT INTO {JOB} (tag, state, created, modified) VALUES (%s, %s, %s, %s)", [tag, RUNNABLE, now, now]
        )
        _event(cursor, tag, "placement")
        _event(cursor, tag, "transition", RUNNABLE)


def run(tag, worker, code):
    """The worker's five transactions around `code` (the sandbox): claim, then a log line, the end,
    the look for jobs waiting on this one, and the look for more runnable jobs."""
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(f"SELECT state, COUNT(*) FROM {JOB} WHERE state IN (%s, %s) GROUP BY state", [RUNNABLE, RUNNING])
        cursor.fetchall()
        cursor.execute(f"SELECT tag, state, tries, created FROM {JOB} WHERE tag = %s AND state = %s", [tag, RUNNABLE])
        tries = cursor.fetchone()[2]
        _event(cursor, tag, "token", worker)
        cursor.execute(
            f"UPDATE {JOB} SET state = %s, worker = %s, tries = %s, token = %s, modified = %s "
            "WHERE tag = %s AND state = %s",
            [RUNNING, worker, tries + 1, tag, _now(), tag, RUNNABLE],
        )
        _event(cursor, tag, "transition", RUNNING)
        cursor.execute(
            f"INSERT INTO {SHARE} (launcher, last_claim) VALUES (%s, %s) "
            "ON CONFLICT (launcher) DO UPDATE SET last_claim = excluded.last_claim",
            ["bench", _now()],
        )
    code()
    # A transaction of one statement is the statement alone, in autocommit (as dxweb's are).
    with connection.cursor() as cursor:
        _event(cursor, tag, "log", "Running trivial (main)")
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {JOB} SET state = %s, modified = %s WHERE tag = %s AND state = %s AND tries = %s",
            [DONE, _now(), tag, RUNNING, tries + 1],
        )
        _event(cursor, tag, "transition", DONE)
        cursor.execute(f"DELETE FROM {EVENT} WHERE tag = %s AND kind = %s", [tag, "token"])
        _event(cursor, tag, "notification", DONE)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT id, tag FROM {EVENT} WHERE tag = %s AND kind = %s", [tag, "dependency"])
        cursor.fetchall()
        cursor.execute(f"SELECT 1 FROM {JOB} WHERE state = %s LIMIT 1", [RUNNABLE])
        cursor.fetchall()
