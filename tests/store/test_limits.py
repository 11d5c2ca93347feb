"""Abuse limits on both backends: counted in the database, so a fresh app (or another instance)
sees them."""

from __future__ import annotations

from tests.conftest import (
    ClientFactory,
    FakeClock,
    start,
)


def test_mail_limits_are_counted_in_the_database(
    database_url: str, make_client: ClientFactory, clock: FakeClock
) -> None:
    limited = {"database_url": database_url, "LIMIT_MAIL_INTERVAL": "30"}
    with make_client(**limited) as first:
        start(first, "carol@example.com")
    # A fresh app (nothing in memory) on the same database still sees the first mail.
    with make_client(**limited) as second:
        refused = second.post("/api/start", json={"email": "carol@example.com"})
        other = second.post("/api/start", json={"email": "dave@example.com"})
        clock.advance(31)
        later = second.post("/api/start", json={"email": "carol@example.com"})
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "rate_limited"
    assert 1 <= int(refused.headers["Retry-After"]) <= 30
    assert other.status_code == 202
    assert later.status_code == 202


def test_starts_per_ip_are_counted_in_the_database(
    database_url: str, make_client: ClientFactory
) -> None:
    limited = {"database_url": database_url, "LIMIT_STARTS_PER_IP": "2"}
    with make_client(**limited) as first:
        start(first, "e1@example.com")
        start(first, "e2@example.com")
    with make_client(**limited) as second:
        refused = second.post("/api/start", json={"email": "e3@example.com"})
    assert refused.status_code == 429
    assert int(refused.headers["Retry-After"]) >= 1
