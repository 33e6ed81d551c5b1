"""The Debug view in real Chromium: a held job's shell in xterm.js, over the websocket, asyncssh and the gateway.

Waits are on page flags (body[data-terminal], the terminal's buffer), never sleeps.
"""

import time

import pytest

from tests.browser.test_browser_jobs import applet_body
from tests.browser.test_browser_projects import log_in
from tests.jobs.ssh.test_debug_hold import need

pytestmark = [pytest.mark.browser, pytest.mark.live]

BUFFER = """() => {
  const b = window.dxTerminal.buffer.active, lines = [];
  for (let i = 0; i < b.length; i++) lines.push(b.getLine(i).translateToString(true));
  return lines.join("\\n");
}"""


def wait_api(live, token, job_id, predicate, what, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = live.api(f"/{job_id}/describe", {}, token=token)
        if predicate(job):
            return job
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}: {job['state']}")


def type_and_wait(page, keys, expect, timeout=20_000):
    page.keyboard.type(keys)
    page.keyboard.press("Enter")
    page.wait_for_function(f"({BUFFER})().includes({expect!r})", timeout=timeout)


def open_terminal(page, live, job_id):
    page.goto(f"{live.url}/jobs/{job_id}/debug/")
    page.wait_for_function("document.body.dataset.terminal === 'open'", timeout=30_000)
    page.click("#terminal")


def test_alice_debugs_a_held_job_in_the_browser_across_a_refresh_then_terminates_it(page, live):
    need("tmux", "the terminal resumes its session under tmux")
    token = live.user("alice")
    project = live.api("/project/new", {"name": "debugging in the browser"}, token=token)["id"]
    applet = live.api("/applet/new", applet_body("debug_me", project), token=token)["id"]
    job_id = live.api(
        f"/{applet}/run",
        {
            "project": project,
            "input": {"mode": "fail"},
            "debug": {"debugOn": ["AppInternalError"]},
            "allowSSH": ["127.0.0.1"],
        },
        token=token,
    )["id"]
    job = wait_api(live, token, job_id, lambda j: j["state"] == "debug_hold" and j["sshHostKey"], "the hold")
    assert job["debug"]["failureReason"] == "AppInternalError"

    log_in(page, live, "alice")
    page.goto(f"{live.url}/jobs/{job_id}/")
    page.click("#debug")
    page.wait_for_function("document.body.dataset.terminal === 'open'", timeout=30_000)
    assert page.is_visible("#hold")  # the hold's countdown, with Extend and Release
    page.click("#terminal")
    type_and_wait(page, "ls job_input.json clue.txt", "clue.txt\n")
    assert "job_input.json" in page.evaluate(BUFFER)
    type_and_wait(page, "export MARK=héllo-✓; echo mark-$MARK", "mark-héllo-✓")
    page.screenshot(path="/tmp/ui-terminal.png")

    # A refresh reconnects to the same shell: the variable set before is still there.
    page.reload()
    page.wait_for_function("document.body.dataset.terminal === 'open'", timeout=30_000)
    page.click("#terminal")
    type_and_wait(page, "echo again-$MARK", "again-héllo-✓")

    # Terminating the job closes the terminal; the job page lists both sessions in its audit table.
    live.api(f"/{job_id}/terminate", {}, token=token)
    page.wait_for_function("document.body.dataset.terminal === 'closed'", timeout=30_000)
    assert "terminat" in page.inner_text("#terminal-status").lower()
    job = wait_api(live, token, job_id, lambda j: j["state"] == "terminated", "the job to end")
    page.goto(f"{live.url}/jobs/{job_id}/")
    rows = page.locator("#ssh-sessions tbody tr")
    assert rows.count() == 2
    for i in range(2):
        cells = rows.nth(i).locator("td").all_inner_texts()
        assert cells[:3] == ["alice", "browser terminal", "127.0.0.1"], cells
        assert cells[4].endswith(" s"), cells  # ended, with its duration


def test_bob_cannot_open_alices_terminal(page, live):
    token = live.user("alice")
    live.user("bob")
    project = live.api("/project/new", {"name": "not bob's"}, token=token)["id"]
    live.api(f"/{project}/invite", {"invitee": "user-bob", "level": "CONTRIBUTE"}, token=token)
    applet = live.api("/applet/new", applet_body("nap", project), token=token)["id"]
    job_id = live.api(
        f"/{applet}/run", {"project": project, "input": {"seconds": "120"}, "allowSSH": ["127.0.0.1"]}, token=token
    )["id"]
    try:
        log_in(page, live, "bob")
        response = page.goto(f"{live.url}/jobs/{job_id}/debug/")
        assert response.status == 403 and "Only its launcher may open a terminal" in page.inner_text("body")
    finally:
        live.api(f"/{job_id}/terminate", {}, token=token)
