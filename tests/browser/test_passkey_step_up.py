"""A passkey as the step-up in Debian's Chromium with its virtual authenticator: a stale
sign-in is sent to /login/step-up by a guarded action, "Use your passkey" passes the step, and
the action then goes through.

Latch runs in this process with a clock the test moves (a step goes stale after STEP_UP_TTL,
ten minutes: no test waits that long); the browser parts are tests/browser/test_passkeys.py's.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from playwright.sync_api import expect

from service.app import create_app
from service.settings import load_settings
from tests.browser import test_passkeys
from tests.browser.test_pages import shoot
from tests.browser.test_passkeys import NewDevice, PasskeySite, aal, enrolled_device
from tests.conftest import TEST_ENV, FakeClock, RecordingTransport
from tests.support.net import free_port
from tests.support.server import ThreadedServer

pytestmark = pytest.mark.browser
browser = test_passkeys.browser
new_device = test_passkeys.new_device
STALE = 11 * 60  # past STEP_UP_TTL; the access token (15 minutes) still good


@pytest.fixture(scope="module")
def moved_clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory, moved_clock: FakeClock) -> Iterator[PasskeySite]:
    """Latch on localhost (passkeys need a domain name) with the test's clock."""
    workdir = tmp_path_factory.mktemp("passkey-step-up")
    port = free_port()
    url = f"http://localhost:{port}"
    settings = load_settings({**TEST_ENV, "DATA_DIR": str(workdir / "data"), "PUBLIC_URL": url})
    transport = RecordingTransport()
    app = create_app(settings, mail_transport=transport, clock=moved_clock)
    with ThreadedServer(app, port):
        yield PasskeySite(url, transport)


def test_a_stale_sign_in_steps_up_with_its_passkey_then_removes_it(
    site: PasskeySite, new_device: NewDevice, moved_clock: FakeClock
) -> None:
    device = enrolled_device(site, new_device, "ivy@example.com")
    page = device.page
    moved_clock.advance(STALE)
    page.goto("/account")
    page.get_by_role("button", name="Remove Chrome on Linux").click()
    # The removal needs a recent step: on to the step-up page, nothing removed.
    expect(page).to_have_url(re.compile(r"/login/step-up\?next=%2Faccount%23passkeys$"))
    expect(page.get_by_role("heading", level=1)).to_have_text("Confirm it's you")
    expect(page.get_by_label("6-digit code")).to_have_count(0)  # no authenticator app
    shoot(page, "step-up-passkey", dark=True)
    assert aal(page) == "1"  # signed in by the emailed code alone
    page.get_by_role("button", name="Use your passkey").click()
    expect(page).to_have_url(re.compile(r"/account#passkeys$"))
    assert aal(page) == "2"  # the email session with a passkey that verified the user
    page.get_by_role("button", name="Remove Chrome on Linux").click()
    expect(page.locator(".notices")).to_contain_text("no longer signs you in")
    expect(page.locator(".passkey-item")).to_have_count(0)
