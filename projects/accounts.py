"""Creating users and the first admin, shared by management commands and pages."""

import secrets

from django.db import transaction

from dxweb.errors import InvalidInput
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
