"""Creating users and the first admin, shared by management commands and pages; confirming email addresses."""

import secrets

from django.conf import settings
from django.core import signing
from django.core.mail import send_mail
from django.db import transaction
from django.urls import reverse

from dxweb.errors import BadRequest, InvalidInput, PermissionDenied
from dxweb.ids import HANDLE_RE

from .models import ApiToken, User


def create_user(handle, password=None, is_staff=False, email=""):
    """Create a user with a handle (`user-<handle>`); return it."""
    if not HANDLE_RE.match(handle or ""):
        raise InvalidInput("A handle is 1-63 lowercase letters, digits, '.' or '_', starting with a letter or digit")
    if User.objects.filter(username=handle).exists():
        raise InvalidInput(f"The handle {handle!r} is already taken")
    user = User(username=handle, email=email, is_staff=is_staff, is_superuser=is_staff)
    if password:
        user.set_password(password)
    else:
        user.set_unusable_password()
    user.save()
    return user


@transaction.atomic
def ensure_admin(handle, password=None, token=None):
    """Create (or update from the environment) the first admin; return (user, password shown, token shown).

    Secrets are returned only when they were generated here, so they are printed once.
    """
    user = User.objects.filter(username=handle).first()
    shown_password = shown_token = None
    if user is None:
        if User.objects.filter(is_superuser=True).exists() and not (password or token):
            return None, None, None
        shown_password = None if password else secrets.token_urlsafe(12)
        user = create_user(handle, password or shown_password, is_staff=True)
        if not token:
            _, shown_token = ApiToken.issue(user, "first-run token")
    elif password and not user.check_password(password):
        user.set_password(password)
        user.save(update_fields=["password"])
    if token and not ApiToken.objects.filter(digest=ApiToken.digest_of(token)).exists():
        ApiToken.issue(user, "DXWEB_ADMIN_TOKEN", raw=token)
    return user, shown_password, shown_token


# Email addresses -------------------------------------------------------------------------------------
# With mail set up, a new address waits until its owner follows a signed link sent to it: the link
# carries the user, the address and the address it replaces, signed with SECRET_KEY and a timestamp.
# Nothing is stored until then; a link stops working after EMAIL_LINK_SECONDS, or once the address
# it replaces has changed. Without mail set up, an address is set at once (no mail will reach it).

EMAIL_LINK_SECONDS = 3 * 24 * 3600
EMAIL_LINK_SALT = "dxweb.email-confirmation"
# Backends that print or drop mail instead of sending it: the embedded default is the console.
UNSENT_MAIL_BACKENDS = {
    "django.core.mail.backends.console.EmailBackend",
    "django.core.mail.backends.dummy.EmailBackend",
}


def sends_mail():
    """Whether this site sends mail (DXWEB_EMAIL_URL names a real mail server)."""
    return settings.EMAIL_BACKEND not in UNSENT_MAIL_BACKENDS


def email_link_token(user, email):
    """The signed token of a link that sets `email` as `user`'s address."""
    return signing.TimestampSigner(salt=EMAIL_LINK_SALT).sign_object(
        {"user": user.pk, "email": email, "was": user.email}
    )


def email_link_address(user, token):
    """The address a link's token sets for `user`, or raise BadRequest (PermissionDenied) saying why it cannot."""
    try:
        data = signing.TimestampSigner(salt=EMAIL_LINK_SALT).unsign_object(token, max_age=EMAIL_LINK_SECONDS)
    except signing.SignatureExpired:
        raise BadRequest(
            "This link has expired: links last 3 days. Enter the address again on your profile for a new one."
        ) from None
    except signing.BadSignature:
        raise BadRequest("This link is not valid: copy the whole link from the email.") from None
    if data.get("user") != user.pk:
        raise PermissionDenied("This link was sent for another account: log in as its owner to use it.")
    if data.get("was") != user.email:
        raise BadRequest("This link is out of date: your address has changed since it was sent.")
    return data["email"]


def send_email_link(user, email):
    """Mail `email` the link that confirms it as `user`'s address (raises OSError/SMTPException on failure)."""
    link = f"{settings.DXWEB_PUBLIC_URL.rstrip('/')}{reverse('email-confirm', args=[email_link_token(user, email)])}"
    body = (
        f"Someone, probably you, asked to use this address for the dxweb account {user.dx_id}.\n\n"
        f"To confirm it, open this link within 3 days (you will be asked to log in):\n{link}\n\n"
        "If it was not you, ignore this email: the address is not used until the link is opened."
    )
    send_mail("[dxweb] Confirm your email address", body, None, [email])
