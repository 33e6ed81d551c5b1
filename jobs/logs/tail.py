"""One shared reader per watched job (or job tree) per process, and the watchers' cursors that follow it.

The first `dx watch` socket of a job starts a Tail: one task that reads the store past its cursors,
and the job (tree) states, in one database hop per wake-up, and keeps a bounded window of the recent
lines with their frames encoded once. Each watcher is a Follower: it reads its backlog from the store,
which fixes its cursors, then takes the window's lines past them; one that fell behind the window
reads the missing range from the store itself. The channel layer's "log.more" wakes the tail; a short
poll covers the processes whose notifications cannot reach this one (the embedded in-memory layer).

Lines are identified by (job id, seq). A read returns, per job, every line past the cursor (or, when
cut, a run of consecutive seqs) in time order, which may differ from seq order: cursors therefore move
by whole batches, never line by line.
"""

import asyncio
import contextlib
import json
import logging

from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings

from jobs.models import FINAL_STATES

from .store import LogReader, group_name

log = logging.getLogger(__name__)

BATCH = 1000
# The window: the newest batches, at least the last one, within these bounds otherwise.
WINDOW_LINES = 5000
WINDOW_BYTES = 8 * 1024 * 1024

tails = {}  # (root job id, tree) -> the running Tail of this process


def encode(lines, names):
    """Return (job id, seq, level, frame text) of each line: every frame is encoded once."""
    return [(line.job_id, line.seq, line.level, json.dumps(line.to_frame(names.get(line.job_id)))) for line in lines]


class Batch:
    """Hold one read's lines, and per job the last seq it reached."""

    def __init__(self, entries):
        self.entries = entries
        self.tops = {}
        for job_id, seq, _, _ in entries:
            if seq > self.tops.get(job_id, 0):
                self.tops[job_id] = seq
        self.size = sum(len(entry[3]) for entry in entries)


class Tail:
    """Read a job's (or tree's) new lines for every follower in this process; stop with the last one."""

    def __init__(self, root, tree, cursors, names):
        self.key = (root.id, tree)
        self.reader = LogReader(root, tree=tree, cursors=cursors)
        self.names = dict(names)  # every job seen so far: frames' jobName, followers' store reads
        self.base = dict(cursors)  # per job, the last seq before the window
        self.batches = []
        self.first = 0  # the number of batches dropped from the window so far
        self.lines = self.size = 0
        self.followers = set()
        self.finished = False  # the tree is final and every line is in the window or before it
        self.error = None
        self.wakeup = asyncio.Event()
        self.loop = asyncio.get_running_loop()
        self.task = asyncio.create_task(self.run())

    @property
    def end(self):
        return self.first + len(self.batches)

    def _read(self):
        """Return (the tree is final, job names, new lines) in one hop to the database thread."""
        rows = self.reader.jobs()  # the states first: a final job's lines are all stored before its state
        lines = self.reader.new_lines(BATCH)
        names = self.reader.names
        return all(row[2] in FINAL_STATES for row in rows), names, encode(lines, names)

    async def run(self):
        """Read until the tree is final and read to its end, waking the followers after each read."""
        layer = get_channel_layer()
        channel = await layer.new_channel() if layer is not None else None
        listener = asyncio.create_task(self.listen(layer, channel)) if layer is not None else None
        joined = set()
        try:
            while True:
                if layer is not None:
                    for job_id in self.names.keys() - joined:  # before the read: no notification is lost
                        await layer.group_add(group_name(job_id), channel)
                        joined.add(job_id)
                await self.reader.spaced()
                self.wakeup.clear()
                final, names, entries = await database_sync_to_async(self._read)()
                self.reader.looked(full=len(entries) >= BATCH)
                self.names.update(names)
                if entries:
                    self.append(Batch(entries))
                elif final:
                    break
                if len(entries) < BATCH:
                    # Not wait_for: on Python 3.11 it can swallow a cancellation (see jobs/logs/consumers.py).
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(settings.DXWEB_LOG_POLL_SECONDS):
                            await self.wakeup.wait()
        except asyncio.CancelledError:
            raise
        except Exception as err:
            log.exception("the log tail of %s failed", self.key[0])
            self.error = err
        finally:
            self.finish()
            if listener is not None:
                listener.cancel()
                await self.leave_groups(layer, channel, joined)

    async def leave_groups(self, layer, channel, joined):
        for job_id in joined:
            try:
                await layer.group_discard(group_name(job_id), channel)
            except Exception:  # an unreachable layer expires the membership itself
                log.debug("log tail %s: could not leave %s", self.key[0], group_name(job_id), exc_info=True)

    async def listen(self, layer, channel):
        """Wake the tail on every "there is more" of its jobs."""
        while True:
            try:
                await layer.receive(channel)
            except asyncio.CancelledError:
                raise
            except Exception:  # the poll goes on meanwhile
                log.debug("log tail %s: no notifications", self.key[0], exc_info=True)
                await asyncio.sleep(settings.DXWEB_LOG_POLL_SECONDS)
                continue
            self.wakeup.set()

    def append(self, batch):
        """Add a read to the window, drop its oldest reads past the bounds, wake the followers."""
        self.batches.append(batch)
        self.lines += len(batch.entries)
        self.size += batch.size
        while len(self.batches) > 1 and (self.lines > WINDOW_LINES or self.size > WINDOW_BYTES):
            old = self.batches.pop(0)
            self.first += 1
            self.lines -= len(old.entries)
            self.size -= old.size
            self.base.update(old.tops)
        self.wake_followers()

    def wake_followers(self):
        for follower in self.followers:
            follower.wakeup.set()

    def finish(self):
        """Take no more followers; wake the ones there are to take what is left."""
        self.finished = True
        if tails.get(self.key) is self:
            del tails[self.key]
        self.wake_followers()

    def leave(self, follower):
        """Drop a follower; stop with the last one."""
        self.followers.discard(follower)
        if not self.followers:
            self.finish()
            self.task.cancel()


def tail_for(root, tree, cursors, names):
    """Return this process's running tail of (root, tree), or start one from these cursors."""
    tail = tails.get((root.id, tree))
    if tail is None or tail.finished or tail.loop is not asyncio.get_running_loop():
        tail = tails[(root.id, tree)] = Tail(root, tree, cursors, names)
    return tail


class Follower:
    """Follow a job's (or tree's) log for one watcher: its backlog from the store, then the shared tail."""

    def __init__(self, root, tree=False, levels=None):
        self.root = root
        self.tree = tree
        self.levels = set(levels) if levels else None
        self.cursors = {}
        self.names = {}
        self.tail = None
        self.position = 0  # the tail's batches before this one are taken
        self.wakeup = asyncio.Event()

    def _backlog(self, recent):
        """Read the backlog and fix the cursors past it (the database thread)."""
        reader = LogReader(self.root, tree=self.tree)
        reader.jobs()
        lines = reader.backlog(recent, list(self.levels) if self.levels else None)
        self.cursors, self.names = reader.cursors, dict(reader.names)
        return [entry[3] for entry in encode(lines, reader.names)]

    async def backlog(self, recent):
        """Return the frames of the last `recent` lines stored so far (of the levels)."""
        return await database_sync_to_async(self._backlog)(recent)

    async def next(self):
        """Return the next frames past the cursors, in order; None once the job (tree) is final and read."""
        if self.tail is None:
            self.tail = tail_for(self.root, self.tree, self.cursors, self.names)
            self.tail.followers.add(self)
            self.position = self.tail.first
        while True:
            self.wakeup.clear()
            if self.tail.error is not None:
                raise RuntimeError(f"the log tail of {self.root.id} failed") from self.tail.error
            if self.behind():
                frames = await self.read_store()
                if frames:
                    return frames
                continue
            frames = self.take()
            if frames:
                return frames
            if self.tail.finished:
                return None
            await self.wakeup.wait()

    def close(self):
        """Stop following (the tail stops with its last follower)."""
        if self.tail is not None and self in self.tail.followers:
            self.tail.leave(self)

    def behind(self):
        """Tell whether lines past the cursors have left the window before this follower took them."""
        return any(self.cursors.get(job_id, 0) < seq for job_id, seq in self.tail.base.items())

    def _wanted(self, job_id, seq, level):
        return seq > self.cursors.get(job_id, 0) and (self.levels is None or level in self.levels)

    def take(self):
        """Return the frames of the window's lines past the cursors; move the cursors past the window."""
        tail, frames = self.tail, []
        for batch in tail.batches[max(self.position - tail.first, 0) :]:
            # Compared with the cursors before the read: its lines are in time order, not always in seq order.
            frames.extend(text for job_id, seq, level, text in batch.entries if self._wanted(job_id, seq, level))
            for job_id, top in batch.tops.items():
                self.cursors[job_id] = max(self.cursors.get(job_id, 0), top)
        self.position = tail.end
        return frames

    async def read_store(self):
        """Return the frames past the cursors read from the store itself (for a follower behind the window)."""
        tail = self.tail
        names = {**dict.fromkeys(tail.base), **tail.names, **self.names}
        return await database_sync_to_async(self._read_store)(names, dict(tail.base))

    def _read_store(self, names, base):
        reader = LogReader(self.root, tree=self.tree, cursors=self.cursors)
        reader.names = names
        lines = reader.new_lines(BATCH)
        if len(lines) < BATCH:
            # Every stored line past the cursors is read: nothing left below the window (a deleted job).
            for job_id, seq in base.items():
                reader.cursors[job_id] = max(reader.cursors.get(job_id, 0), seq)
        self.cursors = reader.cursors
        return [text for _, _, level, text in encode(lines, names) if self.levels is None or level in self.levels]
