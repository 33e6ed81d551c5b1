"""The profile in a real headless Chromium: the email address, the password change, the CLI token button."""

import pytest

from tests.browser.test_browser_projects import log_in, log_out

pytestmark = [pytest.mark.browser, pytest.mark.live]


def test_a_user_sets_an_address_changes_the_password_and_logs_in_with_it(page, live):
    log_in(page, live, "petra")
    page.click("text=Profile")
    page.wait_for_selector("h1:text-is('Profile')")
    # The live server prints mail to its console: it sends none, and the page says so.
    assert page.is_disabled("#id_notify_by_email")
    page.fill("#id_email", "not an address")
    page.click("#email-form button[type=submit]")
    page.wait_for_selector("#email-form .field-error")
    page.screenshot(path="/tmp/ui-profile-email-error.png", full_page=True)
    page.fill("#id_email", "petra@example.org")
    page.click("#email-form button[type=submit]")
    page.wait_for_selector("text=This site sends no mail, so notices will not be emailed.")
    assert "petra@example.org" in page.inner_text("#email-current")
    page.screenshot(path="/tmp/ui-profile.png", full_page=True)

    page.click("#password-change")
    page.wait_for_selector("h1:text-is('Change password')")
    page.fill("#id_old_password", "wrong")
    page.fill("#id_new_password1", "petra-new-pass-1")
    page.fill("#id_new_password2", "petra-new-pass-1")
    page.click("#password-form button[type=submit]")
    page.wait_for_selector("text=Your old password was entered incorrectly")
    page.screenshot(path="/tmp/ui-profile-password-error.png", full_page=True)
    page.fill("#id_old_password", "petra-password")
    page.fill("#id_new_password1", "petra-new-pass-1")
    page.fill("#id_new_password2", "petra-new-pass-1")
    page.click("#password-form button[type=submit]")
    page.wait_for_selector("h1:text-is('Password changed')")
    page.screenshot(path="/tmp/ui-profile-password-done.png", full_page=True)
    page.click("text=Back to your profile")  # still signed in
    page.wait_for_selector("h1:text-is('Profile')")

    log_out(page)
    page.fill("#id_username", "petra")
    page.fill("#id_password", "petra-new-pass-1")
    page.click("button[type=submit]")
    page.wait_for_selector('[data-testid=handle]:text-is("petra")')


def test_the_cli_token_button_makes_one_token_and_asks_before_another(page, live):
    log_in(page, live, "quinn")
    page.goto(live.url + "/cli/")
    page.dblclick("#cli-token-form button[type=submit]")
    page.wait_for_selector("#cli-token-new")
    page.reload()
    page.wait_for_selector("#cli-tokens")
    assert page.locator("#cli-tokens tbody tr").count() == 1
    page.screenshot(path="/tmp/ui-profile-cli.png", full_page=True)
    dialogs = []
    page.on("dialog", lambda dialog: dialogs.append(dialog.message))  # the fixture's handler says yes
    page.click("text=Use a new token")
    page.wait_for_selector("#cli-token-new")
    assert dialogs and dialogs[0].startswith("Make another token for the CLI?")
    page.screenshot(path="/tmp/ui-profile-cli-new.png", full_page=True)
    page.reload()
    assert page.locator("#cli-tokens tbody tr").count() == 2
