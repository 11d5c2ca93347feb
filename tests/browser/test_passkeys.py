"""Passkeys in a real browser: Debian's Chromium with its virtual authenticator (the DevTools
protocol's `WebAuthn` domain: CTAP2, internal transport, resident keys), Latch on
http://localhost (browsers refuse an IP address as a passkey's relying party).

Latch runs in this process (uvicorn in a thread) so the tests can read the mail it sends (none,
for a passkey sign-in). A virtual authenticator answers a
conditional-mediation request at once, so a page that starts conditional UI on load signs in
before any click: the tests of the button and of the email code turn conditional UI off in
that browser (as a browser without it would be), and one test checks conditional UI itself.

User verification off is tested over the API (tests/api/test_passkeys.py, with a software
authenticator): Chromium 156 refuses a discoverable request (the first step, no address typed)
on a virtual authenticator that does not verify the user, whether internal or USB, CTAP 2.0 or
2.1, with user verification preferred or discouraged, so no browser run can produce one.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from playwright.sync_api import Browser, BrowserContext, CDPSession, Page, expect, sync_playwright

from service.app import create_app
from service.settings import load_settings
from tests.browser.test_pages import (
    CHROMIUM,
    CHROMIUM_ARGS,
    DESKTOP,
    TIMEOUT_MS,
    Watch,
    shoot,
)
from tests.conftest import TEST_ENV, RecordingTransport, mail_code
from tests.support.net import free_port
from tests.support.server import ThreadedServer

pytestmark = pytest.mark.browser

NO_CONDITIONAL_UI = (
    "if (window.PublicKeyCredential) {"
    " PublicKeyCredential.isConditionalMediationAvailable = () => Promise.resolve(false); }"
)
NO_WEBAUTHN = "delete window.PublicKeyCredential;"


@dataclass
class PasskeySite:
    """Latch on localhost and the mail it sent."""

    url: str
    transport: RecordingTransport

    def mails_to(self, email: str) -> int:
        return len([m for m in self.transport.messages if str(m["To"]) == email])


@dataclass
class Device:
    """A browser context with a virtual authenticator on its page."""

    page: Page
    cdp: CDPSession
    authenticator: str

    def credentials(self) -> list[dict[str, Any]]:
        found = self.cdp.send("WebAuthn.getCredentials", {"authenticatorId": self.authenticator})
        credentials: list[dict[str, Any]] = found["credentials"]
        return credentials

    def add(self, credential: dict[str, Any]) -> None:
        """Put a copy of another authenticator's credential on this one."""
        self.cdp.send(
            "WebAuthn.addCredential",
            {"authenticatorId": self.authenticator, "credential": credential},
        )


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PasskeySite]:
    workdir = tmp_path_factory.mktemp("passkeys")
    port = free_port()
    url = f"http://localhost:{port}"
    settings = load_settings({**TEST_ENV, "DATA_DIR": str(workdir / "data"), "PUBLIC_URL": url})
    assert settings.passkeys_enabled
    transport = RecordingTransport()
    with ThreadedServer(create_app(settings, mail_transport=transport), port):
        yield PasskeySite(url, transport)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    assert CHROMIUM.exists(), f"{CHROMIUM} is missing: install Debian's chromium package"
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        yield chromium
        chromium.close()


NewDevice = Callable[..., Device]


@pytest.fixture
def new_device(browser: Browser, site: PasskeySite) -> Iterator[NewDevice]:
    """Fresh browser contexts, each with one page and (unless told) a virtual authenticator;
    every context is watched for foreign requests, console and script errors."""
    watch = Watch(site.url)
    contexts: list[BrowserContext] = []

    def make(
        *,
        conditional_ui: bool = True,
        webauthn: bool = True,
        authenticator: bool = True,
    ) -> Device:
        context = browser.new_context(base_url=site.url, viewport=DESKTOP)
        context.set_default_timeout(TIMEOUT_MS)
        if not conditional_ui:
            context.add_init_script(NO_CONDITIONAL_UI)
        if not webauthn:
            context.add_init_script(NO_WEBAUTHN)
        watch.attach(context)
        contexts.append(context)
        page = context.new_page()
        cdp = context.new_cdp_session(page)
        authenticator_id = ""
        if authenticator:
            cdp.send("WebAuthn.enable", {"enableUI": False})
            added = cdp.send(
                "WebAuthn.addVirtualAuthenticator",
                {
                    "options": {
                        "protocol": "ctap2",
                        "transport": "internal",
                        "hasResidentKey": True,
                        "hasUserVerification": True,
                        "isUserVerified": True,
                        "automaticPresenceSimulation": True,
                    }
                },
            )
            authenticator_id = added["authenticatorId"]
        return Device(page, cdp, authenticator_id)

    yield make
    for context in contexts:
        context.close()
    watch.assert_clean()


def sign_in_by_code(site: PasskeySite, page: Page, email: str) -> None:
    """Ask for a code and type it (the page then goes wherever the sign-in leads)."""
    before = site.mails_to(email)
    page.goto("/login")
    page.get_by_label("Email address").fill(email)
    page.get_by_role("button", name="Email me a code").click()
    expect(page).to_have_url(re.compile(r"/login/code$"))
    page.get_by_label("6-digit code").fill(mail_code(site.transport.wait_for(email, index=before)))


def add_passkey(page: Page, name: str | None = None, *, first: bool = True) -> None:
    """On /account: name the passkey (or keep the suggestion) and add it; the first factor's
    recovery codes are shown once on the way back to the account page."""
    if name is not None:
        page.get_by_label("Name of the new passkey").fill(name)
    page.get_by_role("button", name="Add a passkey").click()
    if first:
        expect(page.locator("#recovery-codes li")).to_have_count(10)
        page.get_by_label("I have saved my recovery codes").check()
        page.get_by_role("button", name="Continue").click()
    expect(page.locator(".notices")).to_contain_text("Your passkey has been added.")


def aal(page: Page) -> str | None:
    """What /auth/check says of this browser's session (None: signed out)."""
    check = page.request.get("/auth/check")
    return check.headers.get("x-latch-aal") if check.status == 200 else None


def enrolled_device(site: PasskeySite, new_device: NewDevice, email: str, **kw: Any) -> Device:
    """A device that signed in by code and added a passkey (and stays signed in)."""
    device = new_device(conditional_ui=False, **kw)
    sign_in_by_code(site, device.page, email)
    expect(device.page).to_have_url(re.compile(r"/account$"))
    add_passkey(device.page)
    return device


# --- the tests -------------------------------------------------------------------------------


def test_add_a_passkey_after_an_email_sign_in_named_from_the_device(
    site: PasskeySite, new_device: NewDevice
) -> None:
    device = new_device(conditional_ui=False)
    page = device.page
    sign_in_by_code(site, page, "ada@example.com")
    expect(page).to_have_url(re.compile(r"/account$"))
    expect(page.get_by_label("Name of the new passkey")).to_have_value("Chrome on Linux")
    add_passkey(page, "Work laptop")
    passkey = page.locator(".passkey-item")
    expect(passkey).to_have_count(1)
    expect(passkey.get_by_role("heading")).to_have_text("Work laptop")
    expect(passkey).to_contain_text("Never")
    shoot(page, "account-passkeys", dark=True)
    [credential] = device.credentials()
    assert credential["isResidentCredential"] and credential["rpId"] == "localhost"
    # Renamed, then removed: it no longer signs anyone in.
    page.get_by_label("New name for Work laptop").fill("Old laptop")
    page.get_by_role("button", name="Rename Work laptop").click()
    expect(passkey.get_by_role("heading")).to_have_text("Old laptop")
    page.get_by_role("button", name="Remove Old laptop").click()
    expect(page.locator(".notices")).to_contain_text("no longer signs you in")
    expect(page.locator(".passkey-item")).to_have_count(0)
    other = new_device(conditional_ui=False)
    other.add(credential)
    other.page.goto("/login")
    other.page.get_by_role("button", name="Sign in with a passkey").click()
    expect(other.page.get_by_role("alert")).to_contain_text("This passkey was not accepted.")
    assert aal(other.page) is None


def test_the_same_authenticator_cannot_register_twice(
    site: PasskeySite, new_device: NewDevice
) -> None:
    device = enrolled_device(site, new_device, "bo@example.com")
    device.page.get_by_role("button", name="Add a passkey").click()  # excludeCredentials
    expect(device.page.get_by_role("alert")).to_contain_text("already has a passkey")
    expect(device.page.locator(".passkey-item")).to_have_count(1)
    assert len(device.credentials()) == 1


def test_sign_out_then_sign_in_with_the_passkey_button_alone_no_mail(
    site: PasskeySite, new_device: NewDevice
) -> None:
    email = "cy@example.com"
    laptop = enrolled_device(site, new_device, email)
    laptop.page.get_by_role("button", name="Sign out", exact=True).click()
    expect(laptop.page).to_have_url(re.compile(r"/login$"))
    mails = site.mails_to(email)
    phone = new_device(conditional_ui=False)
    phone.add(laptop.credentials()[0])  # the same passkey, synced to another browser
    phone.page.goto("/login")
    shoot(phone.page, "login-passkey", dark=True)
    phone.page.get_by_role("button", name="Sign in with a passkey").click()
    expect(phone.page).to_have_url(re.compile(r"/account$"))
    expect(phone.page.locator("main")).to_contain_text(f"You are signed in as {email}")
    assert aal(phone.page) == "2"  # user verification: two factors in one
    assert site.mails_to(email) == mails


def test_conditional_ui_offers_the_passkey_from_the_email_field(
    site: PasskeySite, new_device: NewDevice
) -> None:
    email = "di@example.com"
    laptop = enrolled_device(site, new_device, email)
    mails = site.mails_to(email)
    device = new_device()  # conditional UI on
    device.add(laptop.credentials()[0])
    login = device.page.request.get("/login").text()
    assert 'autocomplete="username webauthn"' in login  # what lets the browser offer it there
    device.page.goto("/login")
    # The virtual authenticator picks the offered passkey at once: signed in with no click.
    expect(device.page).to_have_url(re.compile(r"/account$"))
    assert aal(device.page) == "2"
    assert site.mails_to(email) == mails


def test_a_passkey_as_the_second_step_after_the_email_code(
    site: PasskeySite, new_device: NewDevice
) -> None:
    email = "flo@example.com"
    laptop = enrolled_device(site, new_device, email)
    device = new_device(conditional_ui=False)
    device.add(laptop.credentials()[0])
    sign_in_by_code(site, device.page, email)
    expect(device.page).to_have_url(re.compile(r"/login/second-factor$"))
    expect(device.page.get_by_role("heading", level=1)).to_have_text("Use your passkey")
    shoot(device.page, "second-factor-passkey", dark=True)
    device.page.get_by_role("button", name="Use your passkey").click()
    expect(device.page).to_have_url(re.compile(r"/account$"))
    assert aal(device.page) == "2"


def test_pages_say_what_to_do_without_webauthn(site: PasskeySite, new_device: NewDevice) -> None:
    device = new_device(webauthn=False, authenticator=False)
    device.page.goto("/login")
    expect(device.page.get_by_role("button", name="Sign in with a passkey")).to_be_hidden()
    expect(device.page.locator("main")).to_contain_text("sign in with an email code instead")
    sign_in_by_code(site, device.page, "gus@example.com")
    expect(device.page).to_have_url(re.compile(r"/account$"))
    expect(device.page.get_by_role("button", name="Add a passkey")).to_be_hidden()
    expect(device.page.locator("main")).to_contain_text(
        "open this page in a browser that supports passkeys"
    )
    shoot(device.page, "account-no-webauthn")
