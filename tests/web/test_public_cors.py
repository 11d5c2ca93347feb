"""`Access-Control-Allow-Origin: *` on the public /.well-known/* documents and nowhere else."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.support.server import Latch, running_latch

OTHER = "https://app.example.com"
ALLOWED = "https://spa.example.com"
WELL_KNOWN = ["/.well-known/jwks.json", "/.well-known/latch-configuration"]
ELSEWHERE = ["/api/session", "/auth/check", "/healthz", "/openapi.json", "/login", "/refresh"]


@pytest.fixture(scope="module")
def latch(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Latch]:
    # ALLOWED_ORIGINS set: the credentialed CORS of the API must not leak onto the public
    # documents, nor the wildcard onto the API.
    data = tmp_path_factory.mktemp("cors") / "data"
    with running_latch(data, ALLOWED_ORIGINS=ALLOWED) as server:
        yield server


@pytest.mark.parametrize("origin", [OTHER, ALLOWED])
@pytest.mark.parametrize("path", WELL_KNOWN)
def test_well_known_documents_are_readable_from_any_origin_without_credentials(
    latch: Latch, path: str, origin: str
) -> None:
    answer = httpx.get(latch.url + path, headers={"Origin": origin})
    assert answer.status_code == 200
    assert answer.headers["access-control-allow-origin"] == "*"
    assert "access-control-allow-credentials" not in answer.headers


@pytest.mark.parametrize("path", WELL_KNOWN)
def test_well_known_preflight_allows_any_origin_to_get(latch: Latch, path: str) -> None:
    answer = httpx.options(
        latch.url + path,
        headers={
            "Origin": OTHER,
            "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "x-requested-with",
        },
    )
    assert answer.status_code == 204
    assert answer.headers["access-control-allow-origin"] == "*"
    assert "GET" in answer.headers["access-control-allow-methods"]
    assert answer.headers["access-control-allow-headers"] == "*"
    assert "access-control-allow-credentials" not in answer.headers


@pytest.mark.parametrize("origin", [OTHER, ALLOWED])
@pytest.mark.parametrize("path", ELSEWHERE)
def test_nothing_else_carries_the_wildcard(latch: Latch, path: str, origin: str) -> None:
    answer = httpx.get(latch.url + path, headers={"Origin": origin})
    assert answer.headers.get("access-control-allow-origin") in (None, ALLOWED)
    if origin == OTHER:
        assert "access-control-allow-origin" not in answer.headers


def test_api_preflight_from_a_stranger_is_not_allowed(latch: Latch) -> None:
    answer = httpx.options(
        latch.url + "/api/start",
        headers={"Origin": OTHER, "Access-Control-Request-Method": "POST"},
    )
    assert answer.headers.get("access-control-allow-origin") != "*"
    assert answer.headers.get("access-control-allow-origin") != OTHER


def test_well_known_is_not_a_prefix_match(latch: Latch) -> None:
    answer = httpx.get(latch.url + "/.well-knownx/jwks.json", headers={"Origin": OTHER})
    assert "access-control-allow-origin" not in answer.headers
