from django.urls import re_path

from . import consumers, terminal

JOB_ID = r"(?P<job_id>job-[0-9A-Za-z]{24})"

websocket_urlpatterns = [
    re_path(rf"^{JOB_ID}/getLog/websocket$", consumers.JobLogConsumer.as_asgi()),
    # The browser's sockets (session auth); page URLs end with a slash, as in projects/urls.py.
    re_path(r"^ws/projects/(?P<project_id>project-[0-9A-Za-z]{24})/jobs/$", consumers.JobStatesConsumer.as_asgi()),
    re_path(r"^ws/jobs/mine/$", consumers.JobStatesConsumer.as_asgi()),
    re_path(rf"^ws/jobs/{JOB_ID}/$", consumers.JobPageConsumer.as_asgi()),
    re_path(rf"^ws/jobs/{JOB_ID}/terminal/$", terminal.TerminalConsumer.as_asgi()),
]
