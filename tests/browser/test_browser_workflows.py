"""A two-stage workflow built in the browser, launched from its form, watched to the end on the
analysis page (real server, worker and Chromium). Waits are on selectors and attributes, never sleeps."""

import os

import pytest

from tests.browser.test_browser_jobs import applet_body
from tests.browser.test_browser_projects import log_in

pytestmark = [pytest.mark.browser, pytest.mark.live]

PEEK = {
    "name": "peek",
    "inputSpec": [{"name": "doc", "class": "file"}],
    "outputSpec": [{"name": "first_line", "class": "string"}],
    "runSpec": {
        "interpreter": "bash",
        "code": 'main() {\n  dx-download-all-inputs\n  dx-jobutil-add-output first_line "$(head -n1 "$doc_path")"\n}\n',
    },
}


def test_alice_builds_a_two_stage_workflow_runs_it_and_watches_it_finish(page, live, dx_as, tmp_path):
    dx = dx_as("alice")
    token = live.user("alice")
    project = live.api("/project/new", {"name": f"pipelines {os.urandom(3).hex()}"}, token=token)["id"]
    count = live.api("/applet/new", applet_body("wc_file", project), token=token)["id"]
    live.api("/applet/new", {"project": project, **PEEK}, token=token)
    reads = tmp_path / "sample.txt"
    reads.write_text("a\nb\nc\n")
    file_id = dx("upload", str(reads), "--wait", "--brief", project=project).stdout.strip()

    log_in(page, live, "alice")
    page.goto(f"{live.url}/projects/{project}/workflows/")
    page.fill("#id_name", "count then peek")
    page.fill("#id_output_folder", "/results")
    page.click("#new-workflow button[type=submit]")
    page.wait_for_selector("#add-stage")
    # Two stages from the project's applets.
    page.select_option("#id_applet", value=count)
    page.fill("#add-stage #id_name", "count")
    page.click("#add-stage button[type=submit]")
    page.wait_for_selector(".stage-card[data-stage]")
    page.select_option(
        "#id_applet", label=[o for o in page.locator("#id_applet option").all_inner_texts() if o.startswith("peek")][0]
    )
    page.fill("#add-stage #id_name", "peek")
    page.click("#add-stage button[type=submit]")
    page.wait_for_function("document.querySelectorAll('.stage-card[data-stage]').length === 2")
    first, second = page.eval_on_selector_all(".stage-card[data-stage]", "cards => cards.map(c => c.dataset.stage)")
    # peek's doc takes count's report.
    card = f'.stage-card[data-stage="{second}"]'
    page.click(f"{card} .bind-details summary")
    page.select_option(f"{card} select[name=kind]", "output")
    page.select_option(f"{card} select[name=output]", f"{first}.report")
    page.click(f"{card} .bind-form button[type=submit]")
    page.wait_for_selector(f'.graph-edge[data-from="{first}"][data-to="{second}"]')
    page.screenshot(path="/tmp/ui-workflow-builder.png", full_page=True)
    page.click("#close-workflow")
    page.wait_for_selector("#run-workflow")
    page.click("#run-workflow")
    # The launch form asks for count's reads only (peek's doc is bound), with the dx command beside it.
    page.wait_for_selector("#launch-form")
    assert page.locator(".stage-inputs").count() == 1
    field = f'[id="id_in_{first}.reads"]'
    page.fill(field, "sample")
    page.click(f'.picker-results [role=option][data-id="{file_id}"]')
    assert f"-i{first}.reads={file_id}" in page.inner_text("#dx-command")
    page.screenshot(path="/tmp/ui-workflow-launch.png", full_page=True)
    page.click("#launch")
    page.wait_for_selector("#analysis-page")
    page.wait_for_selector('#analysis-state[data-state="done"]', timeout=180_000)
    page.wait_for_selector("#analysis-outputs .io-values")  # the page reloads once the analysis ends
    outputs = page.inner_text("#analysis-outputs")
    assert "first_line" in outputs and "sample.txt has 3 lines" in outputs
    assert page.locator(".graph-node.job-done").count() == 2
    page.screenshot(path="/tmp/ui-analysis.png", full_page=True)
    assert "sample.report.txt" in dx("ls", f"{project}:/results/", project=project).stdout
