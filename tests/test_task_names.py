"""The Celery tasks' names are part of the deployment (queued messages, the beat schedule, workers
of the previous release during an upgrade): they are pinned here."""

from django.conf import settings

from dxweb.celery import app
from jobs import dispatch

PRODUCT_TASKS = {"dxweb.ping", "jobs.email_job_ended", "jobs.reap", "jobs.run_job"}


def registered():
    app.autodiscover_tasks(force=True)
    return {name for name in app.tasks if not name.startswith(("celery.", "bench."))}


def test_the_product_registers_exactly_its_pinned_task_names():
    assert registered() == PRODUCT_TASKS


def test_what_is_sent_by_name_and_scheduled_is_registered(monkeypatch):
    sent = []
    monkeypatch.setattr(app, "send_task", lambda name, args=None, **options: sent.append((name, args, options)))
    dispatch.run_job("job-x")
    dispatch.email_job_ended(7)
    assert sent == [("jobs.run_job", ["job-x"], {}), ("jobs.email_job_ended", [7], {})]
    scheduled = {entry["task"] for entry in settings.CELERY_BEAT_SCHEDULE.values()}
    assert {name for name, _, _ in sent} | scheduled <= registered()


def test_the_tasks_keep_their_delivery_options():
    """run_job acknowledges late (a worker that dies mid-job leaves the message for another); the
    email is retried while SMTP is down."""
    registered()
    assert app.tasks["jobs.run_job"].acks_late is True
    email = app.tasks["jobs.email_job_ended"]
    assert (email.autoretry_for, email.max_retries) == ((OSError,), 5)
