"""Send the Celery tasks of jobs/tasks.py by name: code that queues work never imports what runs it.

Each message is only a wake-up: the task finds its work in the database and is safe to run twice.

Wake-ups have a queue of their own (DXWEB_WAKE_QUEUE), and one is sent only when none waits there
undelivered. A waiting wake-up is enough: no lane is idle while it waits (an idle lane takes it at
once), the lane that takes it claims every runnable job that fits, one after another, and a busy lane
looks for the next job after each one it runs (runner.work). A turn whose first claim leaves other
jobs runnable wakes one more lane the same way, so a burst spreads over every idle lane in turn. In a
burst, then, a few wake-ups go out rather than one per job, each of which a worker would have
received, acknowledged and run only to find its job taken (on Redis, 11 commands a message; on the
embedded broker, one file each, which its worker lists and sorts at every delivery).
"""

import logging

from django.conf import settings

from dxweb.celery import app

log = logging.getLogger(__name__)


def run_job(job_id):
    """Wake a worker to claim and run a runnable job (`job_id`: the job whose launch asks, for the logs)."""
    if not waiting():
        app.send_task("jobs.run_job", args=[job_id])


def wake():
    """Wake a worker to claim whatever runnable job its host should run next."""
    run_job(None)


def waiting():
    """How many wake-ups wait in their queue, delivered to no worker yet; 0 when the broker cannot say
    (a wake-up is then sent: a spare one costs a look, a missing one a job's start).

    Counted on kombu's virtual transports (Redis, the embedded one: one look at the queue's length).
    Another broker (AMQP) answers 0, so every wake-up is sent: its passive declare of a queue not made
    yet would close the pooled connection's channel."""
    try:
        with app.pool.acquire(block=True) as conn:
            channel = conn.default_channel
            return channel._size(settings.DXWEB_WAKE_QUEUE) if hasattr(channel, "_size") else 0
    except Exception:  # noqa: BLE001 (a broker down: send, and fail there as before)
        log.debug("could not count the waiting wake-ups", exc_info=True)
        return 0


def email_job_ended(notification_id):
    """Have a worker email a job's launcher that the job ended."""
    app.send_task("jobs.email_job_ended", args=[notification_id])
