"""A worker that could run no job refuses to start and says why, once; one that can, says what its host lacks."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
BIN = Path(sys.executable).parent


def start_worker(tmp_path, **env):
    environment = {
        **os.environ,
        "DXWEB_DATA_DIR": str(tmp_path / "data"),
        "DXWEB_NAMESPACE": f"start-{tmp_path.name}",
        **env,
    }
    environment.pop("DJANGO_SETTINGS_MODULE", None)
    return subprocess.Popen(
        [str(BIN / "celery"), "-A", "dxweb", "worker", "-l", "INFO", "-c", "1", "--without-mingle", "--without-gossip"],
        cwd=ROOT,
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def test_a_worker_with_a_bwrap_that_does_not_exist_refuses_to_start_saying_why_once(tmp_path):
    worker = start_worker(tmp_path, DXWEB_BWRAP="/nonexistent/bwrap")
    out, _ = worker.communicate(timeout=120)
    assert worker.returncode != 0
    assert out.count("This worker cannot run jobs: DXWEB_BWRAP is '/nonexistent/bwrap'") == 1, out
    assert " ready." not in out


def test_a_worker_with_a_bwrap_that_cannot_run_refuses_to_start(tmp_path):
    fake = tmp_path / "bwrap"
    fake.write_text("#!/bin/sh\necho 'bwrap: No permissions to create new namespace' >&2\nexit 1\n")
    fake.chmod(0o755)
    worker = start_worker(tmp_path, DXWEB_BWRAP=str(fake))
    out, _ = worker.communicate(timeout=120)
    assert worker.returncode != 0
    assert f"the bwrap program {fake} cannot make a sandbox here: bwrap: No permissions to create new namespace" in out


def test_the_check_passes_with_the_bwrap_the_project_installs(settings):
    from jobs.execution import sandbox

    settings.DXWEB_SANDBOX = "bubblewrap"
    settings.DXWEB_BWRAP = ""
    notices = sandbox.check_worker()
    assert not any("bwrap" in n for n in notices)
