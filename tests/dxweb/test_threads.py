"""dxweb/threads.py: a job's threads run on reused daemon threads, with a thread's start / join / is_alive."""

import logging
import threading
import time

import pytest

from dxweb import threads
from dxweb.threads import ReusedThread


@pytest.fixture
def pool(monkeypatch):
    """A pool of this test's own, so that other tests' idle threads do not count."""
    fresh = threads._Pool()
    monkeypatch.setattr(threads, "_pool", fresh)
    return fresh


def wait_until(predicate, timeout=10):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_a_target_runs_under_its_name_and_join_waits_for_its_end(pool):
    release, seen = threading.Event(), []

    def target(a, b):
        seen.append((threading.current_thread().name, a + b, threading.current_thread().daemon))
        release.wait(10)

    thread = ReusedThread(target, name="log-job-x", args=(1, 2))
    assert not thread.is_alive()
    thread.start()
    wait_until(lambda: seen)
    assert thread.is_alive()
    thread.join(0.05)
    assert thread.is_alive()  # a join that times out leaves it running, as a thread's does
    release.set()
    thread.join(10)
    assert not thread.is_alive()
    assert seen == [("log-job-x", 3, True)]
    with pytest.raises(RuntimeError, match="only be started once"):
        thread.start()


def test_the_next_target_runs_on_the_idle_thread_with_no_new_thread(pool):
    idents = []
    first = ReusedThread(lambda: idents.append(threading.get_ident()), name="first")
    first.start()
    first.join(10)
    wait_until(lambda: pool.idle == 1)
    count = threading.active_count()
    second = ReusedThread(lambda: idents.append(threading.get_ident()), name="second")
    second.start()
    second.join(10)
    assert idents[0] == idents[1]
    assert threading.active_count() == count


def test_targets_running_at_once_each_get_a_thread(pool):
    release, idents = threading.Event(), set()

    def target():
        idents.add(threading.get_ident())
        release.wait(10)

    started = [ReusedThread(target, name=f"t{i}") for i in range(3)]
    for thread in started:
        thread.start()
    wait_until(lambda: len(idents) == 3)
    release.set()
    for thread in started:
        thread.join(10)
    wait_until(lambda: pool.idle == 3)


def test_a_failing_target_is_logged_and_its_thread_serves_the_next(pool, caplog):
    def fail():
        raise ValueError("boom")

    failing = ReusedThread(fail, name="failing")
    with caplog.at_level(logging.ERROR, logger="dxweb.threads"):
        failing.start()
        failing.join(10)
    assert not failing.is_alive()
    assert "thread failing failed" in caplog.text and "boom" in caplog.text
    wait_until(lambda: pool.idle == 1)
    done = []
    after = ReusedThread(lambda: done.append(threading.current_thread().name), name="after")
    after.start()
    after.join(10)
    assert done == ["after"]


def test_an_idle_thread_ends_after_a_while_and_a_later_target_gets_a_new_one(pool, monkeypatch):
    monkeypatch.setattr(threads, "IDLE_SECONDS", 0.1)
    idents = []
    first = ReusedThread(lambda: idents.append(threading.current_thread()), name="first")
    first.start()
    first.join(10)
    wait_until(lambda: not idents[0].is_alive())
    assert pool.idle == 0
    second = ReusedThread(lambda: idents.append(threading.current_thread()), name="second")
    second.start()
    second.join(10)
    assert idents[1] is not idents[0] and len(idents) == 2


def test_join_before_start_is_refused_as_a_thread_s(pool):
    with pytest.raises(RuntimeError, match="before it is started"):
        ReusedThread(lambda: None, name="never").join()
