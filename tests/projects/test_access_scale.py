"""Reaching an object through a project costs the same however many other placements it has: an
applet gets one in the workspace of each job it runs, and describing or running it must not slow
down with every run. Measured in SQLite's virtual machine steps (deterministic), not in time."""

import pytest
from django.db import connection

from projects.models import Container, DataObject, Placement

RUNS = 2_000


def vm_steps(call):
    """SQLite virtual machine instructions (in hundreds) the connection executes during call()."""
    steps = [0]

    def count():
        steps[0] += 1
        return 0

    connection.ensure_connection()
    connection.connection.set_progress_handler(count, 100)
    try:
        call()
    finally:
        connection.connection.set_progress_handler(None, 0)
    return steps[0]


def test_an_applet_run_thousands_of_times_is_described_as_cheaply_as_a_new_one(alice, bob, project):
    if connection.vendor != "sqlite":
        pytest.skip("counts SQLite's virtual machine steps: the embedded pass runs it")
    applet = alice.ok(
        "/applet/new",
        {
            "project": project,
            "name": "often",
            "inputSpec": [],
            "outputSpec": [],
            "runSpec": {"interpreter": "bash", "code": "main() { true; }"},
        },
    )["id"]

    def describe():
        assert alice.ok(f"/{applet}/describe", {"project": project})["project"] == project

    describe()
    new = vm_steps(describe)
    # What RUNS jobs leave: a workspace each, the applet placed in it (no grant for anyone).
    workspaces = Container.objects.bulk_create(
        Container(id=f"container-{i:024d}", kind=Container.WORKSPACE, name=f"workspace {i}") for i in range(RUNS)
    )
    obj = DataObject.objects.get(pk=applet)
    Placement.objects.bulk_create(Placement(container=w, obj=obj, folder="/", name="often") for w in workspaces)
    often = vm_steps(describe)
    assert often < 1.5 * new + 10, (new, often)
    # The project's members still reach it; an outsider still does not.
    assert alice.ok(f"/{applet}/describe", {})["project"] == project
    status, body = bob.call(f"/{applet}/describe", {})
    assert status == 404 and body["error"]["type"] == "ResourceNotFound"
