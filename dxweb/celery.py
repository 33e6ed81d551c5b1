"""The Celery app: workers claim jobs from the database; a message is only a wake-up."""

import os

from celery import Celery, signals
from celery.platforms import set_pdeathsig

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dxweb.settings")

app = Celery("dxweb")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
if os.environ.get("DXWEB_BENCH_VIEWS", "").lower() in ("1", "true", "yes", "on"):
    app.autodiscover_tasks(["bench"])  # bench/tasks.py: the Celery baseline of bench/jobs.py


@signals.beat_embedded_init.connect
def _end_the_embedded_beat_with_its_worker(**kwargs):
    """`worker -B` runs beat in a child process: SIGKILL it when the worker dies, even by SIGKILL,
    as Celery does for its pool processes (else it lives on, and a restarted worker adds a second)."""
    set_pdeathsig("SIGKILL")
