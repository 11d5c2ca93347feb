"""Passkeys over the JSON API (docs/design.md §12), on SQLite and PostgreSQL: add one after an
email sign-in, sign in with it alone, as the second step, and with or without user
verification. The authenticator is tests/support/webauthn.py's (real keys, real signatures)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from tests.conftest import (
    FakeClock,
    RecordingTransport,
    SettingsFactory,
    mail_code,
    start,
    text_of,
)
from tests.support.passkeys import ORIGIN, PasskeyRig, claims_of, factors_of, passkey_rig
from tests.support.wait import eventually
from tests.support.webauthn import SoftAuthenticator

EMAIL = "pia@example.com"


@pytest.fixture
def rig(
    make_settings: SettingsFactory,
    clock: FakeClock,
    transport: RecordingTransport,
    database_url: str,
) -> Iterator[PasskeyRig]:
    settings = make_settings(PUBLIC_URL=ORIGIN, DATABASE_URL=database_url)
    with passkey_rig(settings, clock, transport) as r:
        yield r


def test_a_passkey_added_after_an_email_sign_in_signs_in_alone_with_no_mail(
    rig: PasskeyRig,
) -> None:
    user = rig.sign_in_by_mail(EMAIL)["user"]
    auth = SoftAuthenticator()
    added = rig.add_passkey(auth, name="  My   laptop ")
    assert added.status_code == 201, added.text
    assert added.json()["name"] == "My laptop" and added.json()["last_used_at"] is None
    mails = len(rig.transport.messages)

    with rig.browser() as other:
        response = rig.passkey_login(auth, other)
        assert response.status_code == 200, response.text
        assert response.json()["user"] == user
        claims = claims_of(other)
        assert claims["amr"] == ["hwk", "user", "mfa"] and claims["acr"] == "aal2"
        assert other.get("/auth/check").headers["x-latch-aal"] == "2"
    assert len(rig.transport.messages) == mails  # no mail round trip
    listed = rig.client.get("/api/passkeys").json()["passkeys"]
    assert [p["name"] for p in listed] == ["My laptop"] and listed[0]["last_used_at"]


def test_registration_options_exclude_the_persons_passkeys_and_ask_for_no_attestation(
    rig: PasskeyRig,
) -> None:
    rig.sign_in_by_mail(EMAIL)
    auth = SoftAuthenticator()
    assert rig.add_passkey(auth).status_code == 201
    response = rig.client.post(
        "/api/passkeys/register/options",
        json={},
        headers={
            "user-agent": "Mozilla/5.0 "
            "(Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 Chrome/130.0 Safari/537.36"
        },
    )
    body = response.json()
    assert body["suggested_name"] == "Chrome on macOS"
    options = body["publicKey"]
    assert options["rp"]["id"] == "localhost" and options["attestation"] == "none"
    assert [c["id"] for c in options["excludeCredentials"]] == [auth.id]
    assert options["authenticatorSelection"]["residentKey"] == "preferred"
    # The same authenticator answering anyway is refused: one credential, stored once.
    again = rig.client.post(
        "/api/passkeys/register",
        json={"credential": auth.create(options, origin=ORIGIN)},
    )
    assert again.status_code == 400 and again.json()["error"]["code"] == "invalid_passkey"


def test_without_user_verification_a_passkey_alone_is_aal1(rig: PasskeyRig) -> None:
    rig.sign_in_by_mail(EMAIL)
    auth = SoftAuthenticator(user_verification=False)
    assert rig.add_passkey(auth).status_code == 201
    with rig.browser() as other:
        assert rig.passkey_login(auth, other).status_code == 200
        claims = claims_of(other)
        assert claims["amr"] == ["hwk"] and claims["acr"] == "aal1"


def test_without_user_verification_the_second_step_follows(rig: PasskeyRig) -> None:
    user_id = rig.enrol_totp(EMAIL)
    rig.sign_in_by_mail(EMAIL)  # TOTP is due now: answer it to be signed in
    rig.client.post(
        "/api/second-factor", json={"method": "totp", "code": rig.totp.code(user_id, rig.now())}
    )
    auth = SoftAuthenticator(user_verification=False)
    assert rig.add_passkey(auth).status_code == 201
    with rig.browser() as other:
        response = rig.passkey_login(auth, other)
        # The recovery codes the first passkey brought may answer too; the passkey itself not.
        expected = {"next_step": "second_factor", "methods": ["totp", "recovery_code"]}
        assert response.json() == expected
        assert "latch_session" not in other.cookies
        code = rig.totp.code(user_id, rig.now())
        done = other.post("/api/second-factor", json={"method": "totp", "code": code})
        assert done.status_code == 200, done.text
        claims = claims_of(other)
        assert claims["amr"] == ["hwk", "otp", "mfa"] and claims["acr"] == "aal2"


def test_a_passkey_as_the_second_step_after_the_email_code(rig: PasskeyRig) -> None:
    rig.sign_in_by_mail(EMAIL)
    auth = SoftAuthenticator()
    assert rig.add_passkey(auth).status_code == 201
    with rig.browser() as other:
        flow = start(other, EMAIL)
        # Mails so far: the first sign-in's, the "second factor added" notice.
        code = mail_code(rig.transport.wait_for(EMAIL, index=2))
        first = other.post("/api/verify", json={"flow_id": flow["flow_id"], "code": code})
        expected = {"next_step": "second_factor", "methods": ["passkey", "recovery_code"]}
        assert first.json() == expected
        options = rig.login_options(other)  # with the latch_signin cookie: this user's keys
        assert [c["id"] for c in options["allowCredentials"]] == [auth.id]
        done = rig.login(other, auth.get(options, origin=ORIGIN))
        assert done.status_code == 200, done.text
        claims = claims_of(other)
        assert claims["amr"] == ["email", "hwk", "mfa"] and claims["acr"] == "aal2"
        assert "latch_signin" not in other.cookies


def test_the_second_step_takes_a_passkey_through_second_factor_too(rig: PasskeyRig) -> None:
    rig.sign_in_by_mail(EMAIL)
    auth = SoftAuthenticator()
    assert rig.add_passkey(auth).status_code == 201
    with rig.browser() as other:
        flow = start(other, EMAIL)
        code = mail_code(rig.transport.wait_for(EMAIL, index=2))
        other.post("/api/verify", json={"flow_id": flow["flow_id"], "code": code})
        answer = json.dumps(auth.get(rig.login_options(other), origin=ORIGIN))
        done = other.post("/api/second-factor", json={"method": "passkey", "code": answer})
        assert done.status_code == 200, done.text


def test_rename_and_remove(rig: PasskeyRig) -> None:
    user_id = rig.sign_in_by_mail(EMAIL)["user"]["id"]
    auth = SoftAuthenticator()
    passkey_id = rig.add_passkey(auth).json()["id"]
    assert rig.run(factors_of(user_id)) == "passkey recovery_code"
    renamed = rig.client.patch(f"/api/passkeys/{passkey_id}", json={"name": "Work key"})
    assert renamed.status_code == 204
    assert rig.client.get("/api/passkeys").json()["passkeys"][0]["name"] == "Work key"
    assert rig.client.delete(f"/api/passkeys/{passkey_id}").status_code == 204
    assert rig.client.get("/api/passkeys").json() == {"passkeys": []}
    # The last passkey gone, the email code alone signs in again; its recovery codes went with
    # it (they stand in for a factor, never on their own), and the person was told.
    assert rig.run(factors_of(user_id)) == ""
    assert rig.client.get("/api/factors").json()["recovery_codes"] == {"left": 0}
    eventually(lambda: rig.factor_notices("removed") == 1, "the factor_removed notice")
    assert rig.client.delete(f"/api/passkeys/{passkey_id}").status_code == 404


def test_the_first_passkey_brings_recovery_codes_and_joins_the_factors(
    rig: PasskeyRig, clock: FakeClock
) -> None:
    rig.sign_in_by_mail(EMAIL)
    first = rig.add_passkey(SoftAuthenticator(), name="Laptop")
    assert first.status_code == 201, first.text
    codes = first.json()["recovery_codes"]
    assert len(codes) == 10 and len(set(codes)) == 10  # shown once: losing it is no lock-out
    clock.advance(1)  # listed oldest first
    second = rig.add_passkey(SoftAuthenticator(), name="Phone")
    assert "recovery_codes" not in second.json()  # the person has them already
    assert rig.factor_notices("added") == 2  # each addition mailed
    factors = rig.client.get("/api/factors").json()
    assert [p["name"] for p in factors["passkeys"]] == ["Laptop", "Phone"]
    assert factors["recovery_codes"] == {"left": 10}
    # A recovery code signs in (as the second step) in place of a lost passkey.
    with rig.browser() as other:
        flow = start(other, EMAIL)
        code = mail_code(rig.transport.wait_for(EMAIL, index=3))
        other.post("/api/verify", json={"flow_id": flow["flow_id"], "code": code})
        done = other.post("/api/second-factor", json={"method": "recovery_code", "code": codes[0]})
        assert done.status_code == 200, done.text


def test_adding_and_removing_need_the_same_recent_step_as_every_factor_change(
    rig: PasskeyRig, clock: FakeClock
) -> None:
    user_id = rig.enrol_totp(EMAIL)
    rig.sign_in_by_mail(EMAIL)
    rig.client.post(
        "/api/second-factor", json={"method": "totp", "code": rig.totp.code(user_id, rig.now())}
    )
    passkey_id = rig.add_passkey(SoftAuthenticator()).json()["id"]
    clock.advance(11 * 60)  # past STEP_UP_TTL; the access token (15 minutes) still good
    for response in (
        rig.client.post("/api/passkeys/register/options", json={}),
        rig.client.delete(f"/api/passkeys/{passkey_id}"),
    ):
        assert response.status_code == 403, response.text
        error = response.json()["error"]
        assert error["code"] == "step_up_required" and error["methods"] == ["passkey", "totp"]
    assert len(rig.client.get("/api/passkeys").json()["passkeys"]) == 1  # nothing removed
    # A new sign-in is a new step: then the removal goes through.
    rig.sign_in_by_mail(EMAIL)
    rig.client.post(
        "/api/second-factor", json={"method": "totp", "code": rig.totp.code(user_id, rig.now())}
    )
    assert rig.client.delete(f"/api/passkeys/{passkey_id}").status_code == 204


def test_a_passkey_sign_in_on_a_new_device_gets_its_new_device_notice(rig: PasskeyRig) -> None:
    rig.sign_in_by_mail(EMAIL)
    auth = SoftAuthenticator()
    assert rig.add_passkey(auth).status_code == 201
    phone = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) Version/17.0 Safari/604.1"
    with rig.browser() as other:
        other.headers["user-agent"] = phone
        try:
            assert rig.passkey_login(auth, other).status_code == 200
        finally:
            del other.headers["user-agent"]
    notice = eventually(
        lambda: [m for m in rig.transport.messages if "New sign-in" in str(m["Subject"])],
        "the new-device notice",
    )
    assert len(notice) == 1 and "Safari on iPhone" in text_of(notice[0])
