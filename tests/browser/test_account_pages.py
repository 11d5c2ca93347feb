"""The account's security pages and mails in Debian's Chromium (issue 19): change of address
and deletion driven through the account page, the "This wasn't me" page, and every new mail,
with screenshots (desktop and phone, light and dark) in test-artifacts/screenshots/."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from tests.browser import test_pages as pages
from tests.browser.test_pages import NewContext, Site, address, shoot, sign_in_by_code
from tests.conftest import mail_code, text_of
from tests.support.smtp import html_part
from tests.support.wait import eventually

pytestmark = pytest.mark.browser

# The pages' tests' fixtures (one Latch process and one Chromium for this module too).
browser = pages.browser
site = pages.site
new_context = pages.new_context
page = pages.page

IPHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15"
    " (KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1"
)


def show_mail(page: Page, site: Site, html: str, name: str) -> None:
    """A mail's HTML part as a mail client would lay it out, screenshot.

    Served on Latch's origin by the browser itself (a routed URL): a mail is not one of
    Latch's pages, so none of their headers (CSP: no inline style) apply, and its logo comes
    from that same origin (from about:blank Chromium refuses a loopback image).
    """
    url = f"{site.url}/__mail__/{name}"
    page.route(url, lambda route: route.fulfill(body=html, content_type="text/html"))
    page.goto(url)
    shoot(page, name, dark=True)
    page.unroute(url)


def ask_for_code(page: Page, email: str) -> bool:
    """Ask for a code; False while the address's mail interval refuses it (a 429 page)."""
    page.goto("/login")
    page.get_by_label("Email address").fill(email)
    page.get_by_role("button", name="Email me a code").click()
    page.wait_for_load_state()
    return page.url.endswith("/login/code")


def test_change_the_address_then_delete_the_account_from_the_account_page(
    site: Site, page: Page
) -> None:
    old, new = address("before"), address("after")
    sign_in_by_code(site, page, old)
    page.get_by_role("link", name="Change your address").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Change your address")
    shoot(page, "account-email", dark=True)
    page.get_by_label("New address").fill(new)
    page.get_by_role("button", name="Send a code to the new address").click()
    expect(page).to_have_url(re.compile(r"/account/email/confirm$"))
    expect(page.locator("main")).to_contain_text("a•••@example.com")
    shoot(page, "account-email-code", dark=True)
    confirm = site.sink.wait_for(new)
    # The code form goes on by itself at the sixth digit, as the sign-in's does.
    page.get_by_label("6-digit code").fill(mail_code(confirm))
    expect(page).to_have_url(re.compile(r"/account\?changed=1$"))
    expect(page.locator("main")).to_contain_text(f"You are signed in as {new}")
    expect(page.locator(".notice")).to_contain_text("Your address has changed")
    shoot(page, "account-email-changed", dark=True)
    changed = site.sink.wait_for(old, index=1)
    assert "a•••@example.com" in text_of(changed)

    page.get_by_role("link", name="Delete your account…").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Delete your account")
    page.get_by_label("To confirm, type your address").fill(old)
    page.get_by_role("button", name="Delete my account").click()
    expect(page.locator(".error")).to_contain_text("Type your address exactly")
    expect(page.locator(".error")).to_be_focused()
    shoot(page, "account-delete", dark=True)
    page.get_by_label("To confirm, type your address").fill(new)
    page.get_by_role("button", name="Delete my account").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Your account is deleted")
    shoot(page, "account-deleted", dark=True)
    page.goto("/account")
    expect(page).to_have_url(re.compile(r"/login\?next=/account$"))

    show_mail(page, site, html_part(confirm), "mail-confirm-address")
    show_mail(page, site, html_part(changed), "mail-address-changed")


def test_not_me_page_signs_the_new_device_out(
    site: Site, page: Page, new_context: NewContext
) -> None:
    email = address("notme")
    sign_in_by_code(site, page, email)
    phone = new_context(user_agent=IPHONE).new_page()
    eventually(lambda: ask_for_code(phone, email), "the mail interval to let a second start in")
    phone.get_by_label("6-digit code").fill(mail_code(site.sink.wait_for(email, index=1)))
    expect(phone).to_have_url(re.compile(r"/account$"))

    notice = site.sink.wait_for(email, index=2)
    link = re.search(r"(http://\S+/account/not-me\?t=\S+)", text_of(notice))
    assert link
    show_mail(page, site, html_part(notice), "mail-new-device")
    page.goto(link.group(1))
    expect(page.get_by_role("heading", level=1)).to_have_text("Was this you?")
    expect(page.locator("main")).to_contain_text("Safari on iPhone")
    shoot(page, "not-me", dark=True)
    page.get_by_role("button", name="Sign out that device").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("That device is signed out")
    shoot(page, "not-me-done", dark=True)
    phone.goto("/account")
    expect(phone).to_have_url(re.compile(r"/login"))
