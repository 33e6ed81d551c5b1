"""Fixtures of the jobs tests."""

import pytest


@pytest.fixture
def nap(alice, project):
    """An applet in alice's project whose job sleeps a second."""
    return alice.ok(
        "/applet/new",
        {
            "project": project,
            "name": "nap",
            "inputSpec": [],
            "outputSpec": [],
            "runSpec": {"interpreter": "bash", "code": "main() { sleep 1; }"},
        },
    )["id"]
