"""Users on both backends (SQLite file and PostgreSQL): a sign-in creates the user, the next
sign-in of the address finds it."""

from __future__ import annotations

from tests.conftest import (
    ClientFactory,
    RecordingTransport,
    sign_in,
)


def test_code_sign_in_works_end_to_end(
    database_url: str, make_client: ClientFactory, transport: RecordingTransport
) -> None:
    with make_client(database_url=database_url) as client:
        body = sign_in(client, transport, "ada@example.com")
        check = client.get("/auth/check")
        session = client.get("/api/session")
    assert body["user"]["email"] == "ada@example.com"
    assert check.status_code == 200
    assert check.headers["X-Latch-User"] == body["user"]["id"]
    assert check.headers["X-Latch-Session"] == body["session"]["id"]
    assert session.json()["user"] == body["user"]


def test_second_sign_in_of_an_address_finds_the_same_user(
    database_url: str, make_client: ClientFactory, transport: RecordingTransport
) -> None:
    # The users upsert (ON CONFLICT … DO UPDATE … RETURNING) takes its other branch.
    with make_client(database_url=database_url) as client:
        first = sign_in(client, transport, "grace@example.com")
        second = sign_in(client, transport, "Grace@Example.com")
    assert second["user"]["id"] == first["user"]["id"]
    assert second["session"]["id"] != first["session"]["id"]
