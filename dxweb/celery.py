"""The Celery app: workers claim jobs from the database; a message is only a wake-up."""
import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dxweb.settings")

app = Celery("dxweb")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
if os.environ.get("DXWEB_BENCH_VIEWS", "").lower() in ("1", "true", "yes", "on"):
    app.autodiscover_tasks(["bench"])  # bench/tasks.py: the Celery baseline of bench/jobs.py
