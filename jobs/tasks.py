"""Celery tasks: each takes an ID, claims in the database, and is safe to run twice.

Nothing in the product imports this module: work is queued by name (jobs/dispatch.py), and only
a worker loads it.
"""

import logging
import socket

from celery import shared_task, signals

from .ending import reap as do_reap
from .execution.runner import run
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


@shared_task(name="jobs.run_job", acks_late=True)
def run_job(job_id):
    """Claim and run a runnable job; a duplicate delivery finds it claimed and returns."""
    run(job_id, f"{socket.gethostname()}:{run_job.request.hostname or ''}")


@shared_task(name="jobs.email_job_ended", autoretry_for=(OSError,), retry_backoff=30, max_retries=5)
def email_job_ended(notification_id):
    """Email a job's launcher that it ended (SMTP can be slow or down: retried, never in a request)."""
    send_email(notification_id)


@shared_task(name="jobs.reap")
def reap():
    """Periodic: fail or retry jobs whose worker vanished, and wake runnable jobs nobody claimed."""
    report = do_reap()
    return {k: len(v) for k, v in report.items()}
