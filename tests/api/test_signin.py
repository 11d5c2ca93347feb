"""The JSON sign-in: start, verify, cookies, the JWT, resend, expiry, logout."""

from __future__ import annotations

import jwt
import pytest
from starlette.testclient import TestClient

from tests.conftest import (
    ClientFactory,
    Codes,
    FakeClock,
    RecordingTransport,
    mail_code,
    sign_in,
    start,
)

EMAIL = "alice@example.com"


def test_code_with_spaces_or_dash_is_accepted(
    client: TestClient, transport: RecordingTransport
) -> None:
    flow = start(client, EMAIL)
    code = mail_code(transport.wait_for(EMAIL))
    response = client.post(
        "/api/verify", json={"flow_id": flow["flow_id"], "code": f" {code[:3]}-{code[3:]} "}
    )
    assert response.status_code == 200


def test_jwt_verifies_against_jwks_with_the_claims_and_typ_of_the_design(
    client: TestClient, transport: RecordingTransport
) -> None:
    body = sign_in(client, transport, EMAIL)
    token = client.cookies["latch_session"]
    header = jwt.get_unverified_header(token)
    assert header["typ"] == "at+jwt" and header["alg"] == "ES256"
    keys = client.get("/.well-known/jwks.json").json()["keys"]
    jwk = next(k for k in keys if k["kid"] == header["kid"])
    claims = jwt.decode(
        token,
        jwt.PyJWK(jwk).key,
        algorithms=["ES256"],
        audience="http://127.0.0.1:8000",
        issuer="http://127.0.0.1:8000",
    )
    assert claims["sub"] == body["user"]["id"]
    assert claims["sid"] == body["session"]["id"]
    assert claims["email"] == EMAIL
    assert claims["exp"] - claims["iat"] == 900
    assert claims["nbf"] == claims["iat"] and len(claims["jti"]) >= 16


@pytest.mark.parametrize("alg", ["EdDSA", "RS256", "HS256"])
def test_other_algorithms_sign_and_check(
    make_client: ClientFactory, transport: RecordingTransport, alg: str
) -> None:
    with make_client(JWT_ALGORITHM=alg) as client:
        sign_in(client, transport, EMAIL)
        token = client.cookies["latch_session"]
        assert jwt.get_unverified_header(token)["alg"] == alg
        assert client.get("/auth/check").status_code == 200
        keys = client.get("/.well-known/jwks.json").json()["keys"]
        # HS256 can never be published: every verifier could mint tokens with it.
        assert keys == [] if alg == "HS256" else [k["alg"] for k in keys] == [alg]


def test_wrong_code_says_tries_left_and_five_kill_the_flow(
    client: TestClient, transport: RecordingTransport
) -> None:
    flow = start(client, EMAIL)
    code = mail_code(transport.wait_for(EMAIL))
    wrong = "000000" if code != "000000" else "111111"
    for left, noun in ((4, "tries"), (3, "tries"), (2, "tries"), (1, "try"), (0, "tries")):
        response = client.post("/api/verify", json={"flow_id": flow["flow_id"], "code": wrong})
        assert response.status_code == 400
        assert response.json()["error"] == {
            "code": "invalid_code",
            "message": f"That code is not right. {left} {noun} left.",
            "tries_left": left,
        }
    response = client.post("/api/verify", json={"flow_id": flow["flow_id"], "code": code})
    assert response.status_code == 410
    assert response.json()["error"]["code"] == "flow_dead"


def test_expired_code_is_refused_with_410(
    client: TestClient, transport: RecordingTransport, clock: FakeClock
) -> None:
    flow = start(client, EMAIL)
    code = mail_code(transport.wait_for(EMAIL))
    clock.advance(601)
    response = client.post("/api/verify", json={"flow_id": flow["flow_id"], "code": code})
    assert response.status_code == 410
    assert response.json()["error"]["code"] == "flow_expired"


def test_second_use_of_code_is_refused(client: TestClient, transport: RecordingTransport) -> None:
    flow = start(client, EMAIL)
    code = mail_code(transport.wait_for(EMAIL))
    body = {"flow_id": flow["flow_id"], "code": code}
    assert client.post("/api/verify", json=body).status_code == 200
    response = client.post("/api/verify", json=body)
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "flow_used"


def test_resend_replaces_the_code_and_keeps_the_attempt_count(
    make_client: ClientFactory, transport: RecordingTransport
) -> None:
    with make_client(new_code=Codes()) as client:
        flow = start(client, EMAIL)
        old = mail_code(transport.wait_for(EMAIL))
        wrong = "000000" if old != "000000" else "111111"
        client.post("/api/verify", json={"flow_id": flow["flow_id"], "code": wrong})
        resent = client.post("/api/resend", json={"flow_id": flow["flow_id"]})
        assert resent.status_code == 202 and resent.json()["flow_id"] == flow["flow_id"]
        new = mail_code(transport.wait_for(EMAIL, index=1))
        assert new != old  # Codes makes them differ, so the old code's refusal means something
        response = client.post("/api/verify", json={"flow_id": flow["flow_id"], "code": old})
        assert response.status_code == 400
        assert response.json()["error"]["tries_left"] == 3  # 2 counted: kept across resend
        response = client.post("/api/verify", json={"flow_id": flow["flow_id"], "code": new})
        assert response.status_code == 200


def test_second_start_does_not_kill_the_first_flows_code(
    client: TestClient, transport: RecordingTransport
) -> None:
    first = start(client, EMAIL)
    first_code = mail_code(transport.wait_for(EMAIL))
    start(client, EMAIL)
    transport.wait_for(EMAIL, index=1)
    response = client.post("/api/verify", json={"flow_id": first["flow_id"], "code": first_code})
    assert response.status_code == 200


def test_sign_in_ends_the_addresss_other_pending_flows(
    client: TestClient, transport: RecordingTransport
) -> None:
    first = start(client, EMAIL)
    first_code = mail_code(transport.wait_for(EMAIL))
    second = start(client, EMAIL)
    second_code = mail_code(transport.wait_for(EMAIL, index=1))
    ok = client.post("/api/verify", json={"flow_id": second["flow_id"], "code": second_code})
    assert ok.status_code == 200
    late = client.post("/api/verify", json={"flow_id": first["flow_id"], "code": first_code})
    assert late.status_code == 409


def test_logout_revokes_the_session_and_auth_check_refuses_its_jwt(
    client: TestClient, transport: RecordingTransport
) -> None:
    sign_in(client, transport, EMAIL)
    token = client.cookies["latch_session"]
    assert client.get("/api/session").status_code == 200
    assert client.post("/api/logout", json={}).status_code == 204
    assert "latch_session" not in client.cookies
    # The JWT itself is still unexpired: the server-side session is what refuses it.
    response = client.get("/auth/check", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 401
    assert client.get("/api/session").status_code == 401


def test_logout_all_revokes_every_session_of_the_person(
    make_client: ClientFactory, transport: RecordingTransport
) -> None:
    with make_client() as laptop:
        sign_in(laptop, transport, EMAIL)
        laptop_token = laptop.cookies["latch_session"]
        sign_in(laptop, transport, EMAIL)
        assert laptop.post("/api/logout", json={"all": True}).status_code == 204
        check = laptop.get("/auth/check", headers={"Authorization": f"Bearer {laptop_token}"})
        assert check.status_code == 401


def test_auth_check_answers_401_without_a_cookie(client: TestClient) -> None:
    assert client.get("/auth/check").status_code == 401
    assert client.get("/api/session").json()["error"]["code"] == "unauthenticated"


def test_health_and_readiness(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["checks"]["database"] is True


def test_jwks_is_cacheable_and_api_answers_are_not(client: TestClient) -> None:
    assert client.get("/.well-known/jwks.json").headers["cache-control"] == "public, max-age=300"
    assert client.get("/api/session").headers["cache-control"] == "no-store"
