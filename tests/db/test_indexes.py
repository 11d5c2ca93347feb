"""Every query of start, verify and /auth/check finds its rows through an index.

With 1,000,000 flows (and as many mail records) and 100,000 users with a session each, the
exact statements the real use cases issue are explained just before they run: `EXPLAIN QUERY
PLAN` on SQLite, `EXPLAIN` on PostgreSQL after `ANALYZE`. No plan may scan a whole table (or a
whole index); each lookup must be a search on a key, which keeps every request O(log n).
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from service import crypto, db, store
from service.db import Q, UseCase
from service.settings import LimitSettings

T = TypeVar("T")

FLOWS = 1_000_000
USERS = 100_000
TABLES = ("login_flows", "mail_log", "users", "sessions", "address_failures")
LIMITS = LimitSettings(
    code_attempts=5,
    address_failures=100,
    address_lock=86400,
    mail_interval=30,
    mail_per_window=5,
    mail_window=900,
    mail_per_day=20,
    mail_global=600,
    starts_per_ip=30,
    ip_window=900,
)


@dataclass(frozen=True)
class Plan:
    """One statement and the lines of its query plan."""

    sql: str
    lines: tuple[str, ...]


def _series(dialect: str, n: int) -> tuple[str, str]:
    """(WITH clause, FROM clause) yielding i = 1..n in SQL, not in Python."""
    if dialect == "postgresql":
        return "", f"generate_series(1, {n}) AS g(i)"
    return f"WITH RECURSIVE g(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM g WHERE i < {n}) ", "g"


def _index_definitions(dialect: str) -> UseCase[list[tuple[str, str]]]:
    """(name, CREATE INDEX statement) of every index the migrations made on the big tables."""
    if dialect == "postgresql":
        rows = yield Q(
            "SELECT indexname AS name, indexdef AS sql FROM pg_indexes"
            " WHERE tablename IN ('login_flows', 'mail_log') AND indexdef NOT LIKE '%UNIQUE%'"
        )
    else:
        rows = yield Q(
            "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL"
            " AND tbl_name IN ('login_flows', 'mail_log')"
        )
    return [(row["name"], row["sql"]) for row in rows]


def populate(dialect: str, now: int) -> UseCase[int]:
    """A million old flows and mail records over 100,000 addresses and 62,500 IPs.

    The indexes of the two big tables are dropped during the load and made again from their
    own definitions, read back from the catalogue: building an index once is far faster than
    a million inserts into it, and the schema under test is exactly what the migrations made.
    """
    indexes = yield from _index_definitions(dialect)
    for name, _ in indexes:
        yield Q(f"DROP INDEX {name}")
    users_with, users_from = _series(dialect, USERS)
    flows_with, flows_from = _series(dialect, FLOWS)
    # Ids are offset to equal lengths, so that they come in key order (appends to the primary
    # key's B-tree instead of a million random inserts).
    address = f"'user' || (i % {USERS}) || '@example.com'"
    # Spread over the last two days (the newest 31 s old, past the mail interval), so that
    # every limit window holds a realistic share.
    created = f"{now} - 31 - (i % 172800)"
    yield Q(
        "INSERT INTO users (id, email, email_key, created_at, last_login_at)"
        f" {users_with}SELECT 'u' || (i + {USERS}), 'user' || i || '@example.com',"
        f" 'user' || i || '@example.com', {now} - i, {now} FROM {users_from}"
    )
    yield Q(
        "INSERT INTO sessions (id, user_id, refresh_hash, prev_refresh_hash, rotated_at,"
        " created_at, last_used_at, idle_expires_at, expires_at, revoked_at, ip, user_agent)"
        f" {users_with}SELECT 's' || (i + {USERS}), 'u' || (i + {USERS}), 'r' || i, NULL, NULL,"
        f" {now}, {now}, {now} + 604800, {now} + 2592000, NULL, '10.0.0.1', 'bench'"
        f" FROM {users_from}"
    )
    yield Q(
        "INSERT INTO login_flows (id, email, email_key, code_hash, link_hash, next_url,"
        " created_at, expires_at, attempts, consumed_at, outcome, mail_seq, mail_status,"
        " mail_error, mail_at, ip, user_agent)"
        f" {flows_with}SELECT 'f' || (i + {FLOWS}), {address}, {address}, 'c' || i, 'l' || i, '/',"
        f" {created}, {created} + 600, 1, {created} + 60, 'signed_in', 1, 'sent', NULL,"
        f" {created}, '10.' || (i % 250) || '.' || ((i / 250) % 250) || '.1', 'bench'"
        f" FROM {flows_from}"
    )
    yield Q(
        "INSERT INTO mail_log (flow_id, email_key, created_at)"
        " SELECT id, email_key, created_at FROM login_flows"
    )
    yield Q(
        "INSERT INTO address_failures (email_key, failures, locked_until, updated_at)"
        f" SELECT email_key, 3, 0, {now} FROM users WHERE created_at > {now} - 5000"
    )
    for _, sql in indexes:
        yield Q(sql)
    yield Q("ANALYZE")
    return len(indexes)


def explained(use_case: UseCase[T], prefix: str, plans: list[Plan]) -> UseCase[T]:
    """The same use case, each statement explained (in the same transaction) before it runs."""
    try:
        step = next(use_case)
        while True:
            if isinstance(step, Q):
                rows = yield Q(prefix + step.sql, step.params)
                lines = tuple(
                    str(next(iter(r.values())) if "detail" not in r else r["detail"]) for r in rows
                )
                plans.append(Plan(step.sql, lines))
            step = use_case.send((yield step))
    except StopIteration as stop:
        return stop.value  # type: ignore[no-any-return]


def full_scans(plan: Plan) -> list[str]:
    """The plan lines that read a whole table or a whole index."""
    bad = []
    for i, line in enumerate(plan.lines):
        # SQLite: "SCAN t" or "SCAN t USING [COVERING] INDEX x" both visit every row.
        if re.match(rf"\s*SCAN ({'|'.join(TABLES)})\b", line):
            bad.append(line)
        # PostgreSQL: a sequential scan, or an index scan with no condition on the index.
        if re.search(rf"Seq Scan on ({'|'.join(TABLES)})\b", line):
            bad.append(line)
        if re.search(r"Index (Only )?Scan", line) and not any(
            "Index Cond" in later for later in plan.lines[i + 1 : i + 3]
        ):
            bad.append(line)
    return bad


def _on(url: str, work: Callable[[db.Database], Awaitable[T]]) -> T:
    async def main() -> T:
        database = db.open_database(url)
        await database.connect()
        try:
            return await work(database)
        finally:
            await database.disconnect()

    return asyncio.run(main())


def _request_plans(database: db.Database, now: int) -> Awaitable[dict[str, list[Plan]]]:
    prefix = "EXPLAIN " if database.dialect == "postgresql" else "EXPLAIN QUERY PLAN "

    def session(i: int) -> store.NewSession:
        return store.NewSession(
            id=f"new-s{i}",
            refresh_hash=f"new-r{i}",
            idle_expires_at=now + 600,
            expires_at=now + 900,
            ip="10.9.9.9",
            user_agent="t",
            new_user_id=f"new-u{i}",
        )

    async def work() -> dict[str, list[Plan]]:
        plans: dict[str, list[Plan]] = {"start": [], "verify": [], "wrong": [], "check": []}
        code_hash = crypto.new_id()
        # user7 already has ten flows, a user, a session and address failures.
        flow = store.NewFlow(
            id="new-flow",
            email="user7@example.com",
            email_key="user7@example.com",
            code_hash=code_hash,
            link_hash="x",
            next_url="/",
            expires_at=now + 600,
            ip="10.7.0.1",
            user_agent="t",
        )
        opened = await database.run(
            explained(store.open_flow(flow, LIMITS, now), prefix, plans["start"])
        )
        assert opened.state == "ok"
        wrong = await database.run(
            explained(
                store.verify_code(
                    "new-flow",
                    "nope",
                    session=session(1),
                    limits=LIMITS,
                    allow_signup=True,
                    now=now,
                ),
                prefix,
                plans["wrong"],
            )
        )
        assert wrong.state == "wrong"
        right = await database.run(
            explained(
                store.verify_code(
                    "new-flow",
                    code_hash,
                    session=session(2),
                    limits=LIMITS,
                    allow_signup=True,
                    now=now,
                ),
                prefix,
                plans["verify"],
            )
        )
        assert right.state == "ok" and right.sign_in is not None
        valid = await database.run(
            explained(store.session_owner(f"s{USERS + 4242}", now), prefix, plans["check"]),
            write=False,
        )
        assert valid
        return plans

    return work()


def test_start_verify_and_auth_check_use_indexes_at_a_million_flows(database_url: str) -> None:
    now = int(time.time())

    async def work(database: db.Database) -> tuple[dict[str, list[Plan]], Plan]:
        await database.run(db.migrate(now))
        await database.run(populate(database.dialect, now))
        plans = await _request_plans(database, now)
        # The check must be able to fail: a lookup on an unindexed column is a full scan.
        control: list[Plan] = []
        await database.run(explained(_by_user_agent(), _prefix(database), control), write=False)
        return plans, control[0]

    plans, control = _on(database_url, work)
    assert full_scans(control), control
    counts = {name: len(found) for name, found in plans.items()}
    assert counts["start"] >= 3 and counts["verify"] >= 6 and counts["check"] == 1, counts
    scans = {
        plan.sql: full_scans(plan) for found in plans.values() for plan in found if full_scans(plan)
    }
    assert scans == {}


def _prefix(database: db.Database) -> str:
    return "EXPLAIN " if database.dialect == "postgresql" else "EXPLAIN QUERY PLAN "


def _by_user_agent() -> UseCase[Any]:
    rows = yield Q("SELECT id FROM login_flows WHERE user_agent = :ua", {"ua": "nobody"})
    return rows
