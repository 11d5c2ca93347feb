"""The databases of the scale run: SQLite files and a throwaway PostgreSQL 15 cluster, the
backlog written straight into their tables after migration, and a look at what is left of it.

The same seeding statements serve both: rows numbered by the database itself (a recursive CTE
in SQLite, generate_series in PostgreSQL), one INSERT … SELECT per table, so seeding millions
of rows is seconds, not a million round trips.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from collections.abc import Iterator
from typing import Any

from service import db

FLOW_RETENTION = 86400
OLD = 2 * FLOW_RETENTION
_NUMBERS = {
    "sqlite": "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < :n) ",
    "postgresql": "WITH n(i) AS (SELECT generate_series(1, CAST(:n AS INTEGER))) ",
}
_SESSION_COLUMNS = (
    "INSERT INTO sessions (id, user_id, refresh_hash, created_at, last_used_at,"
    " idle_expires_at, expires_at, ip, user_agent, auth_time)"
)


def dialect_of(url: str) -> str:
    """ "sqlite" or "postgresql"."""
    return "sqlite" if url.startswith("sqlite") else "postgresql"


def seed_statements(
    dialect: str, *, users: int, dead: int, flows: int, now: int
) -> list[tuple[str, dict[str, Any]]]:
    """`users` users each with a live session, `dead` sessions that ended long ago, and
    `flows` old flows with their mail-log rows (ids as the bench makes them, not hex)."""
    n = _NUMBERS[dialect]
    old = now - OLD
    return [
        (
            n + "INSERT INTO users (id, email, email_key, created_at)"
            " SELECT 'u' || i, 'u' || i || '@scale.example.com',"
            " 'u' || i || '@scale.example.com', :now FROM n",
            {"n": users, "now": now},
        ),
        (
            n + _SESSION_COLUMNS + " SELECT 'l' || i, 'u' || i, 'lr' || i, :now, :now, :idle,"
            " :ends, '192.0.2.1', 'ua', :now FROM n",
            {"n": users, "now": now, "idle": now + 7 * 86400, "ends": now + 30 * 86400},
        ),
        (
            n + _SESSION_COLUMNS + " SELECT 'd' || i, 'u' || (1 + i % :users), 'dr' || i,"
            " :old, :old, :old, :old, '192.0.2.1', 'ua', :old FROM n",
            {"n": dead, "users": max(1, users), "old": old},
        ),
        (
            n + "INSERT INTO login_flows (id, email, email_key, code_hash, link_hash, next_url,"
            " created_at, expires_at, mail_status, mail_at, ip, user_agent)"
            " SELECT 'o' || i, 'o@scale.example.com', 'o@scale.example.com', 'h', 'h', '/',"
            " :old, :old, 'sent', :old, '192.0.2.1', 'ua' FROM n",
            {"n": flows, "old": old},
        ),
        (
            n + "INSERT INTO mail_log (flow_id, email_key, created_at)"
            " SELECT 'o' || i, 'o@scale.example.com', :old FROM n",
            {"n": flows, "old": old},
        ),
    ]


def _seed_use_case(statements: list[tuple[str, dict[str, Any]]]) -> db.UseCase[None]:
    for sql, params in statements:
        yield db.Q(sql, params)
    # The planner's statistics, as autovacuum would gather them on a database that grew slowly.
    yield db.Q("ANALYZE")


def seed(url: str, *, users: int, dead: int, flows: int) -> float:
    """Write the backlog straight into the (migrated) tables; the seconds it took."""
    began = time.monotonic()
    statements = seed_statements(
        dialect_of(url), users=users, dead=dead, flows=flows, now=int(time.time())
    )
    if dialect_of(url) == "sqlite":
        # Its own connection without fsyncs: the file is the bench's, made in one go.
        with contextlib.closing(sqlite3.connect(url.partition(":///")[2])) as conn:
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = OFF")
            with conn:
                for sql, params in statements:
                    conn.execute(sql, params)
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    else:
        asyncio.run(_run(url, _seed_use_case(statements)))
    return time.monotonic() - began


async def _run(url: str, use_case: db.UseCase[Any]) -> Any:
    database = db.open_database(url)
    await database.connect()
    try:
        return await database.run(use_case)
    finally:
        await database.disconnect()


def _left(now: int) -> db.UseCase[int]:
    rows = yield db.Q(
        "SELECT (SELECT COUNT(*) FROM login_flows WHERE created_at < :cut)"
        " + (SELECT COUNT(*) FROM sessions WHERE expires_at < :now) AS n",
        {"cut": now - FLOW_RETENTION, "now": now},
    )
    return int(rows[0]["n"])


def backlog_left(url: str) -> int:
    """Old flows and dead sessions still there (a read-only look)."""
    now = int(time.time())
    if dialect_of(url) == "sqlite":
        path = url.partition(":///")[2]
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as conn:
            cut = now - FLOW_RETENTION
            flows = conn.execute("SELECT COUNT(*) FROM login_flows WHERE created_at < ?", (cut,))
            dead = conn.execute("SELECT COUNT(*) FROM sessions WHERE expires_at < ?", (now,))
            return int(flows.fetchone()[0]) + int(dead.fetchone()[0])
    left: int = asyncio.run(_run(url, _left(now)))
    return left


@contextlib.contextmanager
def postgres_cluster() -> Iterator[Any]:
    """A PostgreSQL 15 cluster of the tests' kind (tests/support/postgres.py: initdb in a
    temporary directory, the `postgres` user, trust on 127.0.0.1), with more shared buffers
    than the tests give it: the big database is gigabytes at full scale."""
    from tests.support.postgres import PostgresCluster

    cluster = PostgresCluster()
    try:
        cluster.start()
        cluster._run_checked(cluster._psql("postgres", "ALTER SYSTEM SET shared_buffers = '256MB'"))
        cluster.stop()
        cluster.start()
        yield cluster
    finally:
        cluster.close()
