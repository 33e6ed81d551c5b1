"""The job page's resource chart against the real server and worker: it fills while the job runs, and
a finished job's page draws it from the stored samples.

Waits are on page flags (window.dxResources, logStreamEnded) and selectors, never sleeps.
"""

import pytest

from tests.browser.test_browser_jobs import job_state, setup  # noqa: F401  (the fixture)
from tests.browser.test_browser_projects import log_in

pytestmark = [pytest.mark.browser, pytest.mark.live]

# Busy for ~5 s on one core, taking 10 MB more memory every 0.25 s and writing a 5 MB file.
BUSY = """main() {
    head -c 5000000 /dev/zero > written.bin
    python3 -c '
import time
held, start, step = [], time.monotonic(), 0.0
while time.monotonic() - start < 5:
    if time.monotonic() - start >= step:
        held.append(bytearray(b"x") * (10 * 1024 * 1024))
        step += 0.25
'
}"""


def test_the_chart_updates_while_the_job_runs_and_stays_once_it_has_ended(page, live, setup):  # noqa: F811
    run_spec = {"interpreter": "bash", "code": BUSY}
    applet = setup["new_applet"](name="busy", inputSpec=[], outputSpec=[], runSpec=run_spec)
    job_id = setup["run"](applet)
    log_in(page, live, "alice")
    page.goto(f"{live.url}/jobs/{job_id}/")
    page.wait_for_function("window.dxResources && window.dxResources.points() >= 1", timeout=120_000)
    first = page.evaluate("window.dxResources.points()")
    assert job_state(page) == "running"
    # New samples arrive live, while the job still runs.
    page.wait_for_function(f"window.dxResources.points() > {first} + 2", timeout=30_000)
    assert job_state(page) == "running"
    assert page.is_visible("#resources-charts .uplot canvas") and not page.is_visible("#resources-note")
    page.wait_for_function("window.logStreamEnded === true", timeout=120_000)
    assert job_state(page) == "done"
    live_points = page.evaluate("window.dxResources.points()")
    assert live_points >= 8  # ~5 s at 0.5 s
    page.screenshot(path="/tmp/ui-resources-live.png", full_page=True)

    # A finished job's page: the same chart, from the stored samples.
    page.goto(f"{live.url}/jobs/{job_id}/")
    page.wait_for_function("window.logStreamEnded === true", timeout=60_000)
    page.wait_for_function("window.dxResources.draws() >= 1")
    assert page.evaluate("window.dxResources.points()") >= live_points - 1
    assert page.locator("#resources-charts .uplot").count() == 3
    cpu = page.inner_text('[data-series="cpu"] figcaption')
    memory = page.inner_text('[data-series="memory"] figcaption')
    assert "limit 2 cores" in cpu and "peak" in cpu, cpu
    peak_cpu = float(cpu.split("peak ")[1].split(" ")[0])
    assert peak_cpu > 0.5, cpu
    peak_memory = memory.split("peak ")[1].split(" ·")[0]
    assert peak_memory.endswith("MiB") and float(peak_memory.split()[0]) > 100, memory
    assert "limit 3.7 GiB" in memory, memory
    page.screenshot(path="/tmp/ui-resources.png", full_page=True)


def test_a_job_that_never_ran_says_so_instead_of_a_chart(page, live, setup):  # noqa: F811
    applet = setup["new_applet"](
        name="waits", inputSpec=[], outputSpec=[], runSpec={"interpreter": "bash", "code": "main() { sleep 600; }"}
    )
    blocker = setup["run"](applet)
    body = {"project": setup["project"], "dependsOn": [blocker]}
    waiting = live.api(f"/{applet}/run", body, token=setup["token"])["id"]
    live.api(f"/{waiting}/terminate", {}, token=setup["token"])
    live.api(f"/{blocker}/terminate", {}, token=setup["token"])
    log_in(page, live, "alice")
    page.goto(f"{live.url}/jobs/{waiting}/")
    page.wait_for_function("window.logStreamEnded === true", timeout=60_000)
    assert page.inner_text("#resources-note") == "The job has not run"
    assert not page.is_visible("#resources-charts")
