"""The log writer and the "there is more" notifications.

The cap costs no memory: past it, lines are dropped as they are written, not queued. Each batch is
one INSERT in autocommit (no transaction held open around Python code: on SQLite the whole
database's write lock). Notifications to a cross-loop layer (Redis) go through one long-lived event
loop thread per process, fire and forget.

Writers store from the process's log store thread (its own connection, kept from job to job; closed
after each test): the tests must not hold a transaction. They watch that connection through
`connection_created` and an execute wrapper.
"""

import asyncio
import os
import select
import signal
import threading
import time
from collections import Counter

import pytest
from asgiref.sync import async_to_sync
from channels.layers import InMemoryChannelLayer
from django.conf import settings
from django.db import OperationalError
from django.db.backends.signals import connection_created

from jobs import actions, ending
from jobs.logs import store
from jobs.logs.store import LogWriter, Notifier, group_name, notify, notify_state, states_group
from jobs.models import Job, LogLine, State
from projects import actions as project_actions
from projects.models import now_ms
from tests.dxweb.test_scaled_out import REDIS_URL, check_redis, require

TABLE = LogLine._meta.db_table


@pytest.fixture
def job(transactional_db, alice):
    project = project_actions.create_container(alice.user, "logs")
    return Job.objects.create(
        id="job-" + "W" * 24,
        name="writer",
        executable="applet-" + "b" * 24,
        project=project,
        launched_by=alice.user,
        state=State.RUNNING,
    )


def stored(job_id):
    return list(LogLine.objects.filter(job_id=job_id).order_by("seq").values_list("seq", "msg"))


class WriterSpy:
    """Records the INSERTs of log writer threads' connections; can hold the next one at a gate."""

    def __init__(self):
        self.inserts = []  # (rows, in a transaction?)
        self.connections = []
        self.gate = None
        self.entered = threading.Event()
        self.fail_next = 0

    def on_connect(self, sender, connection, **kwargs):
        if threading.current_thread().name.startswith("log-") and self.wrapper not in connection.execute_wrappers:
            self.connections.append(connection)  # the writer thread's, reconnected after an error too
            connection.execute_wrappers.append(self.wrapper)

    def wrapper(self, execute, sql, params, many, context):
        if sql.startswith(f'INSERT INTO "{TABLE}"'):
            connection = context["connection"]
            self.inserts.append(
                (len(params) // len(store.COLUMNS), connection.in_atomic_block or not connection.get_autocommit())
            )
            if self.gate is not None:
                gate, self.gate = self.gate, None
                self.entered.set()
                assert gate.wait(30), "the test never opened the gate"
            if self.fail_next:
                self.fail_next -= 1
                raise OperationalError("the store refused this batch (test)")
        return execute(sql, params, many, context)

    def hold_next_insert(self):
        self.gate = threading.Event()
        self.entered.clear()
        return self.gate


@pytest.fixture
def spy():
    spy = WriterSpy()
    connection_created.connect(spy.on_connect)
    yield spy
    connection_created.disconnect(spy.on_connect)


def test_a_flood_past_the_cap_is_dropped_at_once_and_leaves_one_marker(transactional_db, alice, project, settings):
    settings.DXWEB_LOG_CAP_BYTES = 10_000
    applet = alice.ok(
        "/applet/new",
        {
            "project": project,
            "name": "x",
            "inputSpec": [],
            "outputSpec": [],
            "runSpec": {"interpreter": "bash", "code": "main() { true; }"},
        },
    )["id"]
    job_id = alice.ok(f"/{applet}/run", {"project": project})["id"]
    writer = LogWriter(job_id)
    line = "x" * 99  # 100 bytes with its newline
    for _ in range(100_000):  # 10 MB offered, 10 kB allowed
        writer.write("STDOUT", line)
    # Only the lines up to (and across) the cap were ever queued.
    assert writer.queued == 101 and writer.dropped >= 100_000 - 101
    writer.flush()
    writer.close()
    stored = list(LogLine.objects.filter(job_id=job_id).order_by("seq").values_list("msg", flat=True))
    assert stored[:100] == [line] * 100
    assert len(stored) == 101 and stored[-1].startswith("[log truncated")
    assert writer.dropped == 100_000 - 100  # the marker replaced the line that crossed the cap


def test_a_runners_writer_refuses_its_lines_once_its_claim_lost_the_job(transactional_db, alice, project, settings):
    """A worker that stalled past its lease wakes to find the job re-queued, or another try's: the lines
    its job wrote meanwhile are refused (counted), but for the platform's own line about its end."""
    settings.DXWEB_HEARTBEAT_SECONDS = 0  # the claim is looked up at every batch
    applet = alice.ok(
        "/applet/new",
        {
            "project": project,
            "name": "x",
            "inputSpec": [],
            "outputSpec": [],
            "runSpec": {"interpreter": "bash", "code": "main() { true; }"},
        },
    )["id"]
    job_id = alice.ok(f"/{applet}/run", {"project": project})["id"]
    first, _ = actions.claim(job_id, "stalled")
    writer = LogWriter(job_id, claim=(first.tries, first.worker))
    writer.write("STDOUT", "before")
    writer.flush()
    assert ending.reap(now=now_ms() + 3_600_000)["retried"] == [job_id]
    writer.write("STDOUT", "after the reaper took it")  # the job is nobody's
    writer.flush()
    second, _ = actions.claim(job_id, "survivor")
    survivor = LogWriter(job_id, claim=(second.tries, second.worker))
    survivor.write("STDOUT", "the second try")
    survivor.flush()
    writer.write("STDERR", "after the second try took it")  # the job is another try's
    writer.write("WARNING", "the first try's end", source="SYSTEM")
    for w in (writer, survivor):
        w.flush()
        w.close()
    lines = list(LogLine.objects.filter(job_id=job_id).order_by("seq").values_list("msg", flat=True))
    assert lines[0] == "before" and lines[1].startswith("Retrying: worker stalled")
    assert lines[2:] == ["the second try", "the first try's end"]
    assert writer.refused == 2 and survivor.refused == 0


def test_each_batch_is_one_insert_outside_any_transaction(job, spy):
    writer = LogWriter(job.pk)
    gate = spy.hold_next_insert()
    writer.write("STDOUT", "first")
    assert spy.entered.wait(30)  # the writer is storing "first"; the next 1,200 lines queue meanwhile
    for i in range(1200):
        writer.write("STDOUT", f"line {i}")
    gate.set()
    writer.flush()
    writer.close()
    # Batches of at most 500 lines, each in one statement of its own (autocommit: on SQLite the write
    # lock is held only while SQLite inserts, not while Python builds the statement).
    assert spy.inserts == [(1, False), (500, False), (500, False), (200, False)]
    assert writer.statements == 4
    rows = stored(job.pk)
    assert [seq for seq, _ in rows] == list(range(1, 1202))
    assert [msg for _, msg in rows] == ["first"] + [f"line {i}" for i in range(1200)]
    line = LogLine.objects.get(job_id=job.pk, seq=2)
    assert (line.level, line.source, line.timestamp > 0) == ("STDOUT", "APP", True)


def test_lines_are_stored_exactly_whatever_they_hold(job):
    writer = LogWriter(job.pk)
    lines = [
        "%s",
        "%%s %d %(x)s",
        "100%",
        'it\'s "quoted" \\ back',
        "",
        "  spaced  ",
        "é漢字🙂",
        "tab\there",
        "?",
        "x" * 70_000,
        "nul\x00byte",
        "lone \ud800 surrogate",
    ]
    for line in lines:
        writer.write("STDERR", line, source="DX_APP")
    writer.close()
    expected = lines[:9] + ["x" * 65536 + " [line truncated]", "nul\ufffdbyte", "lone ? surrogate"]
    assert [msg for _, msg in stored(job.pk)] == expected
    assert set(LogLine.objects.filter(job_id=job.pk).values_list("level", "source")) == {("STDERR", "DX_APP")}


def test_numbers_taken_by_another_try_are_skipped(job):
    writer = LogWriter(job.pk)
    # Another try of the job (after this worker lost its lease) wrote lines 1-3 meanwhile.
    LogLine.objects.bulk_create(
        LogLine(job=job, seq=seq, timestamp=1, level="INFO", msg=f"other {seq}") for seq in (1, 2, 3)
    )
    writer.write("STDOUT", "mine 1")
    writer.write("STDOUT", "mine 2")
    writer.close()
    assert stored(job.pk) == [(1, "other 1"), (2, "other 2"), (3, "other 3"), (4, "mine 1"), (5, "mine 2")]
    assert writer.seq == 5


def test_a_batch_too_large_for_one_statement_is_stored_all_or_nothing(job, spy):
    writer = LogWriter(job.pk)
    writer.rows_per_statement = 2  # as if the database took only 12 parameters per statement
    gate = spy.hold_next_insert()
    writer.write("STDOUT", "first")
    assert spy.entered.wait(30)
    for i in range(5):
        writer.write("STDOUT", f"line {i}")
    # Another try takes number 6, which the batch's third statement would use.
    LogLine.objects.create(job=job, seq=6, timestamp=1, level="INFO", msg="other")
    gate.set()
    writer.close()
    # The batch (2-6) failed in its last statement: none of it stayed, and all of it went after 6.
    assert stored(job.pk) == [(1, "first"), (6, "other")] + [(7 + i, f"line {i}") for i in range(5)]
    assert [rows for rows, _ in spy.inserts] == [1, 2, 2, 1, 2, 2, 1]
    assert all(in_transaction for _, in_transaction in spy.inserts[1:])


def test_a_batch_the_store_refuses_does_not_end_the_jobs_logging(job, spy, caplog):
    writer = LogWriter(job.pk)
    spy.fail_next = 1
    writer.write("STDOUT", "lost")
    writer.flush()
    writer.write("STDOUT", "kept")
    writer.flush()
    assert writer.thread.is_alive()
    writer.close()
    assert [msg for _, msg in stored(job.pk)] == ["kept"]
    assert writer.dropped == 1 and "could not store 1 log lines" in caplog.text


def test_writers_share_one_connection_from_job_to_job(job, spy):
    """On PostgreSQL a new connection is a new server process: a job's writer must not open its own."""
    for text in ("first job", "second job"):
        writer = LogWriter(job.pk)
        writer.write("STDOUT", text)
        writer.close()
    assert len(spy.connections) == 1
    assert spy.connections[0].connection is not None  # kept for the next job
    assert [msg for _, msg in stored(job.pk)] == ["first job", "second job"]
    store.close_store_connection()
    assert spy.connections[0].connection is None


def test_the_store_thread_closes_an_idle_connection(job, spy):
    thread = store.StoreThread(idle_seconds=0.2)
    assert thread.call(LogLine.objects.filter(job_id=job.pk).count) == 0
    assert len(spy.connections) == 1 and spy.connections[0].connection is not None
    deadline = time.monotonic() + 30
    while spy.connections[0].connection is not None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert spy.connections[0].connection is None  # not left open (a PostgreSQL session) while idle
    thread.stop()


def test_the_store_thread_hands_errors_to_the_caller_and_reconnects(job, spy):
    thread = store.StoreThread()

    def fail():
        LogLine.objects.count()
        raise ValueError("no")

    with pytest.raises(ValueError):
        thread.call(fail)
    assert spy.connections[-1].connection is None  # closed after the error
    assert thread.call(LogLine.objects.filter(job_id=job.pk).count) == 0
    assert spy.connections[-1].connection is not None  # a fresh one for the next call
    thread.stop()
    assert spy.connections[-1].connection is None and not thread.thread.is_alive()


# Notifications ------------------------------------------------------------------------------------------


class CrossLoopLayer:
    """A channel layer usable from any event loop (as Redis is): records group_send calls."""

    def __init__(self, fail=False):
        self.calls = []
        self.fail = fail

    async def group_send(self, group, message):
        self.calls.append((group, message["type"], id(asyncio.get_running_loop()), threading.current_thread().name))
        if self.fail:
            raise RuntimeError("redis is down (test)")


@pytest.fixture
def notifier(monkeypatch):
    """A fresh Notifier in place of the process's; its loop thread stopped afterwards."""
    fresh = Notifier()
    monkeypatch.setattr(store, "notifier", fresh)
    yield fresh
    if fresh.loop is not None:
        fresh.loop.call_soon_threadsafe(fresh.loop.stop)
        fresh.thread.join(5)
        fresh.loop.close()  # here, not when collected on some other loop's thread (channels_redis hooks close)


def use_layer(monkeypatch, layer):
    monkeypatch.setattr(store, "get_channel_layer", lambda: layer)


def blocked(notifier):
    """Hold the notifier's loop (as a slow send would) until the returned event is set."""
    release, running = threading.Event(), threading.Event()

    def hold():
        running.set()
        release.wait(30)

    with notifier.lock:
        loop = notifier._loop()
    loop.call_soon_threadsafe(hold)
    assert running.wait(30)
    return release


def test_cross_loop_notifications_share_one_long_lived_loop_thread(notifier, monkeypatch):
    layer = CrossLoopLayer()
    use_layer(monkeypatch, layer)
    for i in range(5):
        notify(f"job-{i}")
    notify_state("project-x", 7)
    assert notifier.drain()
    assert sorted(call[0] for call in layer.calls) == sorted(
        [group_name(f"job-{i}") for i in range(5)] + [states_group(project_id="project-x"), states_group(user_id=7)]
    )
    assert {call[1] for call in layer.calls} == {"log.more", "jobs.changed"}
    # Not a new event loop per call: one loop, in one thread, for all of them.
    assert len({call[2] for call in layer.calls}) == 1 and {call[3] for call in layer.calls} == {"dxweb-notify"}
    notify("job-0")
    assert notifier.drain() and layer.calls[-1][2] == layer.calls[0][2]


def test_a_notification_not_yet_sent_absorbs_the_next_ones_of_its_group(notifier, monkeypatch):
    layer = CrossLoopLayer()
    use_layer(monkeypatch, layer)
    release = blocked(notifier)
    for _ in range(50):  # a writer's batches while the first notification waits to go out
        notify("job-a")
    notify("job-b")
    release.set()
    assert notifier.drain()
    assert sorted(call[0] for call in layer.calls) == [group_name("job-a"), group_name("job-b")]
    notify("job-a")  # once sent, the group is told again
    assert notifier.drain() and len(layer.calls) == 3


def test_on_redis_a_hint_goes_only_to_a_group_someone_listens_to(notifier, monkeypatch):
    """A group with no member costs one EXISTS, not channels_redis's two-command group_send; a group
    with one still gets the layer's own send, and its member the hint."""
    require("Redis", check_redis)
    import redis
    from channels_redis.core import RedisChannelLayer

    class Counted(RedisChannelLayer):
        sent = []

        async def group_send(self, group, message):
            self.sent.append(group)
            await super().group_send(group, message)

    hosts = [{"address": REDIS_URL, **settings.REDIS_LAYER_OPTIONS}]  # the product's connection options
    layer = Counted(hosts=hosts, prefix=f"test-hints-{os.getpid()}-{time.monotonic_ns()}")
    use_layer(monkeypatch, layer)

    async def join():
        channel = await layer.new_channel()
        await layer.group_add(group_name("job-watched"), channel)
        return channel

    async def receive(channel):
        return await asyncio.wait_for(layer.receive(channel), 10)

    try:
        channel = async_to_sync(join)()
        notify("job-watched")
        notify("job-unwatched")
        notify_state("project-x", 7)
        assert notifier.drain()
        assert layer.sent == [group_name("job-watched")]
        assert async_to_sync(receive)(channel)["type"] == "log.more"
    finally:  # the test's keys, whatever failed
        client = redis.Redis.from_url(REDIS_URL)
        for key in client.scan_iter(f"{layer.prefix}*"):
            client.delete(key)


def test_pending_notifications_are_bounded(notifier, monkeypatch):
    layer = CrossLoopLayer()
    use_layer(monkeypatch, layer)
    notifier.limit = 5
    release = blocked(notifier)  # as if Redis did not answer
    for i in range(12):
        notify(f"job-{i}")
    assert notifier.pending == 5 and notifier.dropped == 7
    release.set()
    assert notifier.drain()
    assert len(layer.calls) == 5 and notifier.pending == 0


def test_a_failing_layer_is_logged_not_raised(notifier, monkeypatch, caplog):
    caplog.set_level("DEBUG", logger="jobs.logs.store")
    layer = CrossLoopLayer(fail=True)
    use_layer(monkeypatch, layer)
    notify("job-x")
    notify_state("project-x", 1)
    assert notifier.drain()
    assert len(layer.calls) == 3 and "could not notify" in caplog.text
    layer.fail = False
    notify("job-x")
    assert notifier.drain() and len(layer.calls) == 4


def test_notifying_from_inside_an_event_loop_neither_blocks_nor_is_lost(notifier, monkeypatch):
    layer = CrossLoopLayer()
    use_layer(monkeypatch, layer)

    async def scenario():
        notify("job-x")  # e.g. on a daphne thread: returns at once
        notify_state("project-x", 1)
        return id(asyncio.get_running_loop())

    caller_loop = asyncio.run(scenario())
    assert notifier.drain()
    assert len(layer.calls) == 3 and caller_loop not in {call[2] for call in layer.calls}


def test_in_memory_layer_from_inside_its_event_loop(monkeypatch):
    layer = InMemoryChannelLayer()
    use_layer(monkeypatch, layer)

    async def scenario():
        channel = await layer.new_channel()
        await layer.group_add(group_name("job-x"), channel)
        notify("job-x")  # a sync call on the receivers' own loop: async_to_sync cannot run here
        return await asyncio.wait_for(layer.receive(channel), 10)

    assert asyncio.run(scenario()) == {"type": "log.more"}


def test_in_memory_layer_from_a_plain_thread(monkeypatch):
    layer = InMemoryChannelLayer()
    use_layer(monkeypatch, layer)
    sent = []
    real = layer.group_send

    async def counting(group, message):
        sent.append(group)
        await real(group, message)

    monkeypatch.setattr(layer, "group_send", counting)
    notify("job-nobody")  # nobody in this process listens: nothing to do
    assert sent == []
    channel = async_to_sync(layer.new_channel)()
    async_to_sync(layer.group_add)(states_group(user_id=3), channel)
    notify_state(None, 3)
    assert sent == [states_group(user_id=3)]
    assert async_to_sync(layer.receive)(channel) == {"type": "jobs.changed"}


def test_a_forked_child_notifies_through_a_loop_thread_of_its_own(monkeypatch):
    """Celery's prefork pool forks workers: the parent's loop thread and its lock's state stay behind."""
    layer = CrossLoopLayer()
    use_layer(monkeypatch, layer)
    read, write = os.pipe()
    store.notifier.lock.acquire()  # held by another thread of the parent at fork time
    try:
        pid = os.fork()
        if pid == 0:
            ok = False
            try:
                notify("job-child")
                ok = store.notifier.drain() and [call[0] for call in layer.calls] == [group_name("job-child")]
            finally:
                os.write(write, b"1" if ok else b"0")
                os._exit(0)
    finally:
        store.notifier.lock.release()
    os.close(write)
    ready, _, _ = select.select([read], [], [], 60)
    if not ready:
        os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    assert ready and os.read(read, 1) == b"1"
    assert layer.calls == []  # sent by the child only


def test_with_redis_notifications_reach_a_receiver_on_another_loop(notifier, monkeypatch):
    require("Redis", check_redis)  # in CI a missing Redis fails, elsewhere it skips
    from channels_redis.core import RedisChannelLayer

    hosts = [{"address": REDIS_URL, **settings.REDIS_LAYER_OPTIONS}]  # the product's connection options
    layer = RedisChannelLayer(hosts=hosts, prefix=f"dxweb-test-logwriter-{os.getpid()}")
    use_layer(monkeypatch, layer)

    async def scenario():
        channel = await layer.new_channel()
        await layer.group_add(group_name("job-r"), channel)
        try:
            got = []
            for _ in range(3):
                # From a worker thread, as the log writer calls it: returns without waiting for Redis.
                await asyncio.to_thread(notify, "job-r")
                got.append(await asyncio.wait_for(layer.receive(channel), 10))
            return got
        finally:
            await layer.group_discard(group_name("job-r"), channel)

    assert asyncio.run(scenario()) == [{"type": "log.more"}] * 3
    assert notifier.loop in layer._layers  # the notifier's loop keeps its Redis connections for the next call


def test_only_a_few_sends_run_at_once(notifier, monkeypatch):
    """Each running send holds one of the layer's connections: a burst must not open hundreds."""
    active, most, calls = [0], [0], []
    full, go = threading.Event(), None

    class SlowLayer:
        async def group_send(self, group, message):
            nonlocal go
            go = go or asyncio.Event()
            active[0] += 1
            most[0] = max(most[0], active[0])
            if active[0] == notifier.concurrency:
                full.set()
            await go.wait()
            active[0] -= 1
            calls.append(group)

    use_layer(monkeypatch, SlowLayer())
    for i in range(20):
        notify(f"job-{i}")
    assert full.wait(30)
    assert notifier.pending == 20
    notifier.loop.call_soon_threadsafe(lambda: go.set())
    assert notifier.drain()
    assert most[0] == notifier.concurrency == 4 and len(calls) == 20


def test_state_hints_to_a_group_are_spaced_and_merged_and_log_hints_are_not(notifier, monkeypatch):
    layer = CrossLoopLayer()
    use_layer(monkeypatch, layer)
    notifier.spacing = 0.5
    notify_state("project-x", 7)
    assert notifier.drain()
    assert len(layer.calls) == 2  # a lone change goes out at once
    for _ in range(19):  # then a burst of state changes in the project, by the user
        notify_state("project-x", 7)
    notify_state("project-y", 7)  # another project's group is not held back by this one's spacing
    assert notifier.drain()
    sent = Counter(call[0] for call in layer.calls)
    # The 19 went out as one, once the spacing had passed: the last change is never lost.
    assert sent[states_group(project_id="project-x")] == 2 and sent[states_group(user_id=7)] == 2
    assert sent[states_group(project_id="project-y")] == 1
    groups = [call[0] for call in layer.calls]
    assert groups.index(states_group(project_id="project-y")) < max(
        i for i, group in enumerate(groups) if group == states_group(project_id="project-x")
    )  # it went out while project-x's waited
    for _ in range(3):
        notify("job-a")
        assert notifier.drain()
    assert [call[0] for call in layer.calls[-3:]] == [group_name("job-a")] * 3
    assert all(key[1] != "log.more" for key in notifier.last_sent)  # log hints are never held back
