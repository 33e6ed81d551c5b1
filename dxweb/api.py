"""The DNAnexus-style API: one dispatcher for POST /<class>/new, /<id>/<method> and /system/<method>.

Handlers are plain functions registered by (class, method). They take a
Principal, the object ID (for /<id>/<method> routes) and the JSON body, and
return a JSON-able dict or raise a DXError.
"""

import hashlib
import json
import logging
import re
from datetime import timedelta
from functools import cache

from django import urls
from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.db import IntegrityError, connection
from django.http import HttpResponseRedirect, JsonResponse
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt

from projects.models import ApiToken, Nonce, User
from projects.permissions import Principal

from . import sql, throttle
from .errors import (
    BadRequest,
    DXError,
    InternalError,
    InvalidAuthentication,
    InvalidInput,
    MethodNotAllowed,
    PayloadTooLarge,
    ResourceNotFound,
    no_sniffing,
)
from .ids import ID_RE
from .middleware import answers_json, wants_page
from .transactions import atomic, call_transaction

log = logging.getLogger(__name__)

HANDLERS = {}
# Calls that carry a nonce: a repeated nonce gets the first reply again.
NONCE_METHODS = {"new", "run"}
ROUTE_RE = re.compile(r"^(?P<cls>[a-z]+)(?:-(?P<rest>.+))?$")
# Routes answered without a token: /system/greet (what `dx login` asks) and /system/headers.
PUBLIC_ROUTES = {("system", "greet"), ("system", "headers")}
# How deeply a request body may nest (json.loads itself fails far deeper, near the recursion limit).
MAX_DEPTH = 100


def api_method(cls, name, write=False):
    """Register a handler for POST /<cls>-xxxx/<name> (or /<cls>/<name>, /system/<name>)."""

    def register(fn):
        # A write in a transaction of its own, or in the call's (dxweb/transactions.py).
        handler = atomic(fn) if write else fn
        HANDLERS[(cls, name)] = handler
        return handler

    return register


def _refuse_constant(name):
    raise ValueError(f"{name} is not JSON")


# NUL (PostgreSQL stores none in text or jsonb) and lone UTF-16 surrogates: a "\ud800" escape not in a
# pair decodes to a code point that no encoding can write (to the database, a log, a reply).
_UNWRITABLE = re.compile("[\x00\ud800-\udfff]")


def _check_document(body, what):
    """Refuse NUL characters, lone surrogates and very deep nesting."""
    stack = [(body, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str):
            bad = _UNWRITABLE.search(item)
            if bad is None:
                continue
            if bad.group() == "\x00":
                raise InvalidInput(f"{what} must not contain NUL (\\u0000) characters")
            raise BadRequest(f"{what} must not contain lone UTF-16 surrogates (\\ud800 to \\udfff not in a pair)")
        elif isinstance(item, (dict, list)):
            if depth > MAX_DEPTH:
                raise BadRequest(f"{what} is nested more than {MAX_DEPTH} levels deep")
            children = [*item.keys(), *item.values()] if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)


def decode_json(raw, what="The request body", arrays=False):
    """Decode a JSON object, as every request is decoded (API bodies, websocket request frames).

    Anything else is a BadRequest (InvalidInput, 400): text that is not JSON or not UTF-8, NaN and
    Infinity, a value that is not an object, very deep nesting, lone surrogates; NUL characters are
    an InvalidInput (422).
    """
    try:
        body = json.loads(raw, parse_constant=_refuse_constant)
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise BadRequest(f"{what} is not valid JSON: {str(exc)[:200]}") from None
    if not isinstance(body, dict) and not (arrays and isinstance(body, list)):
        raise BadRequest(f"{what} must be a JSON object")
    _check_document(body, what)
    return body


def parse_body(request, arrays=False):
    try:
        raw = request.body
    except RequestDataTooBig:
        raise PayloadTooLarge(
            f"The request body is larger than the {settings.DATA_UPLOAD_MAX_MEMORY_SIZE} bytes allowed"
        ) from None
    if not raw.strip():
        return {}
    return decode_json(raw, arrays=arrays)


TOKEN = sql.Columns(ApiToken, "t")
TOKEN_USER = sql.Columns(User, "u")


@cache
def _token_statement(vendor):
    """The token (by digest, unique) with its user; SQL rather than the ORM: it runs on every call (dxweb/sql.py)."""
    return (
        f"SELECT {TOKEN.sql}, {TOKEN_USER.sql} FROM {sql.name(ApiToken)} t "
        f"INNER JOIN {sql.name(User)} u ON u.{sql.name(User, 'id')} = t.{sql.name(ApiToken, 'user')} "
        f"WHERE t.{sql.name(ApiToken, 'digest')} = %s"
    )


def principal_for_token(raw, client_ip="", request=None):
    """Return the Principal behind a raw API token (user or job), or raise InvalidAuthentication."""
    principal, used = _token_principal(raw, client_ip, request)
    if used is not None:
        mark_token_used(*used)
    return principal


def mark_token_used(token_id, now):
    """Record when a token was last used (once a minute at most: a write per call would cost every call)."""
    ApiToken.objects.filter(pk=token_id).update(last_used=now)


def _token_principal(raw, client_ip, request):
    """The Principal behind a raw token, and (token id, now) when its last use is to be recorded, else None."""
    if not isinstance(raw, str) or not raw.strip():
        raise InvalidAuthentication("An API token is required")
    rows = sql.fetch(_token_statement(connection.vendor), [ApiToken.digest_of(raw.strip())])
    token = None
    if rows:
        token = TOKEN.load(rows[0])
        token.user = TOKEN_USER.load(rows[0], TOKEN.width)
    if token is None or not token.user.is_active:
        raise InvalidAuthentication("The token could not be found")  # revoked ones as well, as DNAnexus says
    now = timezone.now()
    # A job's token lives while its job runs and is never listed (a user's tokens are): its use is not
    # recorded, which spared every job's first call a write.
    stale = token.last_used is None or now - token.last_used > timedelta(minutes=1)
    used = (token.pk, now) if stale and not token.job_id else None
    return Principal.of_token(token, client_ip=client_ip, request=request), used


def authenticate(request, defer_use=False):
    """Return the Principal behind the request's Bearer token.

    With `defer_use`, return (principal, (token id, now) or None): the caller records the token's use
    itself (mark_token_used), in its own transaction."""
    header = request.headers.get("Authorization", "")
    scheme, _, raw = header.partition(" ")
    if scheme.lower() != "bearer" or not raw.strip():
        raise InvalidAuthentication("An Authorization: Bearer <token> header is required")
    return principal_for_guarded_token(raw, throttle.client_address(request) or "", request, defer_use)


def principal_for_guarded_token(raw, address, request=None, defer_use=False):
    """principal_for_token, for a caller at `address` whose unknown tokens are counted: an address that
    sent too many is refused for a while (dxweb/throttle.py). The API and the log websocket use it."""
    throttle.check_token_address(address)
    try:
        if defer_use:
            return _token_principal(raw, address, request)
        return principal_for_token(raw, address, request)
    except InvalidAuthentication:
        throttle.token_lookup_failed(address)
        raise


def resolve(resource, method):
    """Return (handler, object id or None) for a route, or raise ResourceNotFound."""
    match = ROUTE_RE.match(resource)
    if not match:
        raise ResourceNotFound(f"The route /{resource}/{method} was not found")
    cls, rest = match["cls"], match["rest"]
    if rest is None:
        handler = HANDLERS.get((cls, method))
        if handler is None or (cls != "system" and method != "new"):
            raise ResourceNotFound(f"The route /{resource}/{method} was not found")
        return handler, None
    # Users, orgs and apps are also addressed by name (user-alice, org-lab, app-bwa, app-bwa/1.0.0).
    if cls not in ("user", "org", "app") and not ID_RE.match(resource):
        raise ResourceNotFound(f"The entity {resource} could not be found")
    handler = HANDLERS.get((cls, method))
    if handler is None:
        raise ResourceNotFound(f"The route /{resource}/{method} was not found")
    return handler, resource


def _nonce(body):
    """The call's nonce, or None; InvalidInput if it is not one."""
    nonce = body.get("nonce")
    if nonce is not None and (not isinstance(nonce, str) or not 0 < len(nonce.encode()) <= 128):
        raise InvalidInput('Expected key "nonce" of input to be a string of 1 to 128 bytes (UTF-8)')
    return nonce


def _digest(body):
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def _call_with_nonce(principal, route, body, call):
    """Inside the call's transaction: make the call, or answer as the first call with the same nonce did.

    A concurrent retry with the same nonce may store it first: then this insert fails (IntegrityError,
    the whole transaction rolled back) and the caller answers with _replay."""
    nonce = _nonce(body)
    if nonce is None:
        return call()
    stored = Nonce.objects.filter(principal=principal.key, nonce=nonce).first()
    if stored is not None and stored.created < timezone.now() - timedelta(seconds=settings.DXWEB_NONCE_TTL):
        # Replies are only promised for a while; past that the nonce is free again.
        Nonce.objects.filter(pk=stored.pk).delete()
        stored = None
    if stored is not None:
        return _answer(stored, nonce, route, body)
    result = call()
    Nonce.objects.create(principal=principal.key, nonce=nonce, route=route, input_digest=_digest(body), response=result)
    return result


def _replay(principal, route, body):
    """After a call that failed with an IntegrityError: the reply of a concurrent retry with the same
    nonce that won the race, or None when no stored nonce explains the failure."""
    nonce = _nonce(body) if principal is not None and body is not None else None
    stored = Nonce.objects.filter(principal=principal.key, nonce=nonce).first() if nonce is not None else None
    return None if stored is None else _answer(stored, nonce, route, body)


def _answer(stored, nonce, route, body):
    if stored.route != route:
        raise InvalidInput(f"The nonce {nonce!r} was already used for a different call")
    if stored.input_digest and stored.input_digest != _digest(body):
        raise InvalidInput(f"The nonce {nonce!r} was already used with a different input")
    return stored.response


def _create(request, handler, object_id, route):
    """/<class>/new and /<id>/run: the token's lookup, the call and its nonce in one transaction (each
    transaction is a commit for the database to make, and these calls write anyway)."""
    principal = body = used = None
    try:
        with call_transaction():
            principal, used = authenticate(request, defer_use=True)
            body = parse_body(request)
            args = (principal, body) if object_id is None else (principal, object_id, body)
            result = _call_with_nonce(principal, route, body, lambda: handler(*args))
            if used is not None:
                mark_token_used(*used)
                used = None
        return result
    except IntegrityError:
        replied = _replay(principal, route, body)
        if replied is None:
            raise
        return replied
    finally:
        if used is not None:  # the call failed and its transaction with it: the token was used all the same
            mark_token_used(*used)


@csrf_exempt
@answers_json
def dispatch(request, resource, method):
    try:
        if request.method != "POST":
            raise MethodNotAllowed("API calls are made with POST")
        handler, object_id = resolve(resource, method)
        public = object_id is None and (resource, method) in PUBLIC_ROUTES
        if method in NONCE_METHODS and not public:
            result = _create(request, handler, object_id, f"/{resource}/{method}")
        else:
            principal = request if public else authenticate(request)
            # setDetails takes the details themselves as its input, and details may be a JSON array.
            body = parse_body(request, arrays=method == "setDetails")
            result = handler(*((principal, body) if object_id is None else (principal, object_id, body)))
        # safe=False: getDetails may answer with a JSON array.
        return no_sniffing(JsonResponse(result, safe=False))
    except DXError:
        raise  # answered as JSON by dxweb/middleware.py
    except Exception:
        # A bug, not the caller's mistake; still JSON, so that dxpy reports it instead of crashing.
        log.exception("API call /%s/%s failed", resource, method)
        raise InternalError("The server could not complete the call") from None


@csrf_exempt
@answers_json
def not_found(request, path=""):
    """No such route: the API's JSON 404, or the 404 page for a browser (dxweb/middleware.py). An address
    typed without its final slash (APPEND_SLASH is off: dx never expects a redirect) leads a browser to
    the page it meant."""
    if wants_page(request) and path and not path.startswith("/") and not path.endswith("/"):
        if urls.resolve(f"/{path}/").func is not not_found:
            query = request.META.get("QUERY_STRING", "")
            return HttpResponseRedirect(f"/{path}/" + (f"?{query}" if query else ""))
    raise ResourceNotFound(f"The route /{path} was not found")


# The public system routes: their handlers get the request in place of a principal.


@api_method("system", "greet")
def greet(request, body):
    """`dx login` asks for news and updates: none (dxpy prints messages when there are some)."""
    return {"messages": [], "update": {"available": False}}


@api_method("system", "headers")
def headers(request, body):
    """The request's headers as the server received them, for checking proxies (never the credentials)."""
    hidden = {"authorization", "cookie", "proxy-authorization"}
    return {"headers": {k: v for k, v in request.headers.items() if k.lower() not in hidden}}
