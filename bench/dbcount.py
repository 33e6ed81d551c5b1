"""Count the SQL statements and committed transactions of one process: every thread, every connection.

    with dbcount.counting() as count:
        ...  # a request, a worker's task, threads of their own
        count.wait_quiet()  # until no thread has run a statement for a while
    count.queries, count.transactions, print(count.report())

What is counted, the same on SQLite and PostgreSQL:

- a query: each statement sent through Django's cursors (the ORM, raw SQL, dxweb/sql.py), savepoints
  included (each is a round trip), the BEGIN that Django itself sends on SQLite excluded (PostgreSQL's
  driver sends its own, unseen); on PostgreSQL also the `SELECT 1` of a connection's health check
  (CONN_HEALTH_CHECKS), which psycopg runs directly.
- a committed transaction, as PostgreSQL's pg_stat_database.xact_commit counts them: an outermost atomic
  block (or a manual transaction) that ran a statement and committed = 1; each statement run in
  autocommit, outside any atomic block = 1 (reads too). Rolled-back transactions are counted apart.
- connections opened (django.db.backends.signals.connection_created).
- empty transactions: an atomic block that began a transaction (SQLite's BEGIN IMMEDIATE, which takes
  the write lock) and committed with no statement. PostgreSQL never sees one; SQLite's other writers
  wait on it all the same.

The hooks sit on the backend classes (CursorWrapper._execute_with_wrappers, BaseDatabaseWrapper.commit and
rollback, the PostgreSQL wrapper's is_usable), not on connection objects: connections are per thread and
some threads (the log store's, a pool's) keep theirs from before the count began. They are installed once
and cost a flag test while nothing is being counted. One count at a time per process.

Each statement is filed under its call site: the innermost frame in the project's jobs/, projects/ or
dxweb/ code (dxweb/sql.py's helpers skipped: their caller says more), with the first 60 characters of
its SQL.
"""

import collections
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from django.db import connections
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.backends.signals import connection_created
from django.db.backends.utils import CursorWrapper

ROOT = Path(__file__).resolve().parent.parent
APPS = tuple(str(ROOT / app) + "/" for app in ("jobs", "projects", "dxweb"))
SKIPPED = (str(ROOT / "dxweb" / "sql.py"),)
SQL_WIDTH = 60

_active = None
_installed = False
_install_lock = threading.Lock()
_local = threading.local()


def call_site(depth=2):
    """The innermost frame of the project's own code calling this: "jobs/actions.py:422 run_applet"."""
    frame = sys._getframe(depth)
    while frame is not None:
        name = frame.f_code.co_filename
        if name.startswith(APPS) and not name.startswith(SKIPPED):
            return f"{name[len(str(ROOT)) + 1 :]}:{frame.f_lineno} {frame.f_code.co_name}"
        frame = frame.f_back
    return "(outside jobs/, projects/, dxweb/)"


def _short(sql):
    return " ".join(str(sql).split())[:SQL_WIDTH]


@dataclass
class Statement:
    phase: str
    thread: str
    site: str
    sql: str
    atomic: bool  # inside a transaction (else it was one by itself)


@dataclass
class Transaction:
    phase: str
    thread: str
    site: str  # where it committed (or, for a statement in autocommit, where it ran)
    statements: list = field(default_factory=list)  # [Statement]
    committed: bool = True


class Count:
    """What one process ran while counting; read it after counting() ends (or wait_quiet())."""

    def __init__(self):
        self.lock = threading.Lock()
        self.phase = ""  # set by the caller ("submit", "worker"...): statements and transactions carry it
        self.statements = []  # [Statement], in the order they ran
        self.transactions = []  # [Transaction], committed and rolled back, in order
        self.connections = 0
        self.empty = 0  # transactions begun (SQLite) and ended with no statement
        self.last = time.monotonic()

    @property
    def queries(self):
        return len(self.statements)

    @property
    def committed(self):
        return sum(1 for t in self.transactions if t.committed)

    @property
    def rolled_back(self):
        return sum(1 for t in self.transactions if not t.committed)

    def wait_quiet(self, quiet=1.0, timeout=60.0):
        """Wait until no thread has run a statement for `quiet` seconds; return False on `timeout`."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            idle = time.monotonic() - self.last
            if idle >= quiet:
                return True
            time.sleep(min(quiet - idle, 0.1) + 0.01)
        return False

    def sites(self):
        """[(phase, site, sql, n)]: the statements grouped by phase, call site and SQL, in the order first run."""
        groups = collections.Counter((s.phase, s.site, s.sql) for s in self.statements)
        return [(*key, n) for key, n in groups.items()]

    def phases(self):
        """{phase: {"queries", "transactions"}}, in the order the phases began."""
        out = {}
        for s in self.statements:
            out.setdefault(s.phase, {"queries": 0, "transactions": 0})["queries"] += 1
        for t in self.transactions:
            if t.committed:
                out.setdefault(t.phase, {"queries": 0, "transactions": 0})["transactions"] += 1
        return out

    def summary(self):
        """A JSON-able record: the totals, per phase, the statements by site, the transactions."""
        return {
            "queries": self.queries,
            "transactions": self.committed,
            "rolled_back": self.rolled_back,
            "connections_opened": self.connections,
            "empty_transactions": self.empty,
            "phases": self.phases(),
            "by_site": [{"phase": p, "site": site, "sql": sql, "n": n} for p, site, sql, n in self.sites()],
            "transaction_list": [
                {
                    "phase": t.phase,
                    "site": t.site,
                    "thread": t.thread,
                    "statements": len(t.statements),
                    "committed": t.committed,
                    "first_sql": t.statements[0].sql if t.statements else "",
                }
                for t in self.transactions
            ],
        }

    def report(self):
        """The breakdown as text: each call site's statements, then each transaction."""
        lines = [
            f"{self.queries} queries, {self.committed} committed transactions"
            f" ({self.rolled_back} rolled back, {self.connections} connections opened,"
            f" {self.empty} empty transactions)",
        ]
        lines += [
            f"  {p or '-'}: {v['queries']} queries, {v['transactions']} transactions" for p, v in self.phases().items()
        ]
        lines.append("queries by call site (in the order first run):")
        lines += [f"  {n:3d}  {p:<6} {site}  | {sql}" for p, site, sql, n in self.sites()]
        lines.append("transactions (in the order they ended):")
        for t in self.transactions:
            what = f"{len(t.statements)} statements" if t.statements[0].atomic else "autocommit"
            end = "" if t.committed else "  ROLLED BACK"
            lines.append(f"  {what:>14}  {t.phase:<6} {t.site}  [{t.thread}]  | {t.statements[0].sql}{end}")
        return "\n".join(lines)

    # The hooks' side, each under the lock (threads run statements at once).

    def _statement(self, db, sql):
        if getattr(_local, "excluded", False):
            return
        text = str(sql)
        if text.lstrip()[:5].upper() == "BEGIN":
            db._dbcount_began = self  # SQLite's BEGIN, sent by Django; PostgreSQL's driver sends one unseen
            return
        atomic = db.in_atomic_block or not db.autocommit
        statement = Statement(self.phase, threading.current_thread().name, call_site(3), _short(text), atomic)
        with self.lock:
            self.last = time.monotonic()
            self.statements.append(statement)
            if atomic:
                owner, pending = db.__dict__.get("_dbcount_open", (None, None))
                if owner is not self:  # none yet, or left by an earlier count
                    pending = []
                    db._dbcount_open = (self, pending)
                pending.append(statement)
            else:
                self.transactions.append(Transaction(self.phase, statement.thread, statement.site, [statement]))

    def _ended(self, db, committed):
        owner, pending = db.__dict__.pop("_dbcount_open", (None, None))
        began = db.__dict__.pop("_dbcount_began", None) is self
        if getattr(_local, "excluded", False):
            return
        if owner is not self or not pending:
            if began:  # SQLite took its write lock for nothing
                with self.lock:
                    self.empty += 1
            return  # on PostgreSQL a transaction that ran nothing never reached the server
        with self.lock:
            self.last = time.monotonic()
            thread = threading.current_thread().name
            self.transactions.append(Transaction(pending[0].phase, thread, call_site(3), pending, committed))


def _execute_with_wrappers(self, sql, params, many, executor):
    count = _active
    if count is not None:
        count._statement(self.db, sql)
    return _original["execute"](self, sql, params, many, executor)


def _commit(self):
    result = _original["commit"](self)
    if _active is not None:
        _active._ended(self, committed=True)
    return result


def _rollback(self):
    result = _original["rollback"](self)
    if _active is not None:
        _active._ended(self, committed=False)
    return result


def _is_usable(self):
    # PostgreSQL's health check: psycopg's own cursor runs `SELECT 1`, past Django's wrappers.
    if _active is not None:
        _active._statement(self, "SELECT 1 (connection health check)")
    return _original["is_usable"][type(self)](self)


def _connection_created(sender, connection, **kwargs):
    count = _active
    if count is not None and not getattr(_local, "excluded", False):
        with count.lock:
            count.connections += 1


_original = {"is_usable": {}}


def install():
    """Put the hooks on the backend classes (once per process); counting() calls it."""
    global _installed
    with _install_lock:
        if not _installed:
            _original["execute"] = CursorWrapper._execute_with_wrappers
            _original["commit"] = BaseDatabaseWrapper.commit
            _original["rollback"] = BaseDatabaseWrapper.rollback
            CursorWrapper._execute_with_wrappers = _execute_with_wrappers
            BaseDatabaseWrapper.commit = _commit
            BaseDatabaseWrapper.rollback = _rollback
            connection_created.connect(_connection_created, weak=False, dispatch_uid="bench.dbcount")
            _installed = True
        for alias in connections:
            cls = type(connections[alias])
            if connections[alias].vendor == "postgresql" and cls not in _original["is_usable"]:
                _original["is_usable"][cls] = cls.is_usable
                cls.is_usable = _is_usable


@contextmanager
def excluded():
    """Leave this thread's statements uncounted (a measurement's own checks)."""
    _local.excluded = True
    try:
        yield
    finally:
        _local.excluded = False


@contextmanager
def counting():
    """Count every statement and transaction of this process (all threads) while the block runs."""
    global _active
    install()
    if _active is not None:
        raise RuntimeError("a count is already running in this process")
    count = Count()
    _active = count
    try:
        yield count
    finally:
        _active = None


# A trivial job, submit to done: what `bench jobs` prints and tests/jobs/test_bookkeeping.py checks.

TRIVIAL = "main() { true; }"
FINAL_STATES = ("done", "failed", "terminated")


def count_trivial_job(token, project, applet, timeout=120):
    """Count one trivial job of this process, from its submission to its end with its log stored.

    The submission goes through the real API view (Django's test Client, POST /<applet>/run with
    `token`); the worker's side runs here too, as its Celery task's own function
    (`jobs.tasks.run_job.run(job_id)`), so that both sides' statements are counted. No task message
    leaves this process meanwhile (a worker elsewhere would take the job). The task may run the best
    runnable job rather than the one named: no other job may be runnable (RuntimeError).

    Return the count's summary(), its phases "submit" (the request) and "worker" (the rest), with
    "job", its final "state" and "report" (the breakdown as text).

    On PostgreSQL a kept connection idle for RECHECK_AFTER (1 s) is checked before its next statement
    (dxweb/db/postgresql, tested in tests/dxweb/test_db_backend.py): that is the connection's cost, not
    the job's, and the ending thread's connection idles between jobs counted one by one (a loaded
    machine would add it at random too), so it is out of this count.
    """
    from django.db import close_old_connections
    from django.test import Client

    from dxweb.db.postgresql import base as postgresql_base
    from jobs import dispatch
    from jobs.models import Job
    from jobs.tasks import run_job

    client = Client(HTTP_HOST="127.0.0.1", HTTP_AUTHORIZATION=f"Bearer {token}")
    app = dispatch.app
    sent = []
    with excluded():
        others = list(Job.objects.filter(state="runnable").values_list("pk", flat=True)[:5])
    if others:
        raise RuntimeError(f"other jobs are runnable ({', '.join(others)}): the worker's task might run them")
    app.send_task = lambda name, args=None, kwargs=None, **options: sent.append((name, args))
    recheck, postgresql_base.RECHECK_AFTER = postgresql_base.RECHECK_AFTER, 3600.0
    try:
        with counting() as count:
            count.phase = "submit"
            # What a server's request_started does (Django's test Client skips it): on PostgreSQL the
            # request's first statement then follows a health check of the connection.
            close_old_connections()
            response = client.post(f"/{applet}/run", {"project": project, "input": {}}, content_type="application/json")
            if response.status_code != 200:
                raise RuntimeError(f"/{applet}/run: {response.status_code} {response.content[:300]!r}")
            job_id = response.json()["id"]
            count.phase = "worker"
            run_job.run(job_id)
            deadline = time.monotonic() + timeout
            with excluded():
                while True:
                    row = Job.objects.filter(pk=job_id).values_list("state", "worker").first() or ("gone", "")
                    if row[0] in FINAL_STATES:
                        break
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"{job_id} is still {row[0]} after {timeout} s")
                    time.sleep(0.05)
            state, worker = row
            # A job's worker is "<host>:<Celery node>"; the task run here has no node.
            if worker.partition(":")[2]:
                raise RuntimeError(f"{job_id} was run by {worker}, not in this process: its count is not the job's")
            # Its log writer and any other thread of the worker's side store what is left.
            count.wait_quiet(quiet=1.0, timeout=timeout)
    finally:
        del app.send_task
        postgresql_base.RECHECK_AFTER = recheck
    summary = count.summary()
    summary.update(job=job_id, state=state, report=count.report())
    return summary
