"""Live lists in a real browser against the real server: jobs launched from the CLI appear on My jobs and
the project's list without a reload, the bell's count follows, a batch's notices are one line, and
"Mark read" and "Mark all read" work without leaving the page.

Waits are on page flags (window.jobStatesConnected, bellConnected, jobListRefreshed) and selectors.
"""

import os

import pytest

from tests.browser.test_browser_projects import log_in

pytestmark = [pytest.mark.browser, pytest.mark.live]

UNREAD_ROWS_GONE = "document.querySelectorAll('#notification-list tr.unread').length === 0"


@pytest.fixture
def setup(live):
    """A user of their own (the server is shared by the module's tests: their bells start at 0), a project
    and a quick applet."""
    handle = f"live{os.urandom(3).hex()}"
    token = live.user(handle)
    project = live.api("/project/new", {"name": f"live {os.urandom(3).hex()}"}, token=token)["id"]
    applet = live.api(
        "/applet/new",
        {
            "project": project,
            "name": "quick",
            "inputSpec": [],
            "outputSpec": [],
            "runSpec": {"interpreter": "bash", "code": "main() { true; }"},
        },
        token=token,
    )["id"]

    def run(name="quick"):
        return live.api(f"/{applet}/run", {"project": project, "name": name, "input": {}}, token=token)["id"]

    return {"handle": handle, "token": token, "project": project, "applet": applet, "run": run}


def wait_done(page, job_id):
    page.wait_for_selector(f'tr[data-job="{job_id}"] .job-state[data-state="done"]', timeout=120_000)


def test_a_job_launched_elsewhere_appears_on_my_jobs_and_the_bell_counts_it(page, live, setup):
    log_in(page, live, setup["handle"])
    page.goto(f"{live.url}/jobs/")
    page.wait_for_function("window.jobStatesConnected === true && window.bellConnected === true")
    first = setup["run"]("from the CLI")
    # No reload: the socket says a job came, the page swaps its rows in.
    page.wait_for_selector(f'tr[data-job="{first}"]', timeout=15_000)
    assert page.evaluate("window.jobListRefreshed") >= 1
    wait_done(page, first)
    page.wait_for_selector('#bell-count:text-is("1")', timeout=30_000)
    assert page.get_attribute("#bell", "aria-label") == "Notifications, 1 unread"
    page.screenshot(path="/tmp/ui-live-my-jobs.png", full_page=True)

    # The project's list, the same way, with the rows of three more.
    page.goto(f"{live.url}/projects/{setup['project']}/jobs/")
    page.wait_for_function("window.jobStatesConnected === true")
    batch = [setup["run"]("quick") for _ in range(3)]
    for job_id in batch:
        page.wait_for_selector(f'tr[data-job="{job_id}"]', timeout=15_000)
    for job_id in batch:
        wait_done(page, job_id)
    page.wait_for_selector('#bell-count:text-is("4")', timeout=30_000)
    page.screenshot(path="/tmp/ui-live-project-jobs.png", full_page=True)

    # An older page (a cursor) is not rearranged: a bar leads to the newest.
    page.goto(f"{live.url}/projects/{setup['project']}/jobs/?cursor=9999999999999.job-zzzz")
    page.wait_for_function("window.jobStatesConnected === true")
    setup["run"]("later")
    page.wait_for_selector("#new-jobs", timeout=15_000)
    assert "1 new job since this page opened" in page.inner_text("#new-jobs")
    page.screenshot(path="/tmp/ui-live-older-page.png", full_page=True)


def test_a_batchs_notices_are_one_line_marked_read_from_the_page(page, live, setup):
    jobs = [setup["run"]("quick") for _ in range(4)]
    other = setup["run"]("single")
    log_in(page, live, setup["handle"])
    page.goto(f"{live.url}/projects/{setup['project']}/jobs/")
    for job_id in [*jobs, other]:
        wait_done(page, job_id)
    page.wait_for_selector('#bell-count:text-is("5")', timeout=30_000)
    page.goto(f"{live.url}/notifications/")
    page.wait_for_function("window.bellConnected === true")
    rows = page.locator("#notification-list tbody tr")
    assert rows.count() == 1
    assert "5 jobs of quick ended: 5 done" in page.inner_text("#notification-list")
    page.click("#notification-list details summary")
    page.screenshot(path="/tmp/ui-live-notifications.png", full_page=True)
    page.set_viewport_size({"width": 390, "height": 844})
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    page.screenshot(path="/tmp/ui-live-notifications-390.png", full_page=True)
    page.set_viewport_size({"width": 1360, "height": 860})
    assert all(page.locator(f'#notification-list details a:text-is("{job_id}")').count() == 1 for job_id in jobs)
    # Mark the batch read, without leaving the page; the bell follows.
    page.click("#notification-list form.mark-read button")
    page.wait_for_selector("#bell-count", state="detached")
    # The bell may hear of it over its socket before the page has the POST's answer and marks the rows.
    page.wait_for_function(UNREAD_ROWS_GONE)
    assert page.is_disabled("#mark-all-read button")
    page.screenshot(path="/tmp/ui-live-notifications-read.png", full_page=True)


def test_mark_all_read_with_the_keyboard(page, live, setup):
    first = setup["run"]("one")
    log_in(page, live, setup["handle"])
    page.goto(f"{live.url}/jobs/")
    wait_done(page, first)
    second = live.api(
        "/applet/new",
        {
            "project": setup["project"],
            "name": "other",
            "inputSpec": [],
            "outputSpec": [],
            "runSpec": {"interpreter": "bash", "code": "main() { true; }"},
        },
        token=setup["token"],
    )["id"]
    job = live.api(f"/{second}/run", {"project": setup["project"], "input": {}}, token=setup["token"])["id"]
    page.wait_for_selector(f'tr[data-job="{job}"]', timeout=15_000)
    wait_done(page, job)
    page.wait_for_selector('#bell-count:text-is("2")', timeout=30_000)
    page.goto(f"{live.url}/notifications/")
    assert page.locator("#notification-list tr.unread").count() == 2
    page.focus("#mark-all-read button")
    page.keyboard.press("Enter")
    page.wait_for_selector("#bell-count", state="detached")
    page.wait_for_function(UNREAD_ROWS_GONE)
    page.reload()
    assert page.locator("#notification-list tr.unread").count() == 0
