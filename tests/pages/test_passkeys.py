"""Passkeys through the HTML forms (what static/passkeys.js posts): add one on /account, sign
in with one on /login, and what the pages show when passkeys cannot be used."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx2
import pytest

from tests.conftest import BASE_URL, FakeClock, RecordingTransport, SettingsFactory
from tests.support.passkeys import ORIGIN, PasskeyRig, passkey_rig
from tests.support.web import csrf_of, post_form
from tests.support.webauthn import SoftAuthenticator

EMAIL = "hal@example.com"


@pytest.fixture
def rig(
    make_settings: SettingsFactory, clock: FakeClock, transport: RecordingTransport
) -> Iterator[PasskeyRig]:
    with passkey_rig(make_settings(PUBLIC_URL=ORIGIN), clock, transport) as r:
        yield r


def add_by_form(rig: PasskeyRig, auth: SoftAuthenticator, name: str) -> httpx2.Response:
    """What the account page's script does; returns the answer to the form."""
    page = rig.client.get("/account")
    options = rig.client.post("/api/passkeys/register/options", json={}).json()["publicKey"]
    credential = json.dumps(auth.create(options, origin=ORIGIN))
    data = {"credential": credential, "name": name}
    return post_form(rig.client, "/account/passkeys", data, token=csrf_of(page))


def test_add_then_sign_in_through_the_forms(rig: PasskeyRig) -> None:
    rig.sign_in_by_mail(EMAIL)
    auth = SoftAuthenticator()
    first = add_by_form(rig, auth, "Desk key")
    # The first factor: its recovery codes, shown once, then on to the account page.
    assert first.status_code == 200 and "Save your recovery codes" in first.text
    assert first.text.count("<li><code>") == 10
    assert 'action="/account"' in first.text and 'name="passkey" value="added"' in first.text
    second = add_by_form(rig, SoftAuthenticator(), "Phone")
    assert second.status_code == 303, second.text
    assert second.headers["location"] == "/account?passkey=added#passkeys"
    account = rig.client.get("/account?passkey=added")
    assert "Your passkey has been added." in account.text and "Desk key" in account.text
    with rig.browser() as other:
        page = other.get("/login?next=/account")
        assert 'autocomplete="username webauthn"' in page.text and "data-passkey-login" in page.text
        assertion = json.dumps(auth.get(rig.login_options(other), origin=ORIGIN))
        data = {"credential": assertion, "next": "/account"}
        done = post_form(other, "/login/passkey", data, token=csrf_of(page))
        assert done.status_code == 303 and done.headers["location"] == "/account"
        assert "latch_session" in other.cookies


def test_a_refused_passkey_shows_the_sign_in_page_with_the_error(rig: PasskeyRig) -> None:
    page = rig.client.get("/login")
    for credential in ("", "not json", json.dumps({"id": "x", "response": {}})):
        done = post_form(
            rig.client, "/login/passkey", {"credential": credential}, token=csrf_of(page)
        )
        assert done.status_code == 400
        assert "Sign in" in done.text and 'class="error"' in done.text


def test_adding_and_removing_ask_for_a_recent_step(rig: PasskeyRig, clock: FakeClock) -> None:
    rig.sign_in_by_mail(EMAIL)
    assert "data-passkey-add" in rig.client.get("/account").text
    add_by_form(rig, SoftAuthenticator(), "Desk key")
    passkey_id = rig.client.get("/api/passkeys").json()["passkeys"][0]["id"]
    clock.advance(601)
    rig.client.post("/api/refresh", json={})
    account = rig.client.get("/account")
    assert "data-passkey-add" not in account.text
    assert '<a href="/login/step-up?next=/account%23passkeys">confirm it' in account.text
    # Removing goes through the step-up page (as removing an authenticator app does), and
    # nothing is removed meanwhile.
    removed = post_form(
        rig.client, f"/account/passkeys/{passkey_id}/remove", {}, token=csrf_of(account)
    )
    assert removed.status_code == 303
    assert removed.headers["location"] == "/login/step-up?next=%2Faccount%23passkeys"
    assert len(rig.client.get("/api/passkeys").json()["passkeys"]) == 1


def test_the_step_up_page_takes_a_passkey_then_the_removal_goes_through(
    rig: PasskeyRig, clock: FakeClock
) -> None:
    rig.sign_in_by_mail(EMAIL)
    auth = SoftAuthenticator()
    add_by_form(rig, auth, "Desk key")
    passkey_id = rig.client.get("/api/passkeys").json()["passkeys"][0]["id"]
    clock.advance(601)
    page = rig.client.get("/login/step-up?next=/account%23passkeys")
    # The passkey button (shown by static/passkeys.js, which asks the step-up's own options),
    # and no code form: this person has no authenticator app.
    assert "data-passkey-step" in page.text and "Use your passkey" in page.text
    assert 'data-options="/api/passkeys/step-up/options"' in page.text
    assert "passkeys.js" in page.text and 'name="method" value="totp"' not in page.text
    # What the script posts: the answer as `code`. A refused one shows the page again.
    data = {"method": "passkey", "code": "{}", "next": "/account#passkeys"}
    refused = post_form(rig.client, "/login/step-up", data, token=csrf_of(page))
    assert refused.status_code == 400 and 'class="error"' in refused.text
    assert 'name="next" value="/account#passkeys"' in refused.text
    options = rig.client.post("/api/passkeys/step-up/options", json={}).json()["publicKey"]
    data["code"] = json.dumps(auth.get(options, origin=ORIGIN))
    stepped = post_form(rig.client, "/login/step-up", data, token=csrf_of(page))
    assert stepped.status_code == 303 and stepped.headers["location"] == "/account#passkeys"
    account = rig.client.get("/account")
    removed = post_form(
        rig.client, f"/account/passkeys/{passkey_id}/remove", {}, token=csrf_of(account)
    )
    assert removed.status_code == 303
    assert removed.headers["location"] == "/account?passkey=removed#passkeys"
    assert rig.client.get("/api/passkeys").json()["passkeys"] == []


def test_the_step_up_page_offers_the_passkey_beside_the_apps_code(
    rig: PasskeyRig, clock: FakeClock
) -> None:
    user_id = rig.enrol_totp(EMAIL)
    rig.sign_in_by_mail(EMAIL)
    code = rig.totp.code(user_id, rig.now())
    rig.client.post("/api/second-factor", json={"method": "totp", "code": code})
    add_by_form(rig, SoftAuthenticator(), "Desk key")
    page = rig.client.get("/login/step-up").text
    assert "Use your passkey" in page and 'name="method" value="totp"' in page
    assert page.index("data-passkey-step") < page.index('name="method" value="totp"')


def test_without_passkeys_the_pages_offer_none(
    make_settings: SettingsFactory, clock: FakeClock, transport: RecordingTransport
) -> None:
    # PUBLIC_URL on 127.0.0.1: PASSKEYS=auto turns them off (browsers refuse an IP address).
    with passkey_rig(make_settings(), clock, transport, base_url=BASE_URL) as rig:
        page = rig.client.get("/login")
        assert "passkey" not in page.text.lower() and 'autocomplete="email"' in page.text
        assert rig.client.post("/api/passkeys/login/options", json={}).status_code == 404
