"""Access decisions live in the permission modules: /job-x/update goes through its action, and no
view, API method, consumer or the bash variables compare levels themselves."""

import ast
from pathlib import Path

import pytest

from jobs.models import Job

ROOT = Path(__file__).resolve().parents[2]

# Code that reaches objects and must leave every "may they?" to projects/permissions.py and jobs/permissions.py.
NO_DECISIONS_IN = [
    "jobs/views.py",
    "jobs/lists.py",
    "jobs/api.py",
    "jobs/apps/views.py",
    *sorted(str(p.relative_to(ROOT)) for p in (ROOT / "jobs/logs").glob("*.py")),
    *sorted(str(p.relative_to(ROOT)) for p in (ROOT / "jobs/workflows").glob("*.py")),
    "jobs/ssh/terminal.py",
    "jobs/execution/bash_vars.py",
    "projects/views.py",
    "projects/data.py",
    "projects/profile.py",
    "projects/api.py",
]


@pytest.fixture
def job_id(alice, project):
    applet = alice.ok(
        "/applet/new",
        {"project": project, "name": "a", "runSpec": {"interpreter": "bash", "code": "main() { :; }"}},
    )["id"]
    return alice.ok(f"/{applet}/run", {"project": project})["id"]


def test_update_refuses_allow_ssh_on_a_finished_job(alice, job_id):
    alice.ok(f"/{job_id}/terminate")
    status, data = alice.call(f"/{job_id}/update", {"allowSSH": ["10.0.0.1"]})
    assert (status, data["error"]["type"]) == (422, "InvalidState"), data
    assert data["error"]["message"] == f"{job_id} has already finished (terminated)"
    assert Job.objects.get(pk=job_id).allow_ssh == []


def test_update_moves_modified(alice, job_id):
    Job.objects.filter(pk=job_id).update(modified=1)
    alice.ok(f"/{job_id}/update", {"name": "renamed", "allowSSH": ["10.0.0.1"]})
    job = Job.objects.get(pk=job_id)
    assert (job.name, job.allow_ssh) == ("renamed", ["10.0.0.1"]) and job.modified > 1


def level_decisions(source):
    """(line, source) of each level_of() call and each comparison with a Level member or a `.level`."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call):
            fn = node.func
            if (fn.id if isinstance(fn, ast.Name) else getattr(fn, "attr", None)) == "level_of":
                found.append((node.lineno, ast.get_source_segment(source, node)))
        elif isinstance(node, ast.Compare):
            for side in (node.left, *node.comparators):
                is_level = isinstance(side, ast.Attribute) and (
                    side.attr == "level" or (isinstance(side.value, ast.Name) and side.value.id == "Level")
                )
                if is_level:
                    found.append((node.lineno, ast.get_source_segment(source, node)))
                    break
    return found


@pytest.mark.parametrize("path", NO_DECISIONS_IN)
def test_no_level_is_compared_outside_the_permission_modules(path):
    assert level_decisions((ROOT / path).read_text()) == [], (
        f"{path}: ask projects.permissions or jobs.permissions instead"
    )


def test_the_guard_sees_a_level_comparison():
    source = "if level_of(principal, pid) < Level.VIEW or container.level >= Level.UPLOAD:\n    pass\n"
    assert [line for line, _ in level_decisions(source)] == [1, 1, 1]


def test_no_template_compares_levels():
    """Templates ask `level|reaches:"CONTRIBUTE"` (projects.permissions.reaches) rather than compare numbers."""
    import re

    compare = re.compile(r"level\s*(>=|<=|>|<|==|!=)\s*\d")
    found = [
        str(path.relative_to(ROOT)) for path in (ROOT / "templates").rglob("*.html") if compare.search(path.read_text())
    ]
    assert found == []
