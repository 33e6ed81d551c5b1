"""Helpers for tests of any package: waiting for something another thread or process does, launching."""

import asyncio
import os
import time

import psutil


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


def unique_seconds(base):
    """A sleep length that doubles as a marker: no other process has `sleep <it>` on its command line."""
    return f"{base}.{int.from_bytes(os.urandom(3), 'big') % 1000000:06d}"


def sleeping(seconds):
    """The processes running `sleep <seconds>` (a job's marker), wherever they are."""
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        if f"sleep {seconds}" in " ".join(proc.info["cmdline"] or []):
            found.append(proc)
    return found


def launch(actor, project, applet):
    """Run `applet` in `project` through the API as `actor` (an ApiClient); return the job's id."""
    return actor.ok(f"/{applet}/run", {"project": project})["id"]
