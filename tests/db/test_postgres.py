"""The PostgreSQL backend: the CLI's migrate and purge, and an outage (503 while it lasts, recovery
without a restart)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from service import db
from tests.conftest import (
    ROOT,
    TEST_ENV,
    ClientFactory,
    RecordingTransport,
    sign_in,
)
from tests.support.db import run_on
from tests.support.postgres import PostgresCluster


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


def _slow() -> db.UseCase[db.Rows]:
    yield db.Q("SELECT pg_sleep(0.05) AS slept")
    rows = yield db.Q("SELECT 1 AS one")
    return rows


@pytest.mark.postgres
def test_callers_cancelled_mid_transaction_leave_no_connection_checked_out(
    pg_cluster: PostgresCluster,
) -> None:
    # A task cancelled inside a transaction (a mail sender stopped at shutdown, a request
    # task cancelled) used to leave its pooled connection checked out, and disconnect() then
    # waited forever. Callers are cancelled here at every point of a transaction's life
    # (acquire, BEGIN, a statement, COMMIT); the transactions now end on their own and only
    # the callers see CancelledError.
    url = pg_cluster.create_database()

    async def scenario() -> None:
        database = db.open_database(url)
        await database.connect()
        for delay in range(40):
            callers = [asyncio.create_task(database.run(_slow())) for _ in range(5)]
            await asyncio.sleep(delay * 0.002)
            for caller in callers:
                caller.cancel()
            outcomes = await asyncio.gather(*callers, return_exceptions=True)
            assert all(
                isinstance(o, asyncio.CancelledError) or o == [{"one": 1}] for o in outcomes
            ), outcomes
        # The bound only turns the old hang into a failure; it measures nothing.
        await asyncio.wait_for(database.disconnect(), 30)

    asyncio.run(scenario())


def test_named_parameters_become_positional_once_each_in_order_of_first_use() -> None:
    sql, names = db.positional(
        "UPDATE t SET a = :now, b = :now WHERE id = :id AND c > :now_plus AND d = 'x:y'"
    )
    assert sql == "UPDATE t SET a = $1, b = $1 WHERE id = $2 AND c > $3 AND d = 'x:y'"
    assert names == ("now", "id", "now_plus")
