"""Platform-wide Celery tasks."""

from celery import shared_task


@shared_task(name="dxweb.ping")
def ping(value=None):
    """Answer a wake-up; used by health checks and the Celery round-trip benchmark baseline."""
    return value
