"""Profile settings: the email address (confirmed through a signed link when the site sends mail), the
password (Django's own views), and the CLI page's token button, which never makes a token per click."""

import html
import json
import re

import pytest
from django.core import mail, signing
from django.test import Client

from projects import accounts, actions
from projects.models import ApiToken, User
from projects.profile import CLI_TOKEN_REPEAT_SECONDS

CONSOLE = "django.core.mail.backends.console.EmailBackend"


def email_of(user):
    return User.objects.get(pk=user.pk).email


def link_in(message):
    return re.search(r"https?://\S+/profile/email/confirm/\S+/", message.body).group(0)


def path_of(link):
    return "/" + link.split("/", 3)[3]


def log_in(handle, password):
    return Client().post("/login/", {"username": handle, "password": password})


def page(client, url="/profile/"):
    return client.get(url).content.decode()


@pytest.fixture
def no_mail(settings):
    """A site whose mail goes to the console (the embedded default): it sends none."""
    settings.EMAIL_BACKEND = CONSOLE


# Email address: with mail -----------------------------------------------------------------------


def test_a_new_address_waits_for_the_link_mailed_to_it(web, alice, settings):
    settings.DXWEB_PUBLIC_URL = "https://dx.example.org"
    response = web.post("/profile/email/", {"email": "alice@example.org"})
    assert response.status_code == 302 and response["Location"] == "/profile/"
    assert email_of(alice.user) == ""
    assert len(mail.outbox) == 1 and mail.outbox[0].to == ["alice@example.org"]
    link = link_in(mail.outbox[0])
    assert link.startswith("https://dx.example.org/profile/email/confirm/")
    profile = page(web)
    assert "pending confirmation" in profile and "alice@example.org" in profile
    # The link asks before it changes anything (mail scanners open links)...
    confirm = web.get(path_of(link))
    assert confirm.status_code == 200 and b"alice@example.org" in confirm.content
    assert email_of(alice.user) == ""
    # ...and the button sets it.
    response = web.post(path_of(link))
    assert response["Location"] == "/profile/" and email_of(alice.user) == "alice@example.org"
    profile = page(web)
    assert "pending confirmation" not in profile and "Notices are emailed to" in profile


def test_email_me_is_disabled_until_an_address_is_confirmed(web, alice):
    box = re.compile(r'<input type="checkbox" name="notify_by_email"[^>]*>')
    assert "disabled" in box.search(page(web)).group(0)
    assert "Set a confirmed email address" in page(web)
    web.post("/profile/email/", {"email": "alice@example.org"})
    assert "disabled" in box.search(page(web)).group(0)  # pending is not confirmed
    web.post(path_of(link_in(mail.outbox[0])))
    assert "disabled" not in box.search(page(web)).group(0)


def test_email_me_is_off_without_a_confirmed_address_whatever_is_posted(web, alice):
    web.post("/profile/notifications/", {"notify_in_app": "on", "notify_by_email": "on"})
    assert not User.objects.get(pk=alice.user.pk).notify_by_email
    actions.set_email(alice.user, "alice@example.org")
    web.post("/profile/notifications/", {"notify_in_app": "on", "notify_by_email": "on"})
    assert User.objects.get(pk=alice.user.pk).notify_by_email
    assert 'id="id_notify_by_email" checked' in page(web)


@pytest.mark.parametrize(
    "email", ["not-an-address", "a@b@c", "alice@", "x" * 250 + "@example.org", "a\x00@example.org"]
)
def test_a_bad_address_is_a_form_error(web, alice, email):
    response = web.post("/profile/email/", {"email": email})
    assert response.status_code == 422 and b'class="field-error"' in response.content
    assert email_of(alice.user) == "" and not mail.outbox


def test_an_address_another_user_has_is_a_form_error(web, alice, bob):
    actions.set_email(bob.user, "bob@example.org")
    response = web.post("/profile/email/", {"email": "BOB@example.org"})
    assert response.status_code == 422 and b"Another account uses this email address" in response.content
    assert not mail.outbox


def test_an_address_taken_before_the_link_is_followed_is_refused(web, alice, bob):
    web.post("/profile/email/", {"email": "shared@example.org"})
    actions.set_email(bob.user, "shared@example.org")
    response = web.post(path_of(link_in(mail.outbox[0])))
    assert response.status_code == 422 and b"Another account uses this email address" in response.content
    assert email_of(alice.user) == ""


def test_an_empty_address_removes_it_at_once(web, alice):
    actions.set_email(alice.user, "alice@example.org")
    assert web.post("/profile/email/", {"email": ""})["Location"] == "/profile/"
    assert email_of(alice.user) == "" and not mail.outbox


def test_a_mail_server_that_refuses_is_said_and_changes_nothing(web, alice, monkeypatch):
    def refuse(*args, **kwargs):
        raise OSError("connection refused")

    monkeypatch.setattr(accounts, "send_mail", refuse)
    response = web.post("/profile/email/", {"email": "alice@example.org"})
    assert response.status_code == 503 and b"could not be sent" in response.content
    assert "pending confirmation" not in page(web)


# The confirmation link ----------------------------------------------------------------------------


def test_a_tampered_link_is_refused(web, alice):
    token = accounts.email_link_token(alice.user, "alice@example.org")
    forged = signing.TimestampSigner(salt=accounts.EMAIL_LINK_SALT).sign_object(
        {"user": alice.user.pk, "email": "mallory@example.org", "was": ""}
    )
    for bad in [
        token[:-2] + ("AA" if not token.endswith("AA") else "BB"),
        forged.split(":")[0] + token[token.index(":") :],
    ]:
        response = web.post(f"/profile/email/confirm/{bad}/")
        assert response.status_code == 400 and b"This link is not valid" in response.content
    assert email_of(alice.user) == ""


def test_a_link_expires_after_three_days(web, alice, clock):
    clock.install(signing)
    token = accounts.email_link_token(alice.user, "alice@example.org")
    clock.advance(3 * 24 * 3600 - 60)
    assert web.get(f"/profile/email/confirm/{token}/").status_code == 200
    clock.advance(120)
    for response in (web.get(f"/profile/email/confirm/{token}/"), web.post(f"/profile/email/confirm/{token}/")):
        assert response.status_code == 400 and b"This link has expired" in response.content
    assert email_of(alice.user) == ""


def test_a_link_is_out_of_date_once_the_address_changed(web, alice):
    token = accounts.email_link_token(alice.user, "first@example.org")
    actions.set_email(alice.user, "second@example.org")
    response = web.post(f"/profile/email/confirm/{token}/")
    assert response.status_code == 400 and b"out of date" in response.content
    assert email_of(alice.user) == "second@example.org"


def test_another_user_cannot_use_my_link(alice, bob):
    token = accounts.email_link_token(alice.user, "alice@example.org")
    bob.client.force_login(bob.user)
    response = bob.client.post(f"/profile/email/confirm/{token}/")
    assert response.status_code == 403
    assert email_of(alice.user) == "" and email_of(bob.user) == ""


def test_a_link_sends_anonymous_visitors_to_log_in_and_back(alice):
    token = accounts.email_link_token(alice.user, "alice@example.org")
    url = f"/profile/email/confirm/{token}/"
    response = Client().get(url)
    assert response.status_code == 302 and response["Location"].startswith("/login/?next=")
    client = Client()
    response = client.post("/login/?next=" + url, {"username": "alice", "password": "alice-password", "next": url})
    assert response["Location"] == url
    assert client.post(url)["Location"] == "/profile/" and email_of(alice.user) == "alice@example.org"


# Email address: without mail ----------------------------------------------------------------------


def test_without_mail_an_address_is_set_at_once_and_the_page_says_none_is_sent(web, alice, no_mail):
    response = web.post("/profile/email/", {"email": "alice@example.org"})
    assert response["Location"] == "/profile/" and email_of(alice.user) == "alice@example.org"
    profile = page(web)
    current = re.search(r'<p class="small" id="email-current">(.*?)</p>', profile, re.S).group(1)
    assert "alice@example.org" in current and "This site sends no mail, so notices will not be emailed." in current
    assert "This site sends no mail, so notices cannot be emailed." in profile
    box = re.search(r'<input type="checkbox" name="notify_by_email"[^>]*>', profile).group(0)
    assert "disabled" in box and "pending" not in profile


def test_without_mail_a_bad_address_is_still_a_form_error(web, alice, bob, no_mail):
    actions.set_email(bob.user, "bob@example.org")
    for bad in ["nope", "bob@example.org"]:
        assert web.post("/profile/email/", {"email": bad}).status_code == 422
    assert email_of(alice.user) == ""


# Who may reach these pages -------------------------------------------------------------------------


@pytest.mark.parametrize("url", ["/profile/email/", "/profile/password/", "/profile/password/done/", "/cli/token/"])
def test_anonymous_visitors_are_sent_to_log_in(db, url):
    for response in (Client().get(url), Client().post(url, {"email": "x@example.org"})):
        assert response.status_code in (302, 405)
        if response.status_code == 302:
            assert response["Location"].startswith("/login/")


def test_settings_change_only_the_signed_in_users_own(web, alice, bob):
    """No form names a user: whatever is posted, it is the signed-in user's own settings that change."""
    actions.set_email(bob.user, "bob@example.org")
    web.post("/profile/email/", {"email": "new@example.org", "user": bob.user.pk, "username": "bob"})
    web.post(path_of(link_in(mail.outbox[0])))
    assert email_of(bob.user) == "bob@example.org" and email_of(alice.user) == "new@example.org"
    web.post("/profile/notifications/", {"user": bob.user.pk})
    assert User.objects.get(pk=bob.user.pk).notify_in_app
    web.post(
        "/profile/password/",
        {
            "old_password": "alice-password",
            "new_password1": "fresh-pass-1",
            "new_password2": "fresh-pass-1",
            "username": "bob",
        },
    )
    assert User.objects.get(pk=bob.user.pk).check_password("bob-password")
    web.post("/cli/token/", {"after": "0", "user": bob.user.pk})
    assert not ApiToken.objects.filter(user=bob.user, name="CLI access").exists()


def test_email_and_password_refuse_get(web):
    assert web.get("/profile/email/").status_code == 405


# Password --------------------------------------------------------------------------------------


def test_the_profile_links_to_the_password_change(web):
    assert 'href="/profile/password/"' in page(web)
    form = page(web, "/profile/password/")
    for name in ["old_password", "new_password1", "new_password2"]:
        assert f'name="{name}"' in form


def test_a_changed_password_keeps_this_session_and_logs_in_next_time(alice):
    client = Client()
    client.post("/login/", {"username": "alice", "password": "alice-password"})
    response = client.post(
        "/profile/password/",
        {"old_password": "alice-password", "new_password1": "a-new-secret-9", "new_password2": "a-new-secret-9"},
    )
    assert response["Location"] == "/profile/password/done/"
    assert client.get("/profile/password/done/").status_code == 200
    assert client.get("/profile/").status_code == 200  # still signed in
    assert log_in("alice", "a-new-secret-9").status_code == 302
    assert log_in("alice", "alice-password").status_code == 200


def test_a_wrong_old_password_is_a_form_error_and_changes_nothing(web, alice):
    response = web.post(
        "/profile/password/",
        {"old_password": "wrong", "new_password1": "a-new-secret-9", "new_password2": "a-new-secret-9"},
    )
    assert response.status_code == 200 and b'class="field-error"' in response.content
    assert b"old password was entered incorrectly" in response.content
    assert User.objects.get(pk=alice.user.pk).check_password("alice-password")


@pytest.mark.parametrize(
    ("new1", "new2", "said"),
    [("short", "short", b"too short"), ("a-new-secret-9", "another-one-9", b"didn")],
)
def test_a_bad_new_password_is_a_form_error(web, alice, new1, new2, said):
    response = web.post(
        "/profile/password/", {"old_password": "alice-password", "new_password1": new1, "new_password2": new2}
    )
    assert response.status_code == 200 and said in response.content
    assert User.objects.get(pk=alice.user.pk).check_password("alice-password")


def test_the_login_throttle_does_not_stop_a_password_change(alice, settings):
    """Wrong old passwords are not login failures, and a locked-out handle still changes its password
    in a session it already has."""
    settings.DXWEB_LOGIN_FAILURE_LIMIT = 2
    client = Client()
    client.post("/login/", {"username": "alice", "password": "alice-password"})
    for _ in range(3):
        client.post(
            "/profile/password/", {"old_password": "nope", "new_password1": "x-y-z-1234", "new_password2": "x-y-z-1234"}
        )
    assert log_in("alice", "alice-password").status_code == 302
    for _ in range(2):
        log_in("alice", "guess")
    assert log_in("alice", "alice-password").status_code == 429
    response = client.post(
        "/profile/password/",
        {"old_password": "alice-password", "new_password1": "a-new-secret-9", "new_password2": "a-new-secret-9"},
    )
    assert response["Location"] == "/profile/password/done/"


# The CLI page's token ------------------------------------------------------------------------------


def env_token(page_html):
    text = html.unescape(re.sub(r"<[^>]+>", "", re.search(r'<pre id="cmd-env">(.*?)</pre>', page_html, re.S).group(1)))
    return json.loads(re.search(r"DX_SECURITY_CONTEXT='(.*?)'", text).group(1))["auth_token"]


def after_of(page_html):
    return re.search(r'<input type="hidden" name="after" value="(\d+)">', page_html).group(1)


def cli_tokens(user):
    return list(ApiToken.objects.filter(user=user, name="CLI access").order_by("pk"))


def test_the_cli_page_lists_existing_cli_tokens_and_asks_before_a_new_one(web, alice):
    token, _ = actions.issue_token(alice.user, "CLI access")
    cli = page(web, "/cli/")
    row = re.search(r'<tr data-token="%d">.*?</tr>' % token.pk, cli, re.S).group(0)
    assert f"<code>{token.hint}…</code>" in row and token.created.strftime("%Y-%m-%d") in row
    assert "Use a new token" in cli and 'data-confirm="Make another token for the CLI?' in cli
    assert "Create a token for the CLI" not in cli and after_of(cli) == str(token.pk)


def test_a_double_click_makes_one_token_and_both_show_it(web, alice):
    after = after_of(page(web, "/cli/"))
    first = web.post("/cli/token/", {"after": after})
    second = web.post("/cli/token/", {"after": after})
    assert first["Location"] == second["Location"] == "/cli/"
    [token] = cli_tokens(alice.user)
    raw = env_token(page(web, "/cli/"))
    assert ApiToken.digest_of(raw) == token.digest
    assert env_token(page(web, "/cli/")) == "<TOKEN>"  # shown once


def test_sending_the_form_again_soon_shows_the_same_token(web, alice):
    after = after_of(page(web, "/cli/"))
    web.post("/cli/token/", {"after": after})
    raw = env_token(page(web, "/cli/"))
    web.post("/cli/token/", {"after": after})  # Back, then the button again
    assert env_token(page(web, "/cli/")) == raw and len(cli_tokens(alice.user)) == 1


def test_sending_the_form_again_later_makes_no_token_and_shows_none(web, alice, clock):
    from projects import profile as views

    clock.install(views)
    after = after_of(page(web, "/cli/"))
    web.post("/cli/token/", {"after": after})
    page(web, "/cli/")
    clock.advance(CLI_TOKEN_REPEAT_SECONDS + 1)
    response = web.post("/cli/token/", {"after": after})
    cli = page(web, response["Location"])
    assert env_token(cli) == "<TOKEN>" and "only one token was made" in cli
    assert len(cli_tokens(alice.user)) == 1


def test_use_a_new_token_makes_one_more(web, alice):
    web.post("/cli/token/", {"after": after_of(page(web, "/cli/"))})
    first = env_token(page(web, "/cli/"))
    cli = page(web, "/cli/")
    web.post("/cli/token/", {"after": after_of(cli)})
    second = env_token(page(web, "/cli/"))
    assert second not in ("<TOKEN>", first) and len(cli_tokens(alice.user)) == 2
