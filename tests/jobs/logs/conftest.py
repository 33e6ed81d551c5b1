"""Fixtures and the log socket of the log tests."""

import json

import pytest
from channels.testing import WebsocketCommunicator

from dxweb.asgi import application
from dxweb.ids import new_id
from jobs.models import Job, State
from projects import actions as project_actions


@pytest.fixture
def job(alice):
    """A runnable job in a project of alice's, with no log yet. Its ID is new at each test: with Redis,
    a group named after it outlives the test database (channels_redis keeps members for a day)."""
    project = project_actions.create_container(alice.user, "logs")
    return Job.objects.create(
        id=new_id("job"),
        name="logger",
        executable="applet-" + "b" * 24,
        project=project,
        launched_by=alice.user,
        state=State.RUNNABLE,
    )


async def open_stream(job_id, token, origin="http://127.0.0.1:8000", client=None, **request):
    """/job-x/getLog/websocket opened as `dx watch` does: its first frame sent, with `request`'s fields."""
    communicator = WebsocketCommunicator(
        application, f"/{job_id}/getLog/websocket", headers=[(b"origin", origin.encode()), (b"host", b"127.0.0.1:8000")]
    )
    if client is not None:
        communicator.scope["client"] = [client, 40000]
    connected, _ = await communicator.connect()
    assert connected
    await communicator.send_to(
        text_data=json.dumps(
            {
                "access_token": token,
                "token_type": "Bearer",
                "numRecentMessages": 262144,
                "recurseJobs": False,
                "tail": True,
                **request,
            }
        )
    )
    return communicator
