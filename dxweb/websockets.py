"""What every websocket shares: the Origin check, the cap on sockets per client address, the deadline
for a socket's first frame, the decoding of request frames, and close codes and reasons.

Close codes are 4000 + the HTTP status the same refusal would get from the API:

    4400  a frame that is not a valid request          4408  no request frame within DXWEB_WS_AUTH_TIMEOUT
    4401  a missing or unknown token                   4409  the object's state forbids it now
    4403  not logged in, or not allowed                4410  the session ended
    4404  missing or not visible (one answer for both) 4429  too many sockets open from this address
    4422  a request with a wrong value                 4502  a gateway behind the socket refused

and 1011 when the server fails. A reason is {"type", "message"} as JSON within the protocol's 123
bytes (the terminal, which sends the whole message in a status frame first, closes with the message).
A foreign Origin is refused at the handshake (HTTP 403), as before any socket exists.
"""

import asyncio
import ipaddress
import json
import logging
from collections import Counter
from urllib.parse import urlsplit

from django.conf import settings
from django.http.request import is_same_domain, split_domain_port, validate_host

from .api import decode_json
from .errors import BadRequest, DXError, InvalidState, ResourceNotFound, TooManyRequests

log = logging.getLogger(__name__)

REASON_BYTES = 123
DEFAULT_PORTS = {"http": 80, "https": 443}
# The codes with no DXError behind them (close_code gives the others).
SESSION_ENDED = 4410
GATEWAY_REFUSED = 4502
SERVER_ERROR = 1011


class RequestTimeout(DXError):
    type = "RequestTimeout"
    status = 408


def close_code(error):
    """The close code of a refusal (a DXError): 4000 + its HTTP status; InvalidState is 4409."""
    if isinstance(error, InvalidState):
        return 4409
    return 4000 + min(error.status, 999)


def close_reason(error):
    """{"type", "message"} as JSON, the message shortened to fit a close frame's 123 bytes."""
    message = error.message
    while True:
        reason = json.dumps({"type": error.type, "message": message})  # ASCII: one byte a character
        if len(reason) <= REASON_BYTES or not message:
            return reason[:REASON_BYTES]
        message = message[: len(message) - max(1, len(reason) - REASON_BYTES)]


def decode_frame(text, what="The first frame"):
    """A request frame decoded as the API decodes a body (dxweb/api.py): a JSON object, or a BadRequest."""
    if not isinstance(text, str):
        raise BadRequest(f"{what} must be a text frame")
    return decode_json(text, what)


async def close_with(consumer, error):
    """Close a consumer's socket with the error's code and reason."""
    await consumer.close(code=close_code(error), reason=close_reason(error))


async def refuse(receive, send, error):
    """Accept, then close at once with the error's code and reason, which clients show (a refusal at the
    handshake shows only "403")."""
    if (await receive())["type"] == "websocket.connect":
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.close", "code": close_code(error), "reason": close_reason(error)})


async def route_not_found(scope, receive, send):
    """The last websocket route: a path nothing serves."""
    await refuse(receive, send, ResourceNotFound(f"The route {scope.get('path', '')} was not found"))


# The Origin ---------------------------------------------------------------------------------------


def _header(scope, name):
    for key, value in scope.get("headers", []):
        if key == name:
            return value.decode("latin1")
    return ""


def _server_is_secure(scope):
    """As Django's request.is_secure(): TLS to this process, or SECURE_PROXY_SSL_HEADER says so."""
    if scope.get("scheme") in ("wss", "https"):
        return True
    if settings.SECURE_PROXY_SSL_HEADER:
        meta_name, secure_value = settings.SECURE_PROXY_SSL_HEADER
        name = meta_name.removeprefix("HTTP_").lower().replace("_", "-").encode("latin1")
        value = _header(scope, name)
        return bool(value) and value.split(",", 1)[0].strip() == secure_value
    return False


def _origin(url):
    """(scheme, host, port) of an origin or a URL, ports made explicit; None when it is not http(s)."""
    try:
        parts = urlsplit(url)
        if parts.scheme not in DEFAULT_PORTS or not parts.hostname:
            return None
        return parts.scheme, parts.hostname, parts.port or DEFAULT_PORTS[parts.scheme]
    except ValueError:  # a malformed port
        return None


def same_origin(scope):
    """Whether the page that opens the socket is this server, as Django's CSRF check asks of a form's POST.

    The Origin must have the scheme, host and port the request came to, its Host being one of
    ALLOWED_HOSTS; or be one of CSRF_TRUSTED_ORIGINS (e.g. the public https address behind a TLS
    proxy). Channels' AllowedHostsOriginValidator compares host names only: a page on another port
    of an allowed host (another local web app) would get the user's cookies.
    """
    origin = _header(scope, b"origin")
    theirs = _origin(origin)
    if theirs is None:
        return False
    for trusted in settings.CSRF_TRUSTED_ORIGINS:
        if origin == trusted:
            return True
        if "*" in trusted:  # https://*.example.org, as Django reads it
            scheme, _, netloc = trusted.partition("://")
            if scheme == theirs[0] and is_same_domain(urlsplit(origin).netloc, netloc.lstrip("*")):
                return True
    host = _header(scope, b"host")
    allowed = settings.ALLOWED_HOSTS
    if settings.DEBUG and not allowed:
        allowed = [".localhost", "127.0.0.1", "[::1]"]
    domain, _ = split_domain_port(host)
    if not domain or not validate_host(domain, allowed):
        return False
    return theirs == _origin(f"{'https' if _server_is_secure(scope) else 'http'}://{host}")


def client_address(scope):
    """The client's IP address: the connection's, or behind a TLS proxy (DXWEB_BEHIND_TLS_PROXY) the last
    one in X-Forwarded-For, which the proxy appended (what comes before it is the client's own word)."""
    address = (scope.get("client") or [""])[0] or ""
    if settings.DXWEB_BEHIND_TLS_PROXY:
        forwarded = _header(scope, b"x-forwarded-for").rsplit(",", 1)[-1].strip()
        try:
            address = str(ipaddress.ip_address(forwarded))
        except ValueError:
            pass
    return address


# The handshake ------------------------------------------------------------------------------------


class WebsocketGuard:
    """The outermost layer of every websocket: refuse a foreign Origin at the handshake, and cap the
    sockets open at once from one client address (DXWEB_WS_MAX_PER_ADDRESS). The count is this
    process's: with several web processes (daphne behind a load balancer), each counts its own."""

    def __init__(self, application):
        self.application = application
        self.open = Counter()

    async def __call__(self, scope, receive, send):
        if not same_origin(scope):
            log.info("websocket %s refused: foreign Origin %r", scope.get("path"), _header(scope, b"origin"))
            if (await receive())["type"] == "websocket.connect":
                await send({"type": "websocket.close"})  # HTTP 403 at the handshake
            return
        address = client_address(scope)
        limit = settings.DXWEB_WS_MAX_PER_ADDRESS
        if limit and self.open[address] >= limit:
            log.info("websocket %s refused: %s sockets open from %s", scope.get("path"), limit, address)
            await refuse(
                receive,
                send,
                TooManyRequests(
                    f"Too many websockets open from your address (at most {limit}); close some and retry", None
                ),
            )
            return
        self.open[address] += 1
        try:
            await self.application(scope, receive, send)
        finally:
            self.open[address] -= 1
            if not self.open[address]:
                del self.open[address]


class FirstFrameDeadline:
    """For consumers whose first frame is the request (with the token, for `dx watch`): a socket that
    sends none within DXWEB_WS_AUTH_TIMEOUT seconds of its handshake is closed with 4408, so that
    silent sockets do not hold the server's file descriptors."""

    deadline = None
    expired = False

    def start_deadline(self):
        self.deadline = asyncio.create_task(self._expire())

    def stop_deadline(self):
        """Stop the clock (at the first frame, or the end); False when it had already run out."""
        if self.deadline is not None:
            self.deadline.cancel()
            self.deadline = None
        return not self.expired

    async def _expire(self):
        timeout = settings.DXWEB_WS_AUTH_TIMEOUT
        await asyncio.sleep(timeout)
        self.deadline = None
        self.expired = True
        await close_with(self, RequestTimeout(f"No request came within {timeout:g} s of connecting"))
