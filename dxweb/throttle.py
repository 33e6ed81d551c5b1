"""Throttling of guessed credentials: passwords on the login page, API tokens on the API.

Logins go through django-axes (settings: DXWEB_LOGIN_*): every failure is recorded (handle, client
address, user agent) and logged; a handle that failed DXWEB_LOGIN_FAILURE_LIMIT times from one address,
or an address that failed DXWEB_LOGIN_ADDRESS_FAILURE_LIMIT times whatever the handles (and, when set,
a handle that failed DXWEB_LOGIN_HANDLE_FAILURE_LIMIT times from anywhere), is refused for
DXWEB_LOGIN_COOLOFF_MINUTES after its last failure: the login page again, with the reason, as HTTP 429.
Refused attempts check no password at all, for known and unknown handles alike.

API tokens are 256-bit random strings, so guessing one is hopeless; still, an address whose calls
carried DXWEB_TOKEN_FAILURE_LIMIT unknown (or revoked) tokens within DXWEB_TOKEN_FAILURE_WINDOW seconds
gets every API call refused until that window ends (429 with Retry-After, which dxpy waits out and
retries). Counted in the cache named "throttle" (Redis when scaled out, else in each web process).
"""

import ipaddress
import logging
import math
import time

from axes.handlers.database import AxesDatabaseHandler
from axes.helpers import get_client_username
from django.conf import settings
from django.contrib.auth.forms import AuthenticationForm
from django.core.cache import caches
from django.db.models import Max, Sum
from django.shortcuts import render
from django.utils import timezone

from .errors import TooManyRequests

log = logging.getLogger(__name__)


def client_address(request):
    """The caller's IP address: the connection's, or behind a TLS proxy (DXWEB_BEHIND_TLS_PROXY) the last
    one in X-Forwarded-For, which the proxy appended (what comes before it is the client's own word)."""
    address = request.META.get("REMOTE_ADDR") or None
    if settings.DXWEB_BEHIND_TLS_PROXY:
        forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "").rsplit(",", 1)[-1].strip()
        try:
            address = str(ipaddress.ip_address(forwarded))
        except ValueError:
            pass
    return address


# Logins -------------------------------------------------------------------------------------------


def login_limits():
    """[(what is counted together, how many failures lock it out)], the limits that are set."""
    limits = [
        (["username", "ip_address"], settings.DXWEB_LOGIN_FAILURE_LIMIT),
        (["ip_address"], settings.DXWEB_LOGIN_ADDRESS_FAILURE_LIMIT),
        (["username"], settings.DXWEB_LOGIN_HANDLE_FAILURE_LIMIT),
    ]
    return [(parameters, limit) for parameters, limit in limits if limit > 0]


def lockout_parameters(request_or_attempt=None, credentials=None):
    """AXES_LOCKOUT_PARAMETERS: what failures are counted by, one entry per limit of login_limits()."""
    return [parameters for parameters, _ in login_limits()]


class LoginAttempts(AxesDatabaseHandler):
    """Axes' database handler with a limit of its own for each way failures are counted.

    get_failures answers how many of those limits are reached (AXES_FAILURE_LIMIT is 1): axes locks the
    attempt out when it is at least one.
    """

    def failures(self, request, credentials=None):
        """[(limit, failures counted, the last failure's time)], one per limit, within the cool-off."""
        attempts_list = self.get_user_attempts(request, credentials)
        limits = [limit for _, limit in login_limits()]
        counted = []
        for attempts, limit in zip(attempts_list, limits, strict=True):
            totals = attempts.aggregate(failures=Sum("failures_since_start"), last=Max("attempt_time"))
            counted.append((limit, totals["failures"] or 0, totals["last"]))
        return counted

    def get_failures(self, request, credentials=None):
        return sum(failures >= limit for limit, failures, _ in self.failures(request, credentials))

    def retry_after(self, request, credentials=None):
        """Seconds until the attempt is no longer locked out (at most the cool-off)."""
        cool_off = settings.AXES_COOLOFF_TIME
        ends = [last + cool_off for limit, failures, last in self.failures(request, credentials) if failures >= limit]
        if not ends:
            return int(cool_off.total_seconds())
        return max(1, math.ceil((max(ends) - timezone.now()).total_seconds()))


def login_locked_out(request, *args, **kwargs):
    """AXES_LOCKOUT_CALLABLE: the login page again, saying why and for how long (HTTP 429)."""
    credentials = {"username": get_client_username(request)}
    seconds = LoginAttempts().retry_after(request, credentials)
    minutes = math.ceil(seconds / 60)
    message = f"Too many failed login attempts. Try again in {minutes} minute{'s' if minutes != 1 else ''}."
    form = AuthenticationForm(request, initial={"username": credentials["username"] or ""})
    context = {"form": form, "locked_out": message, "next": request.POST.get("next", "")}
    response = render(request, "registration/login.html", context, status=429)
    response["Retry-After"] = str(seconds)
    return response


# API tokens ---------------------------------------------------------------------------------------


_store = None  # (the CACHES entry it was made from, the throttle's cache)


def _cache():
    """The throttle's cache, one per process.

    Django's `caches["throttle"]` is one per request context under ASGI: a Redis cache so made a new
    connection pool, a connection and its handshake for every API call (18% of the web server's
    samples in a burst of job submissions, bench/README)."""
    global _store
    config = settings.CACHES["throttle"]
    if _store is None or _store[0] is not config:  # made anew when the settings change (tests)
        _store = (config, caches.create_connection("throttle"))
    return _store[1]


def _token_keys(address):
    return f"token-failures:{address}", f"token-failures-since:{address}"


def check_token_address(address):
    """Raise TooManyRequests if calls from `address` are refused for now (too many unknown tokens)."""
    limit = settings.DXWEB_TOKEN_FAILURE_LIMIT
    if limit <= 0 or not address:
        return
    count_key, since_key = _token_keys(address)
    try:
        values = _cache().get_many([count_key, since_key])
    except Exception:  # the throttle must not take the API down with its cache
        log.exception("The throttle's cache could not be read")
        return
    if values.get(count_key, 0) < limit:
        return
    window = settings.DXWEB_TOKEN_FAILURE_WINDOW
    retry_after = max(1, math.ceil(values.get(since_key, time.time()) + window - time.time()))
    raise TooManyRequests(
        f"Too many calls from {address} carried an unknown token: calls from it are refused for {retry_after} s",
        retry_after=retry_after,
    )


def _count_failure(cache, address, window):
    """Add one to the address's count in the current window (starting one if none); return the count."""
    count_key, since_key = _token_keys(address)
    if not cache.add(count_key, 1, window):
        try:
            return cache.incr(count_key)
        except ValueError:  # the window ended between add and incr
            if not cache.add(count_key, 1, window):
                return cache.incr(count_key)
    cache.set(since_key, time.time(), window)
    return 1


def token_lookup_failed(address):
    """Count a call from `address` whose token is unknown or revoked."""
    limit = settings.DXWEB_TOKEN_FAILURE_LIMIT
    if limit <= 0 or not address:
        return
    window = settings.DXWEB_TOKEN_FAILURE_WINDOW
    try:
        count = _count_failure(_cache(), address, window)
    except Exception:  # the throttle must not take the API down with its cache
        log.exception("The throttle's cache could not be written")
        return
    log.info("API call with an unknown token from %s (%d of %d in %d s)", address, count, limit, window)
    if count == limit:
        log.warning("Refusing API calls from %s for %d s: %d calls with unknown tokens", address, window, limit)
