"""A python job scatters subjobs with dxpy.new_dxjob and gathers them through JBORs; `dx watch --tree`,
`dx find jobs` and paged findExecutions see the whole tree, with the real client against the real server."""

import json
from pathlib import Path

import pytest

pytestmark = pytest.mark.live

APP = Path(__file__).parent / "apps" / "scatter_python"
N = 20


@pytest.fixture
def scattered(dx_as):
    """alice's own project and a scatter_python job of N squares in it, done."""
    dx = dx_as("alice")
    project = dx("new", "project", "scatter python", "--brief").stdout.strip()
    dx("select", project)
    dx("build", str(APP))
    job_id = dx("run", "scatter_python", f"-in={N}", "-y", "--brief").stdout.strip()
    return dx, project, job_id


def test_the_squares_are_gathered_through_job_references(scattered):
    dx, project, job_id = scattered
    dx("wait", job_id, timeout=600)
    described = json.loads(dx("describe", job_id, "--json").stdout)
    squares = [x * x for x in range(1, N + 1)]
    assert described["state"] == "done"
    assert described["output"] == {"total": sum(squares), "squares": squares}
    flat = json.loads(dx("find", "jobs", "--all-jobs", "-n", "100", "--project", project, "--json").stdout)
    assert sorted(j["function"] for j in flat) == sorted(["main", "gather", *["square"] * N])
    assert all(j["state"] == "done" and j["rootExecution"] == job_id for j in flat)


def test_dx_find_jobs_draws_the_whole_tree(scattered):
    dx, project, job_id = scattered
    dx("wait", job_id, timeout=600)
    # The origin found first, then its tree by originJob, drawn under it.
    drawn = dx("find", "jobs", "--project", project).stdout
    assert drawn.count("scatter_python:square") == N, drawn


def test_dx_watch_tree_follows_every_subjob_to_the_end(scattered):
    dx, project, job_id = scattered
    watched = dx("watch", job_id, "--tree", timeout=600)
    out = watched.stdout
    assert all(f"squaring {x}\n" in out for x in range(1, N + 1)), out[-2000:]
    assert f"gathering {N} squares" in out
    assert f"started {N} square subjobs" in out


def test_find_executions_pages_the_tree_by_its_root(scattered, live):
    dx, project, job_id = scattered
    dx("wait", job_id, timeout=600)
    token = live.user("alice")
    seen, body, pages = [], {"class": "job", "project": project, "rootExecution": job_id, "limit": 7}, 0
    while True:
        reply = live.api("/system/findExecutions", body, token=token)
        seen += [r["id"] for r in reply["results"]]
        pages += 1
        if reply["next"] is None:
            break
        assert len(reply["results"]) == 7
        body = {**body, "starting": reply["next"]}
    assert pages == (N + 2 + 6) // 7
    assert len(seen) == len(set(seen)) == N + 2 and job_id in seen
    # Someone else, asking for the same root, finds nothing of it.
    outsider = live.user("charlie")
    found = live.api("/system/findExecutions", {"class": "job", "rootExecution": job_id}, token=outsider)
    assert found == {"results": [], "next": None}
