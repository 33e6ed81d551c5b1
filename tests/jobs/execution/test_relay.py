"""The API relay (jobs/execution/sandbox/network.py): what a restricted job's connections to the API go through.

Against servers on the host's loopback: bytes carried unchanged both ways, half-closes passed on,
many connections at once without a thread each, the per-job cap, and close() ending everything.
The last test floods the relay from a real job on the real stack.
"""

import asyncio
import hashlib
import http.client
import http.server
import json
import logging
import os
import socket
import threading
from pathlib import Path

import psutil
import pytest

from jobs.execution.sandbox.network import ApiRelay
from tests.helpers import wait_for
from tests.live import Dx, LiveServer

APPS = Path(__file__).parent.parent / "apps"


class Server:
    """A TCP server on the host's loopback, in one thread (asyncio), whatever number of connections.

    Each connection: `greeting` is sent first (then, if `end_first`, the server ends its side at once);
    whatever arrives is echoed back (unless the server has ended its side); at the client's end of
    stream the server sends the SHA-256 of all it received and closes. `received` records, per
    connection, the bytes it got; `open` counts the connections it holds now.
    """

    def __init__(self, greeting=b"", end_first=False):
        self.greeting, self.end_first = greeting, end_first
        self.received, self.open = [], 0
        self.loop = asyncio.new_event_loop()
        started = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(started,), name="test-server", daemon=True)
        self.thread.start()
        started.wait()

    def _run(self, started):
        asyncio.set_event_loop(self.loop)
        self.server = self.loop.run_until_complete(asyncio.start_server(self._serve, "127.0.0.1", 0, backlog=1024))
        self.address = self.server.sockets[0].getsockname()
        started.set()
        self.loop.run_forever()

    async def _serve(self, reader, writer):
        self.open += 1
        got = bytearray()
        self.received.append(got)
        try:
            if self.greeting:
                writer.write(self.greeting)
            if self.end_first:
                writer.write_eof()
            while data := await reader.read(65536):
                got += data
                if not self.end_first:
                    writer.write(data)
                    await writer.drain()
            if not self.end_first:
                writer.write(hashlib.sha256(got).hexdigest().encode())
            await writer.drain()
        except (OSError, asyncio.CancelledError):  # reset, or the server is closing
            pass
        finally:
            writer.close()
            self.open -= 1

    def close(self):
        async def stop():
            self.server.close()
            tasks = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@pytest.fixture
def servers():
    made = []

    def make(**kwargs):
        made.append(Server(**kwargs))
        return made[-1]

    yield make
    for server in made:
        server.close()


@pytest.fixture
def relays():
    """relays(target, cap) -> (relay, the address a job connects to); every relay is closed after the test."""
    made = []

    def make(target, max_connections=64):
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.bind(("127.0.0.1", 0))
        listener.listen(1024)
        made.append(ApiRelay(listener, target, max_connections, name="job-test"))
        return made[-1], listener.getsockname()

    yield make
    for relay in made:
        relay.close()


def connect(address):
    return socket.create_connection(address, timeout=30)


def read_to_end(sock):
    chunks = []
    while data := sock.recv(1 << 20):
        chunks.append(data)
    return b"".join(chunks)


def attempt(address):
    """A connection, or None where the relay's reset already arrived while connecting."""
    try:
        return connect(address)
    except ConnectionResetError:
        return None


def answered(sock, message=b"ping"):
    """Whether a message sent on `sock` comes back: False when the connection is reset or ends."""
    if sock is None:
        return False
    try:
        sock.sendall(message)
        got = b""
        while len(got) < len(message):
            data = sock.recv(len(message) - len(got))
            if not data:
                return False
            got += data
        return got == message
    except OSError:
        return False


def relay_threads():
    return [t for t in threading.enumerate() if t.name == "api-relay"]


# --- carrying bytes ------------------------------------------------------------------------


def test_bytes_arrive_unchanged_both_ways_and_the_jobs_half_close_reaches_the_server(servers, relays):
    server = servers()
    relay, address = relays(server.address)
    payload = os.urandom(5 * 1024 * 1024 + 7)  # more than the relay and the kernel buffer at once
    with connect(address) as sock:
        echoed = []
        reader = threading.Thread(target=lambda: echoed.append(read_to_end(sock)))
        reader.start()
        sock.sendall(payload)
        sock.shutdown(socket.SHUT_WR)  # the job's half-close: the server still answers after it
        reader.join(60)
    digest = hashlib.sha256(payload).hexdigest().encode()
    assert echoed[0] == payload + digest
    assert bytes(server.received[0]) == payload


def test_the_servers_half_close_reaches_the_job_which_can_still_send(servers, relays):
    greeting = os.urandom(3 * 1024 * 1024)
    server = servers(greeting=greeting, end_first=True)
    relay, address = relays(server.address)
    after = os.urandom(2 * 1024 * 1024)
    with connect(address) as sock:
        assert read_to_end(sock) == greeting  # the server's end of stream arrives as one
        sock.sendall(after)  # the job's side is still open
        sock.shutdown(socket.SHUT_WR)
        assert read_to_end(sock) == b""
    wait_for(lambda: server.open == 0, 30, interval=0.01)
    assert bytes(server.received[0]) == after
    wait_for(lambda: relay.connections == 0, 30, interval=0.01)


def test_http_requests_and_replies_pass_through_unchanged(relays):
    body = os.urandom(300_000)

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self):
            got = self.rfile.read(int(self.headers["Content-Length"]))
            reply = hashlib.sha256(got).hexdigest().encode() + body
            self.send_response(200)
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        relay, (host, port) = relays(httpd.server_address)
        conn = http.client.HTTPConnection(host, port, timeout=30)
        for size in (0, 1, 100_000, 1_000_000):  # several requests on one kept-alive connection
            sent = os.urandom(size)
            conn.request("POST", "/x", body=sent)
            reply = conn.getresponse().read()
            assert reply == hashlib.sha256(sent).hexdigest().encode() + body
        conn.close()
        wait_for(lambda: relay.connections == 0, 30, interval=0.01)
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_many_connections_at_once_take_no_thread_each(servers, relays):
    server = servers()
    relay, address = relays(server.address, max_connections=500)
    me = psutil.Process()
    threads_before, os_threads_before = threading.active_count(), me.num_threads()
    held = [connect(address) for _ in range(200)]
    try:
        for i, sock in enumerate(held):  # every one carried, all open at once
            assert answered(sock, f"connection {i}".encode())
        assert relay.connections == 200 and server.open == 200
        assert threading.active_count() <= threads_before
        assert me.num_threads() <= os_threads_before
        assert len(relay_threads()) == 1
    finally:
        for sock in held:
            sock.close()
    wait_for(lambda: relay.connections == 0 and server.open == 0, 30, interval=0.01)


# --- the cap -------------------------------------------------------------------------------


def test_connections_past_the_cap_are_reset_at_once_and_logged_once(servers, relays, caplog):
    server = servers()
    relay, address = relays(server.address, max_connections=5)
    caplog.set_level(logging.WARNING, logger="jobs.execution.sandbox.network")
    held = [connect(address) for _ in range(5)]
    past = [attempt(address) for _ in range(4)]  # the kernel takes them; the relay resets them
    again = []
    try:
        assert all(answered(sock) for sock in held)
        for sock in past:
            assert not answered(sock)
        again += [attempt(address) for _ in range(3)]
        assert not any(answered(sock) for sock in again)
        assert relay.refused == 7 and relay.connections == 5 and server.open == 5
        warnings = [r for r in caplog.records if r.name == "jobs.execution.sandbox.network"]
        assert len(warnings) == 1, warnings
        assert "job-test" in warnings[0].getMessage() and "DXWEB_JOB_API_CONNECTIONS" in warnings[0].getMessage()
        # A connection the job ends frees its place.
        held.pop().close()
        wait_for(lambda: relay.connections == 4, 30, interval=0.01)
        with connect(address) as sock:
            assert answered(sock)
    finally:
        for sock in held + past + again:
            if sock is not None:
                sock.close()


def test_a_cap_below_one_is_refused():
    with socket.socket() as listener, pytest.raises(ValueError, match="max_connections"):
        ApiRelay(listener, ("127.0.0.1", 1), 0)


def test_a_connection_the_api_does_not_take_is_reset_and_logged_once(relays, caplog):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        closed_port = taken.getsockname()[1]  # nothing listens there once it is closed
    caplog.set_level(logging.WARNING, logger="jobs.execution.sandbox.network")
    relay, address = relays(("127.0.0.1", closed_port))
    for _ in range(3):
        sock = attempt(address)
        assert not answered(sock)
        if sock is not None:
            sock.close()
    wait_for(lambda: relay.connections == 0, 30, interval=0.01)
    warnings = [r.getMessage() for r in caplog.records if r.name == "jobs.execution.sandbox.network"]
    assert len(warnings) == 1 and "cannot reach" in warnings[0], warnings


# --- closing -------------------------------------------------------------------------------


def test_close_ends_every_connection_both_sides_the_listener_and_the_thread(servers, relays):
    server = servers()
    relay, address = relays(server.address)
    held = [connect(address) for _ in range(3)]
    assert all(answered(sock) for sock in held)
    assert server.open == 3 and len(relay_threads()) == 1
    relay.close()
    for sock in held:  # the job's side: reset, not left hanging
        with pytest.raises(ConnectionResetError):
            sock.recv(1)
        sock.close()
    wait_for(lambda: server.open == 0, 30, interval=0.01)  # the API's side
    assert relay.connections == 0 and relay_threads() == []
    with pytest.raises(ConnectionRefusedError):
        connect(address)
    relay.close()  # again: nothing happens


# --- a real job ------------------------------------------------------------------------------

CAP = 8


@pytest.fixture(scope="module")
def capped_server(tmp_path_factory):
    server = LiveServer(tmp_path_factory.mktemp("relay"), extra_env={"DXWEB_JOB_API_CONNECTIONS": str(CAP)})
    yield server.start()
    server.stop()


@pytest.mark.live
def test_a_job_flooding_the_api_is_held_to_the_cap_and_still_reaches_the_api_after(capped_server, tmp_path):
    """An applet with no network access opens more connections to the API than the cap allows, holds them,
    sends a request on each, then closes them and uploads its report and output as any job does."""
    dx = Dx(capped_server, capped_server.user("alice"), tmp_path)
    project = dx("new", "project", "flood", "--brief").stdout.strip()
    dx("select", project)
    dx("build", str(APPS / "api_flood"))
    job_id = dx("run", "api_flood", f"-iconnections={CAP + 12}", "-y", "--brief").stdout.strip()
    dx("wait", job_id, check=False, timeout=300)
    log = dx("watch", job_id, "--no-wait").stdout
    if "cannot restrict it" in log:  # no network namespace here: no relay either
        if os.environ.get("CI") == "true":
            pytest.fail(log)
        pytest.skip("this worker cannot give jobs a network of their own")
    job = json.loads(dx("describe", job_id, "--json").stdout)
    assert job["state"] == "done", log
    assert (job["output"]["answered"], job["output"]["refused"]) == (CAP, 12), log
    # After the flood the job still reached the API: its report was uploaded and its output stored.
    assert dx("cat", job["output"]["report"]["$dnanexus_link"]).stdout == f"{CAP} answered, 12 refused\n"
    worker_log = capped_server.log_path.read_text(errors="replace")
    cap_lines = [line for line in worker_log.splitlines() if "DXWEB_JOB_API_CONNECTIONS" in line]
    assert len(cap_lines) == 1 and job_id in cap_lines[0], cap_lines
