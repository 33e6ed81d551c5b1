"""The data pages in a real headless Chromium: a file's page, using it as an input, search, copy, rename."""

import hashlib
import os
import urllib.request
from urllib.parse import parse_qs, urlparse

import pytest

from tests.browser.test_browser_projects import log_in, new_project, row

pytestmark = [pytest.mark.browser, pytest.mark.live]

FASTQ = b"".join(b"@read%d\nACGTACGTAC\n+\nIIIIIIIIII\n" % i for i in range(40))


def upload(live, token, project, name, data, folder="/"):
    file_id = live.api("/file/new", {"project": project, "name": name, "folder": folder, "parents": True}, token=token)[
        "id"
    ]
    md5 = hashlib.md5(data).hexdigest()
    url = live.api(f"/{file_id}/upload", {"index": 1, "size": len(data), "md5": md5}, token=token)["url"]
    request = urllib.request.Request(url, data=data, method="PUT")
    with urllib.request.urlopen(request, timeout=60):
        pass
    live.api(f"/{file_id}/close", {"project": project}, token=token)
    return file_id


def fits_the_screen(page):
    """Whether the page's own content (the top navigation set aside) is no wider than the screen."""
    return page.evaluate(
        """(() => {
            document.querySelector("header.topnav").style.display = "none";
            return document.documentElement.scrollWidth <= window.innerWidth;
        })()"""
    )


def test_alice_opens_a_file_tags_it_uses_it_as_input_searches_copies_and_renames(page, live):
    token = live.user("alice")
    log_in(page, live, "alice")
    project = new_project(page, live, f"data {os.urandom(3).hex()}")
    reads = upload(live, token, project, "sample_A_R1.fastq", FASTQ, folder="/raw")
    upload(live, token, project, "sample_B_R1.fastq", FASTQ[:200], folder="/raw")
    live.api(f"/{reads}/setProperties", {"project": project, "properties": {"sample": "A"}}, token=token)
    mapper = live.api(
        "/applet/new",
        {
            "project": project,
            "name": "mapper",
            "inputSpec": [{"name": "reads", "class": "file", "label": "Reads"}],
            "outputSpec": [],
            "runSpec": {"interpreter": "bash", "code": "main() { :; }"},
        },
        token=token,
    )["id"]
    other = live.api("/project/new", {"name": "archive"}, token=token)["id"]

    # The Files page: applets link to their page and Run; a file's name opens its page.
    page.goto(f"{live.url}/projects/{project}/")
    assert page.get_attribute(f"{row('mapper')} a.row-link", "href") == f"/projects/{project}/applets/{mapper}/"
    assert page.get_attribute(f"{row('mapper')} [data-action=run]", "href").endswith(f"/applets/{mapper}/run/")
    page.click("tr.folder-row[data-folder='/raw'] a")
    page.click(f"{row('sample_A_R1.fastq')} a.row-link")
    page.wait_for_selector("#object-id")
    assert page.inner_text("#object-id") == reads
    assert page.inner_text("#object-md5") == hashlib.md5(FASTQ).hexdigest()
    assert page.inner_text("#preview-text").startswith("@read0\nACGTACGTAC")
    assert "sample" in page.inner_text("#object-properties")
    page.screenshot(path="/tmp/ui-data-file.png", full_page=True)

    # Tags through the form; bad properties are an error next to the field.
    page.click("#metadata summary")
    page.fill("#tags-form input[name=tags]", "raw, lane1")
    page.click("#tags-form button[type=submit]")
    page.wait_for_selector("text=Saved the tags")
    assert page.locator("#object-tags .tag").all_inner_texts() == ["raw", "lane1"]
    page.click("#metadata summary")
    page.fill("#properties-form textarea", "no equals sign")
    page.click("#properties-form button[type=submit]")
    page.wait_for_selector("#properties-form .field-error")
    page.screenshot(path="/tmp/ui-data-file-error.png", full_page=True)

    # Use as input: the launch form of the chosen applet, with the file in the query string.
    page.goto(f"{live.url}/projects/{project}/files/{reads}/")
    page.select_option("#use-target", f"{mapper}:reads")
    page.click("#use-as-input button[type=submit]")
    page.wait_for_url(f"**/applets/{mapper}/run/**")
    assert parse_qs(urlparse(page.url).query) == {"in_reads": [reads]}

    # Search: wildcards, a property.
    page.goto(f"{live.url}/projects/{project}/")
    page.click("#search-link")
    page.fill("#id_name", "sample_?_R1.*")
    page.fill("#id_property", "sample=A")
    page.click("#search-form button[type=submit]")
    page.wait_for_selector("#results")
    assert page.locator("tr.result-row").count() == 1
    page.screenshot(path="/tmp/ui-data-search.png", full_page=True)
    page.click("tr.result-row a.row-link")
    page.wait_for_selector("#object-id")

    # Copy a selection to another project.
    page.goto(f"{live.url}/projects/{project}/?folder=/raw")
    page.check(f"{row('sample_B_R1.fastq')} input[type=checkbox]")
    page.click("[data-open=copy-dialog]")
    page.select_option("#copy-project", other)
    page.fill("#copy-destination", "/from-data")
    page.screenshot(path="/tmp/ui-data-copy.png")
    page.click("#copy-dialog button[type=submit]")
    page.wait_for_selector("text=Copied 1 item to archive:/from-data")
    assert page.locator(row("sample_B_R1.fastq")).count() == 1  # still here
    listed = live.api(f"/{other}/listFolder", {"folder": "/from-data"}, token=token)["objects"]
    assert len(listed) == 1

    # Rename the project from its header.
    page.click("#project-rename")
    page.fill("#id_name", "data, renamed")
    page.screenshot(path="/tmp/ui-data-settings.png")
    page.click("#settings-form button[type=submit]")
    page.wait_for_selector('h1:has-text("data, renamed")')

    # A phone-sized screen: nothing wider than it on the data pages.
    page.set_viewport_size({"width": 390, "height": 844})
    for path in (f"/projects/{project}/files/{reads}/", f"/projects/{project}/search/?name=*.fastq"):
        page.goto(live.url + path)
        assert fits_the_screen(page), path
    page.goto(f"{live.url}/projects/{project}/files/{reads}/")
    page.screenshot(path="/tmp/ui-data-file-390.png", full_page=True)
