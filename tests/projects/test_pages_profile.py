"""The profile page (API tokens, SSH public key) and the CLI access page."""

import html
import json
import re

import pytest

from projects import actions
from projects.models import ApiToken, User

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGx1c3RpZ2VyIGtleSBmb3IgdGVzdHM alice@laptop\n"


def shown_token(page_html):
    match = re.search(r'<code class="secret-value" id="new-token-value">([^<]+)</code>', page_html)
    return match and match.group(1)


def key_of(user):
    return User.objects.get(pk=user.pk).ssh_public_key


# API tokens -----------------------------------------------------------------------------------


def test_a_new_token_is_shown_once_and_works_on_the_api(web, alice):
    response = web.post("/profile/tokens/", {"name": "laptop"})
    assert response.status_code == 302 and response["Location"] == "/profile/"
    first = web.get("/profile/").content.decode()
    raw = shown_token(first)
    assert raw and "laptop" in first
    token = ApiToken.objects.get(user=alice.user, name="laptop")
    assert token.digest == ApiToken.digest_of(raw) and token.hint == raw[:6]
    assert alice.__class__(alice.user, raw).ok("/system/whoami") == {"id": "user-alice"}
    again = web.get("/profile/").content.decode()
    assert shown_token(again) is None and raw not in again


def test_tokens_are_listed_with_hint_creation_and_last_use(web, alice):
    html_page = web.get("/profile/").content.decode()
    token = ApiToken.objects.get(user=alice.user)
    row = re.search(r'<tr data-token="%d">.*?</tr>' % token.pk, html_page, re.S).group(0)
    assert f"<code>{alice.token[:6]}…</code>" in row and "never" in row
    alice.ok("/system/whoami")
    assert "just now" in web.get("/profile/").content.decode()


@pytest.mark.parametrize("name", ["", "   ", "a\x00b", "bell\x07", "n" * 10_000])
def test_a_bad_token_name_is_an_inline_form_error(web, alice, name):
    response = web.post("/profile/tokens/", {"name": name})
    assert response.status_code == 200 and b'class="field-error"' in response.content
    assert ApiToken.objects.filter(user=alice.user).count() == 1


def test_a_revoked_token_no_longer_works(web, alice):
    token = ApiToken.objects.get(user=alice.user)
    response = web.post(f"/profile/tokens/{token.pk}/revoke/")
    assert response["Location"] == "/profile/"
    status, error = alice.call("/system/whoami")
    assert status == 401 and error["error"]["type"] == "InvalidAuthentication"
    assert web.post(f"/profile/tokens/{token.pk}/revoke/").status_code == 404


# SSH public key ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "key",
    [
        KEY,
        KEY.rstrip("\n"),
        KEY.replace("\n", "\r\n"),
        "  " + KEY.replace(" alice", "   alice") + "\n\n",
    ],
    ids=["trailing newline", "no newline", "CRLF", "odd spacing"],
)
def test_the_ssh_key_is_stored_byte_for_byte(web, alice, key):
    response = web.post("/profile/ssh-key/", {"key": key})
    assert response["Location"] == "/profile/"
    assert key_of(alice.user) == key
    assert alice.ok("/user-alice/describe")["sshPublicKey"] == key
    # The form shows it back unchanged (a textarea drops only the newline right after its tag).
    page = web.get("/profile/").content.decode()
    shown = re.search(r"<textarea[^>]*>\n(.*?)</textarea>", page, re.S).group(1)
    assert html.unescape(shown) == key


def test_an_empty_key_removes_it(web, alice):
    actions.set_ssh_public_key(alice.user, KEY)
    web.post("/profile/ssh-key/", {"key": ""})
    assert key_of(alice.user) == ""


@pytest.mark.parametrize("key", ["not-a-key", "   \n", "ssh-ed25519 AAAA\x00", "ssh-rsa " + "A" * 20_000])
def test_a_bad_ssh_key_is_an_inline_form_error(web, alice, key):
    actions.set_ssh_public_key(alice.user, KEY)
    response = web.post("/profile/ssh-key/", {"key": key})
    assert response.status_code == 200 and b'class="field-error"' in response.content
    assert key_of(alice.user) == KEY


# CLI access --------------------------------------------------------------------------------------


def commands(page_html):
    return html.unescape(re.sub(r"<[^>]+>", "", re.search(r'<pre id="cmd-env">(.*?)</pre>', page_html, re.S).group(1)))


def test_the_cli_page_points_dx_at_the_host_and_port_of_the_request(web):
    page = web.get("/cli/", headers={"host": "localhost:8123"}).content.decode()
    assert "export DX_APISERVER_PROTOCOL=http DX_APISERVER_HOST=localhost DX_APISERVER_PORT=8123" in commands(page)
    assert """export DX_SECURITY_CONTEXT='{"auth_token":"<TOKEN>","auth_token_type":"Bearer"}'""" in commands(page)
    assert 'href="/profile/"' in page and "pip install dxpy==0.417.1" in page


def test_the_cli_page_uses_https_and_its_default_port_behind_tls(web, settings):
    settings.ALLOWED_HOSTS = ["dx.example.org"]
    page = web.get("/cli/", secure=True, headers={"host": "dx.example.org"}).content.decode()
    assert "DX_APISERVER_PROTOCOL=https DX_APISERVER_HOST=dx.example.org DX_APISERVER_PORT=443" in commands(page)


def test_the_cli_page_names_an_ipv6_host_without_its_port(web, settings):
    settings.ALLOWED_HOSTS = ["[::1]"]
    page = web.get("/cli/", headers={"host": "[::1]:8000"}).content.decode()
    assert "DX_APISERVER_HOST=[::1] DX_APISERVER_PORT=8000" in commands(page)


def test_a_token_made_for_the_cli_is_filled_in_once(web, alice):
    response = web.post("/cli/token/")
    assert response["Location"] == "/cli/"
    context = re.search(r"DX_SECURITY_CONTEXT='(.*?)'", commands(web.get("/cli/").content.decode())).group(1)
    raw = json.loads(context)["auth_token"]
    assert raw != "<TOKEN>" and ApiToken.objects.filter(user=alice.user, name="CLI access").exists()
    assert alice.__class__(alice.user, raw).ok("/system/whoami") == {"id": "user-alice"}
    assert "&lt;TOKEN&gt;" in web.get("/cli/").content.decode()


def test_the_cli_page_offers_dx_select_for_my_latest_project(web, alice):
    older = actions.create_container(alice.user, "older")
    newer = actions.create_container(alice.user, "newer")
    type(newer).objects.filter(pk=older.pk).update(modified=1)
    page = web.get("/cli/").content.decode()
    assert f'dx select <span id="cli-project-id">{newer.pk}</span>' in page
    assert f'<option value="{older.pk}">' in page


def test_without_projects_the_cli_page_suggests_making_one(web):
    assert "dx new project demo --select" in web.get("/cli/").content.decode()
