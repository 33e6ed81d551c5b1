"""The embedded broker never shows a consumer a message that is still being written.

kombu's own filesystem transport creates the message file, then encodes the message into it: a
worker polling in between reads an empty file, fails to parse it and stops, and the message is
lost. These tests poll at those moments.
"""

import os
import threading

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


def a_connection(folder, polling_interval):
    options = {
        "data_folder_in": str(folder),
        "data_folder_out": str(folder),
        "control_folder": str(folder / "control"),
        "polling_interval": polling_interval,
    }
    (folder / "control").mkdir(exist_ok=True)
    return Connection("filesystem://localhost//", transport=broker.FilesystemTransport, transport_options=options)


def test_a_waiting_consumer_wakes_when_a_message_lands_not_at_its_next_poll(tmp_path):
    # Polling every 60 s, the consumer would look once, then give up at the 5 s timeout.
    with a_connection(tmp_path, 60) as consumer, a_connection(tmp_path, 60) as producer:
        queue = consumer.SimpleQueue("wake")  # a name of its own: kombu keeps bindings per process
        timer = threading.Timer(0.3, lambda: producer.SimpleQueue("wake").put({"job": "job-1"}))
        timer.start()
        try:
            message = queue.get(block=True, timeout=5)
        finally:
            timer.join()
        assert message.payload == {"job": "job-1"}
        message.ack()
        assert consumer.transport.watch  # it waited on the watch
        with pytest.raises(queue.Empty):  # and an empty queue still times out
            queue.get(block=True, timeout=0.2)


def test_without_inotify_the_consumer_polls_as_kombu_does(tmp_path, monkeypatch, caplog):
    def no_inotify():
        raise OSError(24, "Too many open files")

    monkeypatch.setattr(broker, "INotify", no_inotify)
    with a_connection(tmp_path, 0.05) as consumer, a_connection(tmp_path, 0.05) as producer:
        queue = consumer.SimpleQueue("poll")
        timer = threading.Timer(0.2, lambda: producer.SimpleQueue("poll").put({"job": "job-2"}))
        timer.start()
        try:
            assert queue.get(block=True, timeout=5).payload == {"job": "job-2"}
        finally:
            timer.join()
        assert consumer.transport.watch is False
    assert "no inotify" in caplog.text
