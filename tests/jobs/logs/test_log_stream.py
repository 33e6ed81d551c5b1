"""/job-x/getLog/websocket as `dx watch` speaks it: token in the first frame, backlog, live lines, END_LOG."""

import asyncio
import json

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator

from dxweb.asgi import application
from jobs import actions
from jobs.models import LogLine, State
from tests.jobs.logs.conftest import open_stream

pytestmark = pytest.mark.django_db(transaction=True)


def add_lines(job, *lines, start=1):
    LogLine.objects.bulk_create(
        LogLine(job=job, seq=start + i, timestamp=1000 + i, level=level, msg=msg)
        for i, (level, msg) in enumerate(lines)
    )


async def collect(communicator, count=None):
    frames = []
    while True:
        message = await communicator.receive_output(timeout=10)
        if message["type"] == "websocket.close":
            frames.append(("close", message.get("code"), message.get("reason")))
            # As a client does once the server closed: the consumer then leaves its channel layer
            # (with Redis, one left waiting there is not cancelled at the end of the test).
            await communicator.disconnect()
            return frames
        frame = json.loads(message["text"])
        frames.append(frame)
        if frame["msg"] == "END_LOG":
            await communicator.disconnect()  # as dx watch does once it has the end marker
            return frames
        if count is not None and len(frames) == count:
            return frames


def test_a_finished_jobs_log_is_sent_whole_then_end_log(job, alice):
    add_lines(job, ("STDOUT", "hello"), ("STDERR", "oops"), ("INFO", "note"))
    actions.transition(job.pk, State.FAILED, failure_reason="AppError", failure_message="x")

    async def scenario():
        communicator = await open_stream(job.pk, alice.token)
        return await collect(communicator)

    frames = asyncio.run(scenario())
    assert [f["msg"] for f in frames[:3]] == ["hello", "oops", "note"]
    assert all(f["job"] == job.pk for f in frames[:4])
    assert frames[0]["level"] == "STDOUT" and frames[0]["line"] == 1
    assert frames[3]["msg"] == "END_LOG" and frames[3]["source"] == "SYSTEM" and len(frames) == 4


def test_levels_are_filtered_by_the_server(job, alice):
    add_lines(job, ("STDOUT", "out"), ("STDERR", "err"), ("DEBUG", "dbg"))
    actions.transition(job.pk, State.TERMINATED)

    async def scenario():
        return await collect(await open_stream(job.pk, alice.token, levels=["STDERR"]))

    frames = asyncio.run(scenario())
    assert [f["msg"] for f in frames if isinstance(f, dict)] == ["err", "END_LOG"]


def test_live_lines_arrive_while_the_job_runs_and_the_stream_ends_with_it(job, alice):
    add_lines(job, ("STDOUT", "before"))

    async def scenario():
        communicator = await open_stream(job.pk, alice.token)
        first = await collect(communicator, count=1)
        await sync_to_async(add_lines)(job, ("STDOUT", "during"), start=2)
        second = await collect(communicator, count=1)
        await sync_to_async(actions.transition)(job.pk, State.TERMINATED)
        rest = await collect(communicator)
        return first + second + rest

    frames = asyncio.run(scenario())
    assert [f["msg"] for f in frames if isinstance(f, dict)] == ["before", "during", "END_LOG"]


def test_no_wait_sends_the_backlog_and_ends(job, alice):
    add_lines(job, ("STDOUT", "so far"))

    async def scenario():
        return await collect(await open_stream(job.pk, alice.token, tail=False))

    frames = asyncio.run(scenario())
    assert [f["msg"] for f in frames if isinstance(f, dict)] == ["so far", "END_LOG"]


def test_an_outsider_is_closed_with_a_clear_reason_and_sees_no_line(job, charlie):
    add_lines(job, ("STDOUT", "secret"))

    async def scenario():
        return await collect(await open_stream(job.pk, charlie.token))

    frames = asyncio.run(scenario())
    assert len(frames) == 1 and frames[0][0] == "close"
    assert frames[0][1] == 4404 and json.loads(frames[0][2])["type"] == "ResourceNotFound"


def test_a_bad_token_and_a_bad_first_frame_are_refused(job):
    async def scenario():
        bad_token = await collect(await open_stream(job.pk, "not-a-token"))
        communicator = WebsocketCommunicator(
            application,
            f"/{job.pk}/getLog/websocket",
            headers=[(b"origin", b"http://127.0.0.1"), (b"host", b"127.0.0.1")],
        )
        await communicator.connect()
        await communicator.send_to(text_data="{not json")
        return bad_token, await collect(communicator)

    bad_token, bad_frame = asyncio.run(scenario())
    assert bad_token[0][1] == 4401 and json.loads(bad_token[0][2])["type"] == "InvalidAuthentication"
    assert bad_frame[0][1] == 4400


def test_guessed_tokens_over_the_log_socket_count_as_on_the_api(job, alice, settings):
    settings.DXWEB_TOKEN_FAILURE_LIMIT = 3

    async def scenario():
        guesses = [await collect(await open_stream(job.pk, f"guess-{i}", client="10.9.8.7")) for i in range(3)]
        return guesses, await collect(await open_stream(job.pk, alice.token, client="10.9.8.7", tail=False))

    guesses, after = asyncio.run(scenario())
    assert [g[0][1] for g in guesses] == [4401, 4401, 4401]
    # The address is now refused for a while, even with a good token, as the API refuses it.
    assert after[0][1] == 4429 and json.loads(after[0][2])["type"] == "TooManyRequests"


def test_a_foreign_origin_is_refused_at_the_handshake(job):
    async def scenario():
        communicator = WebsocketCommunicator(
            application, f"/{job.pk}/getLog/websocket", headers=[(b"origin", b"http://evil.example")]
        )
        connected, _ = await communicator.connect()
        return connected

    assert asyncio.run(scenario()) is False


def test_something_not_a_job_gets_the_same_refusal_as_a_job_the_caller_may_not_see(job, charlie):
    async def scenario():
        return [await collect(await open_stream(job_id, charlie.token)) for job_id in (job.pk, "not-a-job")]

    hidden, not_a_job = asyncio.run(scenario())
    assert hidden[0][:2] == not_a_job[0][:2] == ("close", 4404)
    assert json.loads(not_a_job[0][2]) == {
        "type": "ResourceNotFound",
        "message": json.loads(hidden[0][2])["message"].replace(job.pk, "not-a-job"),
    }


def test_a_socket_without_a_first_frame_is_closed_after_the_auth_timeout(job, alice, settings):
    settings.DXWEB_WS_AUTH_TIMEOUT = 1

    async def scenario():
        silent = WebsocketCommunicator(
            application,
            f"/{job.pk}/getLog/websocket",
            headers=[(b"origin", b"http://127.0.0.1"), (b"host", b"127.0.0.1")],
        )
        assert (await silent.connect())[0]
        closed = await collect(silent)  # collect waits up to 10 s for each frame
        # A socket that sent its request in time is not closed by the deadline: the job runs, no lines yet.
        streaming = await open_stream(job.pk, alice.token)
        quiet = await streaming.receive_nothing(timeout=2.5)
        await streaming.disconnect()
        return closed, quiet

    closed, quiet = asyncio.run(scenario())
    assert closed[0][:2] == ("close", 4408) and json.loads(closed[0][2])["type"] == "RequestTimeout"
    assert quiet


@pytest.mark.parametrize(
    "frame",
    [
        '{"access_token": "\\ud800"}',
        '{"access_token": "TOKEN", "levels": ["\\udfff"]}',
        '{"access_token": "TOKEN", "\\ud800": 1}',
    ],
)
def test_a_lone_surrogate_in_the_first_frame_is_invalid_input(job, alice, frame):
    async def scenario():
        communicator = WebsocketCommunicator(
            application,
            f"/{job.pk}/getLog/websocket",
            headers=[(b"origin", b"http://127.0.0.1"), (b"host", b"127.0.0.1")],
        )
        await communicator.connect()
        await communicator.send_to(text_data=frame.replace("TOKEN", alice.token))
        return await collect(communicator)

    frames = asyncio.run(scenario())
    assert frames[0][:2] == ("close", 4400)
    assert json.loads(frames[0][2])["type"] == "InvalidInput" and "surrogate" in json.loads(frames[0][2])["message"]
