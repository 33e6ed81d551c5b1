"""The browser's websockets: job list states and the job page's tree and log, with session auth.

Each checks VIEW through the permission module: anonymous gets 4403, an outsider 4404 (the same
as a missing job), a foreign Origin is refused at the handshake.
"""

import asyncio
import json
import os
import time

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.test import Client, override_settings

from dxweb.asgi import application
from jobs import actions
from jobs.models import Job, LogLine, State
from projects import actions as project_actions
from tests.dxweb.test_scaled_out import REDIS_URL, check_redis, require

pytestmark = pytest.mark.django_db(transaction=True)
ORIGIN = b"http://127.0.0.1:8000"


@pytest.fixture
def world(alice, bob, charlie):
    project = project_actions.create_container(alice.user, "watched")
    project_actions.invite(project, "user-bob", "VIEW")
    root = Job.objects.create(
        id="job-" + "R" * 24,
        name="root",
        executable="applet-" + "b" * 24,
        project=project,
        launched_by=alice.user,
        state=State.RUNNABLE,
    )
    root.origin = root.root = root
    root.save()
    child = Job.objects.create(
        id="job-" + "C" * 24,
        name="root:square",
        executable=root.executable,
        project=project,
        launched_by=alice.user,
        state=State.RUNNABLE,
        parent=root,
        origin=root,
        root=root,
    )
    return {"project": project, "root": root, "child": child}


def session_cookie(actor):
    client = Client()
    client.force_login(actor.user)
    return f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}".encode()


def add_lines(job, *msgs, start=1, level="STDOUT"):
    LogLine.objects.bulk_create(
        LogLine(job=job, seq=start + i, timestamp=1000 + start + i, level=level, msg=msg) for i, msg in enumerate(msgs)
    )


async def open_socket(path, actor=None, origin=ORIGIN, first=None):
    headers = [(b"origin", origin), (b"host", b"127.0.0.1:8000")]
    if actor is not None:
        headers.append((b"cookie", await sync_to_async(session_cookie)(actor)))
    communicator = WebsocketCommunicator(application, path, headers=headers)
    connected, _ = await communicator.connect()
    if connected and first is not None:
        await communicator.send_to(text_data=json.dumps(first))
    return connected, communicator


async def frames_until(communicator, done, timeout=10):
    frames = []
    while True:
        message = await communicator.receive_output(timeout=timeout)
        if message["type"] == "websocket.close":
            frames.append(("close", message.get("code"), message.get("reason")))
            return frames
        frames.append(json.loads(message["text"]))
        if done(frames):
            return frames


def closed_with(path, actor):
    async def scenario():
        connected, communicator = await open_socket(path, actor, first={})
        assert connected
        frames = await frames_until(communicator, lambda f: True)
        await communicator.disconnect()
        return frames[0]

    return asyncio.run(scenario())


@pytest.mark.parametrize("kind", ["project", "job"])
def test_anonymous_and_outsiders_are_closed_with_a_code_and_a_reason(world, charlie, kind):
    path = f"/ws/projects/{world['project'].pk}/jobs/" if kind == "project" else f"/ws/jobs/{world['root'].pk}/"
    anonymous = closed_with(path, None)
    assert anonymous[0] == "close" and anonymous[1] == 4403
    outsider = closed_with(path, charlie)
    assert outsider[0] == "close" and outsider[1] == 4404
    assert json.loads(outsider[2])["type"] == "ResourceNotFound"
    missing = closed_with("/ws/jobs/job-" + "Z" * 24 + "/", charlie)
    assert missing[1] == 4404


def test_a_foreign_origin_is_refused_at_the_handshake(world, alice):
    async def scenario():
        results = []
        for path in (f"/ws/projects/{world['project'].pk}/jobs/", f"/ws/jobs/{world['root'].pk}/", "/ws/jobs/mine/"):
            connected, _ = await open_socket(path, alice, origin=b"http://evil.example")
            results.append(connected)
        return results

    assert asyncio.run(scenario()) == [False, False, False]


def test_a_viewer_sees_the_tree_and_the_merged_log_then_the_end(world, bob):
    root, child = world["root"], world["child"]
    add_lines(root, "r1", "r2")
    add_lines(child, "c1")
    actions.transition(child.pk, State.TERMINATED)
    actions.transition(root.pk, State.TERMINATED)

    async def scenario():
        _, communicator = await open_socket(f"/ws/jobs/{root.pk}/", bob, first={"cursors": {}})
        frames = await frames_until(communicator, lambda f: f[-1].get("type") == "end")
        await communicator.disconnect()
        return frames

    frames = asyncio.run(scenario())
    tree = frames[0]
    assert tree["type"] == "tree" and [j["id"] for j in tree["jobs"]] == [root.pk, child.pk]
    assert tree["jobs"][1]["parent"] == root.pk and tree["jobs"][1]["state"] == "terminated"
    lines = [line for f in frames if f.get("type") == "lines" for line in f["lines"]]
    assert sorted((line[0], line[1], line[4]) for line in lines) == [
        (child.pk, 1, "c1"),
        (root.pk, 1, "r1"),
        (root.pk, 2, "r2"),
    ]


def test_after_the_whole_tree_only_the_jobs_that_changed_are_sent(world, alice):
    root, child = world["root"], world["child"]

    async def scenario():
        _, communicator = await open_socket(f"/ws/jobs/{root.pk}/", alice, first={"cursors": {}})
        first = await frames_until(communicator, lambda f: f[-1].get("type") == "tree")
        await sync_to_async(actions.transition)(child.pk, State.TERMINATED)
        second = await frames_until(communicator, lambda f: f[-1].get("type") == "tree")
        await communicator.disconnect()
        return first[-1], second[-1]

    whole, change = asyncio.run(scenario())
    assert whole["full"] is True and [j["id"] for j in whole["jobs"]] == [root.pk, child.pk]
    assert change["full"] is False
    assert change["jobs"] == [{"id": child.pk, "name": "root:square", "state": "terminated", "parent": root.pk}]


def test_a_reconnect_with_cursors_resumes_with_no_gap_and_no_duplicate(world, alice):
    root = world["root"]
    add_lines(root, *[f"line {i}" for i in range(1, 6)])

    async def scenario():
        _, first = await open_socket(f"/ws/jobs/{root.pk}/", alice, first={"cursors": {}})
        before = await frames_until(first, lambda f: f[-1].get("type") == "lines")
        await first.disconnect()
        await sync_to_async(add_lines)(root, "line 6", "line 7", start=6)
        _, second = await open_socket(f"/ws/jobs/{root.pk}/", alice, first={"cursors": {root.pk: 5}})
        after = await frames_until(second, lambda f: f[-1].get("type") == "lines")
        await sync_to_async(add_lines)(root, "line 8", start=8)
        live = await frames_until(second, lambda f: f[-1].get("type") == "lines")
        await sync_to_async(actions.transition)(root.pk, State.TERMINATED)
        await sync_to_async(actions.transition)(world["child"].pk, State.TERMINATED)
        rest = await frames_until(second, lambda f: f[-1].get("type") == "end")
        await second.disconnect()
        return before, after + live + rest

    before, after = asyncio.run(scenario())
    seen = [line[4] for f in before + after if isinstance(f, dict) and f.get("type") == "lines" for line in f["lines"]]
    assert seen == [f"line {i}" for i in range(1, 9)]
    states = [j["state"] for f in after if isinstance(f, dict) and f.get("type") == "tree" for j in f["jobs"]]
    assert "terminated" in states


def test_a_bad_first_frame_is_refused(world, alice):
    async def scenario():
        _, communicator = await open_socket(f"/ws/jobs/{world['root'].pk}/", alice, first={"cursors": {"x": -1}})
        return await frames_until(communicator, lambda f: True)

    assert asyncio.run(scenario())[0][1] == 4400


def test_job_lists_get_state_changes_of_the_watched_jobs_only(world, alice, bob):
    root, child = world["root"], world["child"]
    other = project_actions.create_container(alice.user, "elsewhere")
    hidden = Job.objects.create(
        id="job-" + "H" * 24,
        name="hidden",
        executable=root.executable,
        project=other,
        launched_by=alice.user,
        state=State.RUNNABLE,
    )

    async def scenario():
        watch = {"watch": [root.pk, child.pk, hidden.pk]}
        _, listing = await open_socket(f"/ws/projects/{world['project'].pk}/jobs/", bob, first=watch)
        initial = await frames_until(listing, lambda f: True)
        await sync_to_async(actions.transition)(root.pk, State.RUNNING)
        changed = await frames_until(listing, lambda f: True)
        await listing.disconnect()
        _, mine = await open_socket("/ws/jobs/mine/", alice, first=watch)
        own = await frames_until(mine, lambda f: True)
        await mine.disconnect()
        _, theirs = await open_socket("/ws/jobs/mine/", bob, first=watch)
        # bob launched none of them: nothing to tell him.
        assert await theirs.receive_nothing(timeout=1.5)
        await theirs.disconnect()
        return initial[0], changed[0], own[0]

    initial, changed, own = asyncio.run(scenario())
    assert initial == {"states": {root.pk: "runnable", child.pk: "runnable"}}
    assert changed == {"states": {root.pk: "running"}}
    assert own == {"states": {root.pk: "running", child.pk: "runnable", hidden.pk: "runnable"}}


@pytest.mark.parametrize("kind", ["project", "job"])
def test_a_socket_that_sends_no_first_frame_is_closed_after_the_auth_timeout(world, alice, kind, settings):
    settings.DXWEB_WS_AUTH_TIMEOUT = 1
    path = f"/ws/projects/{world['project'].pk}/jobs/" if kind == "project" else f"/ws/jobs/{world['root'].pk}/"

    async def scenario():
        connected, communicator = await open_socket(path, alice)
        assert connected
        return await frames_until(communicator, lambda f: True)

    code, reason = asyncio.run(scenario())[0][1:]
    assert code == 4408 and json.loads(reason)["type"] == "RequestTimeout"


@pytest.mark.parametrize(
    "path, first",
    [
        ("/ws/jobs/{root}/", '{"cursors": {"\\ud800": 1}}'),
        ("/ws/projects/{project}/jobs/", '{"watch": ["job-\\udbff"]}'),
        ("/ws/jobs/mine/", '{"watch": [], "\\udc00": true}'),
    ],
)
def test_a_lone_surrogate_in_the_first_frame_is_refused(world, alice, path, first):
    path = path.format(root=world["root"].pk, project=world["project"].pk)

    async def scenario():
        connected, communicator = await open_socket(path, alice)
        assert connected
        await communicator.send_to(text_data=first)
        return await frames_until(communicator, lambda f: False)

    close = asyncio.run(scenario())[-1]
    assert close[:2] == ("close", 4400)
    assert json.loads(close[2])["type"] == "InvalidInput" and "surrogate" in json.loads(close[2])["message"]


def run_then_cancel_all(scenario, grace=10):
    """Run `scenario` on a new event loop, then cancel every task it left, as asyncio.run and a server's
    shutdown do; return its result and the tasks that had not ended `grace` seconds later (which are
    then cancelled again until they end, so that a failure does not hang the suite)."""
    loop = asyncio.new_event_loop()
    try:
        result = loop.run_until_complete(scenario())
        left = asyncio.all_tasks(loop)
        for task in left:
            task.cancel()
        if left:
            loop.run_until_complete(asyncio.wait(left, timeout=grace))
        stuck = [repr(task) for task in left if not task.done()]
        for _ in range(5):
            if all(task.done() for task in left):
                break
            for task in left:
                task.cancel()
            loop.run_until_complete(asyncio.wait(left, timeout=grace))
        loop.run_until_complete(loop.shutdown_default_executor())
        return result, stuck
    finally:
        loop.close()


def test_on_redis_a_consumer_cancelled_as_it_starts_ends(world, alice):
    """A socket refused at once and dropped while its consumer's channel-layer receive is still talking to
    Redis: cancelled, the receive ends. (It used to go on polling Redis for ever when the cancellation
    came as a command was being written, and its consumer never ended: the PostgreSQL + Redis suite hung
    at the end of the lone-surrogate test.)"""
    require("Redis", check_redis)  # in CI a missing Redis fails, elsewhere it skips
    layers = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {
                "hosts": [{"address": REDIS_URL, **settings.REDIS_LAYER_OPTIONS}],
                "prefix": f"test-ws-{os.getpid()}-{time.monotonic_ns()}",
            },
        }
    }

    async def scenario():
        connected, communicator = await open_socket("/ws/jobs/mine/", alice)
        assert connected
        await communicator.send_to(text_data='{"watch": [], "\\udc00": true}')
        return (await frames_until(communicator, lambda f: False))[-1]

    with override_settings(CHANNEL_LAYERS=layers):
        for _ in range(20):  # a new loop each time, so a new connection to Redis, as each test has
            close, stuck = run_then_cancel_all(scenario)
            assert close[:2] == ("close", 4400)
            assert not stuck, f"tasks that a cancellation did not end: {stuck}"
