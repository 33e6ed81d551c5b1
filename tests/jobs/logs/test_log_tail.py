"""Many `dx watch` sockets on one job share one tail of its log per process (jobs/logs/tail.py).

Each watcher gets its backlog from the store, then the shared tail's lines past it: every line
once, none missing, in the store's order, with its own levels filter; a watcher that fell behind
the tail's window reads the missing lines from the store itself.
"""

import asyncio
import json

import pytest
from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer

from jobs import actions
from jobs.logs import tail
from jobs.logs.store import group_name
from jobs.models import Job, LogLine, State
from projects import actions as project_actions
from tests.jobs.logs.conftest import open_stream

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def no_tails():
    """A failed test's tails (of its own event loop) must not be seen by the next one."""
    tail.tails.clear()
    yield
    tail.tails.clear()


@pytest.fixture
def child(job):
    job.origin = job.root = job
    job.save()
    return Job.objects.create(
        id="job-" + "U" * 24,
        name="ticker:part",
        executable=job.executable,
        project=job.project,
        launched_by=job.launched_by,
        state=State.RUNNABLE,
        parent=job,
        origin=job,
        root=job,
    )


def add_lines(job, start, count, level="STDOUT", timestamps=None):
    LogLine.objects.bulk_create(
        LogLine(
            job=job,
            seq=start + i,
            timestamp=(timestamps or {}).get(start + i, 1000 + start + i),
            level=level,
            msg=f"{job.name} line {start + i}",
        )
        for i in range(count)
    )


def stored(*jobs, levels=None):
    """The stored log as `dx watch` would print it: (job, line, msg) in time order."""
    lines = LogLine.objects.filter(job__in=jobs).order_by("timestamp", "job_id", "seq")
    return [(line.job_id, line.seq, line.msg) for line in lines if not levels or line.level in levels]


async def watch(job_id, token, **request):
    """A log socket whose lines `read` gathers in its `lines`."""
    communicator = await open_stream(job_id, token, **request)
    communicator.lines = []
    return communicator


async def read(communicator, count=None):
    """Receive `count` more lines, or every line up to END_LOG (then disconnect as dx watch does)."""
    got = 0
    while count is None or got < count:
        message = await communicator.receive_output(timeout=10)
        assert message["type"] == "websocket.send", message
        frame = json.loads(message["text"])
        if frame["source"] == "SYSTEM" and frame["msg"] == "END_LOG":
            await communicator.disconnect()
            return communicator.lines
        communicator.lines.append((frame["job"], frame["line"], frame["msg"]))
        got += 1
    return communicator.lines


async def finish(job):
    await sync_to_async(actions.transition)(job.pk, State.TERMINATED)


@pytest.mark.parametrize("window", [tail.WINDOW_LINES, 1])
def test_watchers_of_one_job_share_one_tail_and_each_gets_the_stored_log(job, alice, bob, monkeypatch, window):
    monkeypatch.setattr(tail, "WINDOW_LINES", window)
    project_actions.invite(job.project, "user-bob", "VIEW")
    add_lines(job, 1, 3)

    async def scenario():
        watchers = [await watch(job.pk, (alice, bob)[i % 2].token) for i in range(6)]
        for w in watchers:
            await read(w, 3)
        for start in (4, 7, 10):  # written while they watch, each read by the tail on its own
            await sync_to_async(add_lines)(job, start, 3)
            for w in watchers:
                await read(w, 3)
        shared = tail.tails[(job.pk, False)]
        assert len(tail.tails) == 1 and len(shared.followers) == len(watchers)
        await sync_to_async(add_lines)(job, 13, 40)
        await finish(job)
        return [await read(w) for w in watchers], shared

    streams, shared = asyncio.run(scenario())
    expected = stored(job)
    assert len(expected) == 52
    assert all(stream == expected for stream in streams)
    assert shared.task.done() and tail.tails == {}


def test_a_watcher_joining_mid_stream_gets_backlog_then_tail_without_gap_or_duplicate(job, alice):
    add_lines(job, 1, 3)

    async def scenario():
        first = await watch(job.pk, alice.token)
        await read(first, 3)
        await sync_to_async(add_lines)(job, 4, 3)
        await read(first, 3)  # the tail holds lines 4-6 in its window now
        second = await watch(job.pk, alice.token)  # its backlog has them too
        await read(second, 6)
        await sync_to_async(add_lines)(job, 7, 3)
        third = await watch(job.pk, alice.token)  # the tail may or may not have read 7-9 yet
        # Two lines out of time order in one write: cursors move by whole reads, not line by line.
        await sync_to_async(add_lines)(job, 10, 3, timestamps={10: 5000, 11: 4000, 12: 6000})
        await finish(job)
        return [await read(w) for w in (first, second, third)]

    streams = asyncio.run(scenario())
    expected = stored(job)
    assert [seq for _, seq, _ in expected] == [1, 2, 3, 4, 5, 6, 7, 8, 9, 11, 10, 12]
    assert streams == [expected] * 3


def test_each_watcher_gets_only_its_levels(job, alice):
    add_lines(job, 1, 2, level="STDOUT")
    add_lines(job, 3, 2, level="STDERR")

    async def scenario():
        everything = await watch(job.pk, alice.token)
        errors = await watch(job.pk, alice.token, levels=["STDERR"])
        output = await watch(job.pk, alice.token, levels=["STDOUT", "INFO"])
        await read(everything, 4)
        await sync_to_async(add_lines)(job, 5, 3, level="STDERR")
        await sync_to_async(add_lines)(job, 8, 2, level="INFO")
        await sync_to_async(add_lines)(job, 10, 2, level="STDOUT")
        await finish(job)
        return [await read(w) for w in (everything, errors, output)]

    everything, errors, output = asyncio.run(scenario())
    assert everything == stored(job)
    assert errors == stored(job, levels={"STDERR"}) and len(errors) == 5
    assert output == stored(job, levels={"STDOUT", "INFO"}) and len(output) == 6


def test_a_watcher_behind_the_window_reads_the_missing_lines_from_the_store(job, monkeypatch):
    monkeypatch.setattr(tail, "WINDOW_LINES", 2)
    add_lines(job, 1, 2)

    async def scenario():
        fast, slow = tail.Follower(job), tail.Follower(job, levels=["STDOUT"])
        for follower in (fast, slow):
            assert len(await follower.backlog(1000)) == 2
        slow_frames = []
        fast_frames = []
        for start in range(3, 18, 3):  # five reads of three lines; the window keeps the last one
            await sync_to_async(add_lines)(job, start, 3)
            while len(fast_frames) < start:
                fast_frames += await fast.next()
            if start == 3:
                slow_frames += await slow.next()  # joins the tail, then stops reading
        assert slow.tail is fast.tail and slow.behind()
        await sync_to_async(add_lines)(job, 18, 2, level="DEBUG")
        await sync_to_async(add_lines)(job, 20, 1)
        await finish(job)
        while (frames := await slow.next()) is not None:
            slow_frames += frames
        while (frames := await fast.next()) is not None:
            fast_frames += frames
        for follower in (fast, slow):
            follower.close()
        return fast_frames, slow_frames

    fast_frames, slow_frames = asyncio.run(scenario())
    assert [json.loads(f)["line"] for f in fast_frames] == list(range(3, 21))
    assert [json.loads(f)["line"] for f in slow_frames] == list(range(3, 18)) + [20]


def test_tree_watchers_share_a_tail_of_the_whole_tree(job, child, alice):
    add_lines(job, 1, 2)

    async def scenario():
        tree = [await watch(job.pk, alice.token, recurseJobs=True) for _ in range(3)]
        alone = await watch(job.pk, alice.token)
        for w in (*tree, alone):
            await read(w, 2)
        await sync_to_async(add_lines)(child, 1, 2, timestamps={1: 2001, 2: 2002})
        await sync_to_async(add_lines)(job, 3, 1, timestamps={3: 2003})
        for w in tree:
            await read(w, 3)
        keys = set(tail.tails)
        await sync_to_async(actions.transition)(child.pk, State.TERMINATED)
        await finish(job)
        return [await read(w) for w in (*tree, alone)], keys

    streams, keys = asyncio.run(scenario())
    assert keys == {(job.pk, True), (job.pk, False)}
    assert streams[:3] == [stored(job, child)] * 3 and len(streams[0]) == 5
    assert streams[3] == stored(job)


async def members(group):
    """The channels in a group, in the in-memory layer (embedded) or in Redis (scaled out)."""
    layer = get_channel_layer()
    if hasattr(layer, "groups"):
        return set(layer.groups.get(group, {}))
    connection = layer.connection(layer.consistent_hash(group))
    return {name.decode() for name in await connection.zrange(layer._group_key(group), 0, -1)}


def test_the_tail_stops_when_its_last_watcher_leaves(job, alice):
    add_lines(job, 1, 1)

    async def scenario():
        watchers = [await watch(job.pk, alice.token) for _ in range(3)]
        for w in watchers:
            await read(w, 1)
        await sync_to_async(add_lines)(job, 2, 1)
        for w in watchers:
            await read(w, 1)  # every follower is subscribed once it got a line from the tail
        shared = tail.tails[(job.pk, False)]
        joined = await members(group_name(job.pk))
        for w in watchers[:2]:
            await w.disconnect()
        still_running = not shared.task.done() and len(shared.followers) == 1
        await watchers[2].disconnect()
        await asyncio.wait([shared.task], timeout=10)
        return joined, still_running, shared, await members(group_name(job.pk))

    joined, still_running, shared, left = asyncio.run(scenario())
    assert len(joined) == 1  # the tail's own channel, not one per watcher
    assert still_running
    assert shared.task.done() and tail.tails == {} and left == set()


def test_a_log_more_notification_wakes_the_tail_before_its_poll(job, alice, settings):
    settings.DXWEB_LOG_POLL_SECONDS = 3600  # only the notifications can bring the lines in this test
    add_lines(job, 1, 1)

    async def scenario():
        watcher = await watch(job.pk, alice.token)
        await read(watcher, 1)
        layer = get_channel_layer()
        while not await members(group_name(job.pk)):  # the tail joins its job's group as it starts
            await asyncio.sleep(0.01)
        await sync_to_async(add_lines)(job, 2, 2)
        await layer.group_send(group_name(job.pk), {"type": "log.more"})
        await read(watcher, 2)
        await finish(job)
        await layer.group_send(group_name(job.pk), {"type": "log.more"})
        return await read(watcher)

    assert asyncio.run(scenario()) == stored(job)


def test_a_failed_tail_closes_its_watchers_with_an_error(job, alice, monkeypatch):
    def broken(self):
        raise RuntimeError("the store is gone")

    monkeypatch.setattr(tail.Tail, "_read", broken)
    add_lines(job, 1, 1)

    async def scenario():
        watchers = [await watch(job.pk, alice.token) for _ in range(2)]
        for w in watchers:
            await read(w, 1)  # the backlog still comes from the store
        return [await w.receive_output(timeout=10) for w in watchers]

    closes = asyncio.run(scenario())
    assert [(c["type"], c.get("code")) for c in closes] == [("websocket.close", 1011)] * 2
    assert tail.tails == {}
