"""Apps in a real headless Chromium against the real server: an authorized user opens the catalog, opens
an app, launches it in a project of their own (picking a file there with the data picker) and lands on
the job page, which the job reaches done on; the catalog and the app page pass axe (no serious or
critical violation) at 1366 px and stay within a 390 px screen. Screenshots: /tmp/ui-apps-*.png."""

import os

import pytest

from tests.browser.test_browser_a11y import blocking_violations, describe
from tests.browser.test_browser_jobs import applet_body
from tests.browser.test_browser_projects import log_in
from tests.browser.test_browser_responsive import OVERFLOWING, PHONE

pytestmark = [pytest.mark.browser, pytest.mark.live]
DESKTOP = {"width": 1366, "height": 860}


@pytest.fixture
def world(live, dx_as, tmp_path):
    """alice develops the app wc_file 1.0.0 (published, bob may run it); bob has a project with a file."""
    alice, bob = live.user("alice"), live.user("bob")
    name = f"wc{os.urandom(3).hex()}"
    build = live.api("/project/new", {"name": "app build"}, token=alice)["id"]
    applet = live.api("/applet/new", applet_body("wc_file", build), token=alice)["id"]
    body = applet_body("wc_file", build)
    del body["project"]
    app = live.api(
        "/app/new",
        {
            **body,
            "name": name,
            "version": "1.0.0",
            "summary": "Counts the lines of a file",
            "details": {"whatsNew": "* 1.0.0: counts lines\n* 0.9.0: first try"},
            "regionalOptions": {"aws:us-east-1": {"applet": applet}},
        },
        token=alice,
    )["id"]
    live.api(f"/{app}/publish", {"makeDefault": True}, token=alice)
    # 2.0.0: not published yet, so alice's alone.
    live.api(
        "/app/new",
        {**body, "name": name, "version": "2.0.0", "regionalOptions": {"aws:us-east-1": {"applet": applet}}},
        token=alice,
    )
    live.api(f"/{app}/addAuthorizedUsers", {"authorizedUsers": ["user-bob"]}, token=alice)
    project = live.api("/project/new", {"name": f"bob's runs {os.urandom(2).hex()}"}, token=bob)["id"]
    reads = tmp_path / "lines.txt"
    reads.write_text("one\ntwo\nthree\n")
    file_id = dx_as("bob")("upload", str(reads), "--wait", "--brief", project=project).stdout.strip()
    return {"name": name, "app": app, "project": project, "file": file_id}


def test_bob_runs_an_app_from_the_catalog_and_lands_on_its_job(page, live, world):
    name = world["name"]
    page.set_viewport_size(DESKTOP)
    log_in(page, live, "bob")
    page.click(".mainnav >> text=Apps")
    page.wait_for_selector(f'#apps tr[data-app="{name}"]')
    row = page.inner_text(f'#apps tr[data-app="{name}"]')
    assert "1.0.0" in row and "Counts the lines of a file" in row and "alice" in row and "bob" in row
    violations = blocking_violations(page, "apps", page.url)
    page.screenshot(path="/tmp/ui-apps-catalog.png", full_page=True)

    page.click(f'#apps tr[data-app="{name}"] .row-link')
    page.wait_for_selector("#whats-new")
    assert "counts lines" in page.inner_text("#whats-new")
    assert page.locator("#versions tr").count() == 1 and page.locator("#publish").count() == 0
    violations += blocking_violations(page, "app", page.url)
    page.screenshot(path="/tmp/ui-apps-app.png", full_page=True)
    assert not violations, "axe found serious or critical violations:\n" + describe(violations)

    page.click("#run-app")
    page.wait_for_selector("#launch-form")
    page.select_option("#id_project", world["project"])
    page.fill("#id_in_reads", "lines")
    page.click(f'.picker-results [role=option][data-id="{world["file"]}"]')
    command = page.inner_text("#dx-command")
    assert f"dx run app-{name}/1.0.0" in command and f"-ireads={world['file']}" in command
    assert f"--destination {world['project']}:/" in command
    page.screenshot(path="/tmp/ui-apps-launch.png", full_page=True)
    page.click("#launch")
    page.wait_for_url(f"{live.url}/jobs/job-*/")
    page.wait_for_selector('#job-state [data-state="done"]', timeout=180_000)
    # The job ran in the project bob chose.
    assert page.locator(f'main a[href="/projects/{world["project"]}/"]').count() >= 1
    page.screenshot(path="/tmp/ui-apps-job.png", full_page=True)


def test_at_390_px_the_app_pages_fit_the_screen_and_a_developers_forms_pass_axe(page, live, world):
    """As alice, the developer: the app page has her forms (publish, developers, who may run it)."""
    log_in(page, live, "alice")
    page.set_viewport_size(PHONE)
    too_wide, violations = {}, []
    for label, path in {
        "catalog": "/apps/",
        "app": f"/apps/{world['name']}/",
        "unpublished": f"/apps/{world['name']}/2.0.0/",
        "launch": f"/apps/{world['name']}/1.0.0/run/",
    }.items():
        assert page.goto(live.url + path).status == 200, path
        page.wait_for_selector("main")
        page.screenshot(path=f"/tmp/ui-390-apps-{label}.png", full_page=True)
        if not page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"):
            too_wide[label] = page.evaluate(OVERFLOWING)
        violations += blocking_violations(page, label, page.url)
        if label in ("app", "unpublished"):
            assert page.locator("#developers-form").count() == 1
            assert page.locator("#publish-app").count() == (label == "unpublished")
    assert not too_wide, "\n".join(f"{k}: {v}" for k, v in too_wide.items())
    assert not violations, "axe found serious or critical violations:\n" + describe(violations)
