"""The pages in a real browser: Debian's Chromium driven by Playwright (never a downloaded
browser), Latch as a real process on loopback, the sign-in mail read from a real SMTP server.

Every browser context is watched: a request to any origin but Latch's, a console error (Chromium
reports CSP violations there) or an uncaught script error fails the test that caused it.
Screenshots of every page, at desktop and phone widths, go to test-artifacts/screenshots/.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import (
    Browser,
    BrowserContext,
    ConsoleMessage,
    Page,
    Request,
    Response,
    ViewportSize,
    WebError,
    expect,
    sync_playwright,
)

from tests.conftest import ROOT, TEST_ENV, mail_code, mail_link
from tests.support.process import LatchProcess
from tests.support.smtp import SmtpSink

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
SHOTS = ROOT / "test-artifacts" / "screenshots"
DESKTOP: ViewportSize = {"width": 1280, "height": 800}
PHONE: ViewportSize = {"width": 375, "height": 740}
RESEND_INTERVAL = 3  # seconds: short, so the countdown test waits for it to end
TIMEOUT_MS = 10_000
LOGO = """<svg xmlns="http://www.w3.org/2000/svg" width="132" height="40" viewBox="0 0 132 40">
<rect x="2" y="6" width="28" height="28" rx="7" fill="#4f46e5"/>
<path d="M11 19v-3a5 5 0 0 1 10 0v3" fill="none" stroke="#fff" stroke-width="2.5"/>
<rect x="8" y="19" width="16" height="10" rx="2" fill="#fff"/>
<text x="40" y="28" font-family="system-ui, sans-serif" font-size="22" font-weight="700"
fill="#4f46e5">Latch</text></svg>"""


@dataclass
class Site:
    """Latch running as a process, and the SMTP server its mail goes to."""

    url: str
    sink: SmtpSink
    database: Path


@dataclass
class Watch:
    """What the browser did that it must not: foreign requests, console and script errors."""

    origin: str
    foreign: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    # Documents Latch answered with 4xx on purpose (a wrong code is a 400 page): Chromium logs
    # "Failed to load resource" for those, which is not a fault of the page.
    error_documents: set[str] = field(default_factory=set)

    def attach(self, context: BrowserContext) -> None:
        """Record everything the context's pages request and log."""
        context.on("request", self._request)
        context.on("response", self._response)
        context.on("console", self._console)
        context.on("weberror", self._web_error)

    def _request(self, request: Request) -> None:
        if not request.url.startswith(self.origin + "/"):
            self.foreign.append(request.url)

    def _response(self, response: Response) -> None:
        if response.request.is_navigation_request() and response.status >= 400:
            self.error_documents.add(response.url)

    def _console(self, message: ConsoleMessage) -> None:
        if message.type != "error":
            return
        expected_status = message.text.startswith("Failed to load resource: the server") and (
            message.location.get("url") in self.error_documents
        )
        if not expected_status:
            self.errors.append(message.text)

    def _web_error(self, error: WebError) -> None:
        self.errors.append(str(error.error))

    def assert_clean(self) -> None:
        """No foreign request, no console error, no CSP violation, no script error."""
        assert self.foreign == [], f"requests to other origins: {self.foreign}"
        assert self.errors == [], f"console or script errors: {self.errors}"


NewContext = Callable[..., BrowserContext]


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    """One Latch process for the module, with a logo and a short mail interval."""
    workdir = tmp_path_factory.mktemp("browser")
    (workdir / "logo.svg").write_text(LOGO)
    env = {
        **TEST_ENV,
        "DATA_DIR": str(workdir / "data"),
        "LIMIT_MAIL_INTERVAL": str(RESEND_INTERVAL),
        "LOGO_FILE": str(workdir / "logo.svg"),
    }
    with SmtpSink() as sink:
        env |= {"SMTP_HOST": sink.host, "SMTP_PORT": str(sink.port), "SMTP_TLS": "none"}
        with LatchProcess(env, workdir) as latch:
            yield Site(latch.url, sink, workdir / "data" / "latch.db")


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Debian's Chromium, headless, shared by the module's tests."""
    if not CHROMIUM.exists():
        pytest.fail(
            f"{CHROMIUM} is missing: install Debian's chromium package (`.ci/run` does). "
            "The browser tests never download a browser."
        )
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        yield chromium
        chromium.close()


@pytest.fixture
def new_context(browser: Browser, site: Site) -> Iterator[NewContext]:
    """Fresh browser contexts (each one is "a device"), all watched; checked at the end."""
    watch = Watch(site.url)
    contexts: list[BrowserContext] = []

    def make(**options: Any) -> BrowserContext:
        context = browser.new_context(base_url=site.url, **{"viewport": DESKTOP, **options})
        context.set_default_timeout(TIMEOUT_MS)
        watch.attach(context)
        contexts.append(context)
        return context

    make.watch = watch  # type: ignore[attr-defined]
    yield make
    for context in contexts:
        context.close()
    watch.assert_clean()


@pytest.fixture
def page(new_context: NewContext) -> Page:
    """A page in a fresh, watched context."""
    return new_context().new_page()


def address(name: str) -> str:
    """A fresh address per test, so the mail interval of one test never slows another."""
    return f"{name}@example.com"


def shoot(page: Page, name: str, *, dark: bool = False) -> None:
    """Full-page screenshots of the current page at desktop and phone widths (and, with
    `dark`, both widths again in the dark colour scheme)."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    size = page.viewport_size or DESKTOP
    schemes = (("", "light"), ("dark-", "dark")) if dark else (("", "light"),)
    for prefix, scheme in schemes:
        page.emulate_media(color_scheme=scheme)  # type: ignore[arg-type]
        for label, viewport in (("desktop", DESKTOP), ("phone", PHONE)):
            page.set_viewport_size(viewport)
            page.screenshot(path=SHOTS / f"{name}-{prefix}{label}.png", full_page=True)
            # Nothing may be wider than the screen: no sideways scrolling on a phone.
            width = page.evaluate("document.documentElement.scrollWidth")
            assert width <= viewport["width"], name
    page.emulate_media(color_scheme="light")
    page.set_viewport_size(size)


def start(page: Page, email: str) -> None:
    """Ask for a code on the sign-in page; lands on the code page."""
    page.goto("/login")
    page.get_by_label("Email address").fill(email)
    page.get_by_role("button", name="Email me a code").click()
    expect(page).to_have_url(re.compile(r"/login/code$"))


def sign_in_by_code(site: Site, page: Page, email: str) -> None:
    """A whole sign-in by code: ends on /account."""
    start(page, email)
    page.get_by_label("6-digit code").fill(mail_code(site.sink.wait_for(email)))
    expect(page).to_have_url(re.compile(r"/account$"))


def focused_id(page: Page) -> str:
    """The id (or, for an element without one, the class) of the focused element."""
    value: str = page.evaluate("document.activeElement.id || document.activeElement.className")
    return value


# --- the tests -------------------------------------------------------------------------------


def test_sign_in_by_code_lands_on_the_account_page(site: Site, page: Page) -> None:
    email = address("code")
    page.goto("/login")
    expect(page.get_by_role("heading", level=1)).to_have_text("Sign in")
    shoot(page, "login", dark=True)
    page.get_by_label("Email address").fill(email)
    page.get_by_role("button", name="Email me a code").click()
    expect(page).to_have_url(re.compile(r"/login/code$"))
    expect(page.get_by_role("heading", level=1)).to_have_text("Check your email")
    expect(page.locator("main")).to_contain_text(email)
    code = mail_code(site.sink.wait_for(email))
    expect(page.locator("main")).to_contain_text("are on their way")
    shoot(page, "code", dark=True)
    page.get_by_label("6-digit code").fill(code)
    expect(page).to_have_url(re.compile(r"/account$"))
    expect(page.locator("main")).to_contain_text(f"You are signed in as {email}")
    shoot(page, "account", dark=True)


def test_code_typed_digit_by_digit_submits_itself_on_the_sixth(site: Site, page: Page) -> None:
    email = address("typed")
    start(page, email)
    code = mail_code(site.sink.wait_for(email))
    page.get_by_label("6-digit code").press_sequentially(code[:5])
    expect(page).to_have_url(re.compile(r"/login/code$"))  # five digits: nothing sent yet
    page.get_by_label("6-digit code").press_sequentially(code[5])
    expect(page).to_have_url(re.compile(r"/account$"))


@pytest.mark.parametrize("separator", [" ", "-"])
def test_pasted_code_with_a_space_or_dash_signs_in(site: Site, page: Page, separator: str) -> None:
    email = address(f"pasted{ord(separator)}")
    start(page, email)
    code = mail_code(site.sink.wait_for(email))
    page.get_by_label("6-digit code").fill(f"{code[:3]}{separator}{code[3:]}")
    expect(page).to_have_url(re.compile(r"/account$"))


def test_link_on_another_device_signs_that_device_in_only(
    site: Site, new_context: NewContext
) -> None:
    email = address("linked")
    laptop = new_context().new_page()
    start(laptop, email)
    link = mail_link(site.sink.wait_for(email))
    phone = new_context(viewport=PHONE).new_page()
    phone.goto(link)
    expect(phone.get_by_role("heading", level=1)).to_have_text("Continue signing in")
    expect(phone.locator("main")).to_contain_text("l•••@example.com")
    expect(phone.locator("main")).not_to_contain_text(email)
    shoot(phone, "link", dark=True)
    phone.get_by_role("button", name="Continue").click()
    expect(phone).to_have_url(re.compile(r"/account$"))
    expect(phone.locator("main")).to_contain_text(email)
    laptop.goto("/account")
    expect(laptop).to_have_url(re.compile(r"/login\?next=/account$"))


def test_wrong_code_shows_tries_left_and_five_lead_to_start_again(site: Site, page: Page) -> None:
    email = address("wrong")
    start(page, email)
    code = mail_code(site.sink.wait_for(email))
    wrong = "000000" if code != "000000" else "111111"
    for tries_left in (4, 3, 2, 1):
        page.get_by_label("6-digit code").fill(wrong)
        error = page.get_by_role("alert")
        expect(error).to_contain_text(f"That code is not right. {tries_left} ")
        expect(page.locator(".errors .error")).to_be_focused()
        expect(page.get_by_label("6-digit code")).to_have_attribute("aria-invalid", "true")
        if tries_left == 4:
            shoot(page, "code-wrong")
            page.keyboard.press("Tab")  # from the error, the next stop is the field to fix
            expect(page.get_by_label("6-digit code")).to_be_focused()
    page.get_by_label("6-digit code").fill(wrong)
    expect(page.get_by_role("heading", level=1)).to_have_text("Please start again")
    expect(page.get_by_role("alert")).to_contain_text("Too many wrong codes.")
    expect(page.locator(".errors .error")).to_be_focused()
    expect(page.get_by_label("6-digit code")).to_have_count(0)
    shoot(page, "code-dead")
    page.get_by_role("link", name="Start again").click()
    expect(page).to_have_url(re.compile(r"/login$"))


def test_resend_is_disabled_until_the_countdown_ends(site: Site, page: Page) -> None:
    email = address("resend")
    start(page, email)
    first = mail_code(site.sink.wait_for(email))
    resend = page.get_by_role("button", name="Send a new code")
    expect(resend).to_be_disabled()
    countdown = page.locator("[data-countdown]")
    expect(countdown).to_have_text(re.compile(rf"^[1-{RESEND_INTERVAL}] seconds?$"))
    expect(resend).to_be_enabled(timeout=(RESEND_INTERVAL + 3) * 1000)
    expect(page.get_by_role("status")).to_contain_text("You can ask for a new code now.")
    resend.click()
    expect(page.get_by_role("status")).to_contain_text("We sent a new code.")
    expect(page.get_by_role("button", name="Send a new code")).to_be_disabled()
    second = mail_code(site.sink.wait_for(email, index=1))
    if first != second:  # the old code stopped working when the new one was sent
        page.get_by_label("6-digit code").fill(first)
        expect(page.get_by_role("alert")).to_contain_text("That code is not right.")
    page.get_by_label("6-digit code").fill(second)
    expect(page).to_have_url(re.compile(r"/account$"))


def test_expired_link_offers_a_new_start(site: Site, page: Page) -> None:
    email = address("expired")
    start(page, email)
    link = mail_link(site.sink.wait_for(email))
    # The flow's expiry is moved into the past in the database, rather than waiting for it.
    with sqlite3.connect(site.database, timeout=5) as db:
        moved = db.execute(
            "UPDATE login_flows SET expires_at = expires_at - 3600 WHERE email = ?", (email,)
        ).rowcount
    assert moved == 1
    page.goto(link)
    expect(page.get_by_role("heading", level=1)).to_have_text("This sign-in has expired")
    expect(page.get_by_role("alert")).to_contain_text("expired")
    shoot(page, "error-expired", dark=True)
    page.get_by_role("link", name="Start again").click()
    expect(page).to_have_url(re.compile(r"/login$"))
    expect(page.get_by_label("Email address")).to_be_visible()


def test_used_and_broken_links_explain_and_offer_a_new_start(site: Site, page: Page) -> None:
    email = address("used")
    sign_in_by_code(site, page, email)
    page.goto(mail_link(site.sink.wait_for(email)))
    expect(page.get_by_role("heading", level=1)).to_have_text("This has already been used")
    expect(page.get_by_role("link", name="Start again")).to_be_visible()
    page.goto("/login/link?t=not-a-real-token")
    expect(page.get_by_role("heading", level=1)).to_have_text("This link does not work")
    shoot(page, "error-invalid")
    expect(page.get_by_role("link", name="Start again")).to_be_visible()


def test_sign_out_returns_to_login_and_account_then_redirects(site: Site, page: Page) -> None:
    sign_in_by_code(site, page, address("signout"))
    page.get_by_role("button", name="Sign out", exact=True).click()
    expect(page).to_have_url(re.compile(r"/login$"))
    page.goto("/account")
    expect(page).to_have_url(re.compile(r"/login\?next=/account$"))
    expect(page.get_by_role("heading", level=1)).to_have_text("Sign in")


def test_keyboard_alone_signs_in_and_out(site: Site, page: Page) -> None:
    email = address("keyboard")
    page.goto("/login")
    assert focused_id(page) == "email"  # the field has the focus on arrival
    page.keyboard.type(email)
    page.keyboard.press("Enter")
    expect(page).to_have_url(re.compile(r"/login/code$"))
    assert focused_id(page) == "code"
    page.keyboard.type(mail_code(site.sink.wait_for(email)))  # goes on the sixth digit
    expect(page).to_have_url(re.compile(r"/account$"))
    for _ in range(30):  # Tab through the page to the sign-out button
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.textContent") == "Sign out":
            break
    else:
        pytest.fail("Sign out cannot be reached with Tab")
    page.keyboard.press("Enter")
    expect(page).to_have_url(re.compile(r"/login$"))


def test_pages_work_without_script(site: Site, new_context: NewContext) -> None:
    email = address("noscript")
    page = new_context(java_script_enabled=False).new_page()
    start(page, email)
    expect(page.get_by_role("button", name="Send a new code")).to_be_disabled()
    # Playwright's text matchers skip <noscript>; the DOM has its text, the screenshot shows it.
    hint = page.locator("#resend-hint").evaluate("element => element.textContent")
    assert "Reload this page then." in hint
    shoot(page, "code-noscript")
    code = mail_code(site.sink.wait_for(email))
    page.get_by_label("6-digit code").fill("000000" if code != "000000" else "111111")
    page.keyboard.press("Enter")
    # Without script the error still takes the focus (`autofocus`), and Tab leads to the field.
    expect(page.locator(".errors .error")).to_be_focused()
    expect(page.get_by_role("alert")).to_contain_text("4 tries left")
    page.keyboard.press("Tab")
    expect(page.get_by_label("6-digit code")).to_be_focused()
    page.keyboard.type(f"{code[:3]} {code[3:]}")
    expect(page).to_have_url(re.compile(r"/login/code$"))  # no script: nothing goes by itself
    page.keyboard.press("Enter")
    expect(page).to_have_url(re.compile(r"/account$"))
    expect(page.locator("main")).to_contain_text(email)


def test_mail_preview_renders_the_sign_in_mail(page: Page) -> None:
    page.goto("/dev/mail/preview")
    expect(page.get_by_role("heading", level=1)).to_contain_text("Sign in to Latch")
    expect(page.get_by_role("link", name="Sign in to Latch")).to_be_visible()
    expect(page.locator("body")).to_contain_text("123456")
    shoot(page, "mail-preview")


def test_the_watch_catches_a_csp_violation(new_context: NewContext) -> None:
    # The checks above are only worth something if a violation is really seen.
    page = new_context().new_page()
    page.goto("/login")
    with page.expect_console_message(lambda m: "Content Security Policy" in m.text):
        page.evaluate(
            "document.body.insertAdjacentHTML('beforeend', '<p style=\"color:red\">x</p>')"
        )
    watch: Watch = new_context.watch  # type: ignore[attr-defined]
    assert any("Content Security Policy" in e for e in watch.errors), watch.errors
    watch.errors.clear()
