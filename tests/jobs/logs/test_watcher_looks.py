"""What a watcher of a job tree costs the store: its looks are spaced by the tree's size, and no hint is lost.

A look reads every job of the tree (states, and lines past each cursor): a thousand-subjob scatter
wakes its watchers at each line and state, so looking at every hint made each watcher's database time
grow with the tree and with its activity. The job page's socket and `dx watch --tree` (the shared
tail) both space their looks (jobs/logs/store.py, LogReader.looked).
"""

import asyncio
import json
import threading
import time

import pytest
from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer

from jobs.logs import consumers
from jobs.logs.store import LOOK_SPACING_MAX, LOOK_SPACING_PER_JOB, LogReader, group_name, notify_state
from jobs.models import Job, LogLine, State
from tests.jobs.logs.conftest import open_stream
from tests.jobs.test_big_tree import scatter
from tests.jobs.test_ws_pages import frames_until, open_socket, world  # noqa: F401 (world is a fixture)

pytestmark = pytest.mark.django_db(transaction=True)

CHILDREN = 1_000
HINTS = 50


def test_the_spacing_grows_with_the_tree_up_to_a_bound_and_a_full_batch_is_not_spaced(world):  # noqa: F811
    reader = LogReader(world["root"], tree=True)

    def spacing(jobs, full=False):
        reader.names = {f"job-{i}": "" for i in range(jobs)}
        before = time.monotonic()
        reader.looked(full=full)
        return reader.next_look - before

    assert spacing(1) == pytest.approx(LOOK_SPACING_PER_JOB, abs=0.01)  # a lone job: looked at again at once
    assert spacing(CHILDREN) == pytest.approx(CHILDREN * LOOK_SPACING_PER_JOB, abs=0.01)
    assert spacing(100_000) == pytest.approx(LOOK_SPACING_MAX, abs=0.01)
    assert spacing(CHILDREN, full=True) == pytest.approx(0, abs=0.01)  # more to read: no wait


@pytest.fixture
def looks(monkeypatch):
    """The moments of every look at a tree's jobs (LogReader.jobs), from any thread."""
    seen, lock, real = [], threading.Lock(), LogReader.jobs

    def counted(self):
        with lock:
            seen.append(time.monotonic())
        return real(self)

    monkeypatch.setattr(LogReader, "jobs", counted)
    return seen


async def flood(children):
    """HINTS "there is more" hints to the tree's jobs, 10 ms apart, as a busy scatter sends them; return
    how long that took."""
    layer = get_channel_layer()
    started = time.monotonic()
    for i in range(HINTS):
        await layer.group_send(group_name(children[i % 10]), {"type": "log.more"})
        await asyncio.sleep(0.01)
    return time.monotonic() - started


def most_looks(seconds):
    """At most one look per spacing of a thousand-job tree, and a few more for the edges."""
    return seconds / (CHILDREN * LOOK_SPACING_PER_JOB) + 3


def test_a_big_trees_page_socket_looks_a_few_times_a_second_however_many_hints(world, alice, looks):  # noqa: F811
    root = world["root"]
    children = scatter(root, CHILDREN)

    async def scenario():
        _, page = await open_socket(f"/ws/jobs/{root.pk}/", alice, first={"cursors": {}})
        tree = await frames_until(page, lambda f: f[-1].get("type") == "tree")
        before = len(looks)
        seconds = await flood(children)
        made = len(looks) - before
        await page.disconnect()
        return tree[-1], made, seconds

    tree, made, seconds = asyncio.run(scenario())
    assert len(tree["jobs"]) == CHILDREN + 2  # the root, the fixture's child and the scatter
    assert 1 <= made <= most_looks(seconds), (made, seconds)


def test_dx_watch_of_a_big_tree_looks_a_few_times_a_second_however_many_hints(world, alice, looks):  # noqa: F811
    root = world["root"]
    children = scatter(root, CHILDREN)
    LogLine.objects.create(job_id=children[0], seq=1, timestamp=1000, level="STDOUT", msg="first")

    async def scenario():
        stream = await open_stream(root.pk, alice.token, recurseJobs=True)
        first = json.loads((await stream.receive_output(timeout=10))["text"])
        await asyncio.sleep(0.5)  # the shared tail's first looks
        before = len(looks)
        seconds = await flood(children)
        made = len(looks) - before
        # A line stored meanwhile still arrives: spacing delays a look, it loses nothing.
        await sync_to_async(LogLine.objects.create)(
            job_id=children[1], seq=1, timestamp=2000, level="STDOUT", msg="second"
        )
        await get_channel_layer().group_send(group_name(children[1]), {"type": "log.more"})
        second = json.loads((await stream.receive_output(timeout=10))["text"])
        await stream.disconnect()
        return first, second, made, seconds

    first, second, made, seconds = asyncio.run(scenario())
    assert (first["msg"], second["msg"]) == ("first", "second")
    assert made <= most_looks(seconds), (made, seconds)


def test_a_state_change_hinted_during_a_read_is_sent_without_waiting_for_the_poll(world, alice, settings, monkeypatch):  # noqa: F811
    """The hint of a change that a read began too early to see wakes the next read at once: before, the
    wait after the read forgot it, and the change waited for the poll (here 30 s, more than the test's
    10 s wait for the frame)."""
    settings.DXWEB_LOG_POLL_SECONDS = 30
    root = world["root"]
    real, reads, loop = consumers.JobStatesConsumer._states, [], []

    def states_then_a_change(self):
        result = real(self)
        reads.append(result)
        if len(reads) == 2:  # the first read after the first frame: a change it did not see, and its hint
            Job.objects.filter(pk=root.pk).update(state=State.RUNNING)  # with no hint of its own but this:
            # the socket's handler of the hint, on its loop, while this read still runs.
            asyncio.run_coroutine_threadsafe(self.jobs_changed({"type": "jobs.changed"}), loop[0]).result(5)
        return result

    monkeypatch.setattr(consumers.JobStatesConsumer, "_states", states_then_a_change)

    async def scenario():
        loop.append(asyncio.get_running_loop())
        _, listing = await open_socket(f"/ws/projects/{root.project_id}/jobs/", alice, first={"watch": [root.pk]})
        initial = await frames_until(listing, lambda f: True)
        await sync_to_async(notify_state)(root.project_id, alice.user.pk)  # wakes the second read
        changed = await frames_until(listing, lambda f: "running" in json.dumps(f), timeout=10)
        await listing.disconnect()
        return initial[0], changed

    initial, changed = asyncio.run(scenario())
    assert initial == {"states": {root.pk: "runnable"}}
    assert changed[-1] == {"states": {root.pk: "running"}}
