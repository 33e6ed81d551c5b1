"""The job's network: a private network namespace, and the API relay, the one way out of it (see
docs/sandbox.md, "The network").

A job whose applet does not ask for `access.network` gets a network namespace of its own with only
loopback up (in_private_network). The relay (ApiRelay): a listener on the sandbox's loopback, at the
API's port, accepts the job's connections; the relay carries each one to the API server from the
worker's own network, byte for byte in both directions, half-closes included (so TLS to the API's
name still checks out).

One thread per relay runs a selectors loop over the listener and both sockets of every connection:
a job's connections cost the worker two file descriptors each and no thread. At most
`max_connections` are carried at once (settings.DXWEB_JOB_API_CONNECTIONS); one past that is reset
as soon as it is accepted (the job's client sees "connection reset by peer"), and the relay logs,
once, that the job hit the cap.
"""

import ctypes
import dataclasses
import errno
import fcntl
import logging
import os
import selectors
import socket
import struct
import threading
import time

from django.conf import settings

from dxweb.threads import ReusedThread

from .spec import Bind, SandboxError

log = logging.getLogger(__name__)

# The most that waits in the relay, per direction of a connection, for the other side to take it.
BUFFER = 256 * 1024
CONNECT_TIMEOUT = 30
# After accept() fails for want of file descriptors or memory, wait this long before trying again.
ACCEPT_PAUSE = 0.5
READ, WRITE = selectors.EVENT_READ, selectors.EVENT_WRITE


class ApiRelay:
    """Carry each connection made to `listener` (a listening socket) to `target` (host, port), at most
    `max_connections` at once. `name` (a job id) is for the log. close() ends all of it."""

    def __init__(self, listener, target, max_connections, name=None):
        if int(max_connections) < 1:
            raise ValueError(f"max_connections must be at least 1, not {max_connections!r}")
        self.listener = listener
        self.target = (target[0], int(target[1]))
        self.max_connections = int(max_connections)
        self.name = name
        self.refused = 0  # connections reset because the cap was reached
        self._links = set()
        self._connecting = set()  # links whose connection to the target is under way
        self._addresses = None  # the target's, resolved once (again after all of them failed)
        self._unreachable = False
        self._closing = False
        self._accept_paused_until = None
        self._selector = selectors.DefaultSelector()
        self._wake, self._waker = socket.socketpair()
        for sock in (listener, self._wake, self._waker):
            sock.setblocking(False)
        self._selector.register(listener, READ, None)
        self._selector.register(self._wake, READ, self._woken)
        self._thread = ReusedThread(self._run, name="api-relay")
        self._thread.start()

    @property
    def connections(self):
        """How many connections are carried now."""
        return len(self._links)

    def close(self):
        """Stop accepting and end every connection (the job's side and the API's); return once done."""
        self._closing = True
        try:
            self._waker.send(b"x")
        except OSError:  # already closed, or a wake-up is pending anyway
            pass
        if threading.current_thread() is not self._thread:
            self._thread.join(10)

    def _for(self):
        return f" for {self.name}" if self.name else ""

    # --- the loop (runs in the relay's thread only) -----------------------------------------

    def _run(self):
        try:
            while not self._closing:
                accept = False
                for key, mask in self._selector.select(self._timeout()):
                    if key.fileobj is self.listener:
                        accept = True
                    else:
                        try:
                            key.data(mask)
                        except Exception:  # a fault of this connection's: end it, carry the others
                            log.exception("API relay%s: a connection failed", self._for())
                            owner = getattr(key.data, "__self__", None)
                            if not isinstance(owner, _Link):
                                raise
                            owner.abort()
                self._expire()
                # Accepted last: a connection the job closed in the same round frees its place first.
                if accept and not self._closing:
                    self._accept()
        except Exception:
            log.exception("API relay%s failed; its connections are closed", self._for())
        finally:
            self._end()

    def _timeout(self):
        deadlines = [link.deadline for link in self._connecting]
        if self._accept_paused_until is not None:
            deadlines.append(self._accept_paused_until)
        return max(0.0, min(deadlines) - time.monotonic()) if deadlines else None

    def _expire(self):
        now = time.monotonic()
        for link in [link for link in self._connecting if link.deadline <= now]:
            link.connect_failed(TimeoutError(errno.ETIMEDOUT, "timed out"))
        if self._accept_paused_until is not None and self._accept_paused_until <= now:
            self._accept_paused_until = None
            self._selector.register(self.listener, READ, None)

    def _woken(self, mask):
        try:
            while self._wake.recv(64):
                pass
        except OSError:
            pass

    def _accept(self):
        while True:
            try:
                inside, _ = self.listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except ConnectionAbortedError:  # reset by the job before it was accepted
                continue
            except OSError as err:
                if err.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    log.warning("API relay%s: cannot accept (%s); trying again in %s s", self._for(), err, ACCEPT_PAUSE)
                    self._selector.unregister(self.listener)
                    self._accept_paused_until = time.monotonic() + ACCEPT_PAUSE
                    return
                raise
            if len(self._links) >= self.max_connections:
                self.refused += 1
                if self.refused == 1:
                    log.warning(
                        "API relay%s: %s connections open, the most a job may hold "
                        "(DXWEB_JOB_API_CONNECTIONS); resetting the ones past it",
                        self._for(),
                        self.max_connections,
                    )
                _reset(inside)
                continue
            link = _Link(self, inside)
            self._links.add(link)
            link.connect()

    def _resolve(self):
        if self._addresses is None:
            self._addresses = socket.getaddrinfo(*self.target, type=socket.SOCK_STREAM)
        return list(self._addresses)

    def _cannot_reach(self, err):
        self._addresses = None  # resolve again next time
        if not self._unreachable:
            self._unreachable = True
            log.warning("API relay%s: cannot reach %s:%s: %s", self._for(), *self.target, err)

    def _end(self):
        for link in list(self._links):
            link.abort()
        for sock in (self.listener, self._wake, self._waker):
            sock.close()
        self._selector.close()


class _Link:
    """One carried connection: the job's socket (inside), the API's (outside), and what is in transit."""

    def __init__(self, relay, inside):
        self.relay = relay
        self.inside = inside
        self.outside = None
        self.up = bytearray()  # from the job, for the API
        self.down = bytearray()  # from the API, for the job
        self.inside_eof = self.outside_eof = False  # that side will send no more
        self.up_shut = self.down_shut = False  # we told the API, or the job, that no more is coming
        self.connected = self.closed = False
        self.deadline = None
        self.addresses = []
        self.masks = {}
        inside.setblocking(False)

    # The connection to the target: each of its addresses in turn, each given CONNECT_TIMEOUT.

    def connect(self):
        try:
            self.addresses = self.relay._resolve()
        except OSError as err:
            self.connect_failed(err)
            return
        self._try_next(None)

    def _try_next(self, error):
        while self.addresses:
            family, kind, proto, _, address = self.addresses.pop(0)
            try:
                sock = socket.socket(family, kind, proto)
            except OSError as err:  # out of descriptors, or no such address family here
                error = err
                continue
            sock.setblocking(False)
            code = sock.connect_ex(address)
            if code in (0, errno.EINPROGRESS):
                self.outside = sock
                self.deadline = time.monotonic() + CONNECT_TIMEOUT
                self.relay._connecting.add(self)
                self._settle()
                return
            sock.close()
            error = OSError(code, os.strerror(code))
        self.relay._cannot_reach(error)
        self.abort()

    def connect_failed(self, error):
        self.relay._connecting.discard(self)
        if self.outside is not None:
            self._unregister(self.outside)
            self.outside.close()
            self.outside = None
        self._try_next(error)

    def _connected(self):
        self.relay._connecting.discard(self)
        self.connected, self.deadline = True, None
        self.relay._unreachable = False
        for sock in (self.inside, self.outside):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    # Events.

    def on_inside(self, mask):
        if self.closed:  # ended by an earlier event of the same round
            return
        try:
            if mask & READ:
                self.inside_eof = _pull(self.inside, self.up)
                if self.connected and self.up:
                    _push(self.outside, self.up)
            if mask & WRITE:
                _push(self.inside, self.down)
        except OSError:
            self.abort()
            return
        self._settle()

    def on_outside(self, mask):
        if self.closed:
            return
        if not self.connected:
            code = self.outside.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if code:
                self.connect_failed(OSError(code, os.strerror(code)))
                return
        try:
            if not self.connected:
                self._connected()
            if mask & READ:
                self.outside_eof = _pull(self.outside, self.down)
                if self.down:
                    _push(self.inside, self.down)
            if self.up:
                _push(self.outside, self.up)
        except OSError:
            self.abort()
            return
        self._settle()

    def _settle(self):
        """Pass on end-of-stream where all before it is delivered, close when both ways are done, and
        watch for what can happen next: reading while there is room, writing while there is data."""
        try:
            if self.inside_eof and self.connected and not self.up and not self.up_shut:
                self.outside.shutdown(socket.SHUT_WR)
                self.up_shut = True
            if self.outside_eof and not self.down and not self.down_shut:
                self.inside.shutdown(socket.SHUT_WR)
                self.down_shut = True
        except OSError:
            self.abort()
            return
        if self.up_shut and self.down_shut:
            self._close(reset=False)
            return
        room_up, room_down = len(self.up) < BUFFER, len(self.down) < BUFFER
        self._register(
            self.inside, self.on_inside, (READ if not self.inside_eof and room_up else 0) | (WRITE if self.down else 0)
        )
        if self.outside is not None:
            if not self.connected:
                mask = WRITE
            else:
                mask = (READ if not self.outside_eof and room_down else 0) | (WRITE if self.up else 0)
            self._register(self.outside, self.on_outside, mask)

    def _register(self, sock, callback, mask):
        current = self.masks.get(sock, 0)
        if mask == current:
            return
        selector = self.relay._selector
        if not mask:
            selector.unregister(sock)
            del self.masks[sock]
        else:
            (selector.modify if current else selector.register)(sock, mask, callback)
            self.masks[sock] = mask

    def _unregister(self, sock):
        if self.masks.pop(sock, 0):
            self.relay._selector.unregister(sock)

    def abort(self):
        """End both sides at once, with a reset: the job sees the connection fail, not a clean end."""
        self._close(reset=True)

    def _close(self, reset):
        if self.closed:
            return
        self.closed = True
        self.relay._links.discard(self)
        self.relay._connecting.discard(self)
        for sock in (self.inside, self.outside):
            if sock is not None:
                self._unregister(sock)
                if reset:
                    _reset(sock)
                else:
                    sock.close()


def _pull(source, buffer):
    """Read what fits into `buffer` from `source`; return True at end of stream."""
    if len(buffer) >= BUFFER:
        return False
    try:
        data = source.recv(BUFFER - len(buffer))
    except (BlockingIOError, InterruptedError):
        return False
    buffer += data
    return not data


def _push(target, buffer):
    """Send what `target` takes now from the front of `buffer`."""
    try:
        sent = target.send(buffer)
    except (BlockingIOError, InterruptedError):
        return
    del buffer[:sent]


def _reset(sock):
    """Close `sock` with a reset (SO_LINGER 0) rather than an orderly end."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    sock.close()


# --- the private network -------------------------------------------------------------------

CLONE_NEWNET = 0x40000000
SIOCGIFFLAGS, SIOCSIFFLAGS, IFF_UP = 0x8913, 0x8914, 0x1


class NetworkRefused(SandboxError):
    """The worker may not make a network namespace (it is not root)."""


def in_private_network(api, start):
    """Call start() (it starts the sandbox's first process) in a thread of its own that first moves
    into a new network namespace, with loopback up and, when `api` is given, a listener on
    127.0.0.1 at the API's port. The process inherits the thread's namespace; the worker's other
    threads keep the host's. Return (start's result, the ApiRelay or None, a callable that lets the
    thread end: call it once the process has ended).

    The thread lives as long as the sandbox: bwrap's --die-with-parent is PR_SET_PDEATHSIG, and the
    "parent" whose death sends it SIGKILL is the thread that started it, not the worker process. A
    thread ending right after the start would kill every sandbox whose bwrap set that signal first.
    """
    outcome = {}
    started, release = threading.Event(), threading.Event()

    def body():
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            if libc.unshare(CLONE_NEWNET) != 0:
                code = ctypes.get_errno()
                raise NetworkRefused(f"unshare(CLONE_NEWNET) failed: {os.strerror(code)}")
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
                request = struct.pack("16sH14x", b"lo", 0)
                flags = struct.unpack("16sH14x", fcntl.ioctl(probe, SIOCGIFFLAGS, request))[1]
                fcntl.ioctl(probe, SIOCSIFFLAGS, struct.pack("16sH14x", b"lo", flags | IFF_UP))
            if api:
                listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                listener.bind(("127.0.0.1", int(api[1])))
                listener.listen(64)
                outcome["listener"] = listener
            outcome["value"] = start()
        except BaseException as exc:  # handed to the caller's thread
            outcome["error"] = exc
        finally:
            started.set()
        if "value" in outcome:
            release.wait()

    thread = threading.Thread(target=body, name="sandbox-netns", daemon=True)
    thread.start()
    started.wait()
    listener = outcome.get("listener")
    if "error" in outcome:
        if listener is not None:
            listener.close()
        raise outcome["error"]
    # Made here, not in that thread: a thread starts in its creator's network namespace, and the
    # relay's thread must reach the API from the worker's.
    relay = None
    if listener is not None:
        relay = ApiRelay(listener, (api[0], int(api[1])), settings.DXWEB_JOB_API_CONNECTIONS)
    return outcome["value"], relay, release.set


def with_api_host(spec):
    """The spec, plus an /etc/hosts that sends the API's host name to the sandbox's loopback (where
    the relay listens), so that TLS to that name still checks out; DNS is cut off."""
    host = spec.api[0]
    hosts = spec.layer_dir() / "etc-hosts"
    hosts.parent.mkdir(parents=True, exist_ok=True)
    names = " ".join(dict.fromkeys(["localhost", host] if not _is_address(host) else ["localhost"]))
    hosts.write_text(f"127.0.0.1\t{names}\n::1\tlocalhost ip6-localhost ip6-loopback\n")
    return dataclasses.replace(spec, binds=[*spec.binds, Bind(hosts, "/etc/hosts")])


def _is_address(host):
    try:
        socket.inet_pton(socket.AF_INET6 if ":" in host else socket.AF_INET, host)
        return True
    except OSError:
        return False
