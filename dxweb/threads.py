"""Threads reused from job to job.

A worker gives each running job a few threads of its own: its log writer, the reader of its log
sockets and pipes, its lease watch, its resource sampler, its disk watch and its API relay.
`threading.Thread.start()` waits until the new thread runs. In a busy worker the new thread must first
take the GIL from the threads already running. In a burst of 300 trivial jobs (py-spy `--idle` on a
lane), the starts of four of them (log writer, log sockets, lease watch, sampler) held the lane for
about a millisecond each: 7.6% of its time.

`ReusedThread` has the same start / join / is_alive, but runs its target on one of the process's
idle daemon threads, or on a new one when none is idle. Handing work to an idle thread is a queue
put: the caller does not wait for it. An idle thread ends after a minute with nothing to do.

Not for a thread that changes its own kernel state (a network namespace, say). The next target would
inherit it.
"""

import logging
import os
import queue
import threading

log = logging.getLogger(__name__)

IDLE_SECONDS = 60.0


class ReusedThread:
    """A thread's start / join / is_alive, for a target run on a reused daemon thread."""

    def __init__(self, target, name, args=()):
        self.target, self.name, self.args = target, name, args
        self._started = False
        self._done = threading.Event()

    def start(self):
        if self._started:
            raise RuntimeError("threads can only be started once")
        self._started = True
        _pool.run(self)

    def join(self, timeout=None):
        if not self._started:
            raise RuntimeError("cannot join a thread before it is started")
        self._done.wait(timeout)

    def is_alive(self):
        return self._started and not self._done.is_set()

    def _run(self):
        thread = threading.current_thread()
        thread.name = self.name  # what a stack dump (py-spy) shows
        try:
            self.target(*self.args)
        except Exception:  # noqa: BLE001 - as an uncaught exception ends a thread: logged, not raised
            log.exception("thread %s failed", self.name)
        finally:
            thread.name = "reusable-idle"
            self._done.set()


class _Pool:
    def __init__(self):
        self.lock = threading.Lock()
        self.work = queue.SimpleQueue()
        self.idle = 0  # threads waiting for work, less the work already handed to them

    def run(self, item):
        with self.lock:
            if self.idle:
                self.idle -= 1
                self.work.put(item)  # under the lock: an idle thread's timeout checks the queue under it
                return
        threading.Thread(target=self._serve, args=(item,), name=item.name, daemon=True).start()

    def _serve(self, item):
        while True:
            item._run()
            item = None  # the next target must not keep this one alive
            with self.lock:
                self.idle += 1
            while item is None:
                try:
                    item = self.work.get(timeout=IDLE_SECONDS)
                except queue.Empty:
                    with self.lock:
                        if self.work.empty():  # nothing was handed over meanwhile: this thread ends
                            self.idle -= 1
                            return


_pool = _Pool()


def _after_fork():
    global _pool  # noqa: PLW0603 - a forked child has none of its parent's threads
    _pool = _Pool()


os.register_at_fork(after_in_child=_after_fork)
