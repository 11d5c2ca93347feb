"""The cookies of a sign-in: HttpOnly and SameSite=Lax, Secure and __Host- under https, the flow
cookie standing in for the flow id."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import replace

import pytest
from starlette.responses import Response
from starlette.testclient import TestClient

from service.web import cookies
from tests.conftest import (
    ClientFactory,
    RecordingTransport,
    SettingsFactory,
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


@pytest.mark.parametrize(
    "env",
    [
        {},
        {"PUBLIC_URL": "https://localhost:8443"},
        {"PUBLIC_URL": "https://localhost:8443", "COOKIE_DOMAIN": ".example.com"},
    ],
)
def test_cookie_headers_are_the_ones_starlette_writes(
    make_settings: SettingsFactory, env: dict[str, str]
) -> None:
    # Latch writes its Set-Cookie headers itself (service/web/cookies.py: cheaper than
    # http.cookies on every sign-in); they must be byte for byte what set_cookie writes.
    domain = env.pop("COOKIE_DOMAIN", "")
    settings = make_settings(**env)
    # A shared cookie's Domain (validated against PUBLIC_URL at start-up, set here directly).
    settings = replace(settings, sessions=replace(settings.sessions, cookie_domain=domain))
    for name, value, shared in (
        (settings.session_cookie, "eyJhbGciOi.J9-_x", True),
        (settings.refresh_cookie, "r3fr-sh_token", False),
        (settings.flow_cookie, "f.l-o_w", False),
    ):
        ours = Response()
        cookies._set(ours, settings, name, value, 600, shared=shared)
        theirs = Response()
        theirs.set_cookie(
            name,
            value,
            max_age=600,
            path="/",
            httponly=True,
            samesite="lax",
            secure=settings.cookie_secure,
            domain=(settings.sessions.cookie_domain or None) if shared else None,
        )
        assert ours.raw_headers == theirs.raw_headers


@pytest.mark.parametrize("env", [{}, {"PUBLIC_URL": "https://localhost:8443"}])
def test_cleared_flow_cookie_is_the_one_starlette_writes(
    make_settings: SettingsFactory, env: dict[str, str]
) -> None:
    settings = make_settings(**env)
    ours = Response()
    cookies.clear_flow_cookie(ours, settings)
    theirs = Response()
    theirs.delete_cookie(
        settings.flow_cookie, path="/", secure=settings.cookie_secure, httponly=True, samesite="lax"
    )
    # The expiry is the current time in both; compare around it.
    mine, starlettes = ours.raw_headers[-1][1].decode(), theirs.raw_headers[-1][1].decode()
    strip = re.compile(r"expires=[^;]+")
    assert strip.sub("expires=X", mine) == strip.sub("expires=X", starlettes)
    assert re.search(r"expires=\w{3}, \d{2} \w{3} \d{4} \d{2}:\d{2}:\d{2} GMT;", mine)
