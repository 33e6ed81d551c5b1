"""Telling users their jobs ended: a notice in the app and an email, each one they can turn off (profile).

The notices page and the bell show the notices of one batch (jobs of one applet launched together, or the
stages of one analysis) as one line: `batches` groups them.
"""

import logging
from collections import Counter

from django.conf import settings
from django.core.mail import send_mail
from django.db import transaction

from . import dispatch
from .logs.store import notify_notices
from .models import FINAL_STATES, Job, Notification

log = logging.getLogger(__name__)


def job_ended(job_id, job=None):
    """Called as a top-level job becomes final, in the transaction that records it: notify its
    launcher as they asked (`job`: as it ended, with its launcher, if the caller has it)."""
    job = job or Job.objects.select_related("launched_by").filter(pk=job_id).first()
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
    if user.notify_in_app:
        transaction.on_commit(lambda: notify_notices(user.pk))  # the bell counts again
    if user.notify_by_email and user.email:
        transaction.on_commit(lambda: _queue_email(notice))
    return notice


def _queue_email(notice):
    try:
        dispatch.email_job_ended(notice.pk)
    except Exception:  # noqa: BLE001 - the broker is down: the notice in the app remains
        log.warning("could not queue the email about %s", notice.job_id, exc_info=True)


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


def mark_read(user, ids=None):
    """Mark the user's notices read (those of `ids`, else all of them); tell their bells; the unread count."""
    notices = Notification.objects.filter(user=user, read=False)
    if ids is not None:
        notices = notices.filter(pk__in=ids)
    if notices.update(read=True):
        notify_notices(user.pk)
    return Notification.objects.filter(user=user, read=False).count()


# Batches ------------------------------------------------------------------------------------------

# Jobs of one applet in one project launched within this long of each other are one batch.
BATCH_MS = 60_000


class Batch:
    """Notices of one batch, newest first: `notices`, with what the page shows of them."""

    def __init__(self, key, notice):
        self.key = key
        self.notices = [notice]
        self.first = self.last = notice.job.created

    def fits(self, key, created):
        return key == self.key and self.first - BATCH_MS <= created <= self.last + BATCH_MS

    def add(self, notice):
        self.notices.append(notice)
        self.first = min(self.first, notice.job.created)
        self.last = max(self.last, notice.job.created)

    @property
    def newest(self):
        return self.notices[0]

    @property
    def ids(self):
        return [n.pk for n in self.notices]

    @property
    def unread_ids(self):
        return [n.pk for n in self.notices if not n.read]

    @property
    def what(self):
        job = self.newest.job
        return f"analysis {job.analysis.name}" if job.analysis_id else job.executable_name or job.name

    @property
    def counts(self):
        """The states of the batch's notices, most common first: "12 done, 2 failed"."""
        return ", ".join(f"{n} {state}" for state, n in Counter(n.state for n in self.notices).most_common())

    @property
    def summary(self):
        noun = "stages" if self.newest.job.analysis_id else "jobs"
        return f"{len(self.notices)} {noun} of {self.what} ended: {self.counts}"


def batches(notices):
    """Notices (each with its job, newest first) as batches in the same order: the notices of one analysis,
    or of jobs of one applet in one project created within BATCH_MS of each other, are one batch."""
    found = []
    for notice in notices:
        job = notice.job
        key = ("analysis", job.analysis_id) if job.analysis_id else ("applet", job.project_id, job.executable)
        batch = next((b for b in found if b.fits(key, job.created)), None)
        if batch is None:
            found.append(Batch(key, notice))
        else:
            batch.add(notice)
    return found
