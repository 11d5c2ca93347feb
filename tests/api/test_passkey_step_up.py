"""A passkey as a step-up method (docs/design.md §11, §12): options for the signed-in person's
own passkeys, the answer at POST /api/step-up, and every answer that must be refused (another
user's passkey, a replayed, expired or sign-in challenge, a sign count going back, no session).

The authenticator is tests/support/webauthn.py's (real keys, real signatures), on SQLite and
PostgreSQL."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

import httpx2
import pytest
from starlette.testclient import TestClient

from service import store
from tests.conftest import FakeClock, RecordingTransport, SettingsFactory
from tests.support.passkeys import ORIGIN, PasskeyRig, claims_of, passkey_rig
from tests.support.webauthn import SoftAuthenticator

EMAIL = "uma@example.com"
OTHER = "vic@example.com"
STALE = 11 * 60  # past STEP_UP_TTL (10 minutes); the access token (15 minutes) still good


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


@pytest.fixture
def auth(rig: PasskeyRig, clock: FakeClock) -> SoftAuthenticator:
    """EMAIL's passkey, added after an email sign-in whose step has since gone stale (the
    browser is still signed in)."""
    rig.sign_in_by_mail(EMAIL)
    authenticator = SoftAuthenticator()
    assert rig.add_passkey(authenticator).status_code == 201
    clock.advance(STALE)
    return authenticator


def options(client: TestClient) -> dict[str, Any]:
    response = client.post("/api/passkeys/step-up/options", json={})
    assert response.status_code == 200, response.text
    found: dict[str, Any] = response.json()["publicKey"]
    return found


def step_up(client: TestClient, credential: dict[str, Any]) -> httpx2.Response:
    return client.post("/api/step-up", json={"method": "passkey", "credential": credential})


def assert_refused(response: httpx2.Response, caplog: pytest.LogCaptureFixture, why: str) -> None:
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == "invalid_passkey"
    assert f"reason={why}" in caplog.text
    caplog.clear()


def recent(client: TestClient) -> bool:
    return bool(client.get("/api/factors").json()["step_up"]["recent"])


def events(rig: PasskeyRig, kind: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = rig.run(store.list_events(event=kind))
    return found


def test_a_passkey_steps_up_and_then_a_factor_change_goes_through(
    rig: PasskeyRig, auth: SoftAuthenticator
) -> None:
    assert rig.client.get("/api/factors").json()["step_up"] == {
        "recent": False,
        "methods": ["passkey"],
    }
    refused = rig.client.post("/api/passkeys/register/options", json={})
    assert refused.status_code == 403
    assert refused.json()["error"]["methods"] == ["passkey"]

    request = options(rig.client)
    # The person's own passkey only, user verification as the sign-in asks it.
    assert [c["id"] for c in request["allowCredentials"]] == [auth.id]
    assert request["userVerification"] == "preferred" and request["rpId"] == "localhost"
    stepped = step_up(rig.client, auth.get(request, origin=ORIGIN))
    assert stepped.status_code == 200, stepped.text
    assert stepped.json() == {"aal": 2, "auth_time": rig.now()}
    # The email-only session now has the passkey with user verification: two factors.
    claims = claims_of(rig.client)
    assert claims["amr"] == ["email", "hwk", "user", "mfa"] and claims["acr"] == "aal2"
    assert claims["auth_time"] == rig.now()
    assert rig.client.get("/auth/check").headers["x-latch-aal"] == "2"
    [passed] = events(rig, "step_up.passed")
    assert passed["details"]["method"] == "passkey" and passed["details"]["aal"] == 2
    assert recent(rig.client)
    # The guarded change now goes through: a second passkey.
    assert rig.add_passkey(SoftAuthenticator()).status_code == 201


def test_without_user_verification_a_step_up_gives_the_level_a_sign_in_would(
    rig: PasskeyRig, clock: FakeClock
) -> None:
    rig.sign_in_by_mail(EMAIL)
    auth = SoftAuthenticator(user_verification=False)
    assert rig.add_passkey(auth).status_code == 201
    clock.advance(STALE)
    # The email session it was added from: email and the passkey are two factors.
    stepped = step_up(rig.client, auth.get(options(rig.client), origin=ORIGIN))
    assert stepped.status_code == 200 and stepped.json()["aal"] == 2
    assert claims_of(rig.client)["amr"] == ["email", "hwk", "mfa"]
    with rig.browser() as other:
        # Its only factor, no UV: an AAL1 session (as §12 says), whose step then goes stale.
        assert rig.passkey_login(auth, other).status_code == 200
        assert claims_of(other)["acr"] == "aal1"
        clock.advance(STALE)
        assert not recent(other)
        stepped = step_up(other, auth.get(options(other), origin=ORIGIN))
        assert stepped.status_code == 200, stepped.text
        # The same passkey again adds nothing to the level, but it is a recent step.
        assert stepped.json()["aal"] == 1 and claims_of(other)["amr"] == ["hwk"]
        assert recent(other)


def test_with_an_app_too_the_passkey_is_offered_first_and_either_passes(
    rig: PasskeyRig, clock: FakeClock
) -> None:
    user_id = rig.enrol_totp(EMAIL)
    rig.sign_in_by_mail(EMAIL)
    code = rig.totp.code(user_id, rig.now())
    assert rig.client.post("/api/second-factor", json={"method": "totp", "code": code}).is_success
    auth = SoftAuthenticator()
    assert rig.add_passkey(auth).status_code == 201
    clock.advance(STALE)
    refused = rig.client.post("/api/factors/recovery-codes", json={})
    assert refused.status_code == 403
    assert refused.json()["error"]["methods"] == ["passkey", "totp"]
    # The answer may come as `code`, the credential as a JSON string (as the page posts it).
    answer = json.dumps(auth.get(options(rig.client), origin=ORIGIN))
    stepped = rig.client.post("/api/step-up", json={"method": "passkey", "code": answer})
    assert stepped.status_code == 200, stepped.text
    assert rig.client.post("/api/factors/recovery-codes", json={}).status_code == 200


def test_another_users_passkey_cannot_step_up_my_session(
    rig: PasskeyRig, auth: SoftAuthenticator, caplog: pytest.LogCaptureFixture
) -> None:
    theirs = SoftAuthenticator()
    with rig.browser() as other:
        rig.sign_in_by_mail(OTHER, other)
        assert rig.add_passkey(theirs, other).status_code == 201
        # Their own step-up challenge, answered by their own passkey, on their session: fine;
        # but neither their challenge nor their passkey serves on mine (below).
        their_options, their_other_options = options(other), options(other)
    caplog.set_level(logging.INFO, logger="latch.passkeys")
    mine = options(rig.client)
    assert_refused(
        step_up(rig.client, theirs.get(mine, origin=ORIGIN)), caplog, "credential-of-another-user"
    )
    assert_refused(
        step_up(rig.client, theirs.get(their_options, origin=ORIGIN)),
        caplog,
        "step-up-challenge-of-another-user",
    )
    # My own passkey over their challenge: the challenge was not handed out to me.
    assert_refused(
        step_up(rig.client, auth.get(their_other_options, origin=ORIGIN)),
        caplog,
        "step-up-challenge-of-another-user",
    )
    assert not recent(rig.client)
    failed = events(rig, "step_up.failed")
    assert len(failed) == 3 and {e["details"]["method"] for e in failed} == {"passkey"}
    assert events(rig, "step_up.passed") == []


def test_a_challenge_answers_once_and_expires_after_five_minutes(
    rig: PasskeyRig,
    auth: SoftAuthenticator,
    clock: FakeClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="latch.passkeys")
    credential = auth.get(options(rig.client), origin=ORIGIN)
    assert step_up(rig.client, credential).status_code == 200
    clock.advance(STALE)
    assert_refused(step_up(rig.client, credential), caplog, "unknown-used-or-expired-challenge")
    late = auth.get(options(rig.client), origin=ORIGIN)
    clock.advance(301)
    assert_refused(step_up(rig.client, late), caplog, "unknown-used-or-expired-challenge")
    assert not recent(rig.client)


def test_sign_in_and_step_up_challenges_answer_only_their_own_ceremony(
    rig: PasskeyRig, auth: SoftAuthenticator, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="latch.passkeys")
    signin = auth.get(rig.login_options(rig.client), origin=ORIGIN)
    assert_refused(step_up(rig.client, signin), caplog, "challenge-of-another-ceremony")
    assert not recent(rig.client)
    # And the other way round: a step-up's answer signs no one in.
    stepup = auth.get(options(rig.client), origin=ORIGIN)
    with rig.browser() as other:
        assert_refused(rig.login(other, stepup), caplog, "challenge-of-another-ceremony")
        assert "latch_session" not in other.cookies


def test_a_sign_count_going_back_is_refused_as_a_possible_clone(
    rig: PasskeyRig,
    auth: SoftAuthenticator,
    clock: FakeClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="latch.passkeys")
    assert step_up(rig.client, auth.get(options(rig.client), origin=ORIGIN)).status_code == 200
    clock.advance(STALE)
    copy = auth.get(options(rig.client), origin=ORIGIN, sign_count=auth.sign_count)
    response = step_up(rig.client, copy)
    assert "passkey.clone_suspected" in caplog.text
    assert_refused(response, caplog, "sign-count-went-back")
    assert not recent(rig.client)


def test_no_session_no_passkey_or_a_bad_body_is_a_clear_4xx(
    rig: PasskeyRig, auth: SoftAuthenticator
) -> None:
    request = options(rig.client)
    with rig.browser() as nobody:
        assert nobody.post("/api/passkeys/step-up/options", json={}).status_code == 401
        answer = step_up(nobody, auth.get(request, origin=ORIGIN))
        assert answer.status_code == 401
        assert answer.json()["error"]["code"] == "unauthenticated"
        # A signed-in person without a passkey has none to offer.
        rig.sign_in_by_mail(OTHER, nobody)
        none = nobody.post("/api/passkeys/step-up/options", json={})
        assert none.status_code == 400 and none.json()["error"]["code"] == "invalid_request"
        refused = step_up(nobody, auth.get(request, origin=ORIGIN))
        assert refused.status_code == 400 and refused.json()["error"]["field"] == "method"
    for body in (
        {"method": "passkey", "credential": "not an object"},
        {"method": "passkey", "code": "not json"},
        {"method": "passkey", "code": json.dumps([1, 2])},
        {"method": "passkey", "credential": {"id": "x", "response": {"clientDataJSON": "!!"}}},
        {"method": "passkey"},
    ):
        response = rig.client.post("/api/step-up", json=body)
        assert 400 <= response.status_code < 500, (body, response.text)
        assert "error" in response.json()
    assert not recent(rig.client)
