"""Job logs: a batched writer into the store, with a per-job cap, and "there is more" notifications.

Lines are written in batches (never a commit per line). Past DXWEB_LOG_CAP_BYTES a
job's log gets one truncation marker and further lines are counted, not stored;
the job itself goes on.

Each batch is one multi-row INSERT run in autocommit: on SQLite, whose single write lock
every job's writer shares, the lock is held only while SQLite itself inserts the rows
(the parameters are built before, and the statement runs with the GIL released), so a
job flooding its output leaves gaps for other jobs' writers instead of holding the lock
while Python builds SQL.

Notifications are hints that the store has more. With a channel layer that works from any
event loop (Redis), they are handed to one long-lived event loop thread per process, which
keeps the layer's connections: no new event loop and Redis connection per call, and the
caller does not wait. The in-memory layer's queues belong to the event loop of whoever
receives, so it is sent to as before (and not at all when nobody in the process listens).
"""

import asyncio
import concurrent.futures
import logging
import os
import queue
import sqlite3
import threading
import time
from functools import lru_cache

from asgiref.sync import async_to_sync
from channels.layers import InMemoryChannelLayer, get_channel_layer
from django.conf import settings
from django.db import IntegrityError, connection, connections, transaction
from django.db.models import Max, Q

from dxweb import sql
from dxweb.threads import ReusedThread
from jobs.models import Job, LogLine
from projects.models import now_ms

log = logging.getLogger(__name__)

LEVELS = ("EMERG", "ALERT", "CRITICAL", "ERROR", "WARNING", "NOTICE", "INFO", "DEBUG", "STDERR", "STDOUT", "METRICS")
# syslog priorities, as dxpy's DXLogHandler sends them.
SYSLOG_LEVELS = {0: "EMERG", 1: "ALERT", 2: "CRITICAL", 3: "ERROR", 4: "WARNING", 5: "NOTICE", 6: "INFO", 7: "DEBUG"}
MAX_LINE = 64 * 1024


def group_name(job_id):
    return f"joblog.{job_id}"


class Notifier:
    """One event loop thread per process sending channel-layer messages, fire and forget.

    Callers never wait, and may be any thread, an event loop's included. A message to a
    group whose previous message has not started going out yet is merged into it: that one
    goes out after the caller's commit, so its receivers see the store as this caller left
    it. At most `concurrency` sends run at once (each holds one of the layer's
    connections) and at most `limit` are pending: past that (a dead or hung Redis) messages
    are dropped, with a debug log, rather than piling up.

    Messages of the types in `spaced` go out at most once per `spacing` seconds per group: one
    that comes sooner waits out the rest of the spacing, and those that come meanwhile merge into it.
    A job list's and a bell's groups so get ten hints a second at most however many of their jobs
    change state, and a lone change still goes out at once. (A burst of trivial jobs sent 7.6 group
    sends per job, each two Redis round trips, most of them to these groups.) A log's "more lines"
    hints are not spaced: a watched log is read as it is written.
    """

    def __init__(self, limit=1000, concurrency=4, timeout=5.0, spacing=0.1, spaced=("jobs.changed", "notices.changed")):
        self.limit = limit
        self.concurrency = concurrency
        self.timeout = timeout
        self.spacing = spacing
        self.spaced = frozenset(spaced)
        self._reset()

    def _reset(self):
        self.lock = threading.Lock()
        self.loop = None
        self.thread = None
        self.slots = None
        self.pid = None
        self.waiting = set()  # (group, type) submitted, not started
        self.last_sent = {}  # (group, spaced type): when its last send started (the loop's clock; its thread only)
        self.pending = 0  # submitted, not finished
        self.dropped = 0

    def _loop(self):
        # Under self.lock. A forked child (Celery's prefork pool) starts its own thread.
        if self.loop is None or self.pid != os.getpid() or not self.thread.is_alive():
            loop = asyncio.new_event_loop()
            thread = threading.Thread(target=loop.run_forever, name="dxweb-notify", daemon=True)
            thread.start()
            self.loop, self.thread, self.pid = loop, thread, os.getpid()
            self.slots = asyncio.Semaphore(self.concurrency)
            self.waiting.clear()
            self.last_sent = {}
            self.pending = 0
        return self.loop

    def send(self, layer, group, message):
        key = (group, message.get("type"))
        with self.lock:
            if key in self.waiting:
                return
            if self.pending >= self.limit:
                self.dropped += 1
                log.debug("dropped a notification of %s: %d pending", group, self.pending)
                return
            loop = self._loop()
            self.waiting.add(key)
            self.pending += 1
        try:
            asyncio.run_coroutine_threadsafe(self._send(layer, key, message), loop)
        except RuntimeError:  # the loop is gone (interpreter shutdown)
            with self.lock:
                self.waiting.discard(key)
                self.pending -= 1

    async def _send(self, layer, key, message):
        started = False
        try:
            if key[1] in self.spaced:
                await self._space(key)  # still waiting: what comes meanwhile merges into this one
            async with self.slots:
                with self.lock:
                    self.waiting.discard(key)  # from now on a new message is a new send
                    started = True
                # asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow a cancellation.
                async with asyncio.timeout(self.timeout):
                    listened = await _listened(layer, key[0])
                if listened:
                    async with asyncio.timeout(self.timeout):
                        await layer.group_send(key[0], message)
        except Exception:  # a full or absent channel must never matter to the sender
            log.debug("could not notify %s", key[0], exc_info=True)
        finally:
            with self.lock:
                if not started:
                    self.waiting.discard(key)
                self.pending -= 1

    async def _space(self, key):
        loop = asyncio.get_running_loop()
        pause = self.last_sent.get(key, float("-inf")) + self.spacing - loop.time()
        if pause > 0:
            await asyncio.sleep(pause)
        now = loop.time()
        if len(self.last_sent) >= self.limit:  # forget the groups whose spacing has passed
            self.last_sent = {k: t for k, t in self.last_sent.items() if now - t < self.spacing}
        self.last_sent[key] = now

    def drain(self, timeout=5.0):
        """Wait until every send submitted so far has finished (for tests and shutdown)."""
        with self.lock:
            loop = self.loop if self.pid == os.getpid() else None
        if loop is None:
            return True
        done = threading.Event()

        async def check():
            while self.pending:
                await asyncio.sleep(0.001)
            done.set()

        asyncio.run_coroutine_threadsafe(check(), loop)
        return done.wait(timeout)


async def _listened(layer, group):
    """Whether anyone may listen to `group`: one Redis command (EXISTS of the group's set), where a
    send to a group with no member takes two (channels_redis's group_send first drops the expired
    members, then reads the rest). Most hints have no listener (nobody watches that job's log), and a
    group with members, expired or not, gets the layer's own group_send."""
    try:
        key = layer._group_key(group)
        connection = layer.connection(layer.consistent_hash(group))
    except AttributeError:  # another layer than channels_redis's RedisChannelLayer: send
        return True
    return bool(await connection.exists(key))


notifier = Notifier()
if hasattr(os, "register_at_fork"):
    # A lock held by another thread at fork() would stay held forever in the child.
    os.register_at_fork(after_in_child=notifier._reset)

_local_tasks = set()  # in-memory sends scheduled on the caller's own loop, kept until done


def _send(layer, group, message):
    if not isinstance(layer, InMemoryChannelLayer):
        notifier.send(layer, group, message)
        return
    groups = getattr(layer, "groups", None)
    if isinstance(groups, dict) and not groups.get(group):
        return  # in-memory: nobody in this process listens to the group
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        loop = None
    if loop is not None:
        # Called from an event loop thread (async_to_sync cannot run there): the in-memory layer's
        # receivers live on this loop, so schedule the send on it.
        task = loop.create_task(layer.group_send(group, message))
        _local_tasks.add(task)
        task.add_done_callback(_local_tasks.discard)
        return
    # From a thread started by sync_to_async this runs on the caller's event loop (the receivers').
    async_to_sync(layer.group_send)(group, message)


def notify(job_id):
    """Tell watchers of the job that the store has more (a hint; they read the store)."""
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        _send(layer, group_name(job_id), {"type": "log.more"})
    except Exception:  # a full or absent channel must never stop a job's logging
        log.debug("could not notify watchers of %s", job_id, exc_info=True)


def states_group(project_id=None, user_id=None):
    """The group told when a job of a project (or launched by a user) changes state."""
    return f"jobstates.project.{project_id}" if project_id else f"jobstates.user.{user_id}"


def notify_state(project_id, user_id):
    """Tell job lists and job pages that a state changed (a hint; they read the store)."""
    layer = get_channel_layer()
    if layer is None:
        return
    for group in (states_group(project_id=project_id), states_group(user_id=user_id)):
        try:
            _send(layer, group, {"type": "jobs.changed"})
        except Exception:  # a state change must never fail because a watcher's channel is full
            log.debug("could not notify %s", group, exc_info=True)


def notices_group(user_id):
    """The group told when a user's notices change (one made, some read): the bell's sockets."""
    return f"notices.user.{user_id}"


def notify_notices(user_id):
    """Tell the user's bells to count their unread notices again (a hint; they read the store)."""
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        _send(layer, notices_group(user_id), {"type": "notices.changed"})
    except Exception:  # a notice must never fail because a bell's channel is full
        log.debug("could not notify the bells of user %s", user_id, exc_info=True)


class LogReader:
    """Read a job's log (or its whole tree's) from the store, from per-job cursors onwards.

    Shared by every log stream: the `dx watch` socket and the browser's. Cursors are
    the last seq already delivered per job, so a reader never sends a line twice.
    """

    def __init__(self, root, tree=False, cursors=None):
        self.root = root
        self.tree = tree
        self.cursors = dict(cursors or {})
        self.names = {root.id: root.name}
        self.next_look = 0.0  # monotonic: a watcher's next look waits for it (spaced())

    def looked(self, full=False):
        """Note a watcher's look (its jobs and new lines): the next one is spaced by the tree's size.

        A look reads every job of the tree (its state, and its lines past its cursor), so it costs
        in proportion to the tree; a busy tree wakes its watchers at every line and state. Spacing
        the looks in proportion too bounds the database time a watcher takes each second, whatever
        the tree's size: a lone job's watcher looks again at once (0.2 ms), a thousand-subjob tree's
        at most five times a second. After a full batch (`full`) there is more to read: no wait."""
        spacing = 0.0 if full else min(len(self.names) * LOOK_SPACING_PER_JOB, LOOK_SPACING_MAX)
        self.next_look = time.monotonic() + spacing

    async def spaced(self):
        """Wait until the next look is due (see looked())."""
        delay = self.next_look - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)

    def jobs(self):
        """Return [(id, name, state, parent id)] of the job, or of its tree; remember the names."""
        if not self.tree:
            rows = list(Job.objects.filter(pk=self.root.id).values_list("id", "name", "state", "parent_id"))
        else:
            root = self.root
            rows = list(
                Job.objects.filter(Q(pk=root.id) | Q(origin=root) | Q(root=root))
                .order_by("created", "id")
                .values_list("id", "name", "state", "parent_id")
            )
        self.names = {row[0]: row[1] for row in rows}
        return rows

    def backlog(self, recent, levels=None):
        """The last `recent` lines stored so far; later reads start after them."""
        lines = []
        for chunk in sql.chunks(self.names, OR_CHUNK):
            last = dict(
                LogLine.objects.filter(job_id__in=chunk)
                .values("job_id")
                .annotate(last=Max("seq"))
                .values_list("job_id", "last")
            )
            upto = Q(pk__in=[])
            for job_id in chunk:
                self.cursors[job_id] = last.get(job_id) or 0
                upto |= Q(job_id=job_id, seq__lte=self.cursors[job_id])
            if recent == 0:
                continue
            qs = LogLine.objects.filter(upto)
            if levels:
                qs = qs.filter(level__in=levels)
            lines += qs.order_by("-timestamp", "-seq")[:recent]
        lines = sorted(lines, key=lambda line: (line.timestamp, line.seq), reverse=True)[:recent]
        return sorted(lines, key=lambda line: (line.timestamp, line.job_id, line.seq))

    def new_lines(self, batch):
        """Up to `batch` lines past the cursors, oldest first; the cursors move past them."""
        lines = self._first_new(("timestamp", "job_id", "seq"), batch)
        if len(lines) == batch:
            # A cut batch in time order could skip a line whose timestamp is out of order with its seq
            # (two capture threads); in seq order per job a cut never leaves a gap behind the cursor.
            lines = self._first_new(("job_id", "seq"), batch)
        for line in lines:
            self.cursors[line.job_id] = max(self.cursors[line.job_id], line.seq)
        return lines

    def _first_new(self, order, batch):
        """The first `batch` lines past the cursors in `order`: each chunk of jobs' first ones, merged.

        One statement per chunk joins the lines to a VALUES list of (job, cursor): built by the ORM,
        the same read was an OR of one condition per job, whose Python (1,000 Q objects, compiled) took
        more than the database's answer at each look of a watcher of a thousand-subjob tree."""
        lines = []
        for chunk in sql.chunks(self.names, OR_CHUNK):
            params = []
            for job_id in chunk:
                params += [job_id, self.cursors.setdefault(job_id, 0)]
            rows = sql.fetch(_new_lines_sql(len(chunk), order), [*params, batch])
            lines += [LINE.load(row) for row in rows]
        return sorted(lines, key=lambda line: tuple(getattr(line, field) for field in order))[:batch]


LINE = sql.Columns(LogLine, "l")


def _new_lines_sql(jobs, order):
    """The lines past each of `jobs` (job, cursor) pairs, first `order`, at most a LIMIT of them.
    (VALUES columns are column1, column2... on both SQLite and PostgreSQL.)"""
    column = {"job_id": sql.name(LogLine, "job"), "seq": sql.name(LogLine, "seq")}
    by = ", ".join(f"l.{column.get(field) or sql.name(LogLine, field)}" for field in order)
    return (
        f"SELECT {LINE.sql} FROM {sql.name(LogLine)} l JOIN (VALUES {', '.join(['(%s, %s)'] * jobs)}) c "
        f"ON l.{column['job_id']} = c.column1 AND l.{column['seq']} > c.column2 ORDER BY {by} LIMIT %s"
    )


# A watcher's looks are spaced by this much per job of its tree, at most LOOK_SPACING_MAX (LogReader.looked).
LOOK_SPACING_PER_JOB = 0.0002
LOOK_SPACING_MAX = 0.5

# SQLite parses n ORed conditions into an expression n deep and refuses one deeper than 1,000 (the
# backlog's read), and older SQLite takes at most 999 parameters in a statement: the tree of a
# thousand-subjob scatter is read a chunk of jobs at a time.
OR_CHUNK = 400


def last_lines(job, count):
    """Return the job's last `count` stored lines in the order `dx watch` shows them, and whether
    older lines were left out (/job-x/getLog)."""
    lines = list(LogLine.objects.filter(job_id=job.id).order_by("-seq")[: count + 1])
    kept = lines[:count]
    return sorted(kept, key=lambda line: (line.timestamp, line.seq)), len(lines) > len(kept)


# The columns a batch inserts, in the order of each row's parameters.
COLUMNS = ("job", "seq", "timestamp", "source", "level", "msg")


@lru_cache(maxsize=64)
def _insert_sql(vendor, rows):
    """`INSERT INTO logline (...) VALUES (...), (...)` for `rows` rows, in Django's %s style."""
    quote = connection.ops.quote_name
    meta = LogLine._meta
    columns = ", ".join(quote(meta.get_field(name).column) for name in COLUMNS)
    values = "(" + sql.placeholders(len(COLUMNS)) + ")"
    return f"INSERT INTO {quote(meta.db_table)} ({columns}) VALUES " + ", ".join([values] * rows)


def _max_params():
    """How many parameters one statement may have on the writer's connection."""
    if connection.vendor == "sqlite":
        connection.ensure_connection()
        try:  # the library's real limit (32,766 since SQLite 3.32), not Django's conservative 999
            return connection.connection.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)
        except (AttributeError, sqlite3.Error):
            return connection.features.max_query_params
    return min(connection.features.max_query_params or 65535, 65535)  # PostgreSQL's protocol limit


class StoreThread:
    """One long-lived thread per process runs every log writer's statements, on one connection.

    A writer's own thread would open a database connection per job (on PostgreSQL a server
    process) and close it when the job ends. This thread keeps its connection from job to
    job: it closes it after an error (the next batch gets a fresh one) and once nothing has
    been stored for `idle_seconds`. A forked child (Celery's prefork pool) starts its own.
    """

    def __init__(self, idle_seconds=30.0):
        self.idle_seconds = idle_seconds
        self.tasks = queue.SimpleQueue()
        self.pid = os.getpid()
        self.thread = threading.Thread(target=self._run, name="log-store", daemon=True)
        self.thread.start()

    def call(self, fn, *args):
        """Run fn(*args) on the store thread; return its result or raise its exception."""
        future = concurrent.futures.Future()
        self.tasks.put((future, fn, args))
        return future.result()

    def stop(self):
        """End the thread once the calls already made are done."""
        self.tasks.put(None)
        self.thread.join()

    def _run(self):
        while True:
            try:
                task = self.tasks.get(timeout=self.idle_seconds)
            except queue.Empty:
                connection.close()
                continue
            if task is None:
                connection.close()
                return
            future, fn, args = task
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(fn(*args))
            except BaseException as exc:  # handed to the caller
                connection.close()
                future.set_exception(exc)


_store = None
_store_lock = threading.Lock()


def store_thread():
    global _store
    with _store_lock:
        if _store is None or _store.pid != os.getpid() or not _store.thread.is_alive():
            _store = StoreThread()
        return _store


def close_store_connection():
    """Close the store thread's database connection now (a test database is about to be dropped)."""
    with _store_lock:
        store = _store if _store is not None and _store.pid == os.getpid() and _store.thread.is_alive() else None
    if store is not None:
        store.call(connections.close_all)  # the store thread's own: looked up where it runs


def _after_fork():
    global _store, _store_lock
    _store, _store_lock = None, threading.Lock()


os.register_at_fork(after_in_child=_after_fork)


def append_line(job_id, level, msg, source="SYSTEM", attempts=5):
    """Store one line at the end of a job's log, from outside the job's runner (e.g. the reaper)."""
    for attempt in range(attempts):
        last = LogLine.objects.filter(job_id=job_id).order_by("-seq").values_list("seq", flat=True).first()
        try:
            with transaction.atomic():
                LogLine.objects.create(
                    job_id=job_id,
                    seq=(last or 0) + 1,
                    timestamp=now_ms(),
                    source=source,
                    level=level,
                    msg=msg[:MAX_LINE],
                )
        except IntegrityError:  # a writer took that number meanwhile: after it, then
            if attempt == attempts - 1:
                raise
            continue
        transaction.on_commit(lambda: notify(job_id))
        return


class LogWriter:
    """Collect lines from several threads and write them to the store in batches.

    A runner passes its `claim` of the job, (tries, worker): its lines are then stored only while
    that claim holds the job. Once the job was handed to another try (the reaper took the lease
    of a worker that stalled), the stale try's lines are refused and counted in `refused`, but for
    the platform's own (source SYSTEM) lines, which say what became of it. The claim is looked up
    at most once a heartbeat period, when there are lines to store.
    """

    def __init__(self, job_id, flush_interval=0.05, batch=500, claim=None, first=False):
        self.job_id = job_id
        self.claim = claim
        self.claim_seen = time.monotonic()  # when the claim was last known to hold the job
        self.claim_lost = False
        self.refused = 0
        self.flush_interval = flush_interval
        self.batch = batch
        self.cap = settings.DXWEB_LOG_CAP_BYTES
        # `first`: the job's first try, which no line precedes (only the reaper writes lines of
        # its own, between tries).
        self.seq = 0
        if not first:
            self.seq = LogLine.objects.filter(job_id=job_id).order_by("-seq").values_list("seq", flat=True).first() or 0
        self.stored_bytes = 0
        self.accepted_bytes = 0  # bytes of the lines queued so far (write() drops lines past the cap)
        self.truncated = False
        self.dropped = 0
        self.statements = 0  # INSERT statements run, for tests
        self.queue = queue.SimpleQueue()
        self.closed = threading.Event()
        # Lines queued and lines handled (stored or dropped past the cap), for flush().
        self.progress = threading.Condition()
        self.queued = 0
        self.handled = 0
        self.rows_per_statement = None  # from the connection's parameter limit, on the store thread
        self.thread = ReusedThread(self._run, name=f"log-{job_id}")
        self.thread.start()

    def write(self, level, msg, source="APP"):
        """Queue one line (thread-safe)."""
        if self.accepted_bytes > self.cap:
            # Past the cap (it only grows): a flood's every further line costs only this count,
            # so the pump reading it leaves the writer's thread the GIL.
            with self.progress:
                self.dropped += 1
            return
        if len(msg) > MAX_LINE:
            msg = msg[:MAX_LINE] + " [line truncated]"
        if "\x00" in msg:  # PostgreSQL's text cannot hold NUL: shown as decoding shows bad bytes
            msg = msg.replace("\x00", "\ufffd")
        try:
            size = len(msg.encode("utf-8")) + 1
        except UnicodeEncodeError:  # a lone surrogate (from a JSON log message) no database would take
            msg = msg.encode("utf-8", "replace").decode("utf-8")
            size = len(msg.encode("utf-8")) + 1
        with self.progress:
            if self.accepted_bytes > self.cap:
                # Past the cap nothing more is stored: drop it here rather than queue it, so that a
                # job flooding its output costs no memory (the line that crossed the cap is queued
                # and becomes the one truncation marker).
                self.dropped += 1
                return
            self.accepted_bytes += size
            self.queued += 1
            self.queue.put((now_ms(), source, level, msg))

    def flush(self, every=2.0, while_waiting=None, timeout=600):
        """Wait until every line queued so far is in the store (before the job's state says it ended).

        `while_waiting` is called every `every` seconds meanwhile: a large backlog can take longer
        to store than a worker's lease lasts, so the runner renews it from there.
        """
        with self.progress:
            target = self.queued
        waited = 0.0
        while waited < timeout:
            with self.progress:
                if self.progress.wait_for(lambda: self.handled >= target or not self.thread.is_alive(), every):
                    return
            waited += every
            if while_waiting is not None:
                while_waiting()  # outside the lock: the writer thread takes it after every batch

    def close(self):
        """Flush what is queued and stop the writer thread."""
        self.closed.set()
        self.thread.join()

    def _take(self):
        items = []
        try:
            items.append(self.queue.get(timeout=self.flush_interval))
            while len(items) < self.batch:
                items.append(self.queue.get_nowait())
        except queue.Empty:
            pass
        return items

    def _run(self):
        try:
            while True:
                items = self._take()
                if items:
                    try:
                        dropped = store_thread().call(self._store, items)
                    except Exception:  # one batch the store refused must not end the job's logging
                        log.exception("could not store %d log lines of %s", len(items), self.job_id)
                        dropped = len(items)
                    with self.progress:
                        self.dropped += dropped
                        self.handled += len(items)
                        self.progress.notify_all()
                elif self.closed.is_set():
                    break
        finally:
            with self.progress:
                self.progress.notify_all()  # a flush() must not wait out its timeout on a dead thread

    def _holds_claim(self):
        if self.claim_lost:
            return False
        now = time.monotonic()
        if now - self.claim_seen < settings.DXWEB_HEARTBEAT_SECONDS:
            return True
        tries, worker = self.claim
        # A reaper that re-queues the job clears its worker; a new claim counts another try.
        if Job.objects.filter(pk=self.job_id, tries=tries, worker=worker).exists():
            self.claim_seen = now
            return True
        self.claim_lost = True
        return False

    def _store(self, items):
        """Store a batch (on the store thread); return how many of its lines were dropped past the cap."""
        if self.claim is not None and not self._holds_claim():
            kept = [item for item in items if item[1] == "SYSTEM"]
            self.refused += len(items) - len(kept)
            items = kept
        rows = []
        dropped = 0
        for timestamp, source, level, msg in items:
            if self.truncated:
                dropped += 1
                continue
            size = len(msg.encode("utf-8")) + 1
            if self.stored_bytes + size > self.cap:
                self.truncated = True
                dropped += 1
                msg = (
                    f"[log truncated: this job's log reached the {self.cap // (1024 * 1024)} MB cap; "
                    "further lines are not stored]"
                )
                source, level = "SYSTEM", "WARNING"
            else:
                self.stored_bytes += size
            self.seq += 1
            rows.append([self.seq, timestamp, source, level, msg])
        if rows:
            self._insert(rows)
            notify(self.job_id)
        return dropped

    def _insert(self, rows, attempts=5):
        """Insert rows [seq, timestamp, source, level, msg]: one statement per batch, in autocommit.

        Everything is ready before the statement runs, and the statement alone is atomic, so no
        transaction is held open around Python code (on SQLite: the database's one write lock).
        """
        if self.rows_per_statement is None:
            self.rows_per_statement = max(1, _max_params() // len(COLUMNS))
        for attempt in range(attempts):
            try:
                self._execute(rows)
                return
            except IntegrityError:
                if not Job.objects.filter(pk=self.job_id).exists():
                    # Deleted with its project while the worker was still ending it: the lines
                    # have no job left to belong to.
                    log.info("%s no longer exists; dropped %d log lines", self.job_id, len(rows))
                    return
                if attempt == attempts - 1:
                    raise
                # Another writer took these numbers: a later try of the job, after this worker lost
                # its lease. Append after it rather than lose either try's lines.
                last = LogLine.objects.filter(job_id=self.job_id).order_by("-seq").values_list("seq", flat=True).first()
                for offset, row in enumerate(rows, 1):
                    row[0] = (last or 0) + offset
                self.seq = rows[-1][0]

    def _execute(self, rows):
        step = self.rows_per_statement
        chunks = [rows[i : i + step] for i in range(0, len(rows), step)]
        statements = []
        for chunk in chunks:
            params = []
            for row in chunk:
                params.append(self.job_id)
                params.extend(row)
            statements.append((_insert_sql(connection.vendor, len(chunk)), params))
        if len(statements) == 1:
            with connection.cursor() as cursor:  # autocommit: the statement is its own transaction
                cursor.execute(*statements[0])
        else:  # a batch larger than one statement's parameters: all or nothing, as a batch is
            with transaction.atomic(), connection.cursor() as cursor:
                for statement in statements:
                    cursor.execute(*statement)
        self.statements += len(statements)
