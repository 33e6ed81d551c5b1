"""Websocket streams of job logs: `/job-x/getLog/websocket` as `dx watch` speaks it (reference §6).

The consumer only moves frames: it authenticates the first frame's token, checks
VIEW through the permission module, then sends its backlog from the store and the
lines past it from the job's shared tail (jobs/logs/tail.py: one store reader per watched
job per process, however many sockets watch it).
"""

import asyncio
import contextlib
import json
import logging
import time

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings

from dxweb.api import principal_for_guarded_token
from dxweb.errors import BadRequest, DXError, InvalidInput, PermissionDenied, ResourceNotFound
from dxweb.websockets import SERVER_ERROR, FirstFrameDeadline, client_address, close_with, decode_frame
from jobs.models import FINAL_STATES, Analysis, Job, Notification, ResourceSample
from jobs.permissions import access_job, check_job_visible
from projects.models import Container, Level, now_ms
from projects.permissions import Principal, access_container, holds

from .store import LEVELS, LogReader, group_name, notices_group, states_group
from .tail import Follower

log = logging.getLogger(__name__)

END_GRACE_SECONDS = 30


class JobLogConsumer(FirstFrameDeadline, AsyncWebsocketConsumer):
    """Close codes (dxweb/websockets.py): 4400 (not a request), 4401 (no valid token), 4404 (missing or not
    visible: the same answer for both), 4408 (no first frame in time), 4422 (a bad option)."""

    async def connect(self):
        self.job_id = self.scope["url_route"]["kwargs"]["job_id"]
        self.started = False
        self.task = None
        self.follower = None
        await self.accept()
        self.start_deadline()

    async def disconnect(self, code):
        self.stop_deadline()
        if self.task is not None:
            self.task.cancel()
        if self.follower is not None:
            self.follower.close()

    async def receive(self, text_data=None, bytes_data=None):
        if self.started:
            return  # only the first frame carries the request
        self.started = True
        if not self.stop_deadline():
            return  # too late: the socket is closing
        try:
            self.options = await self.authorize(decode_frame(text_data))
        except DXError as err:
            log.info("refused a log stream for %s: %s", self.job_id, err.message)
            await close_with(self, err)
            return
        self.task = asyncio.create_task(self.stream())

    @database_sync_to_async
    def authorize(self, request):
        principal = principal_for_guarded_token(request.get("access_token"), client_address(self.scope))
        job = access_job(principal, self.job_id)
        levels = request.get("levels")
        if levels is not None and (not isinstance(levels, list) or not set(levels) <= set(LEVELS)):
            raise InvalidInput(f'"levels" must be an array of {", ".join(LEVELS)}')
        recent = request.get("numRecentMessages", 262144)
        if not isinstance(recent, int) or isinstance(recent, bool) or recent < 0:
            raise InvalidInput('"numRecentMessages" must be a non-negative integer')
        return {
            "root": job,
            "tree": bool(request.get("recurseJobs")),
            "tail": request.get("tail", True) is not False,
            "levels": levels,
            "recent": recent,
        }

    async def stream(self):
        # The backlog from the store fixes this socket's cursors; the process's shared tail of the job
        # (jobs/logs/tail.py) then brings the lines past them.
        self.follower = Follower(self.options["root"], tree=self.options["tree"], levels=self.options["levels"])
        try:
            await self.send_frames(await self.follower.backlog(self.options["recent"]))
            while self.options["tail"] and (frames := await self.follower.next()) is not None:
                await self.send_frames(frames)
            self.follower.close()
            await self.send(
                text_data=json.dumps(
                    {"job": self.job_id, "source": "SYSTEM", "msg": "END_LOG", "timestamp": 0, "level": "INFO"}
                )
            )
            # The client closes on END_LOG once it has read everything. Closing first would let the
            # server drop the connection after its short close handshake and cut a slow reader's tail.
            await asyncio.sleep(END_GRACE_SECONDS)
            await self.close(code=1000)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("log stream for %s failed", self.job_id)
            await self.close(code=SERVER_ERROR)

    async def send_frames(self, frames):
        for frame in frames:
            await self.send(text_data=frame)


# The browser's sockets: the session's user (AuthMiddlewareStack), no token frame ---------------------

STATE_POLL_SECONDS = 1.0
PAGE_BATCH = 2000
FRAME_BYTES = 256 * 1024
FINAL_GRACE_SECONDS = 0.5
# The job page's resource samples are read at most this often (a worker stores them every 2 s).
SAMPLES_READ_SECONDS = 1.0
SAMPLES_BATCH = 5000
# A list counts at most this many new jobs ("100+ new jobs").
NEW_CAP = 100
# A job that ran this long without a sample ran where nothing samples it (no cgroups).
NO_SAMPLES_AFTER_MS = 3000


class SessionConsumer(FirstFrameDeadline, AsyncWebsocketConsumer):
    """A socket for a logged-in browser: refuse anonymous users and anything the permission module hides.

    Close codes (dxweb/websockets.py): 4403 (not logged in), 4404 (missing or not visible: the same
    answer for both), 4400 (the first frame is not a valid request), 4408 (no first frame in time).
    """

    async def connect(self):
        self.groups_joined = set()
        self.wakeup = asyncio.Event()
        self.task = None
        await self.accept()
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await close_with(self, PermissionDenied("Log in to watch jobs"))
            return
        try:
            await database_sync_to_async(self.authorize)(Principal.of(user))
        except DXError as err:
            await close_with(self, err)
            return
        self.authorized = True
        self.start_deadline()

    async def disconnect(self, code):
        self.stop_deadline()
        if self.task is not None:
            self.task.cancel()
        for group in self.groups_joined:
            await self.channel_layer.group_discard(group, self.channel_name)

    async def join(self, group):
        if group not in self.groups_joined:
            await self.channel_layer.group_add(group, self.channel_name)
            self.groups_joined.add(group)

    async def look(self, read):
        """Run `read` (a read of the store) in the database thread. A hint that comes while it runs may
        be about something it did not see: it is kept, and the next wait_for_news() returns at once."""
        self.wakeup.clear()
        return await database_sync_to_async(read)()

    async def wait_for_news(self, timeout):
        """Wait for a hint since the last look began, at most `timeout` seconds."""
        # asyncio.timeout, not wait_for: on Python 3.11 wait_for swallows a cancellation that arrives as the
        # event is set, and this loop (cancelled when the socket closes) would poll forever.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self.wakeup.wait()

    async def log_more(self, event):
        self.wakeup.set()

    async def jobs_changed(self, event):
        self.wakeup.set()

    async def receive(self, text_data=None, bytes_data=None):
        if not getattr(self, "authorized", False) or self.task is not None:
            return  # only the first frame carries the request
        if not self.stop_deadline():
            return  # too late: the socket is closing
        try:
            self.request = self.parse(decode_frame(text_data))
        except DXError as err:
            await close_with(self, BadRequest(err.message))  # 4400, whatever the reason
            return
        self.task = asyncio.create_task(self.run_guarded())

    async def run_guarded(self):
        try:
            await self.run()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("%s failed", type(self).__name__)
            await self.close(code=SERVER_ERROR)


class JobStatesConsumer(SessionConsumer):
    """A live job list: `/ws/projects/<id>/jobs/`, or `/ws/jobs/mine/` for "My jobs".

    First frame: {"watch": [job ids on the page], "since": ms}; later frames {"watch": [...]} replace the
    watched IDs (the page swapped its rows in). Frames out: {"states": {id: state}}, only changes, with
    "new": the number of jobs and analyses of the list's scope created after "since" (when it is given
    and that number changed; stage jobs sit under their analysis and are not counted).
    """

    def authorize(self, principal):
        project_id = self.scope["url_route"]["kwargs"].get("project_id")
        self.principal = principal
        if project_id:
            self.project = access_container(principal, project_id, Level.VIEW, kinds=(Container.PROJECT,))
            self.group = states_group(project_id=self.project.pk)
        else:
            self.project = None
            self.group = states_group(user_id=principal.user.pk)

    def parse(self, request):
        watch = request.get("watch", [])
        if not isinstance(watch, list) or not all(isinstance(i, str) for i in watch) or len(watch) > 500:
            raise InvalidInput('"watch" must be an array of up to 500 job IDs')
        since = request.get("since")
        if since is not None and (not isinstance(since, int) or isinstance(since, bool) or since < 0):
            raise InvalidInput('"since" must be a time in milliseconds')
        return {"watch": watch, "since": since}

    async def receive(self, text_data=None, bytes_data=None):
        if self.task is None:
            await super().receive(text_data=text_data, bytes_data=bytes_data)
            return
        try:  # a later frame: the page's rows changed, watch these now
            watch = self.parse(decode_frame(text_data, "A frame"))["watch"]
        except DXError as err:
            await close_with(self, BadRequest(err.message))
            return
        self.request["watch"] = watch
        self.wakeup.set()

    def _scoped(self, model):
        found = model.objects.all()
        if self.project is not None:
            return found.filter(project=self.project)
        return found.filter(launched_by=self.principal.user)

    def _states(self):
        rows = []
        for model in (Job, Analysis):  # analyses' states ride along (the analysis page, analyses in lists)
            rows += self._scoped(model).filter(pk__in=self.request["watch"]).values_list("id", "state", "project_id")
        since, created = self.request["since"], []
        if since is not None:
            created += (
                self._scoped(Job)
                .filter(created__gt=since, analysis__isnull=True)
                .values_list("project_id", flat=True)[:NEW_CAP]
            )
            created += self._scoped(Analysis).filter(created__gt=since).values_list("project_id", flat=True)[:NEW_CAP]
        # Access may have been revoked since the page was rendered: ask the permission module each time.
        allowed = {pid for pid in {r[2] for r in rows} | set(created) if holds(self.principal, pid, Level.VIEW)}
        states = {job_id: state for job_id, state, pid in rows if pid in allowed}
        new = None if since is None else min(NEW_CAP, sum(1 for pid in created if pid in allowed))
        return states, new

    async def run(self):
        await self.join(self.group)
        sent, sent_new = {}, 0
        while True:
            states, new = await self.look(self._states)
            frame = {"states": {k: v for k, v in states.items() if sent.get(k) != v}}
            if new is not None and new != sent_new:
                frame["new"] = sent_new = new
            if frame["states"] or "new" in frame:
                await self.send(text_data=json.dumps(frame))
                sent.update(frame["states"])
            await self.wait_for_news(max(settings.DXWEB_LOG_POLL_SECONDS, STATE_POLL_SECONDS))


class NoticesConsumer(SessionConsumer):
    """The bell's count: `/ws/notifications/`, the signed-in user's unread notices.

    First frame: {} (any JSON object). Frames out: {"unread": n} at once, then whenever it changes. Woken
    when a notice is made or read (jobs.notifications) and when the user's jobs change state.
    """

    def authorize(self, principal):
        self.user = principal.user

    def parse(self, request):
        return {}

    def _unread(self):
        return Notification.objects.filter(user=self.user, read=False).count()

    async def run(self):
        await self.join(notices_group(self.user.pk))
        await self.join(states_group(user_id=self.user.pk))
        sent = None
        while True:
            unread = await self.look(self._unread)
            if unread != sent:
                await self.send(text_data=json.dumps({"unread": unread}))
                sent = unread
            await self.wait_for_news(max(settings.DXWEB_LOG_POLL_SECONDS, STATE_POLL_SECONDS) * 2)

    async def notices_changed(self, event):
        self.wakeup.set()


class JobPageConsumer(SessionConsumer):
    """The job page's socket `/ws/jobs/<id>/`: the tree's states and the whole tree's log, from a cursor.

    First frame: {"cursors": {job id: last seq seen}} (empty on a first connect). Frames out:
    {"type": "tree", "full": true, "jobs": [...]} with the whole tree first, then {"type": "tree", "full":
    false, "jobs": [...]} with only the jobs that are new or changed (a tree of 1,000 subjobs is not
    sent again at each state change), {"type": "lines", "lines": [...]} in
    store order per job, {"type": "samples", "samples": [[at, cpu, memory_mb, disk_mb], ...]} with
    the page's job's resource samples (all of them first, with its instance type's "limits", then
    the new ones; a "note" says why there are none), and {"type": "end"} once the tree is final and
    the log is read to its end.
    """

    def authorize(self, principal):
        self.job = access_job(principal, self.scope["url_route"]["kwargs"]["job_id"])
        self.origin = self.job.origin or self.job
        self.principal = principal

    def parse(self, request):
        cursors = request.get("cursors", {})
        if not isinstance(cursors, dict) or not all(
            isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in cursors.values()
        ):
            raise InvalidInput('"cursors" must map job IDs to the last line number received')
        return {"cursors": cursors}

    def _read(self):
        # Watching is VIEW on the project, checked again at every read: a revoked member stops receiving.
        check_job_visible(self.principal, self.job)
        rows = self.reader.jobs()
        lines = self.reader.new_lines(PAGE_BATCH)
        return rows, lines

    async def send_lines(self, lines):
        # Frames stay under FRAME_BYTES: a 4 MB log of 60 kB lines must not become one huge message.
        frame, size = [], 0
        for line in lines:
            frame.append([line.job_id, line.seq, line.timestamp, line.level, line.msg])
            size += len(line.msg) + 64
            if size >= FRAME_BYTES:
                await self.send(text_data=json.dumps({"type": "lines", "lines": frame}))
                frame, size = [], 0
        if frame:
            await self.send(text_data=json.dumps({"type": "lines", "lines": frame}))

    def _samples(self):
        """The samples frame to send next, or None: the page's job's samples past the cursor (on the
        first read all of them, with the limits and, while there are none, a note saying why)."""
        first = self.samples_after is None
        rows = list(
            ResourceSample.objects.filter(job_id=self.job.pk, at__gt=self.samples_after or 0)
            .order_by("at")
            .values_list("at", "cpu", "memory_mb", "disk_mb")[:SAMPLES_BATCH]
        )
        if rows:
            self.samples_after = rows[-1][0]
        frame = {"type": "samples", "samples": [list(r) for r in rows]}
        if first:
            self.samples_after = self.samples_after or 0
            frame["limits"] = instance_limits(self.job.instance_type)
        if self.samples_after == 0:
            note = self._no_samples_note()
            if note != self.samples_note:
                self.samples_note = frame["note"] = note
        return frame if rows or len(frame) > 2 else None

    def _no_samples_note(self):
        """Why the job has no samples (yet), or None while they may still come."""
        state, started, stopped = Job.objects.filter(pk=self.job.pk).values_list(
            "state", "started_running", "stopped_running"
        )[0]
        if started is None:
            return "The job has not run" if state in FINAL_STATES else None
        if settings.DXWEB_SAMPLE_SECONDS <= 0:
            return "No resource figures: sampling is off (DXWEB_SAMPLE_SECONDS=0)"
        ran = (stopped or now_ms()) - started
        if ran >= NO_SAMPLES_AFTER_MS:
            return "No resource figures: this worker runs jobs without cgroups"
        return "The job ended before its first sample" if state in FINAL_STATES else None

    async def send_samples(self, final=False):
        if not final and time.monotonic() < self.samples_due:
            return
        self.samples_due = time.monotonic() + SAMPLES_READ_SECONDS
        while (frame := await database_sync_to_async(self._samples)()) is not None:
            await self.send(text_data=json.dumps(frame))
            if len(frame["samples"]) < SAMPLES_BATCH:
                return

    async def run(self):
        self.reader = LogReader(self.origin, tree=True, cursors=self.request["cursors"])
        self.samples_after, self.samples_note, self.samples_due = None, None, 0.0
        await self.join(states_group(project_id=self.job.project_id))
        sent, final_seen = None, False  # {job id: its row} as the page has it
        while True:
            await self.reader.spaced()
            try:
                rows, lines = await self.look(self._read)
            except ResourceNotFound as err:
                await close_with(self, err)
                return
            self.reader.looked(full=len(lines) >= PAGE_BATCH)
            for job_id in self.reader.names:
                await self.join(group_name(job_id))
            tree = {r[0]: {"id": r[0], "name": r[1], "state": r[2], "parent": r[3]} for r in rows}
            changed = list(tree.values()) if sent is None else [j for i, j in tree.items() if sent.get(i) != j]
            if changed:
                await self.send(text_data=json.dumps({"type": "tree", "full": sent is None, "jobs": changed}))
                sent = tree
            await self.send_samples()
            if lines:
                await self.send_lines(lines)
                continue
            if all(r[2] in FINAL_STATES for r in rows):
                if final_seen:
                    await self.send_samples(final=True)
                    await self.send(text_data=json.dumps({"type": "end"}))
                    return
                # The runner may store its closing line (the failure, say) just after the final state.
                final_seen = True
                await asyncio.sleep(FINAL_GRACE_SECONDS)
                continue
            await self.wait_for_news(settings.DXWEB_LOG_POLL_SECONDS)


def instance_limits(name):
    """The CPUs, memory and disk (MiB) of an instance type, as the sandbox applies them; None if unknown."""
    entry = settings.DXWEB_INSTANCE_TYPES.get(name or settings.DXWEB_DEFAULT_INSTANCE_TYPE)
    if not entry:
        return None
    return {
        "cpus": entry.get("cpus"),
        "memory_mb": entry.get("memory_mb"),
        "disk_mb": entry.get("disk_mb") or settings.DXWEB_DEFAULT_DISK_MB,
    }
