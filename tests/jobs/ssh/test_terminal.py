"""The browser terminal: the Debug page, its websocket and the hold buttons.

alice launched the job and may debug it; bob is a project member who did not launch it; charlie is
an outsider. No worker runs here, so jobs.ssh.gateway.open_terminal is replaced: either by a local asyncssh
server whose shell is `bash -i` on a pty (a real SSHClientProcess, as the gateway gives), or by a
scripted process object where the test needs to count pause/resume calls.
"""

import asyncio
import json
import os
import signal
import time

import asyncssh
import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.test import Client

from dxweb.asgi import application
from jobs.models import Job, SSHSession, State
from jobs.ssh import gateway, terminal
from projects import actions as project_actions
from projects.models import now_ms
from tests.helpers import async_wait_for

pytestmark = pytest.mark.django_db(transaction=True)
HOST = b"127.0.0.1:8000"
ORIGIN = b"http://127.0.0.1:8000"
JOB_ID = "job-" + "T" * 24
PATH = f"/ws/jobs/{JOB_ID}/terminal/"


@pytest.fixture
def world(alice, bob, charlie):
    project = project_actions.create_container(alice.user, "debugging")
    project_actions.invite(project, "user-bob", "CONTRIBUTE")
    job = Job.objects.create(
        id=JOB_ID,
        name="held",
        executable="applet-" + "b" * 24,
        project=project,
        launched_by=alice.user,
        state=State.RUNNING,
        allow_ssh=["127.0.0.1"],
    )
    job.origin = job.root = job
    job.save()
    return {"project": project, "job": job}


# A local gateway: asyncssh server, no authentication, `bash -i` on a pty -------------------------


class NoAuth(asyncssh.SSHServer):
    def __init__(self, listener):
        self.listener = listener

    def begin_auth(self, username):
        return False

    def connection_lost(self, exc):
        self.listener["server"].close()


@pytest.fixture
def bash_shells(monkeypatch):
    """Make open_terminal reach a local bash through a real asyncssh client and server."""
    host_key = asyncssh.generate_private_key("ssh-ed25519")
    pids, handlers = [], []

    async def bash_on_pty(process):
        handlers.append(asyncio.current_task())
        master, slave = os.openpty()
        env = {"PATH": os.environ["PATH"], "TERM": process.term_type, "LANG": "C.UTF-8", "PS1": "$ ", "HOME": "/tmp"}
        shell = await asyncio.create_subprocess_exec(
            "bash",
            "--norc",
            "--noprofile",
            "-i",
            stdin=slave,
            stdout=slave,
            stderr=slave,
            env=env,
            start_new_session=True,
        )
        pids.append(shell.pid)
        os.close(slave)
        await process.redirect(
            stdin=os.fdopen(master, "wb", buffering=0), stdout=os.fdopen(os.dup(master), "rb", buffering=0)
        )
        process.exit(await shell.wait())
        await process.wait_closed()

    async def open_terminal(job, user, client_ip, cols, rows):
        listener = {}
        listener["server"] = await asyncssh.create_server(
            lambda: NoAuth(listener),
            "127.0.0.1",
            0,
            server_host_keys=[host_key],
            process_factory=bash_on_pty,
            encoding=None,
        )
        port = listener["server"].sockets[0].getsockname()[1]
        conn = await asyncssh.connect(
            "127.0.0.1", port, username="dnanexus", known_hosts=None, client_keys=None, agent_path=None, config=None
        )
        process = await conn.create_process(term_type="xterm-256color", term_size=(cols, rows), encoding=None)
        process.dx_session = await sync_to_async(SSHSession.objects.create)(
            job=job, user=user, via=SSHSession.BROWSER, client_ip=client_ip
        )
        return process

    async def settle():
        """Let the server side finish closing before the test's event loop ends."""
        await asyncio.wait(handlers, timeout=5)

    monkeypatch.setattr(gateway, "open_terminal", open_terminal)
    yield settle
    for pid in pids:
        try:
            os.killpg(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


# A scripted process: output from a queue, pause/resume calls recorded ------------------------------


class FakeProcess:
    def __init__(self):
        self.output = asyncio.Queue()
        self.calls = []
        self.written = []
        self.stdin = self
        self.stdout = self
        self.channel = self

    def write(self, data):
        self.written.append(data)

    async def read(self, n):
        return await self.output.get()

    def change_terminal_size(self, cols, rows):
        self.calls.append(("size", cols, rows))

    def pause_reading(self):
        self.calls.append("pause")

    def resume_reading(self):
        self.calls.append("resume")

    def get_connection(self):
        return self

    def close(self):
        self.calls.append("close")


@pytest.fixture
def fake_shell(monkeypatch):
    opened = []

    async def open_terminal(job, user, client_ip, cols, rows):
        process = FakeProcess()
        process.calls.append(("open", cols, rows))
        opened.append(process)
        return process

    monkeypatch.setattr(gateway, "open_terminal", open_terminal)
    return opened


# Helpers ------------------------------------------------------------------------------------------


def session_cookie(actor):
    client = Client()
    client.force_login(actor.user)
    return f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}".encode()


async def open_socket(actor=None, origin=ORIGIN, path=PATH, size=(80, 24)):
    headers = [(b"origin", origin), (b"host", HOST)]
    if actor is not None:
        headers.append((b"cookie", await sync_to_async(session_cookie)(actor)))
    communicator = WebsocketCommunicator(application, path, headers=headers)
    communicator.scope["client"] = ["127.0.0.1", 50000]  # the address access_debug checks against allowSSH
    connected, _ = await communicator.connect()
    if connected and size:
        await send(communicator, type="resize", cols=size[0], rows=size[1])
    return connected, communicator


async def send(communicator, **frame):
    await communicator.send_to(text_data=json.dumps(frame))


async def next_status(communicator, timeout=10):
    """The next status frame (binary output before it is skipped), or ("close", code, reason)."""
    while True:
        message = await communicator.receive_output(timeout=timeout)
        if message["type"] == "websocket.close":
            return ("close", message.get("code"), message.get("reason"))
        if message.get("text") is not None:
            return json.loads(message["text"])


async def output_until(communicator, needle, timeout=10):
    out = b""
    deadline = time.monotonic() + timeout
    while needle not in out:
        message = await communicator.receive_output(timeout=max(0.1, deadline - time.monotonic()))
        assert message["type"] == "websocket.send", message
        if message.get("bytes") is not None:
            out += message["bytes"]
    return out


async def opened(actor, **kwargs):
    connected, communicator = await open_socket(actor, **kwargs)
    assert connected
    status = await next_status(communicator)
    assert status["state"] == "open", status
    return communicator


async def refusal(actor, **kwargs):
    connected, communicator = await open_socket(actor, size=None, **kwargs)
    assert connected
    status = await next_status(communicator)
    closed = await next_status(communicator)
    return status, closed


# The shell --------------------------------------------------------------------------------------


def test_keystrokes_reach_the_shell_and_its_output_comes_back(world, alice, bash_shells):
    async def scenario():
        communicator = await opened(alice)
        await send(communicator, type="input", data="echo hi-$((6*7))\r")
        out = await output_until(communicator, b"hi-42\r\n")
        await communicator.disconnect()
        await bash_shells()
        return out

    assert b"hi-42" in asyncio.run(scenario())
    row = SSHSession.objects.get(job=world["job"])
    assert (row.user_id, row.via, row.client_ip) == (world["job"].launched_by_id, "browser", "127.0.0.1")
    assert row.ended is not None and row.ended >= row.started


def test_the_first_resize_and_later_ones_reach_the_pty(world, alice, bash_shells):
    async def scenario():
        communicator = await opened(alice, size=(100, 30))
        await send(communicator, type="input", data="stty size\r")
        first = await output_until(communicator, b"30 100\r\n")
        await send(communicator, type="resize", cols=132, rows=43)
        await send(communicator, type="input", data="stty size\r")
        second = await output_until(communicator, b"43 132\r\n")
        await communicator.disconnect()
        await bash_shells()
        return first, second

    first, second = asyncio.run(scenario())
    assert b"30 100" in first and b"43 132" in second


def test_utf8_goes_through_both_ways(world, alice, bash_shells):
    async def scenario():
        communicator = await opened(alice)
        # Only the command's output, not the shell's echo of the line, has "=héllo ✓=".
        await send(communicator, type="input", data='echo "=$(echo héllo ✓)="\r')
        out = await output_until(communicator, "=héllo ✓=".encode())
        await communicator.disconnect()
        await bash_shells()
        return out

    assert "=héllo ✓=\r\n".encode() in asyncio.run(scenario())


def test_the_shell_opens_at_80x24_when_no_size_comes(world, alice, fake_shell, monkeypatch):
    monkeypatch.setattr(terminal, "FIRST_RESIZE_SECONDS", 0.05)

    async def scenario():
        communicator = await opened(alice, size=None)
        await communicator.disconnect()

    asyncio.run(scenario())
    assert fake_shell[0].calls[0] == ("open", 80, 24)


def test_reading_pauses_while_the_browser_is_over_512_kb_behind(world, alice, fake_shell):
    chunk = b"x" * 65536

    async def scenario():
        communicator = await opened(alice)
        process = fake_shell[0]
        for _ in range(8):  # exactly 512 kB unacked: still reading
            process.output.put_nowait(chunk)
            assert len(await output_until(communicator, chunk)) == len(chunk)
        assert "pause" not in process.calls
        process.output.put_nowait(chunk)
        await output_until(communicator, chunk)
        await async_wait_for(lambda: "pause" in process.calls)
        await send(communicator, type="ack", bytes=6 * 65536)  # 192 kB behind: still paused
        await send(communicator, type="ack", bytes=65536)  # 128 kB behind: still paused
        await asyncio.sleep(0.05)
        assert "resume" not in process.calls
        await send(communicator, type="ack", bytes=1)
        await async_wait_for(lambda: "resume" in process.calls)
        await communicator.disconnect()
        return process.calls

    calls = asyncio.run(scenario())
    assert [c for c in calls if c in ("pause", "resume")] == ["pause", "resume"]


def test_malformed_frames_get_an_error_status_and_the_terminal_goes_on(world, alice, fake_shell):
    bad = [
        "not json",
        "[1, 2]",
        *map(
            json.dumps,
            [
                {"type": "resize", "cols": 0, "rows": 24},
                {"type": "resize", "cols": "80", "rows": 24},
                {"type": "resize", "cols": True, "rows": 2},
                {"type": "resize", "cols": 1001, "rows": 24},
                {"type": "shout"},
                {"type": "input", "data": 5},
                {"type": "ack", "bytes": -1},
                {},
            ],
        ),
    ]

    async def scenario():
        _, communicator = await open_socket(alice, size=None)
        errors = []
        for text in bad:
            await communicator.send_to(text_data=text)
            errors.append(await next_status(communicator))
        await communicator.send_to(bytes_data=b"\x00\x01")
        errors.append(await next_status(communicator))
        await send(communicator, type="resize", cols=90, rows=20)
        assert (await next_status(communicator))["state"] == "open"
        await send(communicator, type="input", data="ls\r")
        await async_wait_for(lambda: fake_shell[0].written)
        await communicator.disconnect()
        return errors

    errors = asyncio.run(scenario())
    assert all(e["type"] == "status" and e["state"] == "error" and e["message"] for e in errors), errors
    assert fake_shell[0].calls[0] == ("open", 90, 20)
    assert fake_shell[0].written == [b"ls\r"]


def test_a_lone_surrogate_in_a_frame_is_refused_and_nothing_reaches_the_shell(world, alice, fake_shell):
    async def scenario():
        communicator = await opened(alice)
        errors = []
        for text in (
            '{"type": "input", "data": "a\\ud800"}',
            '{"type": "\\udfff"}',
            '{"\\ud800": 1, "type": "ack", "bytes": 1}',
        ):
            await communicator.send_to(text_data=text)
            errors.append(await next_status(communicator))
        await send(communicator, type="input", data="ok\r")
        await async_wait_for(lambda: fake_shell[0].written)
        await communicator.disconnect()
        return errors

    errors = asyncio.run(scenario())
    assert all(e["state"] == "error" and "surrogate" in e["message"] for e in errors), errors
    assert fake_shell[0].written == [b"ok\r"]


# Refusals ------------------------------------------------------------------------------------


def test_a_foreign_origin_is_refused(world, alice, fake_shell):
    async def scenario():
        # Not an allowed host, or an allowed host on another port (another local web app), or https
        # for this http server: refused at the handshake (dxweb/websockets.py).
        return [
            (await open_socket(alice, origin=origin))[0]
            for origin in (b"http://evil.example", b"http://127.0.0.1:3000", b"https://127.0.0.1:8000")
        ]

    assert asyncio.run(scenario()) == [False, False, False]
    assert not fake_shell


def test_anonymous_another_user_and_an_outsider_are_refused_with_a_reason(world, bob, charlie, fake_shell):
    async def scenario():
        return [
            await refusal(None),
            await refusal(bob),
            await refusal(charlie),
            await refusal(charlie, path="/ws/jobs/job-" + "Z" * 24 + "/terminal/"),
        ]

    anonymous, member, outsider, missing = asyncio.run(scenario())
    assert anonymous[1][:2] == ("close", 4403) and "Log in" in anonymous[0]["message"]
    assert member[1][:2] == ("close", 4403) and "launcher" in member[0]["message"]
    assert outsider[1][:2] == ("close", 4404) and missing[1][:2] == ("close", 4404)
    assert outsider[0]["message"] == missing[0]["message"].replace("Z" * 24, "T" * 24)
    assert not fake_shell


def test_a_finished_job_and_an_address_outside_allow_ssh_are_refused(world, alice, fake_shell):
    async def scenario():
        await sync_to_async(Job.objects.filter(pk=JOB_ID).update)(allow_ssh=["10.0.0.0/8"])
        outside = await refusal(alice)
        await sync_to_async(Job.objects.filter(pk=JOB_ID).update)(allow_ssh=["127.0.0.1"], state=State.TERMINATED)
        return outside, await refusal(alice)

    outside, finished = asyncio.run(scenario())
    assert outside[1][:2] == ("close", 4403) and "127.0.0.1" in outside[0]["message"]
    assert finished[1][:2] == ("close", 4409) and "terminated" in finished[0]["message"]
    assert not fake_shell


def test_the_gateways_refusal_is_shown(world, alice, monkeypatch):
    async def open_terminal(job, user, client_ip, cols, rows):
        raise gateway.SSHRefused(f"{job.id} has no SSH gateway yet; try again in a few seconds")

    monkeypatch.setattr(gateway, "open_terminal", open_terminal)

    async def scenario():
        _, communicator = await open_socket(alice)
        return await next_status(communicator), await next_status(communicator)

    status, closed = asyncio.run(scenario())
    assert status["state"] == "refused" and "no SSH gateway yet" in status["message"]
    assert closed[:2] == ("close", 4502)


# Sessions end --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "change, expected",
    [
        ({"state": State.FAILED}, "failed"),
        ({"allow_ssh": []}, "allowSSH"),
        ({"state": State.DEBUG_HOLD, "debug": {"holdUntil": 1}}, "hold expired"),
    ],
)
def test_the_session_closes_when_the_job_ends_access_goes_or_the_hold_expires(
    world, alice, fake_shell, monkeypatch, change, expected
):
    monkeypatch.setattr(terminal, "RECHECK_SECONDS", 0.05)

    async def scenario():
        communicator = await opened(alice)
        await sync_to_async(Job.objects.filter(pk=JOB_ID).update)(**change)
        return await next_status(communicator), await next_status(communicator)

    status, closed = asyncio.run(scenario())
    assert status["state"] == "ended" and expected in status["message"], status
    assert closed[:2] == ("close", 4410)
    assert "close" in fake_shell[0].calls


def test_the_hold_countdown_follows_an_extension(world, alice, fake_shell, monkeypatch):
    monkeypatch.setattr(terminal, "RECHECK_SECONDS", 0.05)
    until = now_ms() + 600_000
    Job.objects.filter(pk=JOB_ID).update(state=State.DEBUG_HOLD, debug={"holdUntil": until})

    async def scenario():
        communicator = await opened(alice)
        await sync_to_async(Job.objects.filter(pk=JOB_ID).update)(debug={"holdUntil": until + 60_000})
        update = await next_status(communicator)
        await communicator.disconnect()
        return update

    update = asyncio.run(scenario())
    assert update["state"] == "open" and update["holdUntil"] == until + 60_000


# Pages ---------------------------------------------------------------------------------------


def logged_in(actor):
    client = Client()
    client.force_login(actor.user)
    return client


def test_the_debug_page_opens_for_the_launcher_and_refuses_others(world, alice, bob, charlie):
    page = logged_in(alice).get(f"/jobs/{JOB_ID}/debug/")
    assert page.status_code == 200
    html = page.content.decode()
    assert "vendor/xterm/xterm.js" in html and "vendor/xterm/addon-fit.js" in html and "jobs/terminal.js" in html
    assert f'data-ws="/ws/jobs/{JOB_ID}/terminal/"' in html
    member = logged_in(bob).get(f"/jobs/{JOB_ID}/debug/")
    assert member.status_code == 403 and "launcher" in member.content.decode()
    assert logged_in(charlie).get(f"/jobs/{JOB_ID}/debug/").status_code == 404
    assert Client().get(f"/jobs/{JOB_ID}/debug/").status_code == 302  # to the login page


def test_the_job_page_links_to_debug_and_lists_ssh_sessions(world, alice):
    SSHSession.objects.create(
        job=world["job"],
        user=alice.user,
        via=SSHSession.BROWSER,
        client_ip="127.0.0.1",
        started=1_700_000_000_000,
        ended=1_700_000_042_000,
    )
    html = logged_in(alice).get(f"/jobs/{JOB_ID}/").content.decode()
    assert f'href="/jobs/{JOB_ID}/debug/"' in html
    assert 'id="ssh-sessions"' in html and "browser terminal" in html and "42 s" in html
    Job.objects.filter(pk=JOB_ID).update(state=State.DONE)
    assert f'href="/jobs/{JOB_ID}/debug/"' not in logged_in(alice).get(f"/jobs/{JOB_ID}/").content.decode()


def test_the_vendored_xterm_is_served(world, alice):
    client = logged_in(alice)
    for name in ("xterm.js", "xterm.css", "addon-fit.js"):
        response = client.get(f"/static/vendor/xterm/{name}")
        assert response.status_code == 200, name


def test_extend_and_release_hold_from_the_debug_page(world, alice, charlie, settings):
    settings.DXWEB_DEBUG_HOLD_SECONDS = 3600
    Job.objects.filter(pk=JOB_ID).update(
        state=State.DEBUG_HOLD,
        debug={"holdUntil": now_ms() + 60_000, "failureReason": "AppError", "failureMessage": "boom"},
    )
    client = logged_in(alice)
    assert logged_in(charlie).post(f"/jobs/{JOB_ID}/hold/extend/").status_code == 404
    assert client.get(f"/jobs/{JOB_ID}/hold/extend/").status_code == 405
    extended = client.post(f"/jobs/{JOB_ID}/hold/extend/", follow=True)
    assert extended.redirect_chain[-1][0] == f"/jobs/{JOB_ID}/debug/"
    assert Job.objects.get(pk=JOB_ID).debug["holdUntil"] > now_ms() + 3_500_000
    assert "Extended the hold" in extended.content.decode()
    released = client.post(f"/jobs/{JOB_ID}/hold/release/", follow=True)
    assert released.redirect_chain[-1][0] == f"/jobs/{JOB_ID}/"
    job = Job.objects.get(pk=JOB_ID)
    assert job.state == State.FAILED and job.failure_reason == "AppError"
    again = client.post(f"/jobs/{JOB_ID}/hold/release/", follow=True)
    assert again.status_code == 403 and "failed" in again.content.decode()


def test_the_debug_page_offers_to_allow_ssh_from_the_users_address(world, alice, bob, charlie):
    Job.objects.filter(pk=JOB_ID).update(allow_ssh=["10.0.0.0/8"])
    page = logged_in(alice).get(f"/jobs/{JOB_ID}/debug/")
    assert page.status_code == 403 and "127.0.0.1 is not in the allowSSH list" in page.content.decode()
    assert "Allow SSH from 127.0.0.1" in page.content.decode()
    assert logged_in(charlie).post(f"/jobs/{JOB_ID}/allow-ssh/").status_code == 404
    assert Job.objects.get(pk=JOB_ID).allow_ssh == ["10.0.0.0/8"]
    done = logged_in(alice).post(f"/jobs/{JOB_ID}/allow-ssh/")
    assert done.status_code == 302 and done["Location"] == f"/jobs/{JOB_ID}/debug/"
    assert Job.objects.get(pk=JOB_ID).allow_ssh == ["10.0.0.0/8", "127.0.0.1"]
    assert logged_in(alice).get(f"/jobs/{JOB_ID}/debug/").status_code == 200
