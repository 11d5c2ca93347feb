"""The PostgreSQL backend: the CLI's migrate and purge, and an outage (503 while it lasts, recovery
without a restart)."""

from __future__ import annotations

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
