"""Marking notices read: one (`/notifications/<id>/read/`) or several or all (`/notifications/read/`).

POST only, by the signed-in user, on their own notices: another user's notice is answered 404, as a
missing one. A form gets a redirect back to the page it came from; a script (Accept: application/json)
gets {"unread": n}.
"""

from django.contrib.auth.decorators import login_required
from django.http import JsonResponse
from django.shortcuts import redirect
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_POST

from dxweb.errors import ResourceNotFound

from .models import Notification
from .notifications import mark_read


def _answer(request, unread):
    if "application/json" in request.headers.get("Accept", ""):
        return JsonResponse({"unread": unread})
    back = request.POST.get("next", "")
    if not url_has_allowed_host_and_scheme(back, {request.get_host()}, require_https=request.is_secure()):
        back = "notifications"
    return redirect(back)


@login_required
@require_POST
def read_one(request, notice_id):
    if not Notification.objects.filter(pk=notice_id, user=request.user).exists():
        raise ResourceNotFound("No such notification")
    return _answer(request, mark_read(request.user, [notice_id]))


@login_required
@require_POST
def read_many(request):
    """The notices of `ids` (a batch's), or every one without it ("Mark all read")."""
    raw = request.POST.getlist("ids")
    ids = None
    if raw:
        if not all(i.isdigit() for i in raw):
            raise ResourceNotFound("No such notification")
        ids = [int(i) for i in raw]
        if Notification.objects.filter(pk__in=ids, user=request.user).count() != len(set(ids)):
            raise ResourceNotFound("No such notification")
    return _answer(request, mark_read(request.user, ids))
