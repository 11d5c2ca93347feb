"""Second factors over the JSON API (docs/design.md §11): an authenticator app, recovery codes,
step-up and REQUIRE_SECOND_FACTOR, with codes from Debian's oathtool at the injected clock."""

from __future__ import annotations

from email.message import EmailMessage
from typing import Any

import httpx2
import jwt
from starlette.testclient import TestClient

from tests.conftest import (
    ClientFactory,
    FakeClock,
    RecordingTransport,
    mail_code,
    mail_token,
    sign_in,
    start,
    text_of,
)
from tests.support.otp import next_signin_mail, oathtool, secret_of, signin_mails
from tests.support.wait import eventually

EMAIL = "erin@example.com"


def code_now(secret: str, clock: FakeClock) -> str:
    return oathtool(secret, int(clock()))


def enrol(client: TestClient, clock: FakeClock) -> tuple[str, list[str]]:
    """Set up an authenticator app on the signed-in session: (secret, recovery codes)."""
    begun = client.post("/api/factors/totp", json={})
    assert begun.status_code == 200, begun.text
    secret = begun.json()["secret"]
    assert secret_of(begun.json()["otpauth_uri"]) == secret
    done = client.post("/api/factors/totp/confirm", json={"code": code_now(secret, clock)})
    assert done.status_code == 200, done.text
    clock.advance(30)  # the confirming code's step is spent
    return secret, done.json().get("recovery_codes", [])


def first_step(client: TestClient, transport: RecordingTransport, email: str = EMAIL) -> Any:
    """Start and type the mailed code; the verify answer."""
    client.cookies.clear()
    before = len(signin_mails(transport, email))
    flow = start(client, email)
    code = mail_code(next_signin_mail(transport, email, before))
    return client.post("/api/verify", json={"flow_id": flow["flow_id"], "code": code})


def answer(client: TestClient, code: str, method: str = "totp") -> httpx2.Response:
    return client.post("/api/second-factor", json={"method": method, "code": code})


def claims(client: TestClient) -> dict[str, Any]:
    token = client.cookies.get("latch_session")
    assert token
    decoded: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
    return decoded


def notice(transport: RecordingTransport, words: str, email: str = EMAIL) -> EmailMessage:
    """The latest notice whose subject has `words`, waited for (they are sent in the
    background)."""

    def arrived() -> EmailMessage | None:
        found = [m for m in transport.messages_to(email) if words in str(m["Subject"])]
        return found[-1] if found else None

    return eventually(arrived, f"a notice about {words!r}")


def test_enrolment_gives_ten_codes_once_and_the_next_signin_asks_for_the_app(
    client: TestClient, transport: RecordingTransport, clock: FakeClock
) -> None:
    sign_in(client, transport, EMAIL)
    secret, codes = enrol(client, clock)
    assert len(codes) == 10 and len(set(codes)) == 10
    assert all(len(c) == 11 and c[5] == "-" for c in codes)
    factors = client.get("/api/factors").json()
    assert factors["totp"]["enrolled"] is True and factors["recovery_codes"]["left"] == 10
    assert secret not in str(factors)
    assert "was added" in text_of(notice(transport, "was added"))
    due = first_step(client, transport)
    assert due.json() == {"next_step": "second_factor", "methods": ["totp", "recovery_code"]}
    assert "latch_session" not in client.cookies
    done = answer(client, code_now(secret, clock))
    assert done.status_code == 200, done.text
    token = claims(client)
    assert token["acr"] == "aal2" and set(token["amr"]) == {"email", "otp", "mfa"}


def test_a_wrong_first_code_does_not_turn_the_app_on(
    client: TestClient, transport: RecordingTransport, clock: FakeClock
) -> None:
    sign_in(client, transport, EMAIL)
    secret = client.post("/api/factors/totp", json={}).json()["secret"]
    wrong = oathtool(secret, int(clock()) + 120)
    refused = client.post("/api/factors/totp/confirm", json={"code": wrong})
    assert refused.status_code == 400 and refused.json()["error"]["field"] == "code"
    assert client.get("/api/factors").json()["totp"]["enrolled"] is False
    assert "latch_session" in first_step(client, transport).cookies  # no second step


def test_an_accepted_code_is_refused_when_replayed(
    client: TestClient, transport: RecordingTransport, clock: FakeClock
) -> None:
    sign_in(client, transport, EMAIL)
    secret, _ = enrol(client, clock)
    code = code_now(secret, clock)
    first_step(client, transport)
    assert answer(client, code).status_code == 200
    first_step(client, transport)
    replayed = answer(client, code)
    assert replayed.status_code == 400 and replayed.json()["error"]["code"] == "invalid_code"
    clock.advance(30)
    assert answer(client, code_now(secret, clock)).status_code == 200


def test_a_recovery_code_works_once_and_the_mail_says_how_many_remain(
    client: TestClient, transport: RecordingTransport, clock: FakeClock
) -> None:
    sign_in(client, transport, EMAIL)
    _, codes = enrol(client, clock)
    first_step(client, transport)
    done = answer(client, codes[3].upper().replace("-", " "), method="recovery_code")
    assert done.status_code == 200, done.text
    assert set(claims(client)["amr"]) == {"email", "rc", "mfa"}
    assert client.get("/api/factors").json()["recovery_codes"]["left"] == 9
    used = notice(transport, "recovery code was used")
    assert "9 recovery codes left" in text_of(used)
    assert codes[3] not in text_of(used)
    first_step(client, transport)
    again = answer(client, codes[3], method="recovery_code")
    assert again.status_code == 400 and again.json()["error"]["code"] == "invalid_code"


def test_regenerated_recovery_codes_replace_every_old_one(
    client: TestClient, transport: RecordingTransport, clock: FakeClock
) -> None:
    sign_in(client, transport, EMAIL)
    _, old = enrol(client, clock)
    new = client.post("/api/factors/recovery-codes", json={})
    assert new.status_code == 200
    fresh = new.json()["recovery_codes"]
    assert len(fresh) == 10 and not set(fresh) & set(old)
    first_step(client, transport)
    assert answer(client, old[0], method="recovery_code").status_code == 400
    assert answer(client, fresh[0], method="recovery_code").status_code == 200


def test_changing_factors_needs_a_recent_step_and_step_up_gives_one(
    client: TestClient, transport: RecordingTransport, clock: FakeClock
) -> None:
    sign_in(client, transport, EMAIL)
    secret, _ = enrol(client, clock)
    clock.advance(601)  # STEP_UP_TTL: 10 minutes
    refused = client.post("/api/factors/recovery-codes", json={})
    assert refused.status_code == 403
    assert refused.json()["error"] == {
        "code": "step_up_required",
        "message": refused.json()["error"]["message"],
        "methods": ["totp"],
    }
    assert client.delete("/api/factors/totp").status_code == 403
    assert client.get("/api/factors").json()["step_up"] == {"recent": False, "methods": ["totp"]}
    wrong = client.post("/api/step-up", json={"method": "totp", "code": "000000"})
    assert wrong.status_code == 400 and wrong.json()["error"]["code"] == "invalid_code"
    stepped = client.post("/api/step-up", json={"method": "totp", "code": code_now(secret, clock)})
    assert stepped.status_code == 200, stepped.text
    assert stepped.json()["aal"] == 2
    # The session was opened by email alone, before the app existed: now it is two-factor.
    assert claims(client)["auth_time"] == int(clock()) and claims(client)["acr"] == "aal2"
    assert client.get("/auth/check").headers["x-latch-aal"] == "2"
    assert client.post("/api/factors/recovery-codes", json={}).status_code == 200


def test_without_a_factor_an_old_session_is_told_to_sign_in_again(
    client: TestClient, transport: RecordingTransport, clock: FakeClock
) -> None:
    sign_in(client, transport, EMAIL)
    clock.advance(601)
    refused = client.post("/api/factors/totp", json={})
    assert refused.status_code == 403 and refused.json()["error"]["methods"] == []
    sign_in(client, transport, EMAIL)  # a fresh emailed code is the step
    assert client.post("/api/factors/totp", json={}).status_code == 200


def test_removing_the_app_mails_and_takes_the_recovery_codes_with_it(
    client: TestClient, transport: RecordingTransport, clock: FakeClock
) -> None:
    sign_in(client, transport, EMAIL)
    enrol(client, clock)
    assert client.delete("/api/factors/totp").status_code == 204
    assert "was removed" in text_of(notice(transport, "was removed"))
    assert client.get("/api/factors").json()["recovery_codes"]["left"] == 0
    assert "latch_session" in first_step(client, transport).cookies  # email alone again


def test_five_wrong_answers_end_the_signin(
    client: TestClient, transport: RecordingTransport, clock: FakeClock
) -> None:
    sign_in(client, transport, EMAIL)
    secret, _ = enrol(client, clock)
    first_step(client, transport)
    for left in (4, 3, 2, 1):
        assert answer(client, "000000").json()["error"]["tries_left"] == left
    assert answer(client, "000000").status_code == 400
    ended = answer(client, code_now(secret, clock))
    assert ended.status_code == 410


def test_wrong_authenticator_codes_count_toward_the_address_lock(
    make_client: ClientFactory, transport: RecordingTransport, clock: FakeClock
) -> None:
    with make_client(LIMIT_ADDRESS_FAILURES="3") as client:
        sign_in(client, transport, EMAIL)
        secret, codes = enrol(client, clock)
        first_step(client, transport)
        for _ in range(3):
            assert answer(client, "000000").status_code == 400
        # The address is locked: typed email codes are refused, so are authenticator codes…
        before = len(signin_mails(transport, EMAIL))
        flow = start(client, EMAIL)
        message = next_signin_mail(transport, EMAIL, before)
        typed = client.post("/api/verify", json={"flow_id": flow["flow_id"], "code": "000000"})
        assert typed.status_code == 429 and typed.json()["error"]["code"] == "codes_locked"
        # …the link still passes the first step, and a recovery code still finishes.
        linked = client.post("/api/link", json={"token": mail_token(message)})
        assert linked.json()["next_step"] == "second_factor"
        locked = answer(client, code_now(secret, clock))
        assert locked.status_code == 429 and locked.json()["error"]["code"] == "codes_locked"
        assert answer(client, codes[0], method="recovery_code").status_code == 200


def test_policy_all_enrols_a_new_address_before_any_session(
    make_client: ClientFactory, transport: RecordingTransport, clock: FakeClock
) -> None:
    with make_client(REQUIRE_SECOND_FACTOR="all") as client:
        due = first_step(client, transport)
        assert due.json() == {"next_step": "enrol_second_factor", "methods": []}
        assert "latch_session" not in client.cookies
        for path in ("/api/session", "/auth/check"):
            assert client.get(path).status_code == 401
        assert client.post("/api/refresh", json={}).status_code == 401
        begun = client.post("/api/second-factor/enrol", json={})
        assert begun.status_code == 200
        secret = begun.json()["secret"]
        assert (
            client.post("/api/second-factor/enrol/confirm", json={"code": "1"}).status_code == 400
        )
        done = client.post(
            "/api/second-factor/enrol/confirm", json={"code": code_now(secret, clock)}
        )
        assert done.status_code == 200, done.text
        assert len(done.json()["recovery_codes"]) == 10
        assert claims(client)["acr"] == "aal2"
        assert client.get("/api/session").status_code == 200
        clock.advance(30)
        assert first_step(client, transport).json()["next_step"] == "second_factor"


def test_policy_off_ignores_factors(
    make_client: ClientFactory, transport: RecordingTransport, clock: FakeClock
) -> None:
    with make_client() as client:
        sign_in(client, transport, EMAIL)
        enrol(client, clock)
    with make_client(REQUIRE_SECOND_FACTOR="off") as client:
        done = first_step(client, transport)
        assert done.status_code == 200 and "user" in done.json()
        assert claims(client)["acr"] == "aal1"


def test_factor_endpoints_need_a_session_and_json(
    client: TestClient, transport: RecordingTransport, clock: FakeClock
) -> None:
    assert client.get("/api/factors").status_code == 401
    assert client.post("/api/factors/totp", json={}).status_code == 401
    assert client.post("/api/second-factor/enrol", json={}).status_code == 410
    sign_in(client, transport, EMAIL)
    assert client.post("/api/factors/totp", content=b"x").status_code == 415
    bad = client.post("/api/factors/totp/confirm", json={"code": 5})
    assert bad.status_code == 400 and bad.json()["error"]["field"] == "code"
    enrol(client, clock)
    again = client.post("/api/factors/totp", json={})
    assert again.status_code == 400 and again.json()["error"]["code"] == "invalid_request"
    regenerate_without_factor = client.delete("/api/factors/totp")
    assert regenerate_without_factor.status_code == 204
    assert client.post("/api/factors/recovery-codes", json={}).status_code == 400
