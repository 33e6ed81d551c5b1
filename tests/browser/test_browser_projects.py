"""The project pages in a real headless Chromium against the real server (daphne + worker)."""

import base64
import hashlib
import os
import urllib.request

import pytest

from tests.live import ROOT

pytestmark = [pytest.mark.browser, pytest.mark.live]


def log_in(page, live, handle):
    live.user(handle)
    page.goto(live.url + "/")
    page.fill("#id_username", handle)
    page.fill("#id_password", f"{handle}-password")
    page.click("button[type=submit]")
    page.wait_for_selector(f'[data-testid=handle]:text-is("{handle}")')


def log_out(page):
    page.click("text=Log out")
    page.wait_for_selector("#id_username")


def new_project(page, live, name):
    page.goto(live.url + "/")
    page.fill("#id_name", name)
    page.fill("#id_summary", "made in the browser")
    page.click("#new-project button[type=submit]")
    page.wait_for_selector(f'h1:has-text("{name}")')
    return page.url.rstrip("/").rsplit("/", 1)[1]


def row(name):
    return f'tr.object-row[data-name="{name}"]'


def test_alice_uploads_a_file_and_shares_it_with_bob_who_can_only_view_it(page, live):
    live.user("bob")
    log_in(page, live, "alice")
    name = f"browser {os.urandom(3).hex()}"
    project = new_project(page, live, name)
    assert page.url == f"{live.url}/projects/{project}/"

    content = b"hello from the browser\n" * 50
    page.set_input_files("#upload-input", files=[{"name": "hello.txt", "mimeType": "text/plain", "buffer": content}])
    page.wait_for_selector(f"{row('hello.txt')} .state-closed")
    assert page.inner_text(f"{row('hello.txt')} td.num") == "1.1\xa0KB"
    page.screenshot(path="/tmp/ui-project.png", full_page=True)

    page.click(".tabs >> text=Members")
    page.fill("#id_invitee", "bob")
    page.select_option("#id_level", "VIEW")
    page.click("#invite button[type=submit]")
    page.wait_for_selector('#grants tr[data-grantee="user-bob"]')
    assert "user-bob now has VIEW access" in page.inner_text(".flashes")
    assert "VIEW" in page.inner_text('#effective-access tr[data-user="user-bob"]')

    page.goto(live.url + "/")
    page.wait_for_selector(f'tr[data-project="{project}"]')
    page.screenshot(path="/tmp/ui-dashboard.png", full_page=True)
    log_out(page)

    log_in(page, live, "bob")
    page.click(f'tr[data-project="{project}"] a')
    page.wait_for_selector(row("hello.txt"))
    assert page.locator('[data-action="delete"]').count() == 0
    assert page.locator("#upload-input").count() == 0 and page.locator("#select-all").count() == 0
    with page.expect_download() as download:
        page.click(f'{row("hello.txt")} [data-action="download"]')
    assert download.value.suggested_filename == "hello.txt"
    assert open(download.value.path(), "rb").read() == content


def test_a_large_upload_goes_in_parts_and_a_failed_part_is_retried_alone(page, live, tmp_path):
    token = live.user("alice")
    log_in(page, live, "alice")
    project = new_project(page, live, f"big {os.urandom(3).hex()}")
    # 16 MiB + 4 MiB + 123 bytes: two parts; the first PUT of all is cut off by the "network".
    data = os.urandom(20 * 1024 * 1024 + 123)
    (tmp_path / "big.bin").write_bytes(data)
    aborted = []

    def cut_off(route):
        aborted.append(route.request.url)
        route.abort()

    page.route("**/transfer/up/**", cut_off, times=1)
    page.set_input_files("#upload-input", tmp_path / "big.bin")
    page.wait_for_selector(f"{row('big.bin')} .state-closed", timeout=120_000)
    assert len(aborted) == 1

    file_id = page.get_attribute(row("big.bin"), "data-object")
    described = live.api(f"/{file_id}/describe", {"project": project, "parts": True}, token=token)
    assert described["size"] == len(data) and described["state"] == "closed"
    part = 16 * 1024 * 1024
    assert described["parts"] == {
        "1": {"size": part, "md5": hashlib.md5(data[:part]).hexdigest(), "state": "complete"},
        "2": {"size": len(data) - part, "md5": hashlib.md5(data[part:]).hexdigest(), "state": "complete"},
    }
    url = live.api(f"/{file_id}/download", {"project": project}, token=token)["url"]
    with urllib.request.urlopen(url, timeout=60) as response:
        assert hashlib.sha256(response.read()).digest() == hashlib.sha256(data).digest()


def test_alice_organises_files_with_the_folder_rename_move_and_delete_dialogs(page, live):
    log_in(page, live, "alice")
    project = new_project(page, live, f"tidy {os.urandom(3).hex()}")
    page.set_input_files(
        "#upload-input",
        files=[
            {"name": "a.txt", "mimeType": "text/plain", "buffer": b"a"},
            {"name": "b.txt", "mimeType": "text/plain", "buffer": b"b"},
        ],
    )
    page.wait_for_selector(f"{row('b.txt')} .state-closed")

    page.click("text=New folder")
    page.fill("#folder-name", "archive")
    page.click("#folder-dialog button[type=submit]")
    page.wait_for_selector('tr.folder-row[data-folder="/archive"]')

    page.click(f"{row('a.txt')} [data-rename-object]")
    page.fill("#rename-name", "alpha.txt")
    page.click("#rename-dialog button[type=submit]")
    page.wait_for_selector(row("alpha.txt"))

    page.check(f"{row('alpha.txt')} input[type=checkbox]")
    page.click("[data-open=move-dialog]")
    page.fill("#move-destination", "/archive")
    page.click("#move-dialog button[type=submit]")
    page.wait_for_selector("text=Moved 1 item to /archive")
    assert page.locator(row("alpha.txt")).count() == 0

    page.click(f"{row('b.txt')} [data-action=delete]")
    page.wait_for_selector("text=Deleted 1 item")
    assert page.locator(row("b.txt")).count() == 0

    page.click(".tree-list >> text=archive")
    page.wait_for_selector(row("alpha.txt"))
    assert page.url == f"{live.url}/projects/{project}/?folder=%2Farchive"


def test_a_bad_folder_name_shows_a_flash_error_not_a_crash(page, live):
    log_in(page, live, "alice")
    new_project(page, live, f"errors {os.urandom(3).hex()}")
    page.click("text=New folder")
    page.fill("#folder-name", "../etc")
    page.click("#folder-dialog button[type=submit]")
    page.wait_for_selector(".flash-error")
    assert 'must not contain "/"' in page.inner_text(".flash-error")


def test_the_page_md5_matches_pythons_on_edge_lengths(page):
    page.goto("about:blank")
    page.add_script_tag(path=str(ROOT / "static" / "projects" / "md5.js"))
    digest = "(b64) => MD5.hex(Uint8Array.from(atob(b64), (c) => c.charCodeAt(0)))"
    for length in (0, 1, 55, 56, 63, 64, 65, 119, 120, 1000, 1 << 20):
        data = os.urandom(length)
        assert page.evaluate(digest, base64.b64encode(data).decode()) == hashlib.md5(data).hexdigest(), length
