"""Telling users their jobs ended: a notice in the app and an email, each one they can turn off (profile)."""

import logging

from django.conf import settings
from django.core.mail import send_mail

from . import dispatch
from .models import FINAL_STATES, Job, Notification

log = logging.getLogger(__name__)


def job_ended(job_id):
    """Called once a top-level job is final: notify its launcher as they asked."""
    job = Job.objects.select_related("launched_by").filter(pk=job_id).first()
    if job is None or job.state not in FINAL_STATES:
        return None
    user = job.launched_by
    if not (user.notify_in_app or (user.notify_by_email and user.email)):
        return None
    message = f"{job.name} ({job.id}) {job.state}"
    if job.failure_reason:
        message += f": {job.failure_reason}: {job.failure_message}"
    notice = Notification.objects.create(
        user=user, job=job, state=job.state, message=message[:500], read=not user.notify_in_app
    )
    if user.notify_by_email and user.email:
        try:
            dispatch.email_job_ended(notice.pk)
        except Exception:  # noqa: BLE001 - the broker is down: the notice in the app remains
            log.warning("could not queue the email about %s", job.id, exc_info=True)
    return notice


def send_email(notification_id):
    notice = Notification.objects.select_related("user", "job").filter(pk=notification_id).first()
    if notice is None or not notice.user.email or not notice.user.notify_by_email:
        return
    job = notice.job
    link = f"{settings.DXWEB_PUBLIC_URL.rstrip('/')}/jobs/{job.id}/"
    body = [f"Your job {job.name} ({job.id}) in project {job.project_id} is {notice.state}."]
    if job.failure_reason:
        body.append(f"\n{job.failure_reason}: {job.failure_message}")
    body += [f"\nDetails and log: {link}", "\nTurn these emails off on your profile page."]
    send_mail(f"[dxweb] {job.name} {notice.state}", "\n".join(body), None, [notice.user.email])


def unread(request):
    """Template context: how many unread notices the signed-in user has (for the header's bell)."""
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {}
    return {"unread_notifications": Notification.objects.filter(user=user, read=False).count()}
