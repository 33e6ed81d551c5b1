"""Pages of one's own account: the profile (email address, notices, tokens, SSH key) and CLI access."""

import logging
import time

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from dxweb.errors import DXError

from . import accounts, actions, permissions
from .forms import (
    EmailForm,
    NotifyForm,
    SshKeyForm,
    TokenForm,
)
from .views import principal

# Session keys for secrets shown once, on the next render of the page that asked for them.
NEW_TOKEN = "dxweb.new_token"
CLI_TOKEN = "dxweb.cli_token"
# The address a user asked for, until they follow the link mailed to it (shown as pending).
PENDING_EMAIL = "dxweb.pending_email"

log = logging.getLogger(__name__)


def render_profile(request, token_form=None, key_form=None, email_form=None, status=200):
    user = request.user
    pending = request.session.get(PENDING_EMAIL)
    if pending and pending == user.email:
        del request.session[PENDING_EMAIL]
        pending = None
    return render(
        request,
        "projects/profile.html",
        {
            "section": "profile",
            "tokens": user.tokens.filter(job_id=""),
            "new_token": request.session.pop(NEW_TOKEN, None),
            "token_form": token_form or TokenForm(),
            "key_form": key_form or SshKeyForm(initial={"key": user.ssh_public_key}),
            "email_form": email_form or EmailForm(user=user, initial={"email": pending or user.email}),
            "pending_email": pending,
            "sends_mail": accounts.sends_mail(),
            "email_link_days": accounts.EMAIL_LINK_SECONDS // 86400,
            "can_email": can_email(user),
            "notify_form": NotifyForm(
                initial={"notify_in_app": user.notify_in_app, "notify_by_email": user.notify_by_email}
            ),
        },
        status=status,
    )


def can_email(user):
    """Whether job notices can be emailed to the user: this site sends mail and they have an address."""
    return accounts.sends_mail() and bool(user.email)


@login_required
@require_POST
def notify_settings(request):
    form = NotifyForm(request.POST)
    form.is_valid()  # two checkboxes: always valid
    # Without a confirmed address (or mail) the box is disabled, and so off, as the page shows it.
    by_email = form.cleaned_data["notify_by_email"] and can_email(request.user)
    actions.set_notifications(request.user, form.cleaned_data["notify_in_app"], by_email)
    messages.success(request, "Saved your notification settings")
    return redirect("profile")


@login_required
def profile(request):
    return render_profile(request)


@login_required
@require_POST
def email_address(request):
    """Set the user's email address: at once without mail, else once they follow the link mailed to it."""
    user = request.user
    form = EmailForm(request.POST, user=user)
    if not form.is_valid():
        return render_profile(request, email_form=form, status=422)
    email = form.cleaned_data["email"]
    if email == user.email:
        request.session.pop(PENDING_EMAIL, None)
        messages.info(request, "Your email address is unchanged")
    elif not email or not accounts.sends_mail():
        actions.set_email(user, email)
        request.session.pop(PENDING_EMAIL, None)
        if not email:
            messages.success(request, "Removed your email address")
        else:
            messages.success(
                request, "Saved your email address. This site sends no mail, so notices will not be emailed."
            )
    else:
        try:
            accounts.send_email_link(user, email)
        except Exception:  # noqa: BLE001 - SMTP refused or unreachable: say so, change nothing
            log.warning("could not send the confirmation link to %s", email, exc_info=True)
            form.add_error("email", "The confirmation email could not be sent; try again later.")
            return render_profile(request, email_form=form, status=503)
        request.session[PENDING_EMAIL] = email
        messages.success(request, f"We sent a link to {email}: open it to confirm the address.")
    return redirect("profile")


@login_required
def email_confirm(request, token):
    """The page of a link mailed to a new address: GET asks (mail scanners open links), POST sets it."""
    try:
        email = accounts.email_link_address(request.user, token)
        if request.method == "POST":
            actions.set_email(request.user, email)
    except DXError as err:
        return render(
            request, "projects/profile_email.html", {"section": "profile", "error": err.message}, status=err.status
        )
    if request.method == "POST":
        request.session.pop(PENDING_EMAIL, None)
        messages.success(request, f"Your email address is now {email}")
        return redirect("profile")
    return render(request, "projects/profile_email.html", {"section": "profile", "email": email})


@login_required
@require_POST
def token_create(request):
    form = TokenForm(request.POST)
    if form.is_valid():
        try:
            token, raw = actions.issue_token(request.user, form.cleaned_data["name"])
        except DXError as err:
            form.add_error("name", err.message)
        else:
            request.session[NEW_TOKEN] = {"id": token.pk, "name": token.name, "raw": raw}
            return redirect("profile")
    return render_profile(request, token_form=form)


@login_required
@require_POST
def token_revoke(request, token_id):
    actions.revoke_token(request.user, token_id)
    messages.success(request, "The token was revoked; clients using it can no longer sign in")
    return redirect("profile")


@login_required
@require_POST
def ssh_key(request):
    form = SshKeyForm(request.POST)
    if form.is_valid():
        try:
            actions.set_ssh_public_key(request.user, form.cleaned_data["key"])
        except DXError as err:
            form.add_error("key", err.message)
        else:
            saved = "Saved your SSH public key" if form.cleaned_data["key"] else "Removed your SSH public key"
            messages.success(request, saved)
            return redirect("profile")
    return render_profile(request, key_form=form)


def server_address(request):
    """Return (protocol, host, port) as the dx client should reach this server."""
    secure = request.is_secure()
    host = request.get_host()
    if host.startswith("["):
        name, _, rest = host.partition("]")
        name, port = name + "]", rest.removeprefix(":")
    else:
        name, _, port = host.partition(":")
    return ("https" if secure else "http"), name, port or ("443" if secure else "80")


# "Create a token for the CLI" must not make a token per click. The page lists the user's CLI
# tokens by hint and date, and its form says which was the newest it showed ("after");
# actions.issue_token_once makes a token only while that is still the newest, under a lock. So a
# double click, a reload of the POST or Back-and-send-again make one token: the repeats find it made
# and redirect (POST-redirect-GET) to the page as the first sending left it. Its secret is kept in
# the session for CLI_TOKEN_REPEAT_SECONDS so that a repeat within that time shows the same token
# again; after that, or once shown, the page lists it by its hint only. "Use a new token" (after a
# confirmation) sends the form with the newest token's id, which makes one more.
CLI_TOKEN_NAME = "CLI access"
CLI_TOKEN_REPEAT_SECONDS = 120


def cli_token_record(request):
    """The session's record of the CLI token made last ({"id", "raw", "at", "shown"}), while it is fresh."""
    record = request.session.get(CLI_TOKEN)
    if not isinstance(record, dict) or time.time() - record.get("at", 0) > CLI_TOKEN_REPEAT_SECONDS:
        request.session.pop(CLI_TOKEN, None)
        return None
    return record


@login_required
def cli(request):
    protocol, host, port = server_address(request)
    token = None
    record = cli_token_record(request)
    if record and not record["shown"]:
        token = record["raw"]
        request.session[CLI_TOKEN] = {**record, "shown": True}
    cli_tokens = list(request.user.tokens.filter(job_id="", name=CLI_TOKEN_NAME).order_by("-pk"))
    return render(
        request,
        "projects/cli.html",
        {
            "section": "cli",
            "protocol": protocol,
            "host": host,
            "port": port,
            "token": token,
            "cli_tokens": cli_tokens,
            "newest_cli_token": cli_tokens[0].pk if cli_tokens else 0,
            "projects": permissions.visible_projects(principal(request)).order_by("-modified")[:50],
        },
    )


@login_required
@require_POST
def cli_token(request):
    after = request.POST.get("after", "")
    token, raw = actions.issue_token_once(request.user, CLI_TOKEN_NAME, int(after) if after.isdigit() else 0)
    if raw is not None:
        request.session[CLI_TOKEN] = {"id": token.pk, "raw": raw, "at": time.time(), "shown": False}
    else:
        record = cli_token_record(request)
        if record and record["id"] == token.pk:
            request.session[CLI_TOKEN] = {**record, "shown": False}
        messages.info(request, "This form was sent more than once: only one token was made.")
    return redirect("cli")
