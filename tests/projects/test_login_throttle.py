"""Guessing passwords and API tokens: failed logins lock a handle (and an address) out for a while,
failed token lookups from one address get its calls refused for a while, and every attempt is logged."""

import asyncio
import contextvars
import logging
from datetime import timedelta

import pytest
from axes.models import AccessAttempt, AccessLog
from django.contrib.auth.hashers import MD5PasswordHasher
from django.core.cache.backends import base as cache_base
from django.core.cache.backends import locmem
from django.test import AsyncClient, Client
from django.utils import timezone

from dxweb import throttle
from dxweb.throttle import client_address
from tests.conftest import ApiClient

LOCKED = b"Too many failed login attempts"
HASHED = []


class CountingHasher(MD5PasswordHasher):
    """MD5 (fast), counting how many times a password is hashed."""

    def encode(self, password, salt):
        HASHED.append(password)
        return super().encode(password, salt)


def log_in(handle, password, address="10.0.0.1", **headers):
    """POST the login form from `address`; return the response."""
    client = Client(REMOTE_ADDR=address)
    response = client.post("/login/", {"username": handle, "password": password}, **headers)
    response.logged_in = "_auth_user_id" in client.session
    return response


def fail(handle, times, address="10.0.0.1", **headers):
    return [log_in(handle, "wrong-password", address, **headers).status_code for _ in range(times)]


# Passwords ------------------------------------------------------------------------------------


def test_ten_wrong_passwords_lock_the_handle_out_from_that_address(alice):
    assert fail("alice", 9) == [200] * 9  # the form's own error, each time
    tenth = log_in("alice", "wrong-password")
    assert tenth.status_code == 429 and LOCKED in tenth.content
    assert b'name="password"' in tenth.content and b'role="alert"' in tenth.content  # the login page itself
    assert 1 <= int(tenth["Retry-After"]) <= 15 * 60
    right = log_in("alice", "alice-password")
    assert right.status_code == 429 and LOCKED in right.content and not right.logged_in


def test_a_lockout_leaves_the_handle_from_other_addresses_and_other_handles_alone(alice, bob):
    fail("alice", 10, address="10.0.0.1")
    assert log_in("alice", "alice-password", address="10.0.0.1").status_code == 429
    elsewhere = log_in("alice", "alice-password", address="10.0.0.2")
    assert elsewhere.status_code == 302 and elsewhere.logged_in
    neighbour = log_in("bob", "bob-password", address="10.0.0.1")
    assert neighbour.status_code == 302 and neighbour.logged_in


def test_many_handles_guessed_from_one_address_lock_the_address_out(settings, alice):
    settings.DXWEB_LOGIN_ADDRESS_FAILURE_LIMIT = 6
    statuses = [*fail("someone0", 2, "10.0.0.9"), *fail("someone1", 2, "10.0.0.9"), *fail("someone2", 2, "10.0.0.9")]
    assert statuses == [200] * 5 + [429]
    response = log_in("alice", "alice-password", address="10.0.0.9")
    assert response.status_code == 429 and not response.logged_in
    assert log_in("alice", "alice-password", address="10.0.0.10").logged_in


def test_a_handle_guessed_from_many_addresses_is_locked_out_when_asked(settings, alice):
    settings.DXWEB_LOGIN_HANDLE_FAILURE_LIMIT = 4
    for n in range(4):
        fail("alice", 1, address=f"10.0.1.{n}")
    assert log_in("alice", "alice-password", address="10.0.1.200").status_code == 429


def test_the_lockout_ends_after_the_cool_off(alice):
    fail("alice", 10)
    assert log_in("alice", "alice-password").status_code == 429
    AccessAttempt.objects.update(attempt_time=timezone.now() - timedelta(minutes=15, seconds=1))
    response = log_in("alice", "alice-password")
    assert response.status_code == 302 and response.logged_in


def test_unknown_handles_are_locked_out_like_known_ones(db):
    assert fail("nobody", 10)[-1] == 429
    assert log_in("nobody", "anything").status_code == 429


def test_a_known_and_an_unknown_handle_cost_the_same_hashing(settings, alice, django_user_model):
    """Timing: a wrong password for a real handle, for no handle at all, for a handle without a usable
    password and for an inactive account each run the password hasher exactly once; once locked out,
    none of them runs it."""
    settings.PASSWORD_HASHERS = [f"{__name__}.CountingHasher"]
    nopass = django_user_model.objects.create(username="nopass")
    nopass.set_unusable_password()
    nopass.save()
    inactive = django_user_model.objects.create(username="inactive", is_active=False)
    inactive.set_password("inactive-password")
    inactive.save()
    for handle in ("alice", "nobody", "nopass", "inactive"):
        HASHED.clear()
        assert log_in(handle, "wrong-password", address="10.0.2.1").status_code == 200
        assert len(HASHED) == 1, handle
    for handle in ("alice", "nobody"):
        fail(handle, 10, address="10.0.2.2")
        HASHED.clear()
        assert log_in(handle, "wrong-password", address="10.0.2.2").status_code == 429
        assert HASHED == [], handle


def test_attempts_are_logged_with_handle_and_address(alice, caplog):
    with caplog.at_level(logging.INFO):
        log_in("alice", "wrong-password", address="10.0.3.1")
        fail("alice", 9, address="10.0.3.1")
        log_in("bob", "wrong-password", address="10.0.3.2")
        log_in("alice", "alice-password", address="10.0.3.3")
    failures = [r.getMessage() for r in caplog.records if "login failure" in r.getMessage()]
    assert any("alice" in m and "10.0.3.1" in m for m in failures), failures
    assert any("bob" in m and "10.0.3.2" in m for m in failures), failures
    assert "wrong-password" not in caplog.text
    assert any("Locking out" in r.getMessage() and "10.0.3.1" in r.getMessage() for r in caplog.records)
    assert AccessAttempt.objects.get(username="alice", ip_address="10.0.3.1").failures_since_start == 10
    assert AccessLog.objects.filter(username="alice", ip_address="10.0.3.3").exists()


@pytest.mark.django_db(transaction=True)
def test_the_lockout_page_comes_through_the_async_handler_too(alice):
    """The pages are served by Django's ASGI handler, whose middleware chain runs asynchronously."""

    async def attempts():
        client = AsyncClient(REMOTE_ADDR="10.0.4.1")
        statuses = []
        for _ in range(11):
            response = await client.post("/login/", {"username": "alice", "password": "wrong-password"})
            statuses.append(response.status_code)
        return statuses, response

    statuses, last = asyncio.run(attempts())
    assert statuses == [200] * 9 + [429, 429]
    assert LOCKED in last.content and b'name="password"' in last.content


def test_behind_a_tls_proxy_the_address_is_the_one_the_proxy_saw(settings, rf, alice):
    request = rf.get("/", REMOTE_ADDR="127.0.0.1", HTTP_X_FORWARDED_FOR="203.0.113.7, 198.51.100.2")
    assert client_address(request) == "127.0.0.1"
    settings.DXWEB_BEHIND_TLS_PROXY = True
    assert client_address(request) == "198.51.100.2"  # the proxy appends; what comes before is the client's word
    assert client_address(rf.get("/", REMOTE_ADDR="127.0.0.1", HTTP_X_FORWARDED_FOR="not-an-address")) == "127.0.0.1"
    fail("alice", 10, address="127.0.0.1", HTTP_X_FORWARDED_FOR="198.51.100.2")
    assert log_in("alice", "alice-password", "127.0.0.1", HTTP_X_FORWARDED_FOR="198.51.100.2").status_code == 429
    other = log_in("alice", "alice-password", "127.0.0.1", HTTP_X_FORWARDED_FOR="198.51.100.3")
    assert other.status_code == 302 and other.logged_in


# API tokens -----------------------------------------------------------------------------------


def call_from(address, token):
    client = ApiClient(token=token)
    response = client.raw("/system/whoami", REMOTE_ADDR=address)
    return response.status_code, response


def test_failed_token_lookups_from_one_address_get_its_calls_refused_for_a_while(settings, alice):
    settings.DXWEB_TOKEN_FAILURE_LIMIT = 5
    statuses = [call_from("10.0.5.1", f"guess-{n}")[0] for n in range(5)]
    assert statuses == [401] * 5
    status, response = call_from("10.0.5.1", "guess-6")
    assert status == 429 and response.json()["error"]["type"] == "TooManyRequests"
    assert 1 <= int(response["Retry-After"]) <= settings.DXWEB_TOKEN_FAILURE_WINDOW
    assert call_from("10.0.5.1", alice.token)[0] == 429  # even a good token, until the window ends
    assert call_from("10.0.5.2", alice.token)[0] == 200  # other addresses are not concerned
    assert call_from("10.0.5.2", "guess-7")[0] == 401


def test_calls_from_a_refused_address_work_again_after_the_window(settings, alice, clock):
    clock.install(throttle, cache_base, locmem)  # the window ends when the cache lets its count expire
    settings.DXWEB_TOKEN_FAILURE_LIMIT = 2
    settings.DXWEB_TOKEN_FAILURE_WINDOW = 1
    assert [call_from("10.0.6.1", "guess")[0] for _ in range(3)] == [401, 401, 429]
    clock.advance(1.2)
    assert call_from("10.0.6.1", alice.token)[0] == 200


def test_good_tokens_and_missing_ones_do_not_count(settings, alice, anonymous):
    settings.DXWEB_TOKEN_FAILURE_LIMIT = 2
    for _ in range(5):
        assert call_from("10.0.7.1", alice.token)[0] == 200
        assert anonymous.client.post("/system/whoami", REMOTE_ADDR="10.0.7.1").status_code == 401
    assert call_from("10.0.7.1", alice.token)[0] == 200


def test_the_token_throttle_keeps_one_cache_per_process_not_one_per_request(settings, db, monkeypatch):
    """Under ASGI each request has its own context, and Django's caches["throttle"] its own cache there:
    a Redis one made a pool, a connection and its handshake per API call."""
    from django.core.cache import caches

    made = []
    real = caches.create_connection
    monkeypatch.setattr(caches, "create_connection", lambda alias: made.append(alias) or real(alias))
    settings.DXWEB_TOKEN_FAILURE_LIMIT = 5

    async def a_call(n):
        response = await AsyncClient().post(
            "/system/whoami", "{}", content_type="application/json", headers={"authorization": f"Bearer guess-{n}"}
        )
        return response.status_code

    # Each call is checked against the throttle, then counted as a failure: both in the one cache.
    # Each call in an empty context of its own, as daphne's requests come.
    assert [contextvars.Context().run(asyncio.run, a_call(n)) for n in range(4)] == [401] * 4
    assert made.count("throttle") <= 1
    assert throttle._cache().get("token-failures:127.0.0.1") == 4
    settings.CACHES = {**settings.CACHES, "throttle": {"BACKEND": "django.core.cache.backends.dummy.DummyCache"}}
    assert type(throttle._cache()).__name__ == "DummyCache"  # a change of the settings makes it anew
