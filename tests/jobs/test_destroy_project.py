"""Destroying a project that has jobs: unfinished ones are terminated first, then the records go.

As on DNAnexus, `/project-x/destroy` refuses (InvalidState) while jobs are unfinished unless
`terminateJobs` is true, which `dx rmproject` sends once the user confirmed. The project's job
records (finished or terminated) are deleted with it: their describe answers ResourceNotFound.
"""

import json
import os
import time
from pathlib import Path

import psutil
import pytest

from jobs import actions
from jobs.logs.store import LogWriter
from jobs.models import Job, LogLine, State
from projects import actions as project_actions
from projects.models import ApiToken, Container
from tests.helpers import launch, wait_for
from tests.live import Dx, LiveServer
from tests.projects.api_helpers import assert_error

NAP = Path(__file__).parent / "apps" / "nap"


def test_destroy_refuses_unfinished_jobs_unless_told_to_terminate_them(alice, project, nap):
    job_id = launch(alice, project, nap)
    assert_error(alice.call(f"/{project}/destroy"), 422, "InvalidState")
    assert_error(alice.call(f"/{project}/destroy", {"terminateJobs": False}), 422, "InvalidState")
    assert alice.ok(f"/{job_id}/describe")["state"] == "runnable"
    assert alice.ok(f"/{project}/describe")["id"] == project


def test_destroy_terminates_a_job_whose_worker_does_not_answer_then_deletes_it(alice, project, nap, settings):
    settings.DXWEB_HEARTBEAT_SECONDS = 0.1  # how long destroy waits for a worker to record the end
    job_id = launch(alice, project, nap)
    job, _ = actions.claim(job_id, "gone-worker")  # running, with a token, on a worker that never answers
    assert ApiToken.objects.filter(pk=job.token_id).exists()
    started = time.monotonic()

    assert alice.ok(f"/{project}/destroy", {"terminateJobs": True}) == {"id": project}

    assert time.monotonic() - started < 10
    assert not ApiToken.objects.filter(pk=job.token_id).exists()  # revoked as the job ended
    assert not Container.objects.filter(pk__in=[project, job.workspace_id]).exists()
    assert_error(alice.call(f"/{job_id}/describe"), 404, "ResourceNotFound")
    assert_error(alice.call(f"/{project}/describe"), 404, "ResourceNotFound")


def test_destroy_with_finished_jobs_only_needs_no_flag_and_deletes_their_records(alice, project, nap):
    job_id = launch(alice, project, nap)
    actions.claim(job_id, "worker")
    actions.finish(job_id, {})
    assert Job.objects.get(pk=job_id).state == State.DONE
    assert alice.ok(f"/{project}/destroy") == {"id": project}
    assert_error(alice.call(f"/{job_id}/describe"), 404, "ResourceNotFound")


def test_the_delete_page_terminates_unfinished_jobs(alice, project, nap, settings):
    settings.DXWEB_HEARTBEAT_SECONDS = 0.1
    alice.client.force_login(alice.user)
    waiting = launch(alice, project, nap)
    running, _ = actions.claim(launch(alice, project, nap), "gone-worker")
    response = alice.client.post(f"/projects/{project}/destroy/", {"confirm": "alice's project"})
    assert response.status_code == 302 and response["Location"] == "/"
    assert not Container.objects.filter(pk__in=[project, running.workspace_id]).exists()
    assert not Job.objects.filter(pk__in=[waiting, running.pk]).exists()
    assert not ApiToken.objects.filter(pk=running.token_id).exists()


def test_a_log_writer_drops_the_lines_of_a_job_deleted_with_its_project(transactional_db, alice, caplog):
    project = project_actions.create_container(alice.user, "doomed")
    job = Job.objects.create(
        id="job-" + "D" * 24,
        name="doomed",
        executable="applet-" + "d" * 24,
        project=project,
        launched_by=alice.user,
        state=State.TERMINATED,
    )
    writer = LogWriter(job.id)
    writer.write("INFO", "before", source="SYSTEM")
    writer.flush()
    project_actions.destroy_container(project)
    writer.write("INFO", "The job was terminated", source="SYSTEM")  # a worker's last line, just too late
    writer.flush()
    writer.close()
    assert not LogLine.objects.exists()
    assert "could not store" not in caplog.text and "FOREIGN KEY" not in caplog.text


# A real job in a real sandbox ------------------------------------------------------------------


def sleeping(seconds):
    return [p for p in psutil.process_iter(["cmdline"]) if f"sleep {seconds}" in " ".join(p.info["cmdline"] or [])]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    server = LiveServer(tmp_path_factory.mktemp("destroy")).start()
    yield server
    server.stop()


@pytest.mark.live
def test_destroying_a_project_terminates_its_running_job_first(server, tmp_path):
    token = server.user("alice")
    dx = Dx(server, token, tmp_path)
    project = dx("new", "project", "doomed", "--brief").stdout.strip()
    dx("select", project)
    applet = json.loads(dx("build", str(NAP)).stdout)["id"]
    finished = server.api(f"/{applet}/run", {"project": project, "input": {"seconds": "0"}}, token)["id"]
    wait_for(lambda: server.api(f"/{finished}/describe", {}, token)["state"] == "done", 90, "a first job to finish")
    seconds = f"300.{int.from_bytes(os.urandom(3), 'big') % 1000000:06d}"
    running = server.api(f"/{applet}/run", {"project": project, "input": {"seconds": seconds}}, token)["id"]
    wait_for(lambda: sleeping(seconds), 90, "the job's sandbox to start")
    workspace = server.api(f"/{running}/describe", {}, token)["workspace"]

    refused = server.api(f"/{project}/destroy", {}, token, expect=422)
    assert refused["error"]["type"] == "InvalidState"
    assert server.api(f"/{running}/describe", {}, token)["state"] == "running" and sleeping(seconds)

    # What `dx rmproject -y` sends.
    assert server.api(f"/{project}/destroy", {"terminateJobs": True}, token) == {"id": project}

    assert not sleeping(seconds)  # its sandbox was killed before the reply
    for job_id in (running, finished):
        assert server.api(f"/{job_id}/describe", {}, token, expect=404)["error"]["type"] == "ResourceNotFound"
    assert server.api(f"/{project}/describe", {}, token, expect=404)["error"]["type"] == "ResourceNotFound"
    check = (
        "from projects.models import ApiToken, Container; "
        f"print(ApiToken.objects.filter(job_id={running!r}).count(), "
        f"Container.objects.filter(pk__in=[{project!r}, {workspace!r}]).count())"
    )
    assert server.manage("shell", "-c", check).stdout.splitlines()[-1].split() == [
        "0",
        "0",
    ]  # token revoked, workspace gone
    time.sleep(2)  # what the worker still had to write about the job
    log = server.log_path.read_text(errors="replace")
    assert "FOREIGN KEY" not in log and "IntegrityError" not in log and "Traceback" not in log
