from channels.auth import AuthMiddlewareStack
from django.urls import re_path

from .logs import consumers
from .ssh import terminal

JOB_ID = r"(?P<job_id>job-[0-9A-Za-z]{24})"

websocket_urlpatterns = [
    # dx watch: the token comes in the first frame; no session, so no session middleware on every frame.
    # Any ID: one that is not a job's gets the same refusal as a job the caller may not see.
    re_path(r"^(?P<job_id>[^/]+)/getLog/websocket$", consumers.JobLogConsumer.as_asgi()),
    # The browser's sockets (session auth); page URLs end with a slash, as in projects/urls.py.
    re_path(r"^ws/projects/(?P<project_id>project-[0-9A-Za-z]{24})/jobs/$",
            AuthMiddlewareStack(consumers.JobStatesConsumer.as_asgi())),
    re_path(r"^ws/jobs/mine/$", AuthMiddlewareStack(consumers.JobStatesConsumer.as_asgi())),
    re_path(rf"^ws/jobs/{JOB_ID}/$", AuthMiddlewareStack(consumers.JobPageConsumer.as_asgi())),
    re_path(rf"^ws/jobs/{JOB_ID}/terminal/$", AuthMiddlewareStack(terminal.TerminalConsumer.as_asgi())),
]
