"""The hot routes (service/web/hot.py) answer by themselves, and exactly as the full stack would:
the security headers, the access log and metrics, the wildcard CORS of the public documents,
and every case they do not own handed over unchanged."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from starlette.testclient import TestClient
from starlette.types import Receive, Scope, Send

from service.app import create_app
from service.web.hot import HotPaths
from service.web.state import app_state_of
from tests.conftest import BASE_URL, FakeClock, RecordingTransport, SettingsFactory, sign_in
from tests.support.oidc import register

SECURITY = ("content-security-policy", "x-content-type-options", "referrer-policy")


@pytest.fixture
def client(
    make_settings: SettingsFactory, transport: RecordingTransport, clock: FakeClock
) -> Iterator[TestClient]:
    app = create_app(make_settings(), mail_transport=transport, clock=clock)
    with TestClient(app, base_url=BASE_URL, client=("127.0.0.1", 50000)) as c:
        yield c


@contextmanager
def routed(client: TestClient) -> Iterator[list[str]]:
    """The paths of the requests that reached Starlette's router while the block ran."""
    seen: list[str] = []
    router = client.app.router  # type: ignore[attr-defined]
    inner = router.middleware_stack

    async def spy(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append(scope["path"])
        await inner(scope, receive, send)

    router.middleware_stack = spy
    try:
        yield seen
    finally:
        router.middleware_stack = inner


def test_auth_check_is_answered_without_the_router(
    client: TestClient, transport: RecordingTransport
) -> None:
    sign_in(client, transport, "hot@example.com")
    with routed(client) as seen:
        ok = client.get("/auth/check")
        head = client.head("/auth/check")
        jwks = client.get("/.well-known/jwks.json")
        client.cookies.clear()
        refused = client.get("/auth/check")
    assert ok.status_code == 200 and head.status_code == 200 and jwks.status_code == 200
    assert ok.headers["x-latch-email"] == "hot@example.com"
    assert refused.status_code == 401
    # The refused check went the long way (the JSON surface renders it); the others did not.
    assert seen == ["/auth/check"]


def test_hot_answers_carry_the_security_headers(
    client: TestClient, transport: RecordingTransport
) -> None:
    sign_in(client, transport, "hot@example.com")
    for response in (client.get("/auth/check"), client.head("/auth/check")):
        assert response.status_code == 200
        for name in SECURITY:
            assert name in response.headers
        assert response.headers["cache-control"] == "no-store"
        assert response.headers["content-length"] == "0"
        assert response.headers["x-latch-aal"] == "1"
        assert "access-control-allow-origin" not in response.headers
    for path in ("/.well-known/jwks.json", "/.well-known/latch-configuration"):
        got = client.get(path)
        assert got.status_code == 200
        assert got.headers["access-control-allow-origin"] == "*"
        assert got.headers["cache-control"] == "public, max-age=300"
        assert got.headers["content-type"] == "application/json"
        for name in SECURITY:
            assert name in got.headers
        head = client.head(path)
        assert head.content == b"" and head.headers["content-length"] == str(len(got.content))


def test_documents_follow_the_keyring(client: TestClient) -> None:
    state = app_state_of(client)
    before = client.get("/.well-known/jwks.json").json()
    assert before == state.keyring.jwks()
    config = client.get("/.well-known/latch-configuration").json()
    assert config["jwks_uri"] == f"{BASE_URL}/.well-known/jwks.json"
    # A new key generation rebuilds the bodies (a rotation is the CLI's job; here the keyring
    # is made to change what it publishes).
    state.keyring.keys = {}
    state.keyring.generation += 1
    assert client.get("/.well-known/jwks.json").json() == {"keys": []}
    assert client.get("/.well-known/latch-configuration").json()["algorithms"] == []


def test_documents_for_another_host_go_to_the_host_check(client: TestClient) -> None:
    response = client.get(
        "/.well-known/jwks.json", headers={"host": "evil.example.com"}, follow_redirects=False
    )
    # Development sends a GET for another name to PUBLIC_URL, as for any other path.
    assert response.status_code == 302
    assert response.headers["location"] == f"{BASE_URL}/.well-known/jwks.json"


def test_hot_answers_are_logged_and_counted(
    client: TestClient, transport: RecordingTransport, caplog: pytest.LogCaptureFixture
) -> None:
    sign_in(client, transport, "hot@example.com")
    with caplog.at_level(logging.INFO, logger="latch.access"):
        client.get("/auth/check")
        client.get("/.well-known/jwks.json")
    lines = [r.getMessage() for r in caplog.records if r.name == "latch.access"]
    assert any(line.startswith("http.request GET /auth/check 200") for line in lines)
    assert any(line.startswith("http.request GET /.well-known/jwks.json 200") for line in lines)
    text = client.get("/metrics").text
    assert 'latch_request_seconds_count{method="GET",route="/auth/check",status="200"} 1.0' in text
    assert (
        'latch_request_seconds_count{method="GET",route="/.well-known/jwks.json",status="200"} 1.0'
        in text
    )


def test_a_refused_bearer_is_named_in_the_challenge(client: TestClient) -> None:
    response = client.get("/auth/check", headers={"authorization": "Bearer not.a.jwt"})
    assert response.status_code == 401
    assert 'error="invalid_token"' in response.headers["www-authenticate"]
    assert json.loads(response.content)["error"]["code"] == "unauthenticated"


def test_with_allowed_origins_an_origin_gets_the_credentialed_cors(
    make_settings: SettingsFactory, transport: RecordingTransport, clock: FakeClock
) -> None:
    settings = make_settings(ALLOWED_ORIGINS="https://app.example.com")
    app = create_app(settings, mail_transport=transport, clock=clock)
    with TestClient(app, base_url=BASE_URL) as client:
        sign_in(client, transport, "hot@example.com")
        response = client.get("/auth/check", headers={"origin": "https://app.example.com"})
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == "https://app.example.com"
    assert response.headers["access-control-allow-credentials"] == "true"


def _long_way(client: TestClient) -> TestClient:
    """A client of the stack behind the hot layer: what the routes answer without it."""
    app = client.app
    layer = app.middleware_stack  # type: ignore[attr-defined]
    while not isinstance(layer, HotPaths):
        layer = layer.app
    inner = layer.app

    async def routed_app(scope: Scope, receive: Receive, send: Send) -> None:
        scope["app"] = app  # as Starlette sets it before its middleware
        await inner(scope, receive, send)

    # No `with`: the app's lifespan (database, mail queue) is the hot client's.
    return TestClient(routed_app, base_url=BASE_URL)


DOCUMENTS = (
    "/.well-known/jwks.json",
    "/.well-known/latch-configuration",
    "/.well-known/openid-configuration",
)


def test_every_document_is_answered_as_its_route_answers(client: TestClient) -> None:
    long_way = _long_way(client)
    register(client)  # a client's RS256 key joins the JWKS at the next reload
    app_state_of(client).keyring.reload()
    asked = [(method, path) for path in DOCUMENTS for method in ("GET", "HEAD")]
    with routed(client) as seen:
        hot = [client.request(method, path) for method, path in asked]
    assert seen == []  # all of them answered by the hot layer
    for (method, path), answer in zip(asked, hot, strict=True):
        routed_answer = long_way.request(method, path)
        assert answer.status_code == routed_answer.status_code == 200, path
        assert answer.content == routed_answer.content, path
        # Every header alike: cache lifetime, type, length, security headers, wildcard CORS.
        assert sorted(answer.headers.multi_items()) == sorted(
            routed_answer.headers.multi_items()
        ), path


def test_the_jwks_publishes_the_openid_providers_keys(client: TestClient) -> None:
    state = app_state_of(client)
    before = {k["alg"] for k in client.get("/.well-known/jwks.json").json()["keys"]}
    assert "RS256" not in before
    register(client, id_token_alg="RS256")
    state.keyring.reload()
    keys = client.get("/.well-known/jwks.json").json()["keys"]
    oidc_key = state.keyring.oidc["RS256"]
    assert any(k["kid"] == oidc_key.kid and k["alg"] == "RS256" for k in keys)
    # Discovery names the same key set, and the algorithms the provider signs with.
    meta = client.get("/.well-known/openid-configuration").json()
    assert meta["jwks_uri"] == f"{BASE_URL}/.well-known/jwks.json"
    assert "RS256" in meta["id_token_signing_alg_values_supported"]
