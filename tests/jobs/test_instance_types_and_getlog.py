"""DNAnexus's instance types (capped to the worker host) and /job-x/getLog, the whole log at once."""

import json
import os
import subprocess
import textwrap

import pytest

from jobs.execution import sandbox
from jobs.execution.sandbox import host
from jobs.models import LogLine
from tests.helpers import launch
from tests.live import BIN
from tests.projects.api_helpers import assert_error

MISSING_JOB = "job-" + "0" * 24


def store(job_id, *messages, start=1):
    """Store log lines as a job's writer would; return them."""
    return [
        LogLine.objects.create(job_id=job_id, seq=seq, timestamp=1000 + seq, source="APP", level="STDOUT", msg=msg)
        for seq, msg in enumerate(messages, start)
    ]


# getLog through the API ------------------------------------------------------------------------------


def test_get_log_returns_every_line_as_a_websocket_frame(alice, project, nap):
    job_id = launch(alice, project, nap)
    lines = store(job_id, "first", "second")
    reply = alice.ok(f"/{job_id}/getLog")
    assert reply == {"loglines": [line.to_frame("nap") for line in lines], "truncated": False}
    assert reply["loglines"][0] == {
        "job": job_id,
        "jobName": "nap",
        "timestamp": 1001,
        "source": "APP",
        "level": "STDOUT",
        "line": 1,
        "msg": "first",
    }


def test_a_job_with_no_log_yet_has_no_lines(alice, project, nap):
    assert alice.ok(f"/{launch(alice, project, nap)}/getLog") == {"loglines": [], "truncated": False}


def test_a_log_past_the_cap_gives_its_last_lines_and_says_it_was_cut(alice, project, nap, settings):
    settings.DXWEB_GETLOG_MAX_LINES = 3
    job_id = launch(alice, project, nap)
    store(job_id, "1", "2", "3", "4", "5")
    reply = alice.ok(f"/{job_id}/getLog")
    assert [entry["msg"] for entry in reply["loglines"]] == ["3", "4", "5"] and reply["truncated"] is True
    store(job_id, "6", start=6)
    settings.DXWEB_GETLOG_MAX_LINES = 6
    assert alice.ok(f"/{job_id}/getLog")["truncated"] is False


def test_lines_come_in_time_order_as_dx_watch_shows_them(alice, project, nap):
    job_id = launch(alice, project, nap)
    LogLine.objects.create(job_id=job_id, seq=1, timestamp=2000, source="APP", level="STDERR", msg="later")
    LogLine.objects.create(job_id=job_id, seq=2, timestamp=1000, source="APP", level="STDOUT", msg="earlier")
    assert [e["msg"] for e in alice.ok(f"/{job_id}/getLog")["loglines"]] == ["earlier", "later"]


def test_a_view_member_reads_the_log_and_an_outsider_gets_the_not_found_of_a_missing_job(
    alice, bob, charlie, project, nap
):
    job_id = launch(alice, project, nap)
    store(job_id, "secret")
    alice.ok(f"/{project}/invite", {"invitee": "user-bob", "level": "VIEW"})
    assert bob.ok(f"/{job_id}/getLog")["loglines"][0]["msg"] == "secret"
    hidden = charlie.call(f"/{job_id}/getLog")
    absent = charlie.call(f"/{MISSING_JOB}/getLog")
    assert_error(hidden, 404, "ResourceNotFound")
    assert_error(absent, 404, "ResourceNotFound")
    assert hidden[1]["error"]["message"].replace(job_id, "X") == absent[1]["error"]["message"].replace(MISSING_JOB, "X")
    assert "secret" not in json.dumps(hidden[1])


def test_bodies_are_treated_as_other_job_methods_treat_them(alice, project, nap):
    job_id = launch(alice, project, nap)
    store(job_id, "a line")
    assert alice.ok(f"/{job_id}/getLog", {"unexpected": [1, 2]})["loglines"][0]["msg"] == "a line"
    for body in (b"[1]", b'"text"', b"not json"):
        log_reply = alice.raw(f"/{job_id}/getLog", body)
        describe_reply = alice.raw(f"/{job_id}/describe", body)
        assert log_reply.status_code == describe_reply.status_code >= 400, body
        assert log_reply.json()["error"]["type"] == describe_reply.json()["error"]["type"]


# The instance-type table and the cap to the host --------------------------------------------------


@pytest.mark.skipif("DXWEB_INSTANCE_TYPES" in os.environ, reason="the table is overridden by the environment")
def test_the_default_table_holds_dnanexus_types_with_their_cores_and_memory():
    table = sandbox.instance_types()
    for name, cpus, memory_mb in [
        ("mem1_ssd1_x2", 2, 3800),
        ("mem1_ssd1_v2_x4", 4, 7600),
        ("mem2_ssd1_v2_x8", 8, 32000),
        ("mem3_ssd1_v2_x16", 16, 128000),
        ("mem1_ssd1_v2_x36", 36, 72000),
        ("mem2_hdd2_x4", 4, 15000),
        ("mem3_ssd1_v2_x96", 96, 768000),
    ]:
        assert table[name] == {"cpus": cpus, "memory_mb": memory_mb}, name
    families = {
        "mem1_ssd1": (2, 4, 8, 16, 32, 36),
        "mem1_ssd1_v2": (2, 4, 8, 16, 36, 72),
        "mem2_ssd1": (2, 4, 8),
        "mem2_ssd1_v2": (2, 4, 8, 16, 32, 48, 64, 96),
        "mem3_ssd1": (2, 4, 8, 16, 32),
        "mem3_ssd1_v2": (2, 4, 8, 16, 32, 48, 64, 96),
        "mem1_hdd2": (8, 32),
        "mem2_hdd2": (1, 2, 4),
        "mem3_hdd2": (2, 4, 8),
        "mem1_ssd2": (2, 4, 8, 16, 36),
        "mem1_ssd2_v2": (2, 4, 8, 16, 36, 72),
    }
    for family, sizes in families.items():
        for size in sizes:
            assert table[f"{family}_x{size}"]["cpus"] == size, f"{family}_x{size}"
    assert sandbox.instance_limits()["cpus"] == 2  # the default type, mem1_ssd1_x2


def spec(cpus, memory_mb):
    return sandbox.SandboxSpec(job_id="job-cap", home="/nonexistent", env={}, cpus=cpus, memory_mb=memory_mb)


def test_a_type_larger_than_the_host_is_capped_to_its_cpus_and_memory():
    capped, note = sandbox.fit_to_host(spec(8, 64000), host_cpus=2, host_memory_mb=4000)
    assert (capped.cpus, capped.memory_mb) == (2, 4000)
    assert note == (
        "The instance type asks for 8 CPUs and 64000 MB of memory; this worker has 2 CPUs and 4000 MB: "
        "the job runs with that"
    )


def test_only_what_exceeds_the_host_is_capped_and_a_smaller_type_is_left_alone():
    capped, note = sandbox.fit_to_host(spec(2, 64000), host_cpus=4, host_memory_mb=4000)
    assert (capped.cpus, capped.memory_mb) == (2, 4000) and "2 CPUs" not in note and "64000 MB" in note
    small = spec(2, 3800)
    assert sandbox.fit_to_host(small, host_cpus=4, host_memory_mb=8000) == (small, None)
    assert sandbox.fit_to_host(small, host_cpus=2, host_memory_mb=3800) == (small, None)


def test_the_host_figures_are_this_workers_affinity_and_memtotal():
    assert host.cpu_count() == len(os.sched_getaffinity(0))
    with open("/proc/meminfo") as meminfo:
        total_kb = int(next(line for line in meminfo if line.startswith("MemTotal:")).split()[1])
    assert host.memory_mb() == total_kb // 1024
    capped, note = sandbox.fit_to_host(spec(10_000, 10**9))
    assert (capped.cpus, capped.memory_mb) == (host.cpu_count(), host.memory_mb()) and note


def test_launch_applies_the_cap_and_says_so(settings, tmp_path):
    settings.DXWEB_SANDBOX = "none"  # the cap is the same in both modes; this one needs no bwrap
    settings.DXWEB_JOBS_DIR = tmp_path
    (tmp_path / "home").mkdir()
    big = sandbox.SandboxSpec(
        job_id="job-big",
        home=tmp_path / "home",
        workdir=tmp_path / "work",
        env={"PATH": "/usr/bin:/bin"},
        cpus=host.cpu_count() + 64,
        memory_mb=host.memory_mb() * 4,
    )
    proc = sandbox.launch(big, ["nproc"])
    assert proc.stdout.read().decode().strip() == str(host.cpu_count()) and proc.wait() == 0
    assert proc.spec.cpus == host.cpu_count() and proc.spec.memory_mb == host.memory_mb()
    assert proc.mechanisms["capped"].startswith(f"The instance type asks for {host.cpu_count() + 64} CPUs")
    small = sandbox.launch(
        sandbox.SandboxSpec(**{**vars(big), "job_id": "job-small", "cpus": 1, "memory_mb": 512}), ["true"]
    )
    assert small.wait() == 0 and "capped" not in small.mechanisms


# Through the real server, with the real dxpy and dx ---------------------------------------------------

SHOW_CPUS = "main() { echo \"cpus $(nproc)\"; echo 'to stderr' >&2; }"


def python_as(dx, script, *args):
    """Run a Python script with the real dxpy as dx's user; return what it printed last, as JSON."""
    result = subprocess.run(
        [str(BIN / "python"), "-c", textwrap.dedent(script), *args],
        env=dx.env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout, json.loads(result.stdout.strip().splitlines()[-1])


@pytest.fixture
def alice_applet(live, dx_as):
    dx = dx_as("alice")
    project = dx("new", "project", "instance types", "--brief").stdout.strip()
    dx("select", project)
    applet = live.api(
        "/applet/new",
        {
            "project": project,
            "name": "show_cpus",
            "inputSpec": [],
            "outputSpec": [],
            "runSpec": {"interpreter": "bash", "code": SHOW_CPUS},
        },
        token=dx.token,
    )["id"]
    return dx, project, applet


@pytest.mark.live
def test_dxpy_runs_with_an_instance_type_and_prints_the_log_as_seed_004_does(alice_applet, dx_as):
    dx, project, applet = alice_applet
    printed, seen = python_as(
        dx,
        """
        import json, sys
        import dxpy

        job = dxpy.DXApplet(sys.argv[1]).run({}, project=sys.argv[2], instance_type="mem3_ssd1_v2_x8")
        job.wait_on_done()
        log = dxpy.api.job_get_log(job.get_id())
        for log_entry in log["loglines"]:
            print(log_entry)
        print(json.dumps({"describe": job.describe(), "log": log}))
        """,
        applet,
        project,
    )
    described, log = seen["describe"], seen["log"]
    assert described["state"] == "done" and described["instanceType"] == "mem3_ssd1_v2_x8"
    assert described["systemRequirements"] == {"main": {"instanceType": "mem3_ssd1_v2_x8"}}
    by_msg = {entry["msg"]: entry for entry in log["loglines"]}
    assert f"cpus {min(8, host.cpu_count())}" in by_msg  # the type's 8, or all this host has
    assert by_msg["to stderr"]["level"] == "STDERR" and log["truncated"] is False
    assert set(by_msg["to stderr"]) >= {"job", "timestamp", "level", "msg", "source", "line"}
    assert {entry["job"] for entry in log["loglines"]} == {described["id"]}
    assert "'msg': 'to stderr'" in printed  # what the seed's loop prints
    assert any(e["source"] == "SYSTEM" and e["msg"].startswith("Running show_cpus") for e in log["loglines"])

    # An outsider gets the not-found a missing job gets, through the same client.
    _, refused = python_as(
        dx_as("charlie"),
        """
        import json, sys
        import dxpy

        answers = []
        for job_id in sys.argv[1:]:
            try:
                dxpy.api.job_get_log(job_id)
                answers.append(None)
            except dxpy.exceptions.DXAPIError as err:
                answers.append([err.name, err.code, err.msg.replace(job_id, "X")])
        print(json.dumps(answers))
        """,
        described["id"],
        MISSING_JOB,
    )
    assert refused[0] == refused[1] and refused[0][:2] == ["ResourceNotFound", 404]


@pytest.mark.live
def test_dx_run_takes_an_instance_type_and_refuses_an_unknown_one_by_name(alice_applet):
    dx, project, applet = alice_applet
    job_id = dx("run", applet, "--instance-type", "mem1_ssd1_v2_x4", "-y", "--brief", "--wait").stdout.strip()
    described = json.loads(dx("describe", job_id, "--json").stdout)
    assert described["state"] == "done" and described["instanceType"] == "mem1_ssd1_v2_x4"
    watched = dx("watch", job_id, "--get-stdout").stdout
    assert f"cpus {min(4, host.cpu_count())}" in watched

    refused = dx("run", applet, "--instance-type", "mem9_ssd9_x99", "-y", "--brief", check=False)
    assert refused.returncode != 0
    assert "InvalidInput" in refused.stderr and "mem9_ssd9_x99" in refused.stderr
    _, error = python_as(
        dx,
        """
        import json, sys
        import dxpy

        try:
            dxpy.DXApplet(sys.argv[1]).run({}, project=sys.argv[2], instance_type="mem9_ssd9_x99")
            print(json.dumps(None))
        except dxpy.exceptions.DXAPIError as err:
            print(json.dumps([err.name, err.msg]))
        """,
        applet,
        project,
    )
    assert error[0] == "InvalidInput" and "'mem9_ssd9_x99'" in error[1]
