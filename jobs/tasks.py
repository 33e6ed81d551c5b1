"""Celery tasks: each takes an ID, claims in the database, and is safe to run twice.

Nothing in the product imports this module: work is queued by name (jobs/dispatch.py), and only
a worker loads it.
"""

import logging
import mmap
import threading

from celery import shared_task, signals
from django.conf import settings

from . import scheduler
from .ending import reap as do_reap
from .execution.runner import work
from .execution.sandbox import SandboxError, check_worker
from .notifications import send_email

log = logging.getLogger(__name__)


@signals.worker_init.connect
def check_the_sandbox(**kwargs):
    """A worker that could run no job refuses to start, saying why once (not once per job)."""
    try:
        notices = check_worker()
    except SandboxError as err:
        log.critical("This worker cannot run jobs: %s", err)
        raise SystemExit(f"dxweb worker: cannot run jobs: {err}") from None
    for notice in notices:
        log.warning("%s", notice)


@signals.worker_ready.connect
def register_the_host(sender=None, **kwargs):
    """Say this host is here, with its capacity and lanes, and go on saying so while it runs."""
    lanes = getattr(getattr(sender, "pool", None), "limit", 0) or 0
    cap = scheduler.capacity()
    log.info("worker host %s: %s, %s lanes", settings.DXWEB_WORKER_NAME, cap, lanes)
    threading.Thread(target=scheduler.beat, args=(settings.DXWEB_WORKER_NAME, cap, lanes), daemon=True).start()


# Set when this worker begins to stop: one byte of memory shared with its pool processes, which are
# forked after this module is imported (a worker imports its tasks first).
_stopping = mmap.mmap(-1, 1)


@signals.worker_shutting_down.connect
def stop_claiming(**kwargs):
    """The worker is stopping (Ctrl-C, SIGTERM): it takes no more wake-ups, and its lanes claim no more
    jobs; they end the ones they run, in the time the stop gives them."""
    _stopping[0] = 1


def stopping():
    return _stopping[0] == 1


@shared_task(name="jobs.run_job", acks_late=True)
def run_job(job_id=None):
    """A wake-up: claim and run what this host should run next (not necessarily `job_id`, the job
    whose launch sent it), until nothing fits; a spare wake-up finds nothing and returns."""
    work(f"{settings.DXWEB_WORKER_NAME}:{run_job.request.hostname or ''}", job_id, stopping=stopping)


@shared_task(name="jobs.email_job_ended", autoretry_for=(OSError,), retry_backoff=30, max_retries=5)
def email_job_ended(notification_id):
    """Email a job's launcher that it ended (SMTP can be slow or down: retried, never in a request)."""
    send_email(notification_id)


@shared_task(name="jobs.reap")
def reap():
    """Periodic: fail or retry jobs whose worker vanished, and wake runnable jobs nobody claimed."""
    report = do_reap()
    return {k: len(v) for k, v in report.items()}
