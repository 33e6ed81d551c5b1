"""The job page in real Chromium: subjobs' labelled log lines, the final status, durations, the resizable
and wrappable log with links to a line, Rerun and Clone with edits, and the debug-hold banner.

Waits are on page flags (window.logStreamEnded, logTargetShown) and selectors, never sleeps.
"""

import re

import pytest

from tests.browser.test_browser_jobs import applet_body
from tests.browser.test_browser_projects import log_in
from tests.browser.test_browser_terminal import wait_api

pytestmark = [pytest.mark.browser, pytest.mark.live]

# Lines the browser shows: their number, their label (with subjobs) and their message.
SHOWN = """() => [...document.querySelectorAll('#log-rows .log-line')].map((row) => ({
  n: row.querySelector('.ln').textContent,
  who: row.querySelector('.who') ? row.querySelector('.who').textContent : null,
  colour: row.querySelector('.who') ? row.querySelector('.who').style.color : null,
  msg: row.querySelector('.msg').textContent,
  height: row.getBoundingClientRect().height,
  target: row.classList.contains('target'),
}))"""

LONG_LOG = r"""main() {
    for i in $(seq 1 3000); do echo "line $i"; done
    printf 'wide %0.s-' $(seq 1 600); echo
    echo "the end"
}
"""


@pytest.fixture
def alice(live):
    token = live.user("alice")
    project = live.api("/project/new", {"name": "job page"}, token=token)["id"]
    return {"token": token, "project": project}


def run(live, alice, applet, **body):
    return live.api(f"/{applet}/run", {"project": alice["project"], **body}, token=alice["token"])["id"]


def test_subjobs_lines_carry_their_own_labels_and_the_tree_its_durations(page, live, alice):
    applet = live.api("/applet/new", applet_body("scatter_bash", alice["project"]), token=alice["token"])["id"]
    job_id = run(live, alice, applet, input={"n": 3})
    log_in(page, live, "alice")
    page.goto(f"{live.url}/jobs/{job_id}/")
    page.check("#log-tree")
    page.wait_for_function("window.logStreamEnded === true", timeout=120_000)
    page.wait_for_function("document.querySelectorAll('#job-tree .tree-row').length === 5")
    labels = page.evaluate("window.dxJobPage.labels()")
    squares = sorted(label for label in labels.values() if ":square" in label)
    assert squares == [f"scatter_bash:square #{i}" for i in (1, 2, 3)], labels
    # Each "squaring" line carries its own job's label and colour.
    page.fill("#log-search", "squaring")
    page.wait_for_function("document.querySelectorAll('#log-rows .log-line').length === 3")
    shown = page.evaluate(SHOWN)
    assert sorted(row["who"] for row in shown) == squares
    assert len({row["colour"] for row in shown}) == 3
    assert re.fullmatch(r"complete: \d+ lines", page.inner_text("#log-status")), page.inner_text("#log-status")
    page.uncheck("#log-tree")
    assert page.inner_text("#log-status") == "complete: 1 line"
    page.check("#log-tree")
    # Every job of the tree ran, and says for how long; the job list says it too.
    page.wait_for_function(
        "[...document.querySelectorAll('#job-tree .tree-time')].every((cell) => / s$| min$/.test(cell.textContent))"
    )
    assert page.inner_text('#facts dt:has-text("Ran for") + dd').endswith(" s")
    page.screenshot(path="/tmp/ui-job-subjobs.png", full_page=True)
    page.goto(f"{live.url}/projects/{alice['project']}/jobs/")
    assert page.inner_text(f'tr[data-job="{job_id}"] td.duration').endswith(" s")


def test_a_running_job_ticks_and_a_failed_one_ends_with_its_state(page, live, alice):
    applet = live.api("/applet/new", applet_body("nap", alice["project"]), token=alice["token"])["id"]
    job_id = run(live, alice, applet, input={"seconds": "300"})
    wait_api(live, alice["token"], job_id, lambda j: j["state"] == "running", "the job to run")
    log_in(page, live, "alice")
    page.goto(f"{live.url}/jobs/{job_id}/")
    cell = f'#job-tree [data-job="{job_id}"] .tree-time'
    page.wait_for_function(f"document.querySelector('{cell}').textContent.endsWith(' s')")
    first = page.inner_text(cell)
    page.wait_for_function(f"document.querySelector('{cell}').textContent !== {first!r}", timeout=5_000)
    assert page.get_attribute(cell, "class").endswith("ticking")
    assert page.inner_text('#facts dt:has-text("Running for") + dd').endswith(" s")
    page.screenshot(path="/tmp/ui-job-running.png", full_page=True)
    page.click("#terminate")
    page.wait_for_function("window.logStreamEnded === true", timeout=60_000)
    assert page.inner_text("#log-status").startswith("ended: terminated")
    page.wait_for_selector('[data-live="output"] >> text=No outputs')
    page.wait_for_function(f"!document.querySelector('{cell}').classList.contains('ticking')")


def test_the_log_wraps_resizes_and_links_to_a_line(page, live, alice):
    applet = live.api(
        "/applet/new",
        {"project": alice["project"], "name": "long", "runSpec": {"interpreter": "bash", "code": LONG_LOG}},
        token=alice["token"],
    )["id"]
    job_id = run(live, alice, applet)
    log_in(page, live, "alice")
    page.goto(f"{live.url}/jobs/{job_id}/")
    page.wait_for_function("window.logStreamEnded === true", timeout=120_000)
    # Following: the last lines are in view, one row each.
    page.wait_for_function("document.querySelector('#log-rows').textContent.includes('the end')")
    wide = [row for row in page.evaluate(SHOWN) if row["msg"].startswith("wide")][0]
    assert wide["height"] == 20
    # Wrapped, the wide line takes several rows, and the view still follows to the end.
    page.check("#log-wrap")
    page.wait_for_function(
        "[...document.querySelectorAll('#log-rows .log-line')].some((r) => r.textContent.includes('wide') "
        "&& r.getBoundingClientRect().height > 40)"
    )
    layout = page.evaluate("window.dxJobPage.layout()")
    assert layout["wrap"] and layout["shown"] >= 3002 and layout["height"] > layout["shown"] * 20
    wide = [row for row in page.evaluate(SHOWN) if row["msg"].startswith("wide")][0]
    rows = -(-len(wide["msg"]) // layout["cols"])
    assert wide["height"] == rows * 20, (wide, layout)  # as the layout worked it out
    at_end = "(() => { const v = document.getElementById('log-view');" + (
        " return v.scrollTop + v.clientHeight >= v.scrollHeight - 20; })()"
    )
    assert page.evaluate(at_end)
    page.screenshot(path="/tmp/ui-job-wrap.png", full_page=True)

    # The bottom edge resizes the view; the wrap is worked out again for a new width.
    page.evaluate("document.getElementById('log-view').style.height = '700px'")
    page.wait_for_function(
        "document.querySelector('#log-rows').getBoundingClientRect().height >= 680"
        " || document.querySelectorAll('#log-rows .log-line').length >= 35"
    )
    assert page.evaluate("document.getElementById('log-view').clientHeight") == 700

    # A link to a line: it scrolls there and highlights it, whichever filter hid it.
    page.fill("#log-search", "the end")
    page.wait_for_function("document.querySelectorAll('#log-rows .log-line').length === 1")
    page.goto(f"{live.url}/jobs/{job_id}/#L1500")
    page.wait_for_function("window.logTargetShown === 1500", timeout=60_000)
    target = [row for row in page.evaluate(SHOWN) if row["target"]]
    assert [row["n"] for row in target] == ["1500"] and target[0]["msg"].startswith("line ")
    assert page.evaluate(
        """(() => { const v = document.getElementById('log-view').getBoundingClientRect();
        const r = document.querySelector('#log-rows .log-line.target').getBoundingClientRect();
        return r.top >= v.top && r.bottom <= v.bottom; })()"""
    )
    assert not page.is_checked("#log-follow")
    page.screenshot(path="/tmp/ui-job-line-link.png")
    # Clicking a line's number puts it in the address.
    page.click("#log-rows .log-line:not(.target) .ln >> nth=3")
    assert page.url.split("#")[1].startswith("L") and page.url.split("#")[1] != "L1500"
    page.wait_for_function(
        f"document.querySelector('#log-rows .log-line.target .ln').textContent === {page.url.split('#L')[1]!r}"
    )


def test_rerun_asks_then_runs_the_same_input_and_clone_opens_the_form(page, live, alice):
    applet = live.api("/applet/new", applet_body("nap", alice["project"]), token=alice["token"])["id"]
    job_id = run(live, alice, applet, input={"seconds": "0", "tag": "again"}, tags=["t1"], priority="high")
    log_in(page, live, "alice")
    page.goto(f"{live.url}/jobs/{job_id}/")
    asked = []
    page.once("dialog", lambda dialog: asked.append(dialog.message))  # the page's own handler accepts it
    page.click("#rerun")
    page.wait_for_url(lambda url: "/jobs/job-" in url and job_id not in url)
    assert asked and "same input" in asked[0]
    new_id = page.get_attribute("#log-card", "data-job")
    new = live.api(f"/{new_id}/describe", token=alice["token"])
    assert new["originalInput"] == {"seconds": "0", "tag": "again"} and new["tags"] == ["t1"]
    assert new["priority"] == "high"
    page.goto(f"{live.url}/jobs/{job_id}/")
    page.click("#clone")
    page.wait_for_selector("#launch-form")
    assert f"from={job_id}" in page.url and page.input_value("#id_in_tag") == "again"


def test_the_hold_banner_counts_down_extends_and_releases(page, live, alice):
    applet = live.api("/applet/new", applet_body("debug_me", alice["project"]), token=alice["token"])["id"]
    job_id = run(
        live,
        alice,
        applet,
        input={"mode": "fail"},
        debug={"debugOn": ["AppInternalError"]},
        allowSSH=["127.0.0.1"],
    )
    wait_api(live, alice["token"], job_id, lambda j: j["state"] == "debug_hold", "the hold")
    live.user("bob")
    live.api(f"/{alice['project']}/invite", {"invitee": "user-bob", "level": "VIEW"}, token=alice["token"])

    # A VIEW member sees the banner, but no button they could not use.
    log_in(page, live, "bob")
    page.goto(f"{live.url}/jobs/{job_id}/")
    page.wait_for_selector("#hold-banner")
    for button in ("#debug", "#hold-terminal", "#hold-extend", "#hold-release", "#rerun"):
        assert page.locator(button).count() == 0, button
    page.context.clear_cookies()

    log_in(page, live, "alice")
    page.goto(f"{live.url}/jobs/{job_id}/")
    page.wait_for_function("/^\\d+:\\d\\d:\\d\\d$/.test(document.getElementById('hold-left').textContent)")
    first = page.inner_text("#hold-left")
    page.wait_for_function(f"document.getElementById('hold-left').textContent !== {first!r}", timeout=5_000)
    assert page.is_visible("#hold-terminal") and page.is_visible("#debug")
    page.screenshot(path="/tmp/ui-job-hold.png", full_page=True)
    before = live.api(f"/{job_id}/describe", token=alice["token"])["debug"]["holdUntil"]
    page.click("#hold-extend")
    page.wait_for_selector(".flashes >> text=Extended the hold")
    assert page.url.rstrip("/").endswith(job_id)
    assert live.api(f"/{job_id}/describe", token=alice["token"])["debug"]["holdUntil"] > before
    assert page.get_attribute("#hold-terminal", "href") == f"/jobs/{job_id}/debug/"
    page.click("#hold-release")  # confirmed by the page fixture
    page.wait_for_selector(".flashes >> text=Released the hold")
    page.wait_for_function("window.logStreamEnded === true", timeout=60_000)
    assert page.locator("#hold-banner").count() == 0 and page.locator("#debug").count() == 0
    assert page.inner_text("#log-status").startswith("ended: failed")
