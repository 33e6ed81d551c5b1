"""The job page of a thousand subjobs in real Chromium: one page of the tree, its counts by state kept
live over the page's socket, and the pager.

Waits are on page flags (window.logStreamConnected) and selectors, never sleeps.
"""

import pytest

from tests.browser.test_browser_jobs import applet_body
from tests.browser.test_browser_projects import log_in

pytestmark = [pytest.mark.browser, pytest.mark.live]

CHILDREN = 1_000
ADD_CHILDREN = """
from dxweb.ids import new_id
from jobs.models import Job
root = Job.objects.get(pk="{root}")
Job.objects.bulk_create(
    Job(id=new_id("job"), name="big:square", function="square", executable=root.executable, project=root.project,
        launched_by=root.launched_by, parent=root, origin=root, root=root, created=root.created + 1 + i,
        state="running" if i % 4 == 3 else "done")
    for i in range({n})
)
"""
FINISH_CHILDREN = (
    'from jobs.models import Job; Job.objects.filter(origin="{root}", state="running").update(state="done")'
)
COUNTS = """() => Object.fromEntries([...document.querySelectorAll('#tree-states .tree-state')]
  .map((item) => [item.dataset.state, Number(item.textContent.trim().split(/\\s+/).pop())]))"""
ROWS = "document.querySelectorAll('#job-tree .tree-row').length"


def test_a_thousand_subjobs_show_a_page_of_rows_with_live_counts(page, live):
    token = live.user("alice")
    project = live.api("/project/new", {"name": "big tree"}, token=token)["id"]
    body = {**applet_body("scatter_bash", project), "name": "big"}
    applet = live.api("/applet/new", body, token=token)["id"]
    root = live.api(f"/{applet}/run", {"project": project, "input": {"n": 1}}, token=token)["id"]
    live.manage("shell", "-c", ADD_CHILDREN.format(root=root, n=CHILDREN))
    log_in(page, live, "alice")
    page.goto(f"{live.url}/jobs/{root}/")
    page.wait_for_function("window.logStreamConnected === true", timeout=60_000)
    assert page.evaluate(ROWS) == 50
    assert page.evaluate(COUNTS)["running"] >= CHILDREN // 4
    # The running subjobs end: the counts follow over the socket, the page keeps its 50 rows.
    live.manage("shell", "-c", FINISH_CHILDREN.format(root=root))
    page.wait_for_function(
        f"() => {{ const c = ({COUNTS})(); return c.done >= {CHILDREN} && !c.running; }}", timeout=60_000
    )
    counts = page.evaluate(COUNTS)
    total = sum(counts.values())
    assert total >= CHILDREN + 1 and counts["done"] >= CHILDREN, counts
    assert page.text_content("#tree-count") == f"{total} jobs"
    assert page.evaluate(ROWS) == 50
    assert page.text_content("#tree-range") == f"Jobs 1–50 of {total}"
    assert page.is_hidden("#tree-prev") and page.is_visible("#tree-next")
    page.click("#tree-next")
    page.wait_for_url(f"**/jobs/{root}/?tree_page=2#job-tree")
    page.wait_for_function("window.logStreamConnected === true", timeout=60_000)
    assert page.evaluate(ROWS) == 50
    assert page.text_content("#tree-range") == f"Jobs 51–100 of {total}"
    assert page.is_visible("#tree-prev")
    assert page.eval_on_selector_all(
        "#job-tree .tree-row", "rows => rows.every((r) => r.style.getPropertyValue('--depth') === '1')"
    )
