"""Job logs: a batched writer into the store, with a per-job cap, and "there is more" notifications.

Lines are written in batches (never a commit per line). Past DXWEB_LOG_CAP_BYTES a
job's log gets one truncation marker and further lines are counted, not stored;
the job itself goes on.
"""
import logging
import queue
import threading

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.conf import settings
from django.db import IntegrityError, close_old_connections, transaction
from django.db.models import Q

from projects.models import now_ms

from .models import Job, LogLine

log = logging.getLogger(__name__)

LEVELS = ("EMERG", "ALERT", "CRITICAL", "ERROR", "WARNING", "NOTICE", "INFO", "DEBUG", "STDERR", "STDOUT", "METRICS")
# syslog priorities, as dxpy's DXLogHandler sends them.
SYSLOG_LEVELS = {0: "EMERG", 1: "ALERT", 2: "CRITICAL", 3: "ERROR", 4: "WARNING", 5: "NOTICE", 6: "INFO", 7: "DEBUG"}
MAX_LINE = 64 * 1024


def group_name(job_id):
    return f"joblog.{job_id}"


def notify(job_id):
    """Tell watchers of the job that the store has more (a hint; they read the store)."""
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        async_to_sync(layer.group_send)(group_name(job_id), {"type": "log.more"})
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
            async_to_sync(layer.group_send)(group, {"type": "jobs.changed"})
        except Exception:  # a state change must never fail because a watcher's channel is full
            log.debug("could not notify %s", group, exc_info=True)


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

    def jobs(self):
        """Return [(id, name, state, parent id)] of the job, or of its tree; remember the names."""
        if not self.tree:
            rows = list(Job.objects.filter(pk=self.root.id).values_list("id", "name", "state", "parent_id"))
        else:
            root = self.root
            rows = list(
                Job.objects.filter(Q(pk=root.id) | Q(origin=root) | Q(root=root))
                .order_by("created", "id").values_list("id", "name", "state", "parent_id")
            )
        self.names = {row[0]: row[1] for row in rows}
        return rows

    def backlog(self, recent, levels=None):
        """The last `recent` lines stored so far; later reads start after them."""
        upto = Q(pk__in=[])
        for job_id in self.names:
            last = LogLine.objects.filter(job_id=job_id).order_by("-seq").values_list("seq", flat=True).first()
            self.cursors[job_id] = last or 0
            upto |= Q(job_id=job_id, seq__lte=self.cursors[job_id])
        if recent == 0:
            return []
        qs = LogLine.objects.filter(upto)
        if levels:
            qs = qs.filter(level__in=levels)
        qs = qs.order_by("-timestamp", "-seq")[:recent]
        return sorted(qs, key=lambda line: (line.timestamp, line.job_id, line.seq))

    def new_lines(self, batch):
        """Up to `batch` lines past the cursors, oldest first; the cursors move past them."""
        condition = Q()
        for job_id in self.names:
            condition |= Q(job_id=job_id, seq__gt=self.cursors.setdefault(job_id, 0))
        qs = LogLine.objects.filter(condition)
        lines = list(qs.order_by("timestamp", "job_id", "seq")[:batch])
        if len(lines) == batch:
            # A cut batch in time order could skip a line whose timestamp is out of order with its seq
            # (two capture threads); in seq order per job a cut never leaves a gap behind the cursor.
            lines = list(qs.order_by("job_id", "seq")[:batch])
        for line in lines:
            self.cursors[line.job_id] = max(self.cursors[line.job_id], line.seq)
        return lines


class LogWriter:
    """Collect lines from several threads and write them to the store in batches."""

    def __init__(self, job_id, flush_interval=0.05, batch=500):
        self.job_id = job_id
        self.flush_interval = flush_interval
        self.batch = batch
        self.cap = settings.DXWEB_LOG_CAP_BYTES
        last = LogLine.objects.filter(job_id=job_id).order_by("-seq").values_list("seq", flat=True).first()
        self.seq = last or 0
        self.stored_bytes = 0
        self.accepted_bytes = 0  # bytes of the lines queued so far (write() drops lines past the cap)
        self.truncated = False
        self.dropped = 0
        self.queue = queue.SimpleQueue()
        self.closed = threading.Event()
        # Lines queued and lines handled (stored or dropped past the cap), for flush().
        self.progress = threading.Condition()
        self.queued = 0
        self.handled = 0
        self.thread = threading.Thread(target=self._run, name=f"log-{job_id}", daemon=True)
        self.thread.start()

    def write(self, level, msg, source="APP"):
        """Queue one line (thread-safe)."""
        if len(msg) > MAX_LINE:
            msg = msg[:MAX_LINE] + " [line truncated]"
        size = len(msg.encode("utf-8", "replace")) + 1
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
                    self._store(items)
                    with self.progress:
                        self.handled += len(items)
                        self.progress.notify_all()
                elif self.closed.is_set():
                    break
        finally:
            with self.progress:
                self.progress.notify_all()  # a flush() must not wait out its timeout on a dead thread
            close_old_connections()

    def _store(self, items):
        rows = []
        for timestamp, source, level, msg in items:
            if self.truncated:
                self.dropped += 1
                continue
            size = len(msg.encode("utf-8", "replace")) + 1
            if self.stored_bytes + size > self.cap:
                self.truncated = True
                self.dropped += 1
                msg = (
                    f"[log truncated: this job's log reached the {self.cap // (1024 * 1024)} MB cap; "
                    "further lines are not stored]"
                )
                source, level = "SYSTEM", "WARNING"
            else:
                self.stored_bytes += size
            self.seq += 1
            rows.append(LogLine(job_id=self.job_id, seq=self.seq, timestamp=timestamp, source=source,
                                level=level, msg=msg))
        if rows:
            self._insert(rows)
            notify(self.job_id)

    def _insert(self, rows, attempts=5):
        for attempt in range(attempts):
            try:
                with transaction.atomic():
                    LogLine.objects.bulk_create(rows)
                return
            except IntegrityError:
                if attempt == attempts - 1:
                    raise
                # Another writer took these numbers: a later try of the job, after this worker lost
                # its lease. Append after it rather than lose either try's lines.
                last = LogLine.objects.filter(job_id=self.job_id).order_by("-seq").values_list("seq", flat=True).first()
                for offset, row in enumerate(rows, 1):
                    row.seq = (last or 0) + offset
                self.seq = rows[-1].seq
