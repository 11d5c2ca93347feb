"""The core behaviours on both backends (SQLite file and PostgreSQL), the CLI's migrate and
purge on PostgreSQL, and a PostgreSQL outage: 503 while it lasts, recovery without a restart."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from typing import Any, TypeVar

import pytest
from starlette.testclient import TestClient

from service import db, store
from service.app import FLOW_RETENTION, create_app
from service.settings import Settings
from tests.conftest import (
    BASE_URL,
    ROOT,
    TEST_ENV,
    ClientFactory,
    FakeClock,
    RecordingTransport,
    mail_code,
    mail_token,
    sign_in,
    start,
)
from tests.support.postgres import PostgresCluster

T = TypeVar("T")


def run_on(url: str, use_case: db.UseCase[T]) -> T:
    """Run one store use case on a database through its own connection (as another process)."""

    async def main() -> T:
        database = db.open_database(url)
        await database.connect()
        try:
            return await database.run(use_case)
        finally:
            await database.disconnect()

    return asyncio.run(main())


def wrong(code: str) -> str:
    """A 6-digit code that is not `code`."""
    return f"{(int(code) + 1) % 1_000_000:06d}"


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


def test_resend_link_refresh_and_session_management_work(
    database_url: str, make_client: ClientFactory, transport: RecordingTransport
) -> None:
    # The remaining use cases (resend, link, rotate_refresh, list/revoke sessions, logout all)
    # each issue statements the code sign-in does not.
    with make_client(database_url=database_url) as client:
        first = sign_in(client, transport, "lin@example.com")
        flow = start(client, "lin@example.com")
        resent = client.post("/api/resend", json={"flow_id": flow["flow_id"]})
        token = mail_token(transport.wait_for("lin@example.com", index=2))
        linked = client.post("/api/link", json={"token": token})
        refreshed = client.post("/api/refresh", json={})
        listed = client.get("/api/sessions")
        revoked = client.delete(f"/api/sessions/{first['session']['id']}")
        ended = client.post("/api/logout", json={"all": True})
        after = client.get("/api/session")
    assert resent.status_code == 202, resent.text
    assert linked.status_code == 200, linked.text
    assert refreshed.status_code == 200, refreshed.text
    assert listed.status_code == 200 and len(listed.json()["sessions"]) == 2, listed.text
    assert revoked.status_code in (200, 204), revoked.text
    assert ended.status_code == 204
    assert after.status_code == 401


def test_wrong_codes_are_counted_and_the_sixth_try_is_refused(
    database_url: str, make_client: ClientFactory, transport: RecordingTransport
) -> None:
    with make_client(database_url=database_url) as client:
        flow = start(client, "bob@example.com")
        code = mail_code(transport.wait_for("bob@example.com"))
        tries = []
        for _ in range(5):
            response = client.post(
                "/api/verify", json={"flow_id": flow["flow_id"], "code": wrong(code)}
            )
            assert response.status_code == 400, response.text
            tries.append(response.json()["error"]["tries_left"])
        sixth = client.post("/api/verify", json={"flow_id": flow["flow_id"], "code": code})
    assert tries == [4, 3, 2, 1, 0]
    assert sixth.status_code == 410
    assert sixth.json()["error"]["code"] == "flow_dead"
    row = run_on(database_url, store.get_flow(flow["flow_id"]))
    assert row is not None and row["attempts"] == 5 and row["outcome"] == "too_many_attempts"


def test_twenty_concurrent_verifications_of_one_code_give_one_success(
    database_url: str,
    make_settings: Callable[..., Settings],
    clock: FakeClock,
    transport: RecordingTransport,
) -> None:
    settings = make_settings(DATABASE_URL=database_url)
    # Four app instances, each with its own event loop thread and its own connection (SQLite)
    # or pool (PostgreSQL): the verifications really overlap in the database.
    with ExitStack() as stack:
        clients = [
            stack.enter_context(
                TestClient(
                    create_app(settings, mail_transport=transport, clock=clock), base_url=BASE_URL
                )
            )
            for _ in range(4)
        ]
        flow = start(clients[0], "race@example.com")
        code = mail_code(transport.wait_for("race@example.com"))
        barrier = threading.Barrier(20)
        statuses: list[int] = []

        def verify(i: int) -> None:
            barrier.wait()
            response = clients[i % 4].post(
                "/api/verify", json={"flow_id": flow["flow_id"], "code": code}
            )
            statuses.append(response.status_code)

        threads = [threading.Thread(target=verify, args=(i,)) for i in range(20)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
    assert Counter(statuses) == Counter({200: 1, 409: 19})
    row = run_on(database_url, store.get_flow(flow["flow_id"]))
    assert row is not None and row["outcome"] == "signed_in"


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


def test_logout_is_honoured_by_auth_check_on_every_instance(
    database_url: str,
    make_settings: Callable[..., Settings],
    clock: FakeClock,
    transport: RecordingTransport,
) -> None:
    settings = make_settings(DATABASE_URL=database_url)
    with ExitStack() as stack:
        a, b = (
            stack.enter_context(
                TestClient(
                    create_app(settings, mail_transport=transport, clock=clock), base_url=BASE_URL
                )
            )
            for _ in range(2)
        )
        sign_in(a, transport, "erin@example.com")
        bearer = {"Authorization": "Bearer " + a.cookies[settings.session_cookie]}
        before = a.get("/auth/check")
        logout = a.post("/api/logout", json={})
        after_a = a.get("/auth/check", headers=bearer)
        after_b = b.get("/auth/check", headers=bearer)
    assert before.status_code == 200
    assert logout.status_code == 204
    assert after_a.status_code == 401
    assert after_b.status_code == 401


def test_purge_deletes_old_flows_and_ended_sessions_only(
    database_url: str,
    make_client: ClientFactory,
    clock: FakeClock,
    transport: RecordingTransport,
) -> None:
    with make_client(database_url=database_url) as client:
        old = sign_in(client, transport, "frank@example.com")
        old_flow = start(client, "frank@example.com")
        clock.advance(FLOW_RETENTION + 60)
        new = sign_in(client, transport, "gina@example.com")
    counts = run_on(database_url, store.purge(int(clock()), FLOW_RETENTION))
    again = run_on(database_url, store.purge(int(clock()), FLOW_RETENTION))
    # Frank's two flows are past retention; his session (7-day idle) is still alive.
    assert counts["flows"] == 2
    assert counts["sessions"] == 0
    assert again == {
        "flows": 0,
        "mail_log": 0,
        "address_failures": 0,
        "sessions": 0,
        "signins": 0,
    }
    assert run_on(database_url, store.get_flow(old_flow["flow_id"])) is None
    now = int(clock())
    assert run_on(database_url, store.session_owner(old["session"]["id"], now))
    assert run_on(database_url, store.session_owner(new["session"]["id"], now))
    later = now + 31 * 86400
    ended = run_on(database_url, store.purge(later, FLOW_RETENTION))
    assert ended["sessions"] == 2


def test_purges_running_at_once_delete_each_row_once(
    database_url: str, make_client: ClientFactory, clock: FakeClock
) -> None:
    with make_client(database_url=database_url) as client:
        for i in range(30):
            start(client, f"p{i}@example.com")
    cut = int(clock()) + FLOW_RETENTION + 60

    async def purge_together() -> list[dict[str, int]]:
        databases = [db.open_database(database_url) for _ in range(4)]
        for d in databases:
            await d.connect()
        try:
            return await asyncio.gather(
                *(d.run(store.purge(cut, FLOW_RETENTION)) for d in databases)
            )
        finally:
            for d in databases:
                await d.disconnect()

    results = asyncio.run(purge_together())
    assert sum(r["flows"] for r in results) == 30
    assert sum(r["mail_log"] for r in results) == 30


def test_background_purge_runs_every_purge_interval(
    database_url: str, make_client: ClientFactory, clock: FakeClock
) -> None:
    with make_client(database_url=database_url, PURGE_INTERVAL="1") as client:
        flow = start(client, "henry@example.com")
        clock.advance(FLOW_RETENTION + 60)
        gone = _wait_until(lambda: run_on(database_url, store.get_flow(flow["flow_id"])) is None)
    assert gone


def _wait_until(condition: Callable[[], bool], timeout: float = 5.0) -> bool:
    """Poll a condition (a background task's effect) for at most `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return condition()


# --- PostgreSQL only --------------------------------------------------------------------------


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "service", *args],
        env={**os.environ, **env},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.postgres
def test_migrate_command_applies_the_schema_once(
    pg_cluster: PostgresCluster, tmp_path: Any
) -> None:
    url = pg_cluster.create_database()
    env = {**TEST_ENV, "DATA_DIR": str(tmp_path / "data"), "DATABASE_URL": url}
    first = _cli(env, "migrate")
    second = _cli(env, "migrate")
    purged = _cli(env, "purge")
    assert first.returncode == 0, first.stderr
    assert second.returncode == 0, second.stderr
    assert purged.returncode == 0, purged.stderr
    rows = run_on(url, _schema_versions())
    assert [r["version"] for r in rows] == [v for v, _, _ in db.MIGRATIONS]


def _schema_versions() -> db.UseCase[db.Rows]:
    rows = yield db.Q("SELECT version FROM schema_version ORDER BY version")
    return rows


@pytest.fixture
def own_cluster() -> Iterator[PostgresCluster]:
    """A cluster of this test's own, which it may stop (the session cluster is shared)."""
    with PostgresCluster() as cluster:
        yield cluster


@pytest.mark.postgres
def test_database_outage_answers_503_and_latch_recovers_without_restart(
    own_cluster: PostgresCluster, make_client: ClientFactory, transport: RecordingTransport
) -> None:
    with make_client(database_url=own_cluster.create_database()) as client:
        sign_in(client, transport, "ivy@example.com")
        assert client.get("/readyz").status_code == 200
        own_cluster.stop()
        ready = client.get("/readyz")
        started = client.post("/api/start", json={"email": "ivy@example.com"})
        verified = client.post("/api/verify", json={"flow_id": "x" * 22, "code": "123456"})
        own_cluster.start()
        ready_again = client.get("/readyz")
        body = sign_in(client, transport, "ivy@example.com")
    assert ready.status_code == 503
    assert ready.json()["checks"]["database"] is False
    for response in (started, verified):
        assert response.status_code == 503, response.text
        assert response.json()["error"]["code"] == "unavailable"
        assert int(response.headers["Retry-After"]) >= 1
    assert ready_again.status_code == 200
    assert body["user"]["email"] == "ivy@example.com"
