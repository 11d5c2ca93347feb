"""Second factors in Debian's Chromium: set up an authenticator app from the account page (the
QR code as Chromium draws it, read back by zbarimg), sign out, sign in with email + the app's
code, then with a recovery code; screenshots of every new page, light and dark, desktop and
phone. The same watch as test_pages.py: no foreign request, no CSP violation, no script error.
"""

from __future__ import annotations

import re
import time
from email.message import EmailMessage
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from tests.browser import test_pages
from tests.browser.test_pages import Site, shoot
from tests.conftest import mail_code
from tests.support.otp import oathtool, secret_of, zbarimg
from tests.support.wait import eventually

pytestmark = pytest.mark.browser
EMAIL = "kim@example.com"
# The page tests' fixtures (a Latch process with an SMTP sink, Chromium, watched contexts).
site = test_pages.site
browser = test_pages.browser
new_context = test_pages.new_context
page = test_pages.page


def signin_mail(site: Site, before: int) -> EmailMessage:
    def arrived() -> EmailMessage | None:
        mails = [m for m in site.sink.messages_for(EMAIL) if "Sign in" in m["Subject"]]
        return mails[before] if len(mails) > before else None

    return eventually(arrived, "the sign-in mail")


def first_step(site: Site, page: Page) -> None:
    """Email and the mailed code: lands on the second-step page."""
    before = len([m for m in site.sink.messages_for(EMAIL) if "Sign in" in m["Subject"]])

    def asked() -> bool:
        # The site keeps a 3-second mail interval per address (test_pages.py): a sign-in
        # right after the last one is refused with "please wait" until it has passed.
        page.goto("/login")
        page.get_by_label("Email address").fill(EMAIL)
        page.get_by_role("button", name="Email me a code").click()
        page.wait_for_load_state()
        return page.url.endswith("/login/code")

    eventually(asked, "the sign-in page to accept the address")
    page.get_by_label("6-digit code").fill(mail_code(signin_mail(site, before)))


def sign_out(page: Page) -> None:
    page.goto("/account")
    page.get_by_role("button", name="Sign out", exact=True).click()
    expect(page).to_have_url(re.compile(r"/login$"))


def test_enrol_then_sign_in_with_the_app_and_with_a_recovery_code(
    site: Site, page: Page, tmp_path: Path
) -> None:
    first_step(site, page)
    expect(page).to_have_url(re.compile(r"/account$"))
    page.get_by_role("link", name="Manage two-step sign-in").click()
    expect(page).to_have_url(re.compile(r"/account/security$"))
    shoot(page, "security", dark=True)
    page.get_by_role("button", name="Set up an authenticator app").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Set up your authenticator app")
    qr = page.get_by_role("img", name="QR code for your authenticator app")
    qr.screenshot(path=tmp_path / "qr.png")
    uri = zbarimg(tmp_path / "qr.png")  # as Chromium drew it
    assert uri.startswith("otpauth://totp/Latch:kim@example.com?secret=")
    secret = secret_of(uri)
    page.get_by_text("Cannot scan it?").click()
    expect(page.locator("#totp-secret")).to_have_text(
        " ".join(secret[i : i + 4] for i in range(0, 32, 4))
    )
    shoot(page, "totp-enrol", dark=True)
    page.get_by_label("Enter the 6-digit code the app shows").fill(
        oathtool(secret, int(time.time()))
    )
    page.get_by_role("button", name="Turn on").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Save your recovery codes")
    codes = page.locator("#recovery-codes code").all_inner_texts()
    assert len(codes) == 10
    shoot(page, "recovery-codes", dark=True)
    page.get_by_role("button", name="Continue").click()  # not yet: the box is required
    expect(page.get_by_role("heading", level=1)).to_have_text("Save your recovery codes")
    page.get_by_label("I have saved my recovery codes").check()
    page.get_by_role("button", name="Continue").click()
    expect(page.locator("main")).to_contain_text("Your authenticator app is on.")
    page.goto("/login/step-up?next=/account/security")
    shoot(page, "step-up", dark=True)

    sign_out(page)
    first_step(site, page)
    expect(page).to_have_url(re.compile(r"/login/second-factor$"))
    expect(page.get_by_role("heading", level=1)).to_have_text("Enter your authenticator code")
    shoot(page, "second-factor", dark=True)
    # The step after now's: accepted (±1 step) and later than the one the setup used.
    page.get_by_label("6-digit code").fill(oathtool(secret, int(time.time()) + 30))
    page.get_by_role("button", name="Continue").click()
    expect(page).to_have_url(re.compile(r"/account$"))

    sign_out(page)
    first_step(site, page)
    page.get_by_role("link", name="Use a recovery code instead").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Enter a recovery code")
    shoot(page, "second-factor-recovery", dark=True)
    page.get_by_label("Recovery code").fill(codes[0])
    page.get_by_role("button", name="Continue").click()
    expect(page).to_have_url(re.compile(r"/account$"))
    expect(page.locator("main")).to_contain_text("9 recovery codes left")
