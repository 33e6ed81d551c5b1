"""The browser terminal of a job: `/ws/jobs/<id>/terminal/`, xterm.js on one side, the job's SSH gateway on the other.

The consumer only moves bytes. It asks jobs.permissions.access_debug whether this user, from this
address, may debug the job, opens a shell through jobs.ssh, then pumps keystrokes in and output
out. Browser -> server: text frames {"type": "input", "data": str}, {"type": "resize", "cols",
"rows"} (the first frame; the shell opens at 80x24 if none comes) and {"type": "ack", "bytes": n}
(bytes rendered since the previous ack). Server -> browser: binary frames of raw terminal output,
and text frames {"type": "status", "state", "message", "holdUntil", "now"}.

xterm.js stalls when too much output is pending, so reading from SSH pauses while the browser is
more than HIGH_WATER bytes behind, until its acks bring that under LOW_WATER. Access and the job's
state are checked again every RECHECK_SECONDS: the session ends when the job ends, access is
revoked or the hold expires.

Close codes (dxweb/websockets.py): 4403 (not logged in, not allowed), 4404 (missing or not visible),
4409 (the job cannot be debugged now), 4410 (the session ended), 4502 (the gateway refused). A page
of another origin (scheme, host and port) is refused at the handshake (dxweb/websockets.py).
A status frame with the whole message comes first: a close reason holds only 123 bytes.
"""

import asyncio
import contextlib
import json
import logging

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer

from dxweb.errors import DXError, PermissionDenied, ResourceNotFound
from dxweb.websockets import GATEWAY_REFUSED, SERVER_ERROR, SESSION_ENDED, close_code, decode_frame
from jobs.models import State
from jobs.permissions import access_debug
from projects.models import now_ms
from projects.permissions import Principal

from . import gateway

log = logging.getLogger(__name__)

HIGH_WATER = 512 * 1024
LOW_WATER = 128 * 1024
READ_BYTES = 65536
RECHECK_SECONDS = 2.0
FIRST_RESIZE_SECONDS = 2.0
MAX_INPUT_CHARS = 1024 * 1024
DEFAULT_SIZE = (80, 24)


def hold_until(job):
    """When the job's debug hold ends (epoch ms, as describe's debug.holdUntil), or None when it is not held."""
    return job.debug.get("holdUntil") if job.state == State.DEBUG_HOLD else None


def short_reason(message):
    """A websocket close reason: at most 123 bytes of UTF-8."""
    return message.encode()[:123].decode(errors="ignore")


class BadFrame(Exception):
    """A frame outside the protocol: the browser gets an error status, the session goes on."""


def size_of(frame):
    cols, rows = frame.get("cols"), frame.get("rows")
    if not all(isinstance(n, int) and not isinstance(n, bool) and 1 <= n <= 1000 for n in (cols, rows)):
        raise BadFrame('"cols" and "rows" must be integers from 1 to 1000')
    return cols, rows


class TerminalConsumer(AsyncWebsocketConsumer):
    """One browser terminal: a shell in the job through its SSH gateway, for as long as access holds."""

    async def connect(self):
        self.process = None
        self.closed = False
        self.size = None
        self.sized = asyncio.Event()
        self.pending_input = []
        self.unacked = 0
        self.paused = False
        self.task = None
        await self.accept()
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            err = PermissionDenied("Log in to open a terminal")
            await self.refuse(close_code(err), err.message)
            return
        client = self.scope.get("client") or ("",)
        self.principal = Principal(user=user, client_ip=client[0] or "")
        self.job_id = self.scope["url_route"]["kwargs"]["job_id"]
        try:
            self.job = await database_sync_to_async(access_debug)(self.principal, self.job_id)
        except DXError as err:
            await self.refuse(close_code(err), err.message)
            return
        self.task = asyncio.create_task(self.run())

    async def status(self, state, message="", **extra):
        # `now` lets the page count the hold down by the server's clock.
        frame = {"type": "status", "state": state, "message": message, "now": now_ms(), **extra}
        await self.send(text_data=json.dumps(frame))

    async def refuse(self, code, message):
        log.info("terminal refused (%s): %s", code, message)
        await self.status("refused", message, code=code)
        await self.end(code, message)

    async def end(self, code, message=""):
        if not self.closed:
            self.closed = True
            await self.close(code=code, reason=short_reason(message))
        await self.release()

    async def release(self):
        process, self.process = self.process, None
        if process is not None:
            await gateway.close_terminal(process)

    async def disconnect(self, code):
        self.closed = True
        self.sized.set()
        # While the shell opens, run() is left to finish and close it: cancelling open_terminal
        # midway could leave its SSH connection open.
        if self.task is not None and self.process is not None:
            self.task.cancel()
        await self.release()

    # Browser -> shell ------------------------------------------------------------------------

    async def receive(self, text_data=None, bytes_data=None):
        if self.closed:
            return
        try:
            frame = decode_frame(text_data, "A frame")
            kind = frame.get("type")
            if kind == "input":
                self.input(frame.get("data"))
            elif kind == "resize":
                self.resize(*size_of(frame))
            elif kind == "ack":
                self.ack(frame.get("bytes"))
            else:
                raise BadFrame(f"Unknown frame type {kind!r}: expected input, resize or ack")
        except DXError as err:
            await self.status("error", err.message)
        except BadFrame as err:
            await self.status("error", str(err))

    def input(self, data):
        if not isinstance(data, str) or len(data) > MAX_INPUT_CHARS:
            raise BadFrame(f'"data" must be a string of at most {MAX_INPUT_CHARS} characters')
        encoded = data.encode("utf-8", errors="replace")
        if self.process is None:
            self.pending_input.append(encoded)  # typed while the shell opens
        else:
            self.process.stdin.write(encoded)

    def resize(self, cols, rows):
        if self.process is None:
            self.size = (cols, rows)
            self.sized.set()
        else:
            self.process.change_terminal_size(cols, rows)

    def ack(self, count):
        if not isinstance(count, int) or isinstance(count, bool) or count < 0:
            raise BadFrame('"bytes" must be a non-negative integer')
        self.unacked = max(0, self.unacked - count)
        if self.paused and self.unacked < LOW_WATER and self.process is not None:
            self.paused = False
            self.process.channel.resume_reading()

    # Shell -> browser ------------------------------------------------------------------------

    async def run(self):
        try:
            with contextlib.suppress(TimeoutError):  # not wait_for: see jobs/logs/consumers.py
                async with asyncio.timeout(FIRST_RESIZE_SECONDS):
                    await self.sized.wait()
            if self.closed:
                return
            cols, rows = self.size or DEFAULT_SIZE
            try:
                user, client_ip = self.principal.user, self.principal.client_ip
                self.process = await gateway.open_terminal(self.job, user, client_ip, cols, rows)
            except gateway.SSHRefused as err:
                await self.refuse(GATEWAY_REFUSED, str(err))
                return
            if self.closed:  # the browser left while the shell opened
                await self.release()
                return
            for data in self.pending_input:
                self.process.stdin.write(data)
            self.pending_input = []
            until = hold_until(self.job)
            await self.status("open", holdUntil=until)
            await self.watch(until)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("the terminal of %s failed", getattr(self, "job_id", "?"))
            await self.status("closed", "The terminal failed; reconnect to try again")
            await self.end(SERVER_ERROR)

    async def watch(self, until):
        """Pump output until the shell exits or a recheck says the session must end."""
        pump = asyncio.create_task(self.pump())
        try:
            while True:
                done, _ = await asyncio.wait({pump}, timeout=RECHECK_SECONDS)
                if done:
                    pump.result()
                    # The gateway closes sessions when the job ends: say so rather than "exited".
                    ended, _ = await database_sync_to_async(self.recheck)()
                    await self.status("closed", ended or "The shell exited")
                    await self.end(1000)
                    return
                ended, new_until = await database_sync_to_async(self.recheck)()
                if ended:
                    await self.status("ended", ended)
                    await self.end(SESSION_ENDED, ended)
                    return
                if new_until != until:
                    until = new_until
                    await self.status("open", holdUntil=until)
        finally:
            pump.cancel()

    async def pump(self):
        while True:
            data = await self.process.stdout.read(READ_BYTES)
            if not data:
                return
            await self.send(bytes_data=data)
            self.unacked += len(data)
            if not self.paused and self.unacked > HIGH_WATER:
                self.paused = True
                self.process.channel.pause_reading()

    def recheck(self):
        """Return (why the session must end or None, the hold's end) from the database as it is now."""
        try:
            job = access_debug(self.principal, self.job_id)
        except DXError as err:
            if isinstance(err, PermissionDenied | ResourceNotFound):
                return f"Your access to {self.job_id} was revoked: {err.message}", None
            return f"The session ended: {err.message}", None
        until = hold_until(job)
        if until is not None and until <= now_ms():
            return "The debug hold expired", None
        return None, until
