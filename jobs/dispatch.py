"""Send the Celery tasks of jobs/tasks.py by name: code that queues work never imports what runs it.

Each message is only a wake-up: the task finds its work in the database and is safe to run twice.
"""

from dxweb.celery import app


def run_job(job_id):
    """Wake a worker to claim and run a runnable job."""
    app.send_task("jobs.run_job", args=[job_id])


def wake():
    """Wake a worker to claim whatever runnable job its host should run next."""
    app.send_task("jobs.run_job", args=[None])


def email_job_ended(notification_id):
    """Have a worker email a job's launcher that the job ended."""
    app.send_task("jobs.email_job_ended", args=[notification_id])
