"""A real worker host with two lanes but only two cores: it runs what fits, one 2-core job at a
time, a type larger than itself alone and capped, and interleaves launchers' jobs."""

import pytest

from tests.helpers import wait_for
from tests.live import LiveServer

pytestmark = pytest.mark.live

SLEEPER = "main() { sleep $secs; }"


@pytest.fixture(scope="module")
def small_host(tmp_path_factory):
    env = {"DXWEB_WORKER_CORES": "2", "DXWEB_WORKER_MEMORY_MB": "8000", "DXWEB_WORKER_CONCURRENCY": "2"}
    server = LiveServer(tmp_path_factory.mktemp("capacity"), extra_env=env).start()
    try:
        tokens = {who: server.user(who) for who in ("ann", "ben")}
        project = server.api("/project/new", {"name": "capacity"}, token=tokens["ann"])["id"]
        server.api(f"/{project}/invite", {"invitee": "user-ben", "level": "CONTRIBUTE"}, token=tokens["ann"])
        applet = server.api(
            "/applet/new",
            {
                "project": project,
                "name": "sleeper",
                "inputSpec": [{"name": "secs", "class": "float"}],
                "outputSpec": [],
                "runSpec": {"interpreter": "bash", "code": SLEEPER, "distribution": "Ubuntu", "release": "24.04"},
            },
            token=tokens["ann"],
        )["id"]
        yield server, tokens, project, applet
    finally:
        server.stop()


def run(server, token, project, applet, secs, instance_type="mem1_ssd1_x2"):
    body = {
        "project": project,
        "input": {"secs": secs},
        "systemRequirements": {"*": {"instanceType": instance_type}},
    }
    return server.api(f"/{applet}/run", body, token=token)["id"]


def describe(server, job_id):
    return server.api(f"/{job_id}/describe", token=server.tokens["ann"])


def describe_all(server, job_ids):
    return {j: describe(server, j) for j in job_ids}


def wait_done(server, job_ids, timeout=120):
    def done():
        return all(d["state"] == "done" for d in describe_all(server, job_ids).values())

    wait_for(done, timeout, f"{len(job_ids)} jobs to be done")
    return describe_all(server, job_ids)


def overlap(a, b):
    return a["startedRunning"] < b["stoppedRunning"] and b["startedRunning"] < a["stoppedRunning"]


def test_jobs_that_need_the_whole_host_run_one_at_a_time(small_host):
    server, tokens, project, applet = small_host
    jobs = [run(server, tokens["ann"], project, applet, 1.5) for _ in range(2)]
    # While the first runs, the second waits for room.
    wait_for(lambda: describe(server, jobs[0])["state"] == "running", 60, "the first job to run")
    assert describe(server, jobs[1])["state"] == "runnable"
    done = wait_done(server, jobs)
    assert not overlap(done[jobs[0]], done[jobs[1]])


def test_a_type_larger_than_the_host_runs_alone_capped_with_a_notice(small_host):
    server, tokens, project, applet = small_host
    small = run(server, tokens["ann"], project, applet, 1.5)
    huge = run(server, tokens["ann"], project, applet, 0.5, instance_type="mem1_ssd1_x8")
    other = run(server, tokens["ann"], project, applet, 0.5, instance_type="mem1_ssd1_x2")
    done = wait_done(server, [small, huge, other])
    assert not overlap(done[huge], done[small]) and not overlap(done[huge], done[other])
    log = server.api(f"/{huge}/getLog", {}, token=tokens["ann"])
    text = " ".join(str(frame.get("msg", "")) for frame in log["loglines"])
    assert "8 CPUs" in text and "2 CPUs" in text, text[:2000]


def test_another_launchers_job_waits_about_one_job_not_the_burst(small_host):
    server, tokens, project, applet = small_host
    burst = [run(server, tokens["ann"], project, applet, 2) for _ in range(4)]
    wait_for(lambda: describe(server, burst[0])["state"] == "running", 60, "the burst to start")
    small = run(server, tokens["ben"], project, applet, 0.1)
    done = wait_done(server, [*burst, small])
    started = done[small]["startedRunning"]
    before = [j for j in burst if done[j]["startedRunning"] < started]
    # One 2-core job at a time on this host: ben's job is next after the one running when it came.
    assert before == burst[:1], [(j, done[j]["startedRunning"]) for j in burst] + [started]
