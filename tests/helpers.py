"""Helpers for tests of any package: waiting for something another thread or process does, launching."""

import asyncio
import time


def wait_for(predicate, timeout=90, what="the condition", interval=0.2):
    """Poll `predicate` until it returns something true and return that; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


async def async_wait_for(predicate, timeout=5, what="the condition", interval=0.01):
    """`wait_for` for a coroutine: polls without blocking the event loop."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(interval)


def launch(actor, project, applet):
    """Run `applet` in `project` through the API as `actor` (an ApiClient); return the job's id."""
    return actor.ok(f"/{applet}/run", {"project": project})["id"]
