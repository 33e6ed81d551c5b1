"""The embedded broker never shows a consumer a message that is still being written.

kombu's own filesystem transport creates the message file, then encodes the message into it: a
worker polling in between reads an empty file, fails to parse it and stops, and the message is
lost. These tests poll at those moments.
"""

import os

import pytest
from kombu import Connection

from dxweb import broker


@pytest.fixture
def channel(tmp_path):
    options = {
        "data_folder_in": str(tmp_path),
        "data_folder_out": str(tmp_path),
        "control_folder": str(tmp_path / "control"),
    }  # kombu's default is ./control
    with Connection(
        "filesystem://localhost//", transport=broker.FilesystemTransport, transport_options=options
    ) as conn:
        yield conn.default_channel


def test_a_consumer_polling_during_a_put_sees_nothing_then_the_whole_message(channel, monkeypatch):
    polls = []

    def poll():
        try:
            polls.append(channel._get("q"))
        except channel.Empty if hasattr(channel, "Empty") else Exception as exc:  # noqa: B030
            polls.append(type(exc).__name__)

    real_dumps, real_replace = broker.dumps, os.replace
    monkeypatch.setattr(broker, "dumps", lambda payload: (poll(), real_dumps(payload))[1])
    monkeypatch.setattr(broker.os, "replace", lambda a, b: (poll(), real_replace(a, b))[1])
    channel._put("q", {"body": list(range(1000))})
    assert polls == ["Empty", "Empty"]  # while encoding, and while the file is written but not in place
    assert channel._get("q") == {"body": list(range(1000))}
