"""A phone-sized screen (390×844) in a real headless Chromium against the real server: no main page is
wider than the screen, tables read as cards, and the navigation collapses behind a Menu button that
opens with the keyboard as with the mouse. Screenshots: /tmp/ui-390-<page>.png."""

import os

import pytest

from tests.browser.test_browser_jobs import applet_body
from tests.browser.test_browser_projects import log_in

pytestmark = [pytest.mark.browser, pytest.mark.live]

PHONE = {"width": 390, "height": 844}

# What sticks out past the screen's right edge, to say why a page does not fit.
OVERFLOWING = """(() => {
    const width = window.innerWidth, found = [];
    for (const el of document.querySelectorAll("body *")) {
        const box = el.getBoundingClientRect(), parent = el.parentElement.getBoundingClientRect();
        if (box.width && box.right > width + 0.5 && parent.right <= width + 0.5) {
            const name = `${el.tagName.toLowerCase()}#${el.id}.${[...el.classList].join(".")}`;
            found.push(`${name} right=${Math.round(box.right)}`);
        }
    }
    return found.slice(0, 12);
})()"""


@pytest.fixture
def world(live, dx_as, tmp_path):
    """alice's project with a file, an applet, a workflow, a finished job (and its notice), and an org."""
    dx = dx_as("alice")
    token = live.user("alice")
    project = live.api("/project/new", {"name": f"phone {os.urandom(3).hex()}"}, token=token)["id"]
    reads = tmp_path / "sample_with_a_rather_long_name_R1.fastq.txt"
    reads.write_text("one\ntwo\nthree\n")
    file_id = dx(
        "upload", str(reads), "--wait", "--brief", "--parents", "--path", "/raw/", project=project
    ).stdout.strip()
    applet = live.api("/applet/new", applet_body("wc_file", project), token=token)["id"]
    workflow = live.api(
        "/workflow/new",
        {"project": project, "name": "count", "stages": [{"executable": applet, "name": "count"}]},
        token=token,
    )["id"]
    job = live.api(f"/{applet}/run", {"project": project, "input": {"reads": {"$dnanexus_link": file_id}}}, token=token)
    dx("wait", job["id"], project=project)
    live.api("/org/new", {"handle": f"lab{os.urandom(2).hex()}", "name": "The lab"}, token=token)
    return {"project": project, "file": file_id, "applet": applet, "workflow": workflow, "job": job["id"]}


def pages(world):
    p = f"/projects/{world['project']}"
    return {
        "dashboard": "/",
        "files": f"{p}/",
        "folder": f"{p}/?folder=/raw",
        "file": f"{p}/files/{world['file']}/",
        "applets": f"{p}/applets/",
        "applet": f"{p}/applets/{world['applet']}/",
        "launch": f"{p}/applets/{world['applet']}/run/",
        "workflows": f"{p}/workflows/",
        "workflow": f"{p}/workflows/{world['workflow']}/",
        "project-jobs": f"{p}/jobs/",
        "members": f"{p}/members/",
        "job": f"/jobs/{world['job']}/",
        "my-jobs": "/jobs/",
        "profile": "/profile/",
        "cli": "/cli/",
        "notifications": "/notifications/",
        "orgs": "/orgs/",
        "404": "/no/such/page",
        "api": "/system/whoami",
    }


def test_at_390_px_no_main_page_is_wider_than_the_screen(page, live, world):
    log_in(page, live, "alice")
    page.set_viewport_size(PHONE)
    too_wide = {}
    for name, path in pages(world).items():
        page.goto(live.url + path)
        page.wait_for_selector("main")
        page.screenshot(path=f"/tmp/ui-390-{name}.png", full_page=True)
        if not page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"):
            too_wide[name] = page.evaluate(OVERFLOWING)
        # The navigation is folded: its Menu button shows, its links do not.
        assert page.is_visible("#nav-toggle") and not page.is_visible(".mainnav >> text=Profile"), name
    assert not too_wide, "\n".join(f"{k}: {v}" for k, v in too_wide.items())


def test_at_390_px_tables_are_cards_whose_cells_carry_their_column_names(page, live, world):
    log_in(page, live, "alice")
    page.set_viewport_size(PHONE)
    page.goto(f"{live.url}/projects/{world['project']}/jobs/")
    page.wait_for_selector("#jobs tbody tr")
    assert page.eval_on_selector("#jobs", "t => getComputedStyle(t).display") == "block"
    assert page.eval_on_selector("#jobs tbody tr", "r => getComputedStyle(r).display") == "grid"
    labels = page.eval_on_selector_all(
        "#jobs tbody tr:first-child td[data-label]", "cs => cs.map(c => c.dataset.label)"
    )
    headers = page.eval_on_selector_all("#jobs thead th", "hs => hs.map(h => h.textContent.trim()).filter(Boolean)")
    assert labels and set(labels) <= set(headers)
    # The file list keeps Download within reach.
    page.goto(f"{live.url}/projects/{world['project']}/?folder=/raw")
    download = page.locator(f'tr[data-object="{world["file"]}"] [data-action="download"]')
    assert download.is_visible()
    box = download.bounding_box()
    assert box["x"] + box["width"] <= PHONE["width"]
    # A wide screen keeps the table.
    page.set_viewport_size({"width": 1360, "height": 860})
    assert page.eval_on_selector("table.files-table", "t => getComputedStyle(t).display") == "table"


def test_at_390_px_the_menu_button_opens_the_navigation_by_keyboard_and_by_mouse(page, live, world):
    log_in(page, live, "alice")
    page.set_viewport_size(PHONE)
    page.goto(f"{live.url}/orgs/")
    toggle = page.locator("#nav-toggle")
    profile, log_out = page.locator(".mainnav >> text=Profile"), page.locator(".whoami >> text=Log out")
    assert toggle.get_attribute("aria-expanded") == "false" and toggle.get_attribute("aria-controls") == "topnav-menu"
    assert not profile.is_visible() and not log_out.is_visible()

    # Keyboard: Tab to the button (after the brand and the bell), Enter opens, Escape closes and keeps focus.
    page.keyboard.press("Tab")
    page.keyboard.press("Tab")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.id") == "nav-toggle"
    page.keyboard.press("Enter")
    assert toggle.get_attribute("aria-expanded") == "true"
    assert profile.is_visible() and log_out.is_visible()
    page.screenshot(path="/tmp/ui-390-menu.png")
    for _ in ("Projects", "My jobs", "Apps", "Orgs", "CLI access", "Profile"):
        page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent.trim()") == "Profile"
    page.keyboard.press("Escape")
    assert toggle.get_attribute("aria-expanded") == "false" and not profile.is_visible()
    assert page.evaluate("document.activeElement.id") == "nav-toggle"
    page.keyboard.press("Space")
    assert profile.is_visible()
    page.keyboard.press("Escape")

    # Mouse: open, follow Profile; open again, a click elsewhere closes; open, Log out.
    toggle.click()
    profile.click()
    page.wait_for_url(f"{live.url}/profile/")
    toggle.click()
    assert log_out.is_visible()
    page.mouse.click(200, 700)
    assert toggle.get_attribute("aria-expanded") == "false"
    toggle.click()
    log_out.click()
    page.wait_for_selector("#id_username")


def test_on_a_wide_screen_the_navigation_stays_in_the_bar(page, live, world):
    log_in(page, live, "alice")
    page.goto(f"{live.url}/profile/")
    assert not page.is_visible("#nav-toggle")
    assert page.is_visible(".mainnav >> text=Profile") and page.is_visible(".whoami >> text=Log out")
    page.screenshot(path="/tmp/ui-1360-nav.png")
