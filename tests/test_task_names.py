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
    monkeypatch.setattr(dispatch, "waiting", lambda: 0)  # none waits: a wake-up is sent
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


def test_a_wake_up_is_sent_only_when_none_waits(monkeypatch):
    sent, waiting = [], [0]
    monkeypatch.setattr(app, "send_task", lambda name, args=None, **options: sent.append(name))
    monkeypatch.setattr(dispatch, "waiting", lambda: waiting[0])
    dispatch.run_job("job-a")
    waiting[0] = 1
    dispatch.run_job("job-b")
    dispatch.wake()
    dispatch.email_job_ended(7)  # not a wake-up: always sent
    assert sent == ["jobs.run_job", "jobs.email_job_ended"]
    assert settings.CELERY_TASK_ROUTES["jobs.run_job"]["queue"] == settings.DXWEB_WAKE_QUEUE


def test_the_waiting_wake_ups_are_counted_in_the_broker(monkeypatch, tmp_path):
    """On the suite's broker (embedded, or Redis in the scaled-out pass): a wake-up sent and not
    delivered is counted; a broker that cannot say counts as none waiting (a wake-up is then sent)."""
    monkeypatch.setattr(settings, "DXWEB_WAKE_QUEUE", f"test-wake-{tmp_path.name}")
    assert dispatch.waiting() == 0
    app.send_task("jobs.run_job", args=["job-x"], queue=settings.DXWEB_WAKE_QUEUE)
    try:
        assert dispatch.waiting() == 1
    finally:
        with app.pool.acquire(block=True) as conn:
            conn.default_channel.queue_purge(settings.DXWEB_WAKE_QUEUE)
    assert dispatch.waiting() == 0

    def broken(*args, **kwargs):
        raise OSError("broker down (test)")

    monkeypatch.setattr(app.pool, "acquire", broken)
    assert dispatch.waiting() == 0
