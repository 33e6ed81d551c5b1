"""What every websocket shares (dxweb/websockets.py): the Origin check, the cap per client address, the
deadline for the first frame, refusals of unknown paths, close codes and reasons.

The first tests drive the ASGI application in process; the last ones a real server (daphne) with a
real websocket client, which is where a refusal used to be an HTTP 500 at the handshake.
"""

import asyncio
import http.client
import json
import socket
import time

import pytest
import websocket
from channels.testing import WebsocketCommunicator

from dxweb.asgi import application
from dxweb.errors import InvalidState, PermissionDenied, ResourceNotFound, TooManyRequests
from dxweb.websockets import RequestTimeout, close_code, close_reason
from tests.live import LiveServer

HIDDEN = "job-" + "Z" * 24
GET_LOG = f"/{HIDDEN}/getLog/websocket"


async def handshake(path=GET_LOG, origin=b"http://127.0.0.1:8000", host=b"127.0.0.1:8000", client=None, extra=()):
    headers = [(b"host", host), *extra]
    if origin is not None:
        headers.append((b"origin", origin))
    communicator = WebsocketCommunicator(application, path, headers=headers)
    if client is not None:
        communicator.scope["client"] = [client, 50000]
    connected, _ = await communicator.connect()
    return connected, communicator


async def next_close(communicator, timeout=10):
    while True:
        message = await communicator.receive_output(timeout=timeout)
        if message["type"] == "websocket.close":
            return message.get("code"), json.loads(message.get("reason") or "null")


# The Origin -----------------------------------------------------------------------------------

ORIGINS = {
    # (Origin, Host, extra headers): accepted?
    "same scheme, host and port": ((b"http://127.0.0.1:8000", b"127.0.0.1:8000", ()), True),
    "default port spelled out": ((b"http://127.0.0.1:80", b"127.0.0.1", ()), True),
    "default port left out": ((b"http://localhost", b"localhost:80", ()), True),
    "another port of the host": ((b"http://127.0.0.1:9999", b"127.0.0.1:8000", ()), False),
    "another port, default one": ((b"http://localhost", b"localhost:8000", ()), False),
    "https page, http server": ((b"https://127.0.0.1:8000", b"127.0.0.1:8000", ()), False),
    "another allowed host": ((b"http://localhost:8000", b"127.0.0.1:8000", ()), False),
    "a host not allowed": ((b"http://evil.example:8000", b"evil.example:8000", ()), False),
    "not http": ((b"file://127.0.0.1:8000", b"127.0.0.1:8000", ()), False),
    "null": ((b"null", b"127.0.0.1:8000", ()), False),
    "a bad port": ((b"http://127.0.0.1:99999", b"127.0.0.1:99999", ()), False),
    "no Origin": ((None, b"127.0.0.1:8000", ()), False),
    "https through a proxy that says so": (
        (b"https://dxweb.example.org", b"dxweb.example.org", ((b"x-forwarded-proto", b"https"),)),
        True,
    ),
    "http through that proxy": (
        (b"http://dxweb.example.org", b"dxweb.example.org", ((b"x-forwarded-proto", b"https"),)),
        False,
    ),
    "a trusted origin": ((b"https://trusted.example.org", b"127.0.0.1:8000", ()), True),
    "a trusted wildcard": ((b"https://a.wild.example.org", b"127.0.0.1:8000", ()), True),
    "a trusted origin on another port": ((b"https://trusted.example.org:8443", b"127.0.0.1:8000", ()), False),
}


@pytest.mark.parametrize("case", ORIGINS)
def test_the_origin_must_be_this_server_by_scheme_host_and_port(case, settings):
    """As Django's CSRF check asks of a form's POST: a page on another port is another site."""
    settings.ALLOWED_HOSTS = ["127.0.0.1", "localhost", "dxweb.example.org"]
    settings.CSRF_TRUSTED_ORIGINS = ["https://trusted.example.org", "https://*.wild.example.org"]
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    (origin, host, extra), accepted = ORIGINS[case]

    async def scenario():
        connected, communicator = await handshake(origin=origin, host=host, extra=extra)
        if connected:
            await communicator.disconnect()
        return connected

    assert asyncio.run(scenario()) is accepted


# Close codes and reasons ----------------------------------------------------------------------


def test_close_codes_follow_the_http_status_and_reasons_fit_a_close_frame():
    assert close_code(ResourceNotFound("x")) == 4404
    assert close_code(PermissionDenied("x")) == 4403
    assert close_code(InvalidState("x")) == 4409
    assert close_code(RequestTimeout("x")) == 4408
    assert close_code(TooManyRequests("x", None)) == 4429
    for message in ("short", "x" * 500, "é" * 200, "\U0001f600" * 100):
        reason = close_reason(ResourceNotFound(message))
        assert len(reason.encode()) <= 123
        decoded = json.loads(reason)  # whole JSON, never cut inside
        assert decoded["type"] == "ResourceNotFound" and message.startswith(decoded["message"])


# Unknown paths --------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/ws/nothing/", "/nothing", "/ws/jobs/not-a-job/", "/ws/jobs/not-a-job/terminal/"])
def test_an_unknown_path_is_a_clean_4404(path):
    async def scenario():
        connected, communicator = await handshake(path=path)
        return connected, await next_close(communicator)

    connected, (code, reason) = asyncio.run(scenario())
    assert connected and code == 4404
    assert reason["type"] == "ResourceNotFound"


# The cap per client address -------------------------------------------------------------------


def test_sockets_past_the_cap_from_one_address_are_closed_with_4429(settings):
    settings.DXWEB_WS_MAX_PER_ADDRESS = 3
    settings.DXWEB_WS_AUTH_TIMEOUT = 600  # the open sockets stay open for the test

    async def scenario():
        first = [await handshake(client="10.9.8.7") for _ in range(3)]
        assert all(connected for connected, _ in first)
        over_connected, over = await handshake(client="10.9.8.7")
        over_close = await next_close(over)
        other_connected, other = await handshake(client="10.9.8.6")  # another address is not affected
        other_open = await other.receive_nothing(timeout=0.2)
        await first[0][1].disconnect()  # returns once its application has ended
        again_connected, again = await handshake(client="10.9.8.7")  # a slot is free again
        again_open = await again.receive_nothing(timeout=0.2)
        for communicator in (*[c for _, c in first[1:]], other, again):
            await communicator.disconnect()
        return over_connected, over_close, other_connected and other_open, again_connected and again_open

    over_connected, (code, reason), other_ok, again_ok = asyncio.run(scenario())
    assert over_connected and code == 4429
    assert reason["type"] == "TooManyRequests" and "at most 3" in reason["message"]
    assert other_ok and again_ok


def test_behind_a_tls_proxy_the_cap_counts_the_address_the_proxy_forwards(settings):
    settings.DXWEB_WS_MAX_PER_ADDRESS = 1
    settings.DXWEB_WS_AUTH_TIMEOUT = 600
    settings.DXWEB_BEHIND_TLS_PROXY = True

    async def through_proxy(forwarded):
        return await handshake(client="10.0.0.1", extra=[(b"x-forwarded-for", forwarded)])

    async def scenario():
        _, first = await through_proxy(b"192.0.2.1")
        _, second = await through_proxy(b"198.51.100.7, 192.0.2.2")  # the last address is the proxy's word
        second_open = await second.receive_nothing(timeout=0.2)
        _, third = await through_proxy(b"192.0.2.2")
        third_close = await next_close(third)
        for communicator in (first, second):
            await communicator.disconnect()
        return second_open, third_close

    second_open, (code, _) = asyncio.run(scenario())
    assert second_open and code == 4429


# A real server ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    env = {"DXWEB_WS_AUTH_TIMEOUT": "2", "DXWEB_WS_MAX_PER_ADDRESS": "3"}
    server = LiveServer(tmp_path_factory.mktemp("websockets"), extra_env=env, extra_args=["--no-worker"]).start()
    yield server
    server.stop()


def connect(server, path, source=None, **options):
    """A websocket as websocket-client (dx watch's library) opens it, from a loopback address of the test's choice."""
    sock = None
    if source is not None:  # each test its own address: sockets another test left closing are not counted
        sock = socket.create_connection(("127.0.0.1", server.port), timeout=30, source_address=(source, 0))
    return websocket.create_connection(f"ws://127.0.0.1:{server.port}{path}", timeout=30, socket=sock, **options)


def watch(server, path, token=None, frame=None, source=None):
    """Open a log socket as `dx watch` does and send its first frame."""
    ws = connect(server, path, source)
    ws.send(frame if frame is not None else json.dumps({"access_token": token or server.admin_token, "tail": True}))
    return ws


def closed_with(ws, timeout=30):
    """The close code the server sent within `timeout` seconds (daphne sends no reason: django/daphne#374)."""
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        ws.settimeout(left)
        try:
            opcode, data = ws.recv_data(control_frame=True)  # daphne's pings come too
        except websocket.WebSocketTimeoutException:
            break
        if opcode == websocket.ABNF.OPCODE_CLOSE:
            return int.from_bytes(data[:2], "big")
    ws.close()
    return None


@pytest.mark.live
def test_a_log_socket_of_something_not_a_job_gets_the_hidden_jobs_4404_not_a_500(server):
    outsider = server.user("outsider")
    for path in ("/not-a-job/getLog/websocket", "/%ED%A0%80/getLog/websocket", GET_LOG):
        assert closed_with(watch(server, path, outsider, source="127.0.0.2")) == 4404, path
    assert closed_with(connect(server, "/no/such/socket", source="127.0.0.2")) == 4404


@pytest.mark.live
def test_a_silent_socket_is_closed_after_the_auth_timeout(server):
    assert closed_with(connect(server, GET_LOG, source="127.0.0.3"), timeout=60) == 4408


@pytest.mark.live
def test_a_page_on_another_port_cannot_open_a_socket(server):
    for origin in (f"http://127.0.0.1:{server.port + 1}", f"https://127.0.0.1:{server.port}", "http://localhost:9999"):
        with pytest.raises(websocket.WebSocketBadStatusException) as refused:
            connect(server, GET_LOG, source="127.0.0.4", origin=origin)
        assert refused.value.status_code == 403
    connect(server, GET_LOG, source="127.0.0.4").close()  # Origin http://127.0.0.1:<port>, as dx watch sends


@pytest.mark.live
def test_the_fourth_socket_from_one_address_is_refused(server):
    project = server.api("/project/new", {"name": "watched"})["id"]
    applet = server.api(
        "/applet/new",
        {
            "project": project,
            "name": "idle",
            "dxapi": "1.0.0",
            "inputSpec": [],
            "outputSpec": [],
            "runSpec": {"interpreter": "bash", "code": "main() { :; }", "distribution": "Ubuntu", "release": "24.04"},
        },
    )["id"]
    job = server.api(f"/{applet}/run", {"project": project, "input": {}})["id"]  # no worker: it stays runnable
    path = f"/{job}/getLog/websocket"
    streaming = [watch(server, path, source="127.0.0.5") for _ in range(3)]
    assert closed_with(connect(server, path, source="127.0.0.5")) == 4429
    other = watch(server, path, source="127.0.0.6")  # another address is not affected: it streams
    assert closed_with(other, timeout=1) is None
    for ws in streaming:
        ws.close()


@pytest.mark.live
def test_a_lone_surrogate_in_a_first_frame_is_a_4400_not_a_1011(server):
    for frame in ('{"access_token": "\\ud800"}', '{"access_token": "%s", "levels": ["\\udfff"]}' % server.admin_token):
        assert closed_with(watch(server, GET_LOG, frame=frame, source="127.0.0.7")) == 4400


@pytest.mark.live
@pytest.mark.parametrize(
    "method, path",
    [
        ("POST", "/%ED%A0%80/describe"),
        ("POST", "/system/findJobs?%ED%A0%80=%ED%A0%80"),
        ("POST", "/system/whoami?x=%ED%A0%80%ED%B0%80"),
        ("GET", "/%ED%A0%80"),
        ("GET", "/login/?next=%ED%A0%80"),
        ("GET", "/projects/%ED%A0%80/"),
        ("GET", "/jobs/?name=%ED%A0%80"),
        ("GET", "/transfer/down/%ED%A0%80/%ED%A0%80"),
        ("PUT", "/transfer/up/%ED%A0%80"),
    ],
)
def test_surrogates_percent_encoded_in_a_url_are_no_server_error(server, method, path):
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    headers = {"Authorization": f"Bearer {server.admin_token}", "Content-Type": "application/json"}
    connection.request(method, path, body=b"{}" if method != "GET" else None, headers=headers)
    response = connection.getresponse()
    response.read()
    connection.close()
    assert response.status < 500, (path, response.status)
