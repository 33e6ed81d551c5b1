"""A running job's resource samples: taken from its cgroup by the worker (jobs/execution/sampler.py),
stored in batches, bounded for long jobs, and sent to its page over the page's socket."""

import asyncio
import json
import shlex
import threading

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.conf import settings as django_settings
from django.test import Client

from dxweb.asgi import application
from jobs.execution import sampler as sampler_module
from jobs.execution import sandbox
from jobs.execution.sampler import Sampler
from jobs.execution.sandbox import cgroups
from jobs.models import Job, ResourceSample, State
from projects import actions as project_actions
from projects.models import now_ms

from .conftest import make_spec

pytestmark = pytest.mark.django_db(transaction=True)

# Burns one core for 2.5 s while taking 20 MB more memory every 0.25 s (written, so it is resident).
BUSY = """
import time
held, start, next_alloc = [], time.monotonic(), 0.0
while time.monotonic() - start < 2.5:
    if time.monotonic() - start >= next_alloc:
        held.append(bytearray(b"x") * (20 * 1024 * 1024))
        next_alloc += 0.25
print(len(held))
"""


@pytest.fixture
def job(alice):
    project = project_actions.create_container(alice.user, "samples")
    return Job.objects.create(
        id="job-" + "S" * 24,
        name="busy",
        executable="applet-" + "b" * 24,
        project=project,
        launched_by=alice.user,
        state=State.RUNNING,
        tries=1,
        instance_type="mem1_ssd1_x2",
        started_running=now_ms(),
    )


def test_a_busy_sandboxed_job_is_sampled_with_its_cpu_and_rising_memory_in_few_inserts(
    bubblewrap, data_dir, job, settings, monkeypatch
):
    settings.DXWEB_SAMPLE_SECONDS = 0.2
    inserts, threads = [], set()
    bulk_create = ResourceSample.objects.bulk_create

    def insert(rows):
        threads.add(threading.current_thread().name)
        inserts.append(list(rows))
        return bulk_create(inserts[-1])

    monkeypatch.setattr(ResourceSample.objects, "bulk_create", insert)
    spec = make_spec(job.id, cpus=1, memory_mb=1024, disk_mb=1024)
    proc = sandbox.launch(spec, ["bash", "-c", f"exec python3 -c {shlex.quote(BUSY)}"])
    sampler = Sampler.start_for(job, proc)
    assert sampler is not None
    out = proc.stdout.read()
    assert proc.wait() == 0, proc.stderr.read()
    sampler.stop()
    assert not sampler.is_alive() and out.strip() in (b"10", b"11")  # 11 when the last check straddles 2.5 s
    # Stored on the log store's thread and its lasting connection, not one the sampler opens per job.
    assert threads == {"log-store"}, threads

    rows = list(ResourceSample.objects.filter(job=job).order_by("at").values_list("at", "cpu", "memory_mb", "disk_mb"))
    assert len(rows) >= 8, rows  # 2.5 s at 0.2 s
    assert [r[0] for r in rows] == sorted({r[0] for r in rows})
    cpus = [r[1] for r in rows if r[1] is not None]
    assert max(cpus) > 0.5 and max(cpus) < 1.3, cpus  # one busy core, on a one-CPU cpuset
    memory = [r[2] for r in rows]
    # It took 200 MB over the run (the last sample may come once it has ended and given them back).
    assert max(memory) > memory[0] + 100, memory
    assert max(memory[len(memory) // 2 :]) > max(memory[: len(memory) // 4]) + 50
    assert any(r[3] is not None for r in rows)  # the disk watch's looks
    # Batches: the first sample at once, then one insert per 2 s, and the rest at the end.
    assert sum(len(batch) for batch in inserts) == len(rows) and len(inserts) <= 4, [len(b) for b in inserts]


def test_a_job_without_cgroups_gets_no_samples(data_dir, job, settings, monkeypatch):
    settings.DXWEB_SANDBOX = "none"
    monkeypatch.setattr(cgroups, "_hierarchies", lambda: [])
    proc = sandbox.launch(make_spec(job.id, memory_mb=256), ["bash", "-c", "sleep 0.3"])
    assert Sampler.start_for(job, proc) is None
    assert proc.wait() == 0
    assert not ResourceSample.objects.filter(job=job).exists()


def test_sampling_is_off_at_zero_seconds(data_dir, job, settings, monkeypatch):
    settings.DXWEB_SAMPLE_SECONDS = 0
    proc = sandbox.launch(make_spec(job.id, memory_mb=256), ["bash", "-c", "sleep 0.1"])
    assert Sampler.start_for(job, proc) is None
    proc.wait()


class FakeCgroup:
    def __init__(self):
        self.cpu_s, self.memory = 0.0, 10 * 1024 * 1024

    def usage(self):
        return self.cpu_s, self.memory


class FakeProc:
    disk_now_mb = 3.0


def test_a_long_job_keeps_a_bounded_number_of_samples_with_its_peaks(job, monkeypatch):
    monkeypatch.setattr(sampler_module, "MAX_SAMPLES", 8)
    cgroup = FakeCgroup()
    sampler = Sampler(job, FakeProc(), cgroup, interval=0.5)
    spike_at = 5
    for i in range(40):
        cgroup.cpu_s += 0.001
        cgroup.memory = (500 if i == spike_at else 10 + i) * 1024 * 1024
        sampler.sample()
        assert len(sampler.kept) < 8
        if i % 3 == 0:
            assert sampler.flush()
    assert sampler.flush()
    # Halved at the 8th sample, then every 4 (each half of the cap spans as long as all before it).
    assert sampler.interval == 0.5 * 2**9
    assert max(row[2] for row in sampler.kept) == 500.0  # the peak survived the thinning
    assert [r[0] for r in sampler.kept] == sorted(r[0] for r in sampler.kept)
    stored = ResourceSample.objects.filter(job=job).order_by("at").values_list("at", "cpu", "memory_mb", "disk_mb")
    assert list(stored) == [tuple(r) for r in sampler.kept]


def test_a_try_that_lost_the_job_stores_nothing_more(job):
    sampler = Sampler(job, FakeProc(), FakeCgroup(), interval=0.5)
    sampler.sample()
    Job.objects.filter(pk=job.pk).update(tries=2)  # the reaper gave the job to another try
    assert sampler.flush() is False
    assert not ResourceSample.objects.filter(job=job).exists()


# --- the job page's socket ----------------------------------------------------------------------

ORIGIN = b"http://127.0.0.1:8000"


def session_cookie(user):
    client = Client()
    client.force_login(user)
    return f"{django_settings.SESSION_COOKIE_NAME}={client.cookies[django_settings.SESSION_COOKIE_NAME].value}".encode()


async def open_page_socket(job_id, user):
    cookie = await sync_to_async(session_cookie)(user)
    headers = [(b"origin", ORIGIN), (b"host", b"127.0.0.1:8000"), (b"cookie", cookie)]
    communicator = WebsocketCommunicator(application, f"/ws/jobs/{job_id}/", headers=headers)
    connected, _ = await communicator.connect()
    assert connected
    await communicator.send_to(text_data=json.dumps({"cursors": {}}))
    return communicator


async def frames_until(communicator, done, timeout=10):
    frames = []
    while True:
        message = await communicator.receive_output(timeout=timeout)
        if message["type"] == "websocket.close":
            frames.append({"type": "closed", "code": message.get("code")})
            return frames
        frames.append(json.loads(message["text"]))
        if done(frames):
            return frames


def add_samples(job, *ats):
    ResourceSample.objects.bulk_create(
        ResourceSample(job=job, at=at, cpu=0.5, memory_mb=100.0 + i, disk_mb=1.0) for i, at in enumerate(ats)
    )


def test_a_finished_jobs_page_gets_all_its_samples_and_limits_before_the_end(job, alice):
    add_samples(job, 1000, 1500, 2000)
    Job.objects.filter(pk=job.pk).update(state=State.DONE, stopped_running=now_ms())

    async def scenario():
        communicator = await open_page_socket(job.pk, alice.user)
        frames = await frames_until(communicator, lambda f: f[-1]["type"] == "end")
        await communicator.disconnect()
        return frames

    frames = asyncio.run(scenario())
    kinds = [f["type"] for f in frames]
    assert kinds.index("samples") < kinds.index("end")
    samples = [f for f in frames if f["type"] == "samples"]
    assert [s[0] for f in samples for s in f["samples"]] == [1000, 1500, 2000]
    assert samples[0]["samples"][0] == [1000, 0.5, 100.0, 1.0]
    assert samples[0]["limits"] == {"cpus": 2, "memory_mb": 3800, "disk_mb": django_settings.DXWEB_DEFAULT_DISK_MB}
    assert "note" not in samples[0]


def test_a_running_jobs_page_gets_the_new_samples_as_they_are_stored(job, alice):
    add_samples(job, 1000)

    async def scenario():
        communicator = await open_page_socket(job.pk, alice.user)
        first = await frames_until(communicator, lambda f: f[-1]["type"] == "samples")
        await sync_to_async(add_samples)(job, 1500, 2000)
        live = await frames_until(communicator, lambda f: f[-1]["type"] == "samples")
        await sync_to_async(Job.objects.filter(pk=job.pk).update)(state=State.DONE, stopped_running=now_ms())
        rest = await frames_until(communicator, lambda f: f[-1]["type"] == "end")
        await communicator.disconnect()
        return first, live, rest

    first, live, rest = asyncio.run(scenario())
    assert [s[0] for s in first[-1]["samples"]] == [1000]
    assert [s[0] for s in live[-1]["samples"]] == [1500, 2000]  # only the new ones
    assert not [f for f in rest if f["type"] == "samples"]


def test_a_job_that_ran_without_samples_says_why(job, alice, settings):
    Job.objects.filter(pk=job.pk).update(state=State.DONE, started_running=now_ms() - 10_000, stopped_running=now_ms())

    def note():
        async def scenario():
            communicator = await open_page_socket(job.pk, alice.user)
            frames = await frames_until(communicator, lambda f: f[-1]["type"] == "end")
            await communicator.disconnect()
            return [f for f in frames if f["type"] == "samples"][0]

        frame = asyncio.run(scenario())
        assert frame["samples"] == []
        return frame["note"]

    assert note() == "No resource figures: this worker runs jobs without cgroups"
    settings.DXWEB_SAMPLE_SECONDS = 0
    assert note() == "No resource figures: sampling is off (DXWEB_SAMPLE_SECONDS=0)"


def test_samples_are_read_in_the_sampler_thread_only_while_the_job_runs(job, monkeypatch):
    """stop() returns once the last samples are stored, even while the job still runs (killed next)."""
    waiting = threading.Event()

    class Running(FakeProc):
        def wait(self, timeout=None):
            waiting.set()
            threading.Event().wait(min(timeout or 0, 0.05))
            return None

    sampler = Sampler(job, Running(), FakeCgroup(), interval=0.05)
    sampler.last = (0.0, 0.0)
    sampler.start()
    assert waiting.wait(5)
    sampler.stop()
    assert not sampler.is_alive()
    assert ResourceSample.objects.filter(job=job).count() == len(sampler.kept) > 0
