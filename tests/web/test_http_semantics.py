"""RFC 9110's headers on every refusal: `Allow` on each 405, `WWW-Authenticate` on each 401.

The routes and the documented operations are enumerated rather than listed, so a route added
later is covered without anyone remembering to.
"""

from __future__ import annotations

import re
from typing import Any

from starlette.routing import Mount, Route
from starlette.testclient import TestClient

from service.errors import CHALLENGE
from tests.conftest import RecordingTransport, sign_in

# Every method a client may send that some route does not take (HEAD comes with GET).
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE")
EMAIL = "semantics@example.com"


def _concrete(path: str) -> str:
    # A 128-bit hex id fits every path parameter (passkey ids are matched by that shape).
    return re.sub(r"\{[^}]+\}", "0" * 32, path)


def _allowed(response: Any) -> set[str]:
    return {m.strip() for m in response.headers["allow"].split(",")}


def test_every_405_lists_the_methods_of_its_route_in_allow(client: TestClient) -> None:
    # A path may be served by several routes (GET /login and POST /login): its methods are theirs.
    by_path: dict[str, set[str]] = {}
    for route in client.app.routes:  # type: ignore[attr-defined]
        if isinstance(route, Route) and route.methods is not None:
            by_path.setdefault(route.path, set()).update(route.methods)
    checked = 0
    for path, methods in by_path.items():
        for method in METHODS:
            if method in methods:
                continue
            if method == "OPTIONS" and path.startswith("/.well-known/"):
                continue  # public documents answer CORS preflights: tests/web/test_public_cors.py
            response = client.request(method, _concrete(path))
            assert response.status_code == 405, (method, path, response.status_code)
            assert _allowed(response) == methods, (method, path)
            checked += 1
    assert checked > 50


def test_static_files_405_names_get_and_head(client: TestClient) -> None:
    mounts = [r for r in client.app.routes if isinstance(r, Mount) and r.path == "/static"]  # type: ignore[attr-defined]
    assert mounts, "the static mount moved"
    response = client.post("/static/app.js")
    assert response.status_code == 405
    assert _allowed(response) == {"GET", "HEAD"}


def _operations_with_401(spec: dict[str, Any]) -> list[tuple[str, str]]:
    return [
        (method.upper(), _concrete(path))
        for path, item in spec["paths"].items()
        for method, op in item.items()
        if "401" in op["responses"]
    ]


def test_every_documented_401_carries_the_bearer_challenge(client: TestClient) -> None:
    operations = _operations_with_401(client.get("/openapi.json").json())
    assert len(operations) >= 6
    for method, path in operations:
        response = client.request(method, path)
        assert response.status_code == 401, (method, path, response.text)
        assert response.headers["www-authenticate"] == CHALLENGE, (method, path)


def test_a_refused_bearer_token_is_named_invalid_token(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    bearer = {
        (method.upper(), _concrete(path))
        for path, item in spec["paths"].items()
        for method, op in item.items()
        if {"bearerToken": []} in op.get("security", [])
    }
    assert ("GET", "/auth/check") in bearer and ("POST", "/api/logout") in bearer
    for method, path in sorted(bearer):
        response = client.request(method, path, headers={"Authorization": "Bearer not.a.jwt"})
        assert response.status_code == 401, (method, path)
        assert response.headers["www-authenticate"] == f'{CHALLENGE}, error="invalid_token"'


def test_auth_check_head_401_carries_the_challenge(client: TestClient) -> None:
    # HEAD is served wherever GET is (Starlette adds it); its 401 needs the challenge as well.
    response = client.head("/auth/check")
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == CHALLENGE


def test_refresh_and_logout_take_a_request_without_a_body(
    client: TestClient, transport: RecordingTransport
) -> None:
    # What generated clients send when the document declares no (or an optional) body.
    assert client.post("/api/refresh").status_code == 401  # no refresh cookie, but not a 415
    sign_in(client, transport, EMAIL)
    refreshed = client.post("/api/refresh")
    assert refreshed.status_code == 200, refreshed.text
    assert client.post("/api/logout").status_code == 204
    assert client.get("/api/session").status_code == 401


def test_a_body_still_needs_the_json_media_type(client: TestClient) -> None:
    # Only a request with no body at all may leave out Content-Type: a cross-site form always
    # sends one, so forms stay refused however empty.
    for path in ("/api/refresh", "/api/logout"):
        for ctype, body in (
            ("text/plain", b"{}"),
            ("application/x-www-form-urlencoded", b"all=true"),
            ("application/x-www-form-urlencoded", b""),
            (None, b"{}"),
        ):
            headers = {"content-type": ctype} if ctype else {}
            response = client.post(path, content=body, headers=headers)
            assert response.status_code == 415, (path, ctype, body)
