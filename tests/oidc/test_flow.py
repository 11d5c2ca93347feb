"""The authorization code flow end to end, in process (docs/design.md §13): authorize, the
sign-in pages, the way back, the token exchange, the ID token checked against the JWKS."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import jwt
import pytest
from starlette.testclient import TestClient

from service.app import create_app
from service.oidc.clients import Client
from service.oidc.jwts import at_hash
from service.web.state import app_state_of
from tests.conftest import BASE_URL, ClientFactory, FakeClock, RecordingTransport, SettingsFactory
from tests.support.oidc import (
    RP,
    app_target,
    auth_params,
    exchange,
    pkce,
    query_of,
    register,
    sign_in_through_pages,
)
from tests.support.postgres import PostgresCluster

EMAIL = "olga@example.com"


@pytest.fixture
def browser(make_client: ClientFactory, database_url: str) -> Iterator[TestClient]:
    # Every test here runs on SQLite and on PostgreSQL.
    with make_client(database_url=database_url) as client:
        yield client


def id_claims(browser: TestClient, token: str, client: Client) -> dict[str, Any]:
    """Verify an ID token as a relying party does: the key from the JWKS by kid, pinned alg."""
    jwks = browser.get("/.well-known/jwks.json").json()
    header = jwt.get_unverified_header(token)
    jwk = next(k for k in jwks["keys"] if k["kid"] == header["kid"])
    assert jwk["alg"] == client.id_token_alg == header["alg"]
    key = jwt.PyJWK(jwk).key
    claims: dict[str, Any] = jwt.decode(
        token, key, algorithms=[jwk["alg"]], audience=client.id, issuer=BASE_URL
    )
    return claims


def first_code(
    browser: TestClient, transport: RecordingTransport, client: Client, **extra: str
) -> tuple[dict[str, str], dict[str, str]]:
    """Authorize with no session, sign in through the pages; (request params, app's answer)."""
    params = auth_params(client, **extra)
    answer = browser.get("/oauth/authorize", params=params, follow_redirects=False)
    assert answer.status_code == 303
    assert answer.headers["location"].startswith("/login?")
    back = sign_in_through_pages(browser, transport, answer.headers["location"], EMAIL)
    return params, query_of(app_target(back))


def test_discovery_names_every_endpoint_under_the_issuer(browser: TestClient) -> None:
    meta = browser.get("/.well-known/openid-configuration").json()
    assert meta["issuer"] == BASE_URL
    for name in ("authorization", "token", "userinfo", "revocation", "end_session"):
        assert meta[f"{name}_endpoint"].startswith(BASE_URL + "/oauth/")
    assert meta["jwks_uri"] == BASE_URL + "/.well-known/jwks.json"
    assert meta["response_types_supported"] == ["code"]
    assert meta["code_challenge_methods_supported"] == ["S256"]
    assert "RS256" in meta["id_token_signing_alg_values_supported"]
    assert meta["authorization_response_iss_parameter_supported"] is True


def test_registering_a_client_publishes_an_rs256_key(browser: TestClient) -> None:
    before = {k["alg"] for k in browser.get("/.well-known/jwks.json").json()["keys"]}
    assert "RS256" not in before
    register(browser, first_party=True)
    app_state_of(browser).keyring.reload()  # every instance does within KEYS_RELOAD_INTERVAL
    after = {k["alg"] for k in browser.get("/.well-known/jwks.json").json()["keys"]}
    assert "RS256" in after


def test_code_flow_signs_in_through_the_pages_and_issues_verified_tokens(
    browser: TestClient, transport: RecordingTransport
) -> None:
    client, secret = register(browser, first_party=True)
    params, answer = first_code(browser, transport, client)
    assert answer["state"] == params["state"]
    assert answer["iss"] == BASE_URL  # RFC 9207
    tokens = exchange(browser, client, secret, answer["code"])
    assert tokens.status_code == 200, tokens.text
    assert tokens.headers["cache-control"] == "no-store"
    body = tokens.json()
    assert body["token_type"] == "Bearer" and body["scope"] == "openid email"
    claims = id_claims(browser, body["id_token"], client)
    assert claims["nonce"] == params["nonce"]
    assert claims["email"] == EMAIL and claims["email_verified"] is True
    assert claims["acr"] == "aal1" and claims["amr"] == ["email"]
    assert claims["at_hash"] == at_hash(body["access_token"], "RS256")
    access = jwt.get_unverified_header(body["access_token"])
    assert access["typ"] == "at+jwt"
    info = browser.get(
        "/oauth/userinfo", headers={"Authorization": f"Bearer {body['access_token']}"}
    )
    assert info.json() == {"sub": claims["sub"], "email": EMAIL, "email_verified": True}


def test_a_signed_in_person_gets_a_code_without_signing_in_again(
    browser: TestClient, transport: RecordingTransport
) -> None:
    client, secret = register(browser, first_party=True)
    first_code(browser, transport, client)
    mails = len(transport.messages)
    answer = browser.get("/oauth/authorize", params=auth_params(client), follow_redirects=False)
    assert answer.status_code == 302
    assert answer.headers["location"].startswith(RP + "?")
    assert "code" in query_of(answer.headers["location"])
    assert len(transport.messages) == mails


def test_public_client_exchanges_with_its_pkce_verifier(
    browser: TestClient, transport: RecordingTransport
) -> None:
    client, secret = register(browser, first_party=True, public=True)
    assert secret is None
    verifier, challenge = pkce()
    _, answer = first_code(
        browser, transport, client, code_challenge=challenge, code_challenge_method="S256"
    )
    tokens = exchange(browser, client, None, answer["code"], code_verifier=verifier)
    assert tokens.status_code == 200, tokens.text


def test_es256_client_gets_es256_id_tokens(
    browser: TestClient, transport: RecordingTransport
) -> None:
    client, secret = register(browser, first_party=True, id_token_alg="ES256")
    _, answer = first_code(browser, transport, client)
    body = exchange(browser, client, secret, answer["code"]).json()
    assert id_claims(browser, body["id_token"], client)["aud"] == client.id


@pytest.mark.postgres
def test_authorize_on_one_instance_and_exchange_on_another(
    pg_cluster: PostgresCluster,
    make_settings: SettingsFactory,
    clock: FakeClock,
    transport: RecordingTransport,
) -> None:
    # Two instances behind one PUBLIC_URL: one database, one SECRET_KEY, one KEYS_DIR.
    settings = make_settings(DATABASE_URL=pg_cluster.create_database())
    one = create_app(settings, mail_transport=transport, clock=clock)
    two = create_app(settings, mail_transport=transport, clock=clock)
    with TestClient(one, base_url=BASE_URL) as first, TestClient(two, base_url=BASE_URL) as other:
        client, secret = register(first, first_party=True)
        _, answer = first_code(first, transport, client)
        tokens = exchange(other, client, secret, answer["code"])
        assert tokens.status_code == 200, tokens.text
        claims = id_claims(other, tokens.json()["id_token"], client)
        assert claims["email"] == EMAIL
        again = exchange(first, client, secret, answer["code"])
        assert again.json()["error"] == "invalid_grant"
