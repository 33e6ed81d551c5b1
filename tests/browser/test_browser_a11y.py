"""Accessibility of the main pages: axe-core (pinned, tests/browser/vendor/VERSIONS.txt) runs in a real headless
Chromium against the real server on each page, and no violation of impact "serious" or "critical" may be left,
except the few listed in KNOWN below, each with the reason it stays."""

import os
import time
from pathlib import Path

import pytest

from tests.browser.test_browser_jobs import applet_body
from tests.browser.test_browser_projects import log_in

pytestmark = [pytest.mark.browser, pytest.mark.live]

AXE = Path(__file__).resolve().parent / "vendor" / "axe.min.js"
BLOCKING = ("serious", "critical")

# Page name -> axe rule ids tolerated on that page, each with a comment saying why it cannot be fixed yet.
# Empty: every serious or critical violation found so far has been fixed. Keep it that way, or keep it short.
KNOWN: dict[str, set[str]] = {}

# Every violation's rule, impact, help, the first few offending elements, and why the first one fails.
RUN_AXE = r"""async () => {
    const results = await axe.run(document, {resultTypes: ["violations"]});
    return results.violations.map(v => ({
        id: v.id, impact: v.impact, help: v.help,
        targets: v.nodes.slice(0, 4).map(n => n.target.join(" ")),
        count: v.nodes.length,
        why: (v.nodes[0].failureSummary || "").replace(/\s+/g, " ").slice(0, 240),
        html: v.nodes[0].html.slice(0, 300),
    }));
}"""


@pytest.fixture
def world(live, dx_as, tmp_path):
    """alice's project with a file, an applet, a finished job (and its notice), a closed workflow, a finished
    analysis, and an org."""
    dx = dx_as("alice")
    token = live.user("alice")
    project = live.api("/project/new", {"name": f"a11y {os.urandom(3).hex()}"}, token=token)["id"]
    reads = tmp_path / "reads.txt"
    reads.write_text("one\ntwo\nthree\n")
    file_id = dx("upload", str(reads), "--wait", "--brief", "--parents", "--path", "/raw/", project=project)
    file_id = file_id.stdout.strip()
    link = {"$dnanexus_link": file_id}
    applet = live.api("/applet/new", applet_body("wc_file", project), token=token)["id"]
    job = live.api(f"/{applet}/run", {"project": project, "input": {"reads": link}}, token=token)["id"]
    workflow = live.api("/workflow/new", {"project": project, "name": "count"}, token=token)["id"]
    live.api(f"/{workflow}/addStage", {"executable": applet, "editVersion": 0, "input": {"reads": link}}, token=token)
    live.api(f"/{workflow}/close", token=token)
    analysis = live.api(f"/{workflow}/run", {"project": project}, token=token)["id"]
    dx("wait", job, project=project)
    deadline = time.monotonic() + 180
    while (state := live.api(f"/{analysis}/describe", token=token)["state"]) not in ("done", "failed", "terminated"):
        assert time.monotonic() < deadline, f"{analysis} did not finish"
        time.sleep(0.5)
    assert state == "done", state
    org = live.api("/org/new", {"handle": f"lab{os.urandom(2).hex()}", "name": "The lab"}, token=token)["id"]
    return {
        "org": org,
        "project": project,
        "file": file_id,
        "applet": applet,
        "job": job,
        "workflow": workflow,
        "analysis": analysis,
    }


def pages(world):
    p = f"/projects/{world['project']}"
    return {
        "dashboard": "/",
        "files": f"{p}/",
        "file": f"{p}/files/{world['file']}/",
        "search": f"{p}/search/?name=*.txt",
        "members": f"{p}/members/",
        "applets": f"{p}/applets/",
        "applet": f"{p}/applets/{world['applet']}/",
        "launch": f"{p}/applets/{world['applet']}/run/",
        "workflows": f"{p}/workflows/",
        "workflow": f"{p}/workflows/{world['workflow']}/",
        "workflow-launch": f"{p}/workflows/{world['workflow']}/run/",
        "analysis": f"/analyses/{world['analysis']}/",
        "project-jobs": f"{p}/jobs/",
        "job": f"/jobs/{world['job']}/",
        "my-jobs": "/jobs/",
        "notifications": "/notifications/",
        "profile": "/profile/",
        "cli": "/cli/",
        "orgs": "/orgs/",
        "org": f"/orgs/{world['org']}/",
        "404": "/no/such/page",
    }


def blocking_violations(page, name, url):
    """Inject axe into the page as it stands and return its serious and critical violations, less KNOWN ones."""
    page.add_script_tag(path=str(AXE))
    found = page.evaluate(RUN_AXE)
    return [
        {**v, "page": name, "url": url}
        for v in found
        if v["impact"] in BLOCKING and v["id"] not in KNOWN.get(name, set())
    ]


def describe(violations):
    return "\n".join(
        f"{v['page']} {v['url']}: [{v['impact']}] {v['id']}: {v['help']} ({v['count']} elements: "
        f"{', '.join(v['targets'])}) {v['why']} {v['html']}"
        for v in violations
    )


def test_the_main_pages_have_no_serious_or_critical_accessibility_violation(page, live, world):
    violations = []
    page.goto(live.url + "/")
    page.wait_for_selector("#id_username")
    violations += blocking_violations(page, "login", page.url)

    log_in(page, live, "alice")
    for name, path in pages(world).items():
        response = page.goto(live.url + path)
        assert response.status == (404 if name == "404" else 200), (name, path, response.status)
        page.wait_for_selector("main")
        page.wait_for_load_state("load")
        violations += blocking_violations(page, name, page.url)
    assert not violations, "axe found serious or critical violations:\n" + describe(violations)


def test_known_exceptions_name_real_pages():
    names = pages(dict.fromkeys(("project", "file", "applet", "job", "workflow", "analysis", "org"), "x"))
    assert set(KNOWN) <= {"login", *names}
