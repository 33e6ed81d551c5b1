"""The launch forms' data picker with the keyboard only (real server, worker and Chromium): type part of a
name, ArrowDown, Enter picks, the field shows the name; Escape closes, a second Escape clears; Tab moves
on; chips for an array; a name that resolves to nothing is refused in words, and its error clears as soon
as the field changes. Waits are on selectors and attributes, never sleeps."""

import os

import pytest

from tests.browser.test_browser_projects import log_in

pytestmark = [pytest.mark.browser, pytest.mark.live]

TOOL = {
    "name": "tool",
    "inputSpec": [
        {"name": "reads", "class": "file"},
        {"name": "more", "class": "array:file", "optional": True},
        {"name": "counts", "class": "array:int", "optional": True},
    ],
    "outputSpec": [],
    "runSpec": {"interpreter": "bash", "code": 'main() {\n  echo "picked $reads"\n}\n'},
}
REFERENCE = ("sample_A_R1.txt", "notes.txt")


@pytest.fixture
def setup(live, dx_as, tmp_path):
    dx = dx_as("alice")
    token = live.user("alice")
    project = live.api("/project/new", {"name": f"picks {os.urandom(3).hex()}"}, token=token)["id"]
    files = {}
    for name, folder in zip(REFERENCE, ("/reads", "/docs"), strict=True):
        path = tmp_path / name
        path.write_text(f"{name}\n")
        files[name] = dx(
            "upload", str(path), "--wait", "--brief", "--path", f"{project}:{folder}/", "-p", project=project
        ).stdout.strip()
    applet = live.api("/applet/new", {"project": project, **TOOL}, token=token)["id"]
    return {"token": token, "project": project, "files": files, "applet": applet}


def launch_page(page, live, setup):
    log_in(page, live, "alice")
    page.goto(f"{live.url}/projects/{setup['project']}/applets/{setup['applet']}/run/")
    page.wait_for_selector("#launch-form")


def focused_id(page):
    return page.evaluate("document.activeElement && document.activeElement.id")


def type_and_pick(page, field, text, file_id):
    """Type part of a name in the picker `field`, ArrowDown to the first option, Enter."""
    page.keyboard.type(text)
    page.wait_for_selector(f'[id="{field}-listbox"] [role=option][data-id="{file_id}"]')
    page.keyboard.press("ArrowDown")
    active = page.get_attribute(f'[id="{field}"]', "aria-activedescendant")
    assert active and page.get_attribute(f'[id="{active}"]', "aria-selected") == "true"
    assert page.get_attribute(f'[id="{active}"]', "data-id") == file_id
    page.keyboard.press("Enter")
    page.wait_for_selector(f'[id="{field}-listbox"]', state="hidden")


def test_keyboard_only_pick_close_clear_tab_chips_and_launch(page, live, setup):
    reads, notes = setup["files"]["sample_A_R1.txt"], setup["files"]["notes.txt"]
    launch_page(page, live, setup)
    combo = "#id_in_reads"
    assert page.get_attribute(combo, "role") == "combobox"
    assert page.get_attribute(combo, "aria-expanded") == "false"
    assert page.get_attribute(combo, "aria-controls") == "id_in_reads-listbox"
    page.focus(combo)
    page.keyboard.type("sample_a")
    page.wait_for_selector(f'#id_in_reads-listbox [role=option][data-id="{reads}"]')
    assert page.get_attribute(combo, "aria-expanded") == "true"
    assert "/reads" in page.inner_text("#id_in_reads-listbox")
    page.keyboard.press("ArrowDown")
    page.screenshot(path="/tmp/ui-picker-open.png", full_page=True)
    page.keyboard.press("Enter")
    # The box shows the name, its folder under it; the form sends the ID.
    assert page.input_value(combo) == "sample_A_R1.txt"
    assert page.inner_text("#id_in_reads-picked") == "in /reads"
    assert page.input_value('input[type=hidden][name="in_reads"]') == reads
    assert page.get_attribute(combo, "aria-expanded") == "false" and focused_id(page) == "id_in_reads"
    assert f"-ireads={reads}" in page.inner_text("#dx-command")
    # ArrowDown opens the list again, Escape closes it and keeps the pick; a second Escape clears the field.
    page.keyboard.press("ArrowDown")
    page.wait_for_selector("#id_in_reads-listbox [role=option]")
    page.keyboard.press("Escape")
    page.wait_for_selector("#id_in_reads-listbox", state="hidden")
    assert page.input_value(combo) == "sample_A_R1.txt" and page.get_attribute(combo, "aria-expanded") == "false"
    page.keyboard.press("Escape")
    assert page.input_value(combo) == "" and page.input_value('input[type=hidden][name="in_reads"]') == ""
    # Typing a path searches this project's folders; Tab takes the active option and moves on.
    page.keyboard.type("/reads/sam")
    page.wait_for_selector(f'#id_in_reads-listbox [role=option][data-id="{reads}"]')
    page.keyboard.press("ArrowDown")
    page.keyboard.press("Tab")
    assert page.input_value('input[type=hidden][name="in_reads"]') == reads
    assert focused_id(page) == "id_in_more"  # the array's box, next in the form
    # The array: a chip per pick; Backspace in the empty box removes the last.
    type_and_pick(page, "id_in_more", "notes", notes)
    type_and_pick(page, "id_in_more", "R1", reads)
    assert page.locator("#id_in_more ~ .picker-results").count() == 1
    chips = page.locator(".picker-multiple .picker-chip")
    assert chips.count() == 2 and chips.nth(0).inner_text().startswith("notes.txt")
    assert page.input_value('textarea[name="in_more"]') == f"{notes}\n{reads}"
    page.screenshot(path="/tmp/ui-picker-chips.png", full_page=True)
    page.keyboard.press("Backspace")
    assert chips.count() == 1 and page.input_value('textarea[name="in_more"]') == notes
    assert f"-imore={notes}" in page.inner_text("#dx-command")
    # Each chip's remove button is reached with Tab (Shift+Tab back from the box).
    page.keyboard.press("Shift+Tab")
    assert page.evaluate("document.activeElement.getAttribute('aria-label')") == "Remove notes.txt"
    page.keyboard.press("Shift+Tab")
    # Enter in a text field sends the form.
    page.focus("#id_name")
    page.keyboard.type("picked by keyboard")
    page.keyboard.press("Enter")
    page.wait_for_selector("#log-card")
    job_id = page.get_attribute("#log-card", "data-job")
    job = live.api(f"/{job_id}/describe", token=setup["token"])
    assert job["name"] == "picked by keyboard"
    assert job["originalInput"] == {"reads": {"$dnanexus_link": reads}, "more": [{"$dnanexus_link": notes}]}
    # Rerun: the form starts from the job's input, shown by name, the IDs kept.
    page.goto(f"{live.url}/projects/{setup['project']}/applets/{setup['applet']}/run/?from={job_id}")
    page.wait_for_function("document.querySelector('#id_in_reads').value === 'sample_A_R1.txt'")
    assert page.input_value('input[type=hidden][name="in_reads"]') == reads
    page.wait_for_selector(".picker-chip:has-text('notes.txt')")
    assert page.input_value('textarea[name="in_more"]') == notes


def test_a_typed_unknown_name_is_refused_in_words_and_the_error_clears_on_a_valid_pick(page, live, setup):
    reads = setup["files"]["sample_A_R1.txt"]
    launch_page(page, live, setup)
    page.focus("#id_in_reads")
    page.keyboard.type("sample.fastq")
    page.wait_for_selector("#id_in_reads ~ .picker-results .picker-note:visible")
    assert page.inner_text("#id_in_reads ~ .picker-results .picker-note") == "No file matches “sample.fastq”"
    page.keyboard.press("Escape")
    page.focus("#id_in_counts")
    page.keyboard.type("1")
    page.keyboard.press("Enter")
    page.keyboard.type("x")
    page.focus("#id_name")
    page.keyboard.press("Enter")
    page.wait_for_selector(".has-error")
    reads_error = page.inner_text('[data-field="reads"] .field-error')
    assert "sample.fastq" in reads_error, reads_error
    for python in ("$dnanexus_link", "got {", "invalid literal", "Traceback"):
        assert python not in page.inner_text("#launch-form")
    assert page.inner_text('[data-field="counts"] .field-error') == "Line 2: 'x' is not a whole number"
    assert page.get_attribute("#id_in_reads", "aria-invalid") == "true"
    assert page.input_value("#id_in_reads") == "sample.fastq"
    page.screenshot(path="/tmp/ui-picker-error.png", full_page=True)
    # The error goes as soon as the field changes, before anything is sent again.
    page.focus("#id_in_reads")
    page.keyboard.press("Escape")  # the list is closed: Escape clears the box
    assert page.locator('[data-field="reads"] .field-error').count() == 0
    assert page.get_attribute("#id_in_reads", "aria-invalid") == "false"
    assert "has-error" not in page.get_attribute('[data-field="reads"]', "class")
    type_and_pick(page, "id_in_reads", "sample_A", reads)
    assert page.input_value("#id_in_reads") == "sample_A_R1.txt"
    # The other field keeps its error until it changes too.
    assert page.locator('[data-field="counts"] .field-error').count() == 1
    page.focus("#id_in_counts")
    page.keyboard.press("Control+End")
    page.keyboard.press("Backspace")
    assert page.locator('[data-field="counts"] .field-error').count() == 0
    page.screenshot(path="/tmp/ui-picker-cleared.png", full_page=True)
    page.focus("#id_name")
    page.keyboard.press("Enter")
    page.wait_for_selector("#log-card")
    job = live.api(f"/{page.get_attribute('#log-card', 'data-job')}/describe", token=setup["token"])
    assert job["originalInput"] == {"reads": {"$dnanexus_link": reads}, "counts": [1]}


def test_the_workflow_launch_form_picks_with_the_keyboard_in_a_stage_field(page, live, setup):
    token, project, reads = setup["token"], setup["project"], setup["files"]["sample_A_R1.txt"]
    workflow = live.api("/workflow/new", {"project": project, "name": "one stage"}, token=token)["id"]
    stage = live.api(f"/{workflow}/addStage", {"executable": setup["applet"], "editVersion": 0}, token=token)["stage"]
    live.api(f"/{workflow}/close", {}, token=token)
    log_in(page, live, "alice")
    page.goto(f"{live.url}/projects/{project}/workflows/{workflow}/run/")
    page.wait_for_selector("#launch-form")
    field = f"id_in_{stage}.reads"
    page.focus(f'[id="{field}"]')
    type_and_pick(page, field, "sample", reads)
    assert page.input_value(f'[id="{field}"]') == "sample_A_R1.txt"
    assert page.input_value(f'input[type=hidden][name="in_{stage}.reads"]') == reads
    assert f"-i{stage}.reads={reads}" in page.inner_text("#dx-command")
    page.screenshot(path="/tmp/ui-picker-workflow.png", full_page=True)
    page.focus("#id_name")
    page.keyboard.press("Enter")
    page.wait_for_selector("#analysis-page")
