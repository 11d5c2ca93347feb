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


def signin_mail(site: Site, before: int, email: str = EMAIL) -> EmailMessage:
    def arrived() -> EmailMessage | None:
        mails = [m for m in site.sink.messages_for(email) if "Sign in" in m["Subject"]]
        return mails[before] if len(mails) > before else None

    return eventually(arrived, "the sign-in mail")


def first_step(site: Site, page: Page, email: str = EMAIL) -> None:
    """Email and the mailed code: lands on the second-step page."""
    before = len([m for m in site.sink.messages_for(email) if "Sign in" in m["Subject"]])

    def asked() -> bool:
        # The site keeps a 3-second mail interval per address (test_pages.py): a sign-in
        # right after the last one is refused with "please wait" until it has passed.
        page.goto("/login")
        page.get_by_label("Email address").fill(email)
        page.get_by_role("button", name="Email me a code").click()
        page.wait_for_load_state()
        return page.url.endswith("/login/code")

    eventually(asked, "the sign-in page to accept the address")
    page.get_by_label("6-digit code").fill(mail_code(signin_mail(site, before, email)))


def qr_png(page: Page, tmp_path: Path) -> Path:
    """The setup page's QR code as Chromium draws it."""
    png = tmp_path / "qr.png"
    page.get_by_role("img", name="QR code for your authenticator app").screenshot(path=png)
    return png


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
    uri = zbarimg(qr_png(page, tmp_path))  # as Chromium drew it
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


def codes_page(site: Site, page: Page, email: str, tmp_path: Path) -> list[str]:
    """Sign in as a new address and turn on the app: lands on its recovery codes."""
    first_step(site, page, email)
    expect(page).to_have_url(re.compile(r"/account$"))
    page.goto("/account/security")
    page.get_by_role("button", name="Set up an authenticator app").click()
    secret = secret_of(zbarimg(qr_png(page, tmp_path)))
    page.get_by_label("Enter the 6-digit code the app shows").fill(
        oathtool(secret, int(time.time()))
    )
    page.get_by_role("button", name="Turn on").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Save your recovery codes")
    codes = page.locator("#recovery-codes code").all_inner_texts()
    assert len(codes) == 10
    return codes


def test_copy_codes_puts_the_codes_on_the_clipboard_one_per_line(
    site: Site, new_context: test_pages.NewContext, tmp_path: Path
) -> None:
    context = new_context()
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=site.url)
    page = context.new_page()
    codes = codes_page(site, page, "kit@example.com", tmp_path)
    page.get_by_role("button", name="Copy codes").click()
    expect(page.get_by_role("status").filter(has_text="Copied")).to_be_visible()
    shoot(page, "recovery-codes-copied", dark=True)
    assert page.evaluate("navigator.clipboard.readText()") == "\n".join(codes)


def test_without_a_clipboard_copy_codes_selects_them_and_says_so(
    site: Site, new_context: test_pages.NewContext, tmp_path: Path
) -> None:
    context = new_context()
    # As on a plain-HTTP origin or in an older browser: no navigator.clipboard at all.
    context.add_init_script(
        'Object.defineProperty(Navigator.prototype, "clipboard", {get: () => undefined})'
    )
    page = context.new_page()
    codes = codes_page(site, page, "kai@example.com", tmp_path)
    page.get_by_role("button", name="Copy codes").click()
    expect(
        page.get_by_role("status").filter(has_text="Select the codes and copy them")
    ).to_be_visible()
    selected = page.evaluate("window.getSelection().toString()")
    assert [line.strip() for line in selected.split("\n") if line.strip()] == codes
