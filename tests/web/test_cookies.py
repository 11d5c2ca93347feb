"""The cookies of a sign-in: HttpOnly and SameSite=Lax, Secure and __Host- under https, the flow
cookie standing in for the flow id."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from starlette.testclient import TestClient

from tests.conftest import (
    ClientFactory,
    RecordingTransport,
    mail_code,
    start,
)

EMAIL = "alice@example.com"


def _cookie_headers(response: object) -> list[str]:
    return response.headers.get_list("set-cookie")  # type: ignore[attr-defined, no-any-return]


def test_right_code_signs_in_with_httponly_lax_cookie(
    client: TestClient, transport: RecordingTransport
) -> None:
    flow = start(client, EMAIL)
    code = mail_code(transport.wait_for(EMAIL))
    response = client.post("/api/verify", json={"flow_id": flow["flow_id"], "code": code})
    assert response.status_code == 200
    assert response.json()["user"]["email"] == EMAIL
    session_cookie = next(c for c in _cookie_headers(response) if c.startswith("latch_session="))
    assert "HttpOnly" in session_cookie
    assert "SameSite=lax" in session_cookie or "SameSite=Lax" in session_cookie
    assert "Path=/" in session_cookie
    assert "Secure" not in session_cookie  # plain http on localhost is development
    assert client.get("/auth/check").status_code == 200


def test_flow_cookie_stands_in_for_flow_id(
    client: TestClient, transport: RecordingTransport
) -> None:
    start(client, EMAIL)
    code = mail_code(transport.wait_for(EMAIL))
    assert client.post("/api/verify", json={"code": code}).status_code == 200


@pytest.fixture
def https_client(make_client: ClientFactory) -> Iterator[TestClient]:
    with make_client(PUBLIC_URL="https://localhost:8443") as client:
        client.base_url = "https://localhost:8443"
        yield client


def test_cookies_are_secure_and_host_prefixed_under_https(
    https_client: TestClient, transport: RecordingTransport
) -> None:
    start(https_client, EMAIL)
    code = mail_code(transport.wait_for(EMAIL))
    response = https_client.post("/api/verify", json={"code": code})
    assert response.status_code == 200, response.text
    cookies = _cookie_headers(response)
    session_cookie = next(c for c in cookies if c.startswith("__Host-latch_session="))
    refresh_cookie = next(c for c in cookies if c.startswith("__Host-latch_refresh="))
    for cookie in (session_cookie, refresh_cookie):
        assert "Secure" in cookie and "HttpOnly" in cookie and "Path=/" in cookie
        assert "Domain" not in cookie
    assert https_client.get("/auth/check").status_code == 200
