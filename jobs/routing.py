from channels.auth import AuthMiddlewareStack
from django.urls import re_path

from dxweb.ids import id_pattern

from .logs import consumers
from .ssh import terminal

JOB_ID = id_pattern("job", "job_id")
PROJECT_ID = id_pattern("project", "project_id")

websocket_urlpatterns = [
    # dx watch: the token comes in the first frame; no session, so no session middleware on every frame.
    # Any ID: one that is not a job's gets the same refusal as a job the caller may not see.
    re_path(r"^(?P<job_id>[^/]+)/getLog/websocket$", consumers.JobLogConsumer.as_asgi()),
    # The browser's sockets (session auth); page URLs end with a slash, as in projects/urls.py.
    re_path(rf"^ws/projects/{PROJECT_ID}/jobs/$", AuthMiddlewareStack(consumers.JobStatesConsumer.as_asgi())),
    re_path(r"^ws/jobs/mine/$", AuthMiddlewareStack(consumers.JobStatesConsumer.as_asgi())),
    re_path(r"^ws/notifications/$", AuthMiddlewareStack(consumers.NoticesConsumer.as_asgi())),
    re_path(rf"^ws/jobs/{JOB_ID}/$", AuthMiddlewareStack(consumers.JobPageConsumer.as_asgi())),
    re_path(rf"^ws/jobs/{JOB_ID}/terminal/$", AuthMiddlewareStack(terminal.TerminalConsumer.as_asgi())),
]
