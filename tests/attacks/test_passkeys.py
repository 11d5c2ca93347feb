"""Passkey answers that must be refused (docs/design.md §12): replayed, for another challenge
or ceremony, past five minutes, from another origin or for another RP id, with a sign count
that goes back, or of a removed passkey; and adding one without a recent sign-in.

Every refusal is the same 400 `invalid_passkey`; the log says which it was. The authenticator
signs for real (tests/support/webauthn.py), so each refusal is the server's own check.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Iterator
from typing import Any

import httpx2
import pytest
from starlette.testclient import TestClient

from service import store
from service.db import Q, UseCase
from service.web.state import app_state_of
from tests.conftest import FakeClock, RecordingTransport, SettingsFactory, mail_code, start
from tests.support.passkeys import ORIGIN, PasskeyRig, passkey_rig
from tests.support.webauthn import SoftAuthenticator, b64url

EMAIL = "ola@example.com"


@pytest.fixture
def rig(
    make_settings: SettingsFactory, clock: FakeClock, transport: RecordingTransport
) -> Iterator[PasskeyRig]:
    with passkey_rig(make_settings(PUBLIC_URL=ORIGIN), clock, transport) as r:
        yield r


@pytest.fixture
def auth(rig: PasskeyRig) -> SoftAuthenticator:
    """A passkey of EMAIL's, added after an email sign-in; the browser then signed out."""
    rig.sign_in_by_mail(EMAIL)
    authenticator = SoftAuthenticator()
    assert rig.add_passkey(authenticator).status_code == 201
    rig.client.cookies.clear()
    return authenticator


def assert_refused(
    response: httpx2.Response, caplog: pytest.LogCaptureFixture, reason: str
) -> None:
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == "invalid_passkey"
    assert f"reason={reason}" in caplog.text
    caplog.clear()


def signed_out(client: TestClient) -> bool:
    return "latch_session" not in client.cookies


def test_a_replayed_assertion_is_refused(
    rig: PasskeyRig, auth: SoftAuthenticator, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    assertion = auth.get(rig.login_options(rig.client), origin=ORIGIN)
    assert rig.login(rig.client, assertion).status_code == 200
    rig.client.cookies.clear()
    assert_refused(rig.login(rig.client, assertion), caplog, "unknown-used-or-expired-challenge")
    assert signed_out(rig.client)


def test_an_assertion_for_a_challenge_never_handed_out_is_refused(
    rig: PasskeyRig, auth: SoftAuthenticator, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    options = rig.login_options(rig.client)
    made_up = {**options, "challenge": b64url(secrets.token_bytes(32))}
    response = rig.login(rig.client, auth.get(made_up, origin=ORIGIN))
    assert_refused(response, caplog, "unknown-used-or-expired-challenge")
    # The real challenge is still there, and still works: the made-up one consumed nothing.
    assert rig.login(rig.client, auth.get(options, origin=ORIGIN)).status_code == 200


def test_an_assertion_for_a_registration_challenge_is_refused(
    rig: PasskeyRig, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    rig.sign_in_by_mail(EMAIL)
    auth = SoftAuthenticator()
    assert rig.add_passkey(auth).status_code == 201
    creation = rig.client.post("/api/passkeys/register/options", json={}).json()["publicKey"]
    request = {"challenge": creation["challenge"], "rpId": "localhost"}
    response = rig.login(rig.client, auth.get(request, origin=ORIGIN))
    assert_refused(response, caplog, "challenge-of-another-ceremony")


def test_a_challenge_older_than_five_minutes_is_refused(
    rig: PasskeyRig, auth: SoftAuthenticator, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    options = rig.login_options(rig.client)
    clock.advance(301)
    response = rig.login(rig.client, auth.get(options, origin=ORIGIN))
    assert_refused(response, caplog, "unknown-used-or-expired-challenge")


def test_challenges_nobody_answered_are_purged_after_five_minutes(
    rig: PasskeyRig, clock: FakeClock
) -> None:
    for _ in range(3):
        rig.login_options(rig.client)
    database = app_state_of(rig.client).database

    def purge() -> dict[str, int]:
        assert rig.client.portal is not None
        counts: dict[str, int] = rig.client.portal.call(store.purge, database, int(clock()), 86400)
        return counts

    assert purge()["webauthn_challenges"] == 0
    clock.advance(301)
    assert purge()["webauthn_challenges"] == 3


@pytest.mark.parametrize(
    ("where", "reason"),
    [
        ({"origin": "https://evil.example.com"}, "assertion-InvalidAuthenticationResponse"),
        ({"origin": "http://localhost:8001"}, "assertion-InvalidAuthenticationResponse"),
        ({"rp_id": "evil.example.com"}, "assertion-InvalidAuthenticationResponse"),
    ],
)
def test_another_origin_or_rp_id_is_refused(
    rig: PasskeyRig,
    auth: SoftAuthenticator,
    caplog: pytest.LogCaptureFixture,
    where: dict[str, str],
    reason: str,
) -> None:
    caplog.set_level(logging.INFO)
    options = rig.login_options(rig.client)
    assertion = auth.get(options, origin=where.get("origin", ORIGIN), rp_id=where.get("rp_id"))
    assert_refused(rig.login(rig.client, assertion), caplog, reason)
    assert signed_out(rig.client)


def test_registering_from_another_origin_is_refused(
    rig: PasskeyRig, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    rig.sign_in_by_mail(EMAIL)
    options = rig.client.post("/api/passkeys/register/options", json={}).json()["publicKey"]
    credential = SoftAuthenticator().create(options, origin="https://evil.example.com")
    response = rig.client.post("/api/passkeys/register", json={"credential": credential})
    assert_refused(response, caplog, "registration-InvalidRegistrationResponse")
    assert rig.client.get("/api/passkeys").json() == {"passkeys": []}


def test_a_sign_count_going_back_is_refused_and_logged_as_a_possible_clone(
    rig: PasskeyRig, auth: SoftAuthenticator, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    assert rig.passkey_login(auth, rig.client, sign_count=7).status_code == 200
    rig.client.cookies.clear()
    for count in (7, 3):  # the same count again is no step forward either
        response = rig.passkey_login(auth, rig.client, sign_count=count)
        clone = [r for r in caplog.records if "passkey.clone_suspected" in r.getMessage()]
        assert clone and clone[0].levelno == logging.WARNING
        assert_refused(response, caplog, "sign-count-went-back")
        assert signed_out(rig.client)
    assert rig.passkey_login(auth, rig.client, sign_count=8).status_code == 200


def test_authenticators_without_a_counter_keep_sending_zero(rig: PasskeyRig) -> None:
    rig.sign_in_by_mail(EMAIL)
    auth = SoftAuthenticator()
    assert rig.add_passkey(auth).status_code == 201
    for _ in range(2):  # synced passkeys send 0 every time: that is no regression
        rig.client.cookies.clear()
        assert rig.passkey_login(auth, rig.client, sign_count=0).status_code == 200


def test_a_removed_passkey_is_refused_at_once(
    rig: PasskeyRig, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    rig.sign_in_by_mail(EMAIL)
    auth = SoftAuthenticator()
    passkey_id = rig.add_passkey(auth).json()["id"]
    options = rig.login_options(rig.client)  # handed out while the passkey still existed
    assert rig.client.delete(f"/api/passkeys/{passkey_id}").status_code == 204
    rig.client.cookies.clear()
    response = rig.login(rig.client, auth.get(options, origin=ORIGIN))
    assert_refused(response, caplog, "unknown-or-removed-credential")


def test_a_passkey_of_someone_else_cannot_answer_my_second_step(
    rig: PasskeyRig, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    rig.sign_in_by_mail("eve@example.com")
    eves = SoftAuthenticator()
    assert rig.add_passkey(eves).status_code == 201
    rig.client.cookies.clear()
    rig.sign_in_by_mail(EMAIL)
    assert rig.add_passkey(SoftAuthenticator()).status_code == 201
    rig.client.cookies.clear()
    flow = start(rig.client, EMAIL)
    # Mails so far: the first sign-in's, the "second factor added" notice.
    code = mail_code(rig.transport.wait_for(EMAIL, index=2))
    rig.client.post("/api/verify", json={"flow_id": flow["flow_id"], "code": code})
    options = rig.login_options(rig.client)
    response = rig.login(rig.client, eves.get(options, origin=ORIGIN))
    assert response.status_code == 400 and response.json()["error"]["code"] == "invalid_code"
    assert "reason=credential-of-another-user" in caplog.text
    assert signed_out(rig.client)


def test_adding_a_passkey_needs_a_recent_sign_in(rig: PasskeyRig, clock: FakeClock) -> None:
    rig.sign_in_by_mail(EMAIL)
    options = rig.client.post("/api/passkeys/register/options", json={})
    assert options.status_code == 200
    clock.advance(601)
    assert rig.client.post("/api/refresh", json={}).status_code == 200  # still signed in
    later = rig.client.post("/api/passkeys/register/options", json={})
    assert later.status_code == 403 and later.json()["error"]["code"] == "step_up_required"
    credential = SoftAuthenticator().create(options.json()["publicKey"], origin=ORIGIN)
    answer = rig.client.post("/api/passkeys/register", json={"credential": credential})
    assert answer.status_code == 403


def test_a_malformed_credential_is_a_clear_400(rig: PasskeyRig) -> None:
    for body in (
        {},
        {"credential": "x"},
        {"credential": {"response": {"clientDataJSON": "!!"}}},
        {"credential": {"id": 5, "response": {"clientDataJSON": b64url(b"{}")}}},
        {"credential": {"response": {"clientDataJSON": b64url(b'{"challenge": 3}')}}},
    ):
        response = rig.client.post("/api/passkeys/login", json=body)
        assert response.status_code == 400, (body, response.text)
        assert response.json()["error"]["code"] in ("invalid_request", "invalid_passkey")


def test_one_client_cannot_pile_up_unanswered_challenges(
    make_settings: SettingsFactory, clock: FakeClock, transport: RecordingTransport
) -> None:
    settings = make_settings(PUBLIC_URL=ORIGIN, LIMIT_PASSKEY_CHALLENGES="3")
    with passkey_rig(settings, clock, transport) as rig:
        rig.sign_in_by_mail(EMAIL)
        auth = SoftAuthenticator()
        assert rig.add_passkey(auth).status_code == 201  # its challenge was answered: freed
        rig.client.cookies.clear()
        held = [rig.login_options(rig.client) for _ in range(3)]
        refused = rig.client.post("/api/passkeys/login/options", json={})
        assert refused.status_code == 429 and int(refused.headers["Retry-After"]) >= 1
        assert refused.json()["error"]["code"] == "rate_limited"
        # Answering one frees its place; five minutes free them all.
        assert rig.login(rig.client, auth.get(held[0], origin=ORIGIN)).status_code == 200
        assert rig.client.post("/api/passkeys/login/options", json={}).status_code == 200
        assert rig.client.post("/api/passkeys/login/options", json={}).status_code == 429
        clock.advance(301)
        assert rig.client.post("/api/passkeys/login/options", json={}).status_code == 200


def _failures() -> UseCase[list[Any]]:
    rows = yield Q("SELECT failures FROM address_failures")
    return [row["failures"] for row in rows]


def test_the_address_lock_bounds_typed_codes_not_passkeys(
    make_settings: SettingsFactory, clock: FakeClock, transport: RecordingTransport
) -> None:
    # A passkey cannot be guessed, so its answers do not count toward the address's lock of
    # typed codes (an authenticator app's do), and it still signs in while the address is
    # locked: an outsider burning emailed codes cannot lock its owner out. Wrong answers
    # still spend the pending sign-in's five tries, as for any method.
    settings = make_settings(PUBLIC_URL=ORIGIN, LIMIT_ADDRESS_FAILURES="3")
    with passkey_rig(settings, clock, transport) as rig:
        rig.sign_in_by_mail(EMAIL)
        auth = SoftAuthenticator()
        assert rig.add_passkey(auth).status_code == 201
        rig.client.cookies.clear()
        flow = start(rig.client, EMAIL)
        message = rig.transport.wait_for(EMAIL, index=2)
        for _ in range(2):
            wrong = {"flow_id": flow["flow_id"], "code": "000000"}
            assert rig.client.post("/api/verify", json=wrong).status_code == 400
        assert rig.run(_failures()) == [2]
        right = {"flow_id": flow["flow_id"], "code": mail_code(message)}
        due = rig.client.post("/api/verify", json=right).json()
        assert due == {"next_step": "second_factor", "methods": ["passkey", "recovery_code"]}
        forged = rig.client.post("/api/second-factor", json={"method": "passkey", "code": "{}"})
        assert forged.json()["error"] == {
            "code": "invalid_code",
            "message": forged.json()["error"]["message"],
            "tries_left": 4,
        }
        assert rig.run(_failures()) == [2]  # not counted toward the address's lock
        # A third wrong typed code elsewhere locks the address's typed codes…
        with rig.browser() as other:
            other_flow = start(other, EMAIL)
            wrong = {"flow_id": other_flow["flow_id"], "code": "000000"}
            assert other.post("/api/verify", json=wrong).status_code == 400
            locked = other.post("/api/verify", json=wrong)
            assert locked.status_code == 429 and locked.json()["error"]["code"] == "codes_locked"
            # …not the passkey: as a first step in another browser…
            assert rig.passkey_login(auth, other).status_code == 200
        # …nor as the pending sign-in's second step.
        options = rig.login_options(rig.client)
        done = rig.login(rig.client, auth.get(options, origin=ORIGIN))
        assert done.status_code == 200, done.text
