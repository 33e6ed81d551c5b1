"""Running in the browser against the real server (daphne + worker): launch, watch, terminate, rerun.

Waits are on page flags (window.logStreamConnected, logStreamEnded) and selectors, never sleeps.
"""

import json
import os
from pathlib import Path

import pytest

from tests.browser.test_browser_projects import log_in

pytestmark = [pytest.mark.browser, pytest.mark.live]
APPS = Path(__file__).resolve().parent.parent / "jobs" / "apps"


def applet_body(app, project, **extra):
    """An /applet/new body from a test app's dxapp.json, with its script as runSpec.code."""
    dxapp = json.loads((APPS / app / "dxapp.json").read_text())
    run_spec = {k: v for k, v in dxapp["runSpec"].items() if k != "file"}
    run_spec["code"] = (APPS / app / dxapp["runSpec"]["file"]).read_text()
    return {
        "project": project,
        "name": dxapp["name"],
        "inputSpec": dxapp["inputSpec"],
        "outputSpec": dxapp["outputSpec"],
        "runSpec": run_spec,
        "title": dxapp.get("title", ""),
        **extra,
    }


@pytest.fixture
def setup(live, dx_as):
    dx = dx_as("alice")
    token = live.user("alice")
    project = live.api("/project/new", {"name": f"runs {os.urandom(3).hex()}"}, token=token)["id"]

    def new_applet(app=None, **body):
        body = applet_body(app, project, **body) if app else {"project": project, **body}
        return live.api("/applet/new", body, token=token)["id"]

    def run(applet, **input_):
        return live.api(f"/{applet}/run", {"project": project, "input": input_}, token=token)["id"]

    return {"dx": dx, "token": token, "project": project, "new_applet": new_applet, "run": run}


def job_state(page):
    return page.get_attribute("#job-state [data-state]", "data-state")


def stored_log(page, live, job_id):
    text = page.request.get(f"{live.url}/jobs/{job_id}/log/").text()
    return [line.split(" ", 3)[3] for line in text.splitlines()]


def test_alice_launches_an_applet_with_a_file_picked_from_the_form(page, live, setup, tmp_path):
    reads = tmp_path / "reads.txt"
    reads.write_text("one\ntwo\nthree\n")
    file_id = setup["dx"]("upload", str(reads), "--wait", "--brief", project=setup["project"]).stdout.strip()
    applet = setup["new_applet"]("wc_file")
    log_in(page, live, "alice")
    page.goto(f"{live.url}/projects/{setup['project']}/applets/")
    page.click(f'tr[data-applet="{applet}"] >> text=Run')
    page.wait_for_selector("#launch-form")
    page.fill("#id_in_reads", "reads")
    page.click(f'.picker-results [role=option][data-id="{file_id}"]')
    assert page.input_value("#id_in_reads") == "reads.txt" and page.input_value("input[name=in_reads]") == file_id
    page.click("#advanced summary")
    page.fill("#id_tags", "from-browser")
    assert f"-ireads={file_id}" in page.inner_text("#dx-command") and "--tag from-browser" in page.inner_text(
        "#dx-command"
    )
    page.screenshot(path="/tmp/ui-jobs-launch.png", full_page=True)
    page.click("#launch")
    page.wait_for_selector("#log-card")
    page.wait_for_function("window.logStreamEnded === true", timeout=120_000)
    assert job_state(page) == "done"
    # The outputs and timings arrive without a reload: the page swaps its details in on the state change.
    page.wait_for_function("window.jobDetailsRefreshed >= 1")
    page.wait_for_selector('[data-live="output"] .io-values')
    assert "reads.txt" in page.inner_text(".io-values") and "3" in page.inner_text(".io-values >> nth=1")
    assert page.inner_text('#facts dt:has-text("Stopped") + dd') != "—"
    page.screenshot(path="/tmp/ui-jobs-done.png", full_page=True)


def launch_to_the_end(page, live, setup, who):
    """From an applet's page: Run, fill `who`, Launch, and wait for the job to end; return its describe."""
    page.click("#run-applet")
    page.wait_for_selector("#launch-form")
    page.fill("#id_in_who", who)
    page.click("#launch")
    page.wait_for_selector("#log-card")
    page.wait_for_function("window.logStreamEnded === true", timeout=120_000)
    job_id = page.get_attribute("#log-card", "data-job")
    job = live.api(f"/{job_id}/describe", token=setup["token"])
    assert job["state"] == "done", (job["state"], job.get("failureReason"), job.get("failureMessage"))
    assert job_state(page) == "done"
    return job


def test_alice_writes_a_bash_applet_in_the_code_box_runs_it_and_runs_a_new_version_of_it(page, live, setup):
    # The code is typed into the real text area, which the browser submits with CRLF line endings.
    log_in(page, live, "alice")
    page.goto(f"{live.url}/projects/{setup['project']}/applets/new/")
    page.fill("#id_name", "typed")
    page.select_option("#id_interpreter", "bash")
    page.fill("#id_input_spec", '[{"name": "who", "class": "string"}]')
    page.fill("#id_output_spec", '[{"name": "greeting", "class": "string"}]')
    page.click("#id_code")
    page.keyboard.type(
        'main() {\n    greeting="hello $who"\n    echo "$greeting"\n    dx-jobutil-add-output greeting "$greeting"\n}\n'
    )
    page.click("#applet-form button[type=submit]")
    page.wait_for_selector("#run-applet")
    first = page.url.rstrip("/").rsplit("/", 1)[1]
    assert first.startswith("applet-")
    job = launch_to_the_end(page, live, setup, "browser")
    assert job["output"] == {"greeting": "hello browser"}
    assert "hello browser" in stored_log(page, live, job["id"])

    page.goto(f"{live.url}/projects/{setup['project']}/applets/{first}/")
    page.click("text=Edit (new version)")
    page.wait_for_selector("#applet-form")
    page.click("#id_code")
    page.keyboard.press("Control+a")
    page.keyboard.type(
        'main() {\n    greeting="goodbye $who"\n    echo "$greeting"\n'
        '    dx-jobutil-add-output greeting "$greeting"\n}\n'
    )
    page.click("#applet-form button[type=submit]")
    page.wait_for_selector("#run-applet")
    second = page.url.rstrip("/").rsplit("/", 1)[1]
    assert second.startswith("applet-") and second != first
    job = launch_to_the_end(page, live, setup, "browser")
    assert job["output"] == {"greeting": "goodbye browser"}
    page.screenshot(path="/tmp/ui-jobs-typed-applet.png", full_page=True)


def test_the_log_streams_while_running_and_survives_a_dropped_socket_with_no_gap_or_duplicate(page, live, setup):
    applet = setup["new_applet"](
        name="ticker",
        inputSpec=[],
        outputSpec=[],
        runSpec={
            "interpreter": "bash",
            "code": 'main() { for i in $(seq 1 60); do echo "tick $i"; sleep 0.05; done; }',
        },
    )
    job_id = setup["run"](applet)
    log_in(page, live, "alice")
    page.goto(f"{live.url}/jobs/{job_id}/")
    page.wait_for_selector('.log-line .msg:text-matches("tick \\\\d+")', timeout=120_000)
    assert job_state(page) in ("running", "runnable")  # a line appeared while the job was still going
    page.evaluate("window.dxJobPage.dropSocket()")
    page.wait_for_function("window.logReconnects >= 1 && window.logStreamConnected")
    page.evaluate("window.dxJobPage.dropSocket()")
    page.wait_for_function("window.logStreamEnded === true", timeout=120_000)
    held = [line.split(":", 2)[2] for line in page.evaluate("window.dxJobPage.lines()")]
    assert held == stored_log(page, live, job_id)
    assert [m for m in held if m.startswith("tick")] == [f"tick {i}" for i in range(1, 61)]
    page.fill("#log-search", "tick 42")
    page.wait_for_function("document.getElementById('log-count').textContent === '1'")
    page.screenshot(path="/tmp/ui-jobs-log.png", full_page=True)


def test_the_tree_fills_with_subjobs_as_they_are_created(page, live, setup):
    applet = setup["new_applet"]("scatter_bash")
    job_id = setup["run"](applet, n=5)
    log_in(page, live, "alice")
    page.goto(f"{live.url}/jobs/{job_id}/")
    # main, five squares and gather.
    page.wait_for_function("document.querySelectorAll('#job-tree .tree-row').length === 7", timeout=120_000)
    page.wait_for_function("window.logStreamEnded === true", timeout=120_000)
    states = page.eval_on_selector_all("#job-tree [data-state]", "els => els.map(e => e.dataset.state)")
    assert states == ["done"] * 7
    page.check("#log-tree")
    page.wait_for_selector('.log-line .who:has-text("square")')
    page.screenshot(path="/tmp/ui-jobs-tree.png", full_page=True)


def test_alice_terminates_a_running_job(page, live, setup):
    applet = setup["new_applet"]("misbehave")
    job_id = setup["run"](applet, mode="sleep")
    log_in(page, live, "alice")
    page.goto(f"{live.url}/jobs/{job_id}/")
    page.wait_for_selector('#job-state [data-state="running"]', timeout=120_000)
    page.click("#terminate")
    page.wait_for_selector('#job-state [data-state="terminated"]', timeout=120_000)
    assert "Terminated by user-alice" in page.inner_text("#failure")


def test_a_failed_job_is_rerun_from_the_prefilled_form(page, live, setup):
    applet = setup["new_applet"]("misbehave")
    job_id = setup["run"](applet, mode="exit")
    log_in(page, live, "alice")
    page.goto(f"{live.url}/jobs/{job_id}/")
    page.wait_for_function("window.logStreamEnded === true", timeout=120_000)
    page.wait_for_selector("#failure")  # shown live, no reload
    assert job_state(page) == "failed" and page.is_visible("#failure")
    page.screenshot(path="/tmp/ui-jobs-failed.png", full_page=True)
    page.click("#clone")  # the form filled in with its input (Rerun runs it again at once)
    assert page.input_value("#id_in_mode") == '"exit"'
    page.click("#launch")
    page.wait_for_selector("#log-card")
    rerun_id = page.get_attribute("#log-card", "data-job")
    assert rerun_id != job_id
    page.goto(f"{live.url}/projects/{setup['project']}/jobs/")
    page.wait_for_selector(f'tr[data-job="{rerun_id}"]')
    page.wait_for_function("window.jobStatesConnected === true")
    page.wait_for_selector(f'tr[data-job="{rerun_id}"] [data-state="failed"]', timeout=120_000)
    page.screenshot(path="/tmp/ui-jobs-list.png", full_page=True)


def test_a_full_4_mb_log_is_held_whole_and_scrolls_by_drawing_only_the_rows_in_view(page, live, setup):
    # ~42,000 lines of 100 bytes reach the 4 MB cap: tens of thousands of rows, stored in seconds.
    pad = "x" * 88
    applet = setup["new_applet"](
        name="chatty",
        inputSpec=[],
        outputSpec=[],
        runSpec={"interpreter": "bash", "code": f"main() {{ seq 1 50000 | sed 's/^/line /;s/$/ {pad}/'; }}"},
    )
    job_id = setup["run"](applet)
    log_in(page, live, "alice")
    page.goto(f"{live.url}/jobs/{job_id}/")
    page.wait_for_function("window.logStreamEnded === true", timeout=180_000)
    stored = stored_log(page, live, job_id)
    assert "log truncated" in stored[-1] and len(stored) > 40_000  # the 4 MB cap was reached
    held = page.evaluate("window.dxJobPage.lines().length")
    assert held == len(stored)
    drawn = page.evaluate("""async () => {
        const view = document.getElementById('log-view');
        document.getElementById('log-follow').checked = false;
        const timings = [];
        for (const at of [0.25, 0.5, 0.75, 0.1]) {
            const start = performance.now();
            view.scrollTop = view.scrollHeight * at;
            await new Promise((resolve) => requestAnimationFrame(() => requestAnimationFrame(resolve)));
            timings.push(performance.now() - start);
        }
        return {rows: document.querySelectorAll('#log-rows .log-line').length, slowest: Math.max(...timings)};
    }""")
    assert drawn["rows"] < 80  # windowed: only the rows in view (plus a margin) are in the DOM
    assert drawn["slowest"] < 250
