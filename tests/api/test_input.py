"""Bad input gets a clear 4xx in the JSON error format, never a 500, and stores nothing."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from starlette.testclient import TestClient

from tests.conftest import RecordingTransport

HOSTILE_ADDRESSES = [
    "a@x.com,b@y.com",
    "a@x.com\r\nBcc: victim@example.com",
    "a@x.com\nBcc: victim@example.com",
    '"a@evil.com"@victim.com',
    "a\uff20evil.com",  # fullwidth @
    "a\uff20evil.com@victim.com",
    "a" * 300 + "@example.com",
    "a@" + "b" * 250 + ".com",
    "user@[127.0.0.1]",
    "user@localhost",
    "Alice <alice@example.com>",
    "alice@example.com; bob@example.com",
    "",
    "   ",
    "no-at-sign.example.com",
    "ünicode@example.com",
]


@pytest.mark.parametrize("address", HOSTILE_ADDRESSES)
def test_hostile_address_is_refused_with_400(
    client: TestClient, transport: RecordingTransport, address: str
) -> None:
    response = client.post("/api/start", json={"email": address})
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid_request" and error["message"]
    assert address.strip() == "" or address not in error["message"]
    assert transport.messages == []


def test_idn_domain_is_accepted_and_encoded(client: TestClient) -> None:
    response = client.post("/api/start", json={"email": "user@bücher.example"})
    assert response.status_code == 202


@pytest.mark.parametrize(
    ("body", "ctype", "status", "code"),
    [
        (b'{"email": "a@example.com"}', "text/plain", 415, "unsupported_media_type"),
        (
            b"email=a@example.com",
            "application/x-www-form-urlencoded",
            415,
            "unsupported_media_type",
        ),
        (b"{not json", "application/json", 400, "invalid_request"),
        (b"[1, 2]", "application/json", 400, "invalid_request"),
        (b'"a@example.com"', "application/json", 400, "invalid_request"),
        (b"{}", "application/json", 400, "invalid_request"),
        (b'{"email": 42}', "application/json", 400, "invalid_request"),
        (b'{"email": ["a@example.com"]}', "application/json", 400, "invalid_request"),
        (b'{"email": null}', "application/json", 400, "invalid_request"),
        (b"\xff\xfe", "application/json", 400, "invalid_request"),
    ],
)
def test_malformed_start_body_gets_json_4xx(
    client: TestClient, body: bytes, ctype: str, status: int, code: str
) -> None:
    response = client.post("/api/start", content=body, headers={"content-type": ctype})
    assert response.status_code == status
    assert response.json()["error"]["code"] == code


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"code": 123456},
        {"code": "12345"},
        {"code": "abcdef"},
        {"code": "1234567"},
        {"code": "123456", "flow_id": 5},
        {"code": "123456", "flow_id": "nope"},
    ],
)
def test_malformed_verify_body_gets_json_4xx(client: TestClient, body: dict[str, object]) -> None:
    response = client.post("/api/verify", json=body)
    assert 400 <= response.status_code < 500
    assert response.json()["error"]["code"] in ("invalid_request", "not_found")


def test_malformed_link_tokens_read_as_invalid(client: TestClient) -> None:
    for token in ["", "x", "a.b.c", "W10.abc.def", "%00" * 10, "é" * 50]:
        response = client.post("/api/link", json={"token": token})
        assert response.status_code == 400
        assert response.json()["error"]["code"] in ("invalid_link", "invalid_request")


def test_oversized_body_is_refused_with_413(client: TestClient) -> None:
    body = b'{"email": "' + b"a" * 20000 + b'@example.com"}'
    response = client.post("/api/start", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "too_large"


def test_chunked_oversized_body_is_refused_with_413(client: TestClient) -> None:
    def chunks() -> Iterator[bytes]:
        for _ in range(40):
            yield b"x" * 1024

    response = client.post(
        "/api/start", content=chunks(), headers={"content-type": "application/json"}
    )
    assert response.status_code == 413


def test_unknown_route_and_wrong_method_are_json_4xx(client: TestClient) -> None:
    assert client.get("/api/nope").json()["error"]["code"] == "not_found"
    response = client.get("/api/start")
    assert response.status_code == 405
    assert response.json()["error"]["code"] == "method_not_allowed"


def test_foreign_origin_is_refused_on_the_json_api(
    client: TestClient, transport: RecordingTransport
) -> None:
    response = client.post(
        "/api/start", json={"email": "a@example.com"}, headers={"Origin": "https://evil.example"}
    )
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "forbidden_origin"
    assert transport.messages == []
