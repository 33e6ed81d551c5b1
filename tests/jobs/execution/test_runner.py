"""The runner's side of a job's sandbox: its log sockets and output pipes, and removing a finished job's
directory."""

import json
import os
import socket
import threading
import time
from types import SimpleNamespace

from jobs.execution.runner import LeaseWatch, LogSockets, _remove_soon
from jobs.logs.store import MAX_LINE


class Lines:
    def __init__(self):
        self.lines = []

    def write(self, level, msg, source="APP"):
        self.lines.append((level, msg, source))


def test_the_log_sockets_log_everything_sent_before_close_and_close_at_once(tmp_path):
    writer = Lines()
    sockets = LogSockets(tmp_path / "log", writer)
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as client:
        for i in range(50):
            message = {"level": 6, "msg": f"line {i}", "source": "DX_APP"}
            client.sendto(json.dumps(message).encode(), str(tmp_path / "log" / "bulk"))
        client.sendto(b"not json", str(tmp_path / "log" / "priority"))
    started = time.monotonic()
    sockets.close()
    assert time.monotonic() - started < 5 and not sockets.thread.is_alive()
    assert sorted(writer.lines) == sorted(
        [("INFO", f"line {i}", "DX_APP") for i in range(50)] + [("STDERR", "not json", "APP")]
    )


def test_the_code_s_stdout_and_stderr_are_logged_line_by_line_by_the_sockets_thread(tmp_path):
    writer = Lines()
    sockets = LogSockets(tmp_path / "log", writer)
    (out_r, out_w), (err_r, err_w) = os.pipe(), os.pipe()
    sockets.follow(os.fdopen(out_r, "rb"), os.fdopen(err_r, "rb"))
    os.write(out_w, b"one\ntw")  # a line cut across writes is one line
    os.write(err_w, "é\n\n".encode())
    time.sleep(0.05)
    os.write(out_w, b"o\n" + b"x" * 100_000 + b"\n")
    for _ in range(40):  # a line of 2.6 MB, written 64 KiB at a time: logged once, cut, not held whole
        os.write(out_w, b"y" * 65536)
    os.write(out_w, b"z\nno newline at the end")
    assert not sockets.streams_ended.is_set()
    os.close(out_w), os.close(err_w)
    assert sockets.streams_ended.wait(5)
    sockets.close()
    out = [msg for level, msg, _ in writer.lines if level == "STDOUT"]
    assert out[:3] == ["one", "two", "x" * 100_000] and out[4:] == ["no newline at the end"]
    assert out[3] == "y" * len(out[3]) and MAX_LINE < len(out[3]) <= MAX_LINE + 2 * 65536  # the writer cuts it
    assert [msg for level, msg, _ in writer.lines if level == "STDERR"] == ["é", ""]


def test_a_finished_jobs_directory_is_moved_aside_at_once_and_removed_behind(tmp_path):
    workdir = tmp_path / "jobs" / "job-done"
    (workdir / "home" / "deep").mkdir(parents=True)
    (workdir / "home" / "deep" / "file").write_text("x")
    _remove_soon(workdir)
    assert not workdir.exists()  # a next try may make it afresh at once
    deadline = time.monotonic() + 10
    while list((tmp_path / "jobs").iterdir()) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert list((tmp_path / "jobs").iterdir()) == []


def test_the_log_sockets_work_in_a_directory_deeper_than_a_socket_path_may_be(tmp_path):
    deep = tmp_path / ("d" * 60) / ("e" * 60) / "log"
    assert len(str(deep / "priority")) > 108  # more than sockaddr_un can hold
    writer = Lines()
    sockets = LogSockets(deep, writer)
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as client:
        os.chdir(deep)  # the client reaches it as the job does, by a short path (here a relative one)
        try:
            client.sendto(json.dumps({"level": 6, "msg": "from deep", "source": "DX_APP"}).encode(), "bulk")
        finally:
            os.chdir(tmp_path)
    sockets.close()
    assert writer.lines == [("INFO", "from deep", "DX_APP")]


def test_the_lease_watch_stops_a_run_whose_heartbeats_stall_and_spares_one_that_beats(settings):
    settings.DXWEB_LEASE_SECONDS = 1
    killed = threading.Event()
    stalled = LeaseWatch(SimpleNamespace(id="job-stalled", tries=1), SimpleNamespace(kill_tree=killed.set))
    spared = threading.Event()
    beating = LeaseWatch(SimpleNamespace(id="job-beating", tries=1), SimpleNamespace(kill_tree=spared.set))
    deadline = time.monotonic() + 2.5
    while time.monotonic() < deadline:  # its heartbeats succeed (what beat() records)
        beating.renewed = time.monotonic()
        time.sleep(0.1)
    assert killed.is_set() and stalled.expired  # no heartbeat for longer than the lease: stopped
    assert not spared.is_set() and not beating.expired
    beating.stop()
    stalled.stop()
