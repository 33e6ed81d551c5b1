"""Fixtures and helpers of the sandbox tests: the sandbox modes, a data directory like the real one, and
running a job's script in a sandbox."""

import os
import shutil
import sys
import tempfile
import threading
from pathlib import Path

import pytest

from jobs.execution import sandbox

PYTHON = sys.executable


@pytest.fixture
def bubblewrap(settings):
    """Run in bubblewrap mode; skip where no bwrap can run here, except in CI where that is a failure."""
    settings.DXWEB_SANDBOX = "bubblewrap"
    try:
        sandbox.bwrap_program()
    except sandbox.SandboxError as err:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{err} (CI must run the sandbox tests)")
        pytest.skip(str(err))


@pytest.fixture(params=["bubblewrap", "none"])
def mode(request, settings):
    """Run the test in both sandbox modes."""
    if request.param == "bubblewrap":
        request.getfixturevalue("bubblewrap")
    settings.DXWEB_SANDBOX = request.param
    return request.param


@pytest.fixture
def data_dir(settings):
    """A data directory like the real one (database, secret key, blobs, jobs), on the root filesystem.

    Not under /tmp: a job's /tmp is private anyway, which would make hiding it prove nothing.
    """
    base = Path(tempfile.mkdtemp(prefix="dxweb-sandbox-test-", dir="/var/tmp"))
    data = base / "data"
    (data / "blobs").mkdir(parents=True)
    (data / "jobs").mkdir()
    (data / "db.sqlite3").write_text("the database")
    (data / "secret_key").write_text("the secret key")
    (data / "blobs" / "blob-1").write_text("someone's file")
    settings.DATA_DIR = data
    settings.MEDIA_ROOT = data / "blobs"
    settings.DXWEB_JOBS_DIR = data / "jobs"
    yield data
    shutil.rmtree(base, ignore_errors=True)


def make_spec(job_id, **kwargs):
    from django.conf import settings

    workdir = Path(settings.DXWEB_JOBS_DIR) / job_id
    (workdir / "home").mkdir(parents=True, exist_ok=True)
    env = {
        "HOME": sandbox.HOME,
        "LANG": "C.UTF-8",
        "DX_JOB_ID": job_id,
        "PATH": f"{os.path.dirname(PYTHON)}:/usr/local/bin:/usr/bin:/bin",
    }
    return sandbox.SandboxSpec(
        job_id=job_id, home=workdir / "home", env=kwargs.pop("env", env), workdir=workdir, **kwargs
    )


def run(spec, script):
    """Run a bash script in the sandbox to the end; return (exit status, stdout, stderr)."""
    proc = sandbox.launch(spec, ["bash", "-c", script])
    err = []
    reader = threading.Thread(target=lambda: err.append(proc.stderr.read()))
    reader.start()
    out = proc.stdout.read()
    reader.join()
    return proc.wait(), out.decode(), err[0].decode()


@pytest.fixture
def no_sandbox_outlives_its_test(monkeypatch):
    """Kill what a failing test left running (used by the sandbox modules through `pytestmark`)."""
    started = []
    launch = sandbox.launch

    def recording_launch(*args, **kwargs):
        started.append(launch(*args, **kwargs))
        return started[-1]

    monkeypatch.setattr(sandbox, "launch", recording_launch)
    yield
    for proc in started:
        proc.kill_tree()
