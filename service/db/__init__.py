"""Connections and migrations.

A store use case is a generator that yields statements and receives their rows, then returns
its result. Each backend runs a whole use case as one transaction:

- SQLite (service/db/sqlite.py): one connection on one dedicated thread; a whole use case runs
  there in a single hop, and use cases waiting together share one commit.
- PostgreSQL: `databases` + asyncpg, one pooled connection and transaction per use case, each
  statement awaited in turn; `Lock` becomes a transaction-level advisory lock.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import re
from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, ParamSpec, Protocol, TypeVar

from service.errors import UnavailableError

log = logging.getLogger("latch.db")

T = TypeVar("T")
P = ParamSpec("P")
Row = dict[str, Any]
Rows = list[Row]


@dataclass(frozen=True)
class Q:
    """One SQL statement with `:name` parameters (the same style on both backends)."""

    sql: str
    params: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Lock:
    """Serialise on a key until the transaction ends (PostgreSQL advisory lock).

    On SQLite every write transaction is already serialised by BEGIN IMMEDIATE. The key's
    namespace is the part before ":" (or the whole key for the singletons); see LOCK_ORDER.
    """

    key: str

    @property
    def rank(self) -> int:
        """Its place in LOCK_ORDER (a use case may only take locks of increasing rank)."""
        return LOCK_ORDER.index(self.key.partition(":")[0])


# THE LOCK ORDER. Every use case takes its locks in this order, or two use cases holding one
# lock each and waiting for the other's deadlock (PostgreSQL then aborts one: a 500 before).
#   1. advisory "latch.migrate" / "latch.purge" (alone in their use cases);
#   2. advisory "ip:<client ip>"       - open_flow only, for the starts-per-IP count;
#   3. advisory "address:<email_key>"  - everything that counts or changes an address's flows,
#      failures or user: open, resend, verify by code or link, add_user;
#   4. then rows: the flow being used, the address's other live flows, its address_failures
#      row, its users row, and the new session or pending sign-in (see store/flows.py). The
#      second step (store/signins.py) takes no advisory lock: its pending sign-in row, then
#      the new session.
# The PostgreSQL driver refuses a lock out of this order (a bug, caught by the tests), and at
# most one lock per namespace is taken in a transaction (two address locks could cross).
# Keys are hashed as their full text ("ip:…" and "address:…" cannot collide as text, and the
# text is what instances of older versions hash too, so a rolling upgrade shares the locks).
LOCK_ORDER = ("latch.migrate", "latch.purge", "ip", "address")


def ip_lock(ip: str) -> Lock:
    """The lock on one client IP's start count."""
    return Lock("ip:" + ip)


def address_lock(email_key: str) -> Lock:
    """The lock on one address: its limits, failures, flows and user row."""
    return Lock("address:" + email_key)


Step = Q | Lock
UseCase = Generator[Step, Rows, T]


class Replayable(Generator[Step, Rows, T]):
    """A use case that can be run again from its start, with the same inputs.

    When PostgreSQL aborts a transaction to break a deadlock (or a serialization failure),
    it has rolled back ALL of it: a use case is one transaction and its generator has no
    effect outside the statements it yields (what the caller does with the result happens
    after `run` returns: the mail is queued, the cookies set). So running it again is exactly
    the same request arriving a moment later: safe, and better than a 500 or a 503. What is
    not safe is replaying *part* of a use case, which is why the whole generator is made anew.
    """

    __slots__ = ("_gen", "_make")

    def __init__(self, make: Callable[[], UseCase[T]]) -> None:
        self._make = make
        self._gen = make()

    def again(self) -> Replayable[T]:
        """The same use case, from its start."""
        self._gen.close()
        return Replayable(self._make)

    def send(self, value: Rows) -> Step:
        return self._gen.send(value)

    def throw(self, typ: Any, val: Any = None, tb: TracebackType | None = None, /) -> Step:
        if val is None and tb is None:
            return self._gen.throw(typ)
        return self._gen.throw(typ, val, tb)

    def close(self) -> None:
        self._gen.close()


def replayable(make: Callable[P, UseCase[T]]) -> Callable[P, UseCase[T]]:
    """Mark a write use case as safe to run again after a deadlock (see Replayable)."""

    @functools.wraps(make)
    def use_case(*args: P.args, **kwargs: P.kwargs) -> UseCase[T]:
        return Replayable(functools.partial(make, *args, **kwargs))

    return use_case


class Database(Protocol):
    """What the store needs from a backend."""

    dialect: str

    async def connect(self) -> None: ...
    async def disconnect(self) -> None: ...
    async def run(self, use_case: UseCase[T], *, write: bool = True) -> T: ...


def open_database(url: str) -> Database:
    """The backend for a DATABASE_URL (sqlite:///path or postgresql+asyncpg://…)."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise ValueError("DATABASE_URL must look like sqlite:///path or postgresql://…")
    if scheme in ("sqlite", "sqlite+aiosqlite"):
        from service.db.sqlite import SQLiteDatabase

        return SQLiteDatabase(rest[1:] if rest.startswith("/") else rest)
    if scheme in ("postgresql", "postgresql+asyncpg", "postgres"):
        return PostgresDatabase("postgresql+asyncpg://" + rest)
    raise ValueError(f"unsupported database scheme {scheme!r}")


def drive(use_case: UseCase[T], execute: Any) -> T:
    """Run a use case synchronously, feeding each step's rows back in."""
    try:
        step = next(use_case)
        while True:
            step = use_case.send(execute(step))
    except StopIteration as stop:
        return stop.value  # type: ignore[no-any-return]


def _pg_unavailable(asyncpg: Any) -> tuple[type[BaseException], ...]:
    """asyncpg errors that mean "the database is not there right now" (503, not 500)."""
    exc = asyncpg.exceptions
    return (
        TimeoutError,
        OSError,
        ConnectionError,
        exc.PostgresConnectionError,
        exc.InterfaceError,
        exc.CannotConnectNowError,
        exc.AdminShutdownError,
        exc.CrashShutdownError,
    )


def advisory_key(key: str) -> int:
    """A stable signed 64-bit lock id for a text key (the first 8 bytes of its SHA-256)."""
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big", signed=True)


# How many times a Replayable use case is run in all when PostgreSQL keeps aborting it.
RETRIES = 3


class PostgresDatabase:
    """`databases` + asyncpg; one transaction per use case."""

    dialect = "postgresql"

    def __init__(self, url: str) -> None:
        import databases

        self.url = url
        # timeout: opening a connection to an unreachable server fails (503) within 5 s
        # instead of asyncpg's default 60 s, which would hold every request that long.
        self._db = databases.Database(url, min_size=1, max_size=10, timeout=5)

    async def connect(self) -> None:
        """Open the pool."""
        import asyncpg

        try:
            await self._db.connect()
        except _pg_unavailable(asyncpg) as e:
            raise UnavailableError() from e

    async def disconnect(self) -> None:
        """Close the pool."""
        await self._db.disconnect()

    async def run(self, use_case: UseCase[T], *, write: bool = True) -> T:
        """Run the use case as one transaction, awaiting each statement.

        A deadlock or serialization failure (which the lock order should leave only in rare
        corners, e.g. a purge crossing a "sign out everywhere") runs a Replayable use case
        again, up to RETRIES times; otherwise, or after that, it is a 503 with Retry-After:
        never a 500, since nothing is wrong with the request.
        """
        import asyncpg

        retry = (asyncpg.exceptions.DeadlockDetectedError, asyncpg.exceptions.SerializationError)
        attempt = 1
        try:
            while True:
                try:
                    # The use case is driven to its end *inside* the transaction block: its
                    # StopIteration must not cross `async with`, which would roll the work back.
                    async with self._db.connection() as conn, conn.transaction():
                        return await self._drive(conn, use_case)
                except retry as e:
                    if not isinstance(use_case, Replayable) or attempt >= RETRIES:
                        log.warning("postgresql transaction given up: %s", type(e).__name__)
                        raise UnavailableError(retry_after=1) from e
                    log.warning("postgresql transaction retried after %s", type(e).__name__)
                    attempt += 1
                    use_case = use_case.again()
        except _pg_unavailable(asyncpg) as e:
            # A dead pooled connection is discarded by asyncpg on release and a new one is
            # opened on the next acquire, so Latch recovers by itself when the server is back.
            log.warning("postgresql unavailable: %s", type(e).__name__)
            raise UnavailableError(retry_after=2) from e
        finally:
            use_case.close()

    async def _drive(self, conn: Any, use_case: UseCase[T]) -> T:
        held = -1
        try:
            step = next(use_case)
            while True:
                if isinstance(step, Lock):
                    if step.rank <= held:  # a bug: it could deadlock with a use case in order
                        raise RuntimeError(f"lock {step.rank} taken after lock {held}")
                    held = step.rank
                step = use_case.send(await self._execute(conn, step))
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]

    @staticmethod
    async def _execute(conn: Any, step: Step) -> Rows:
        if isinstance(step, Lock):
            await conn.execute("SELECT pg_advisory_xact_lock(:k)", {"k": advisory_key(step.key)})
            return []
        sql, values = pg_statement(step)
        records = await conn.fetch_all(query=sql, values=values)
        return [dict(record._mapping) for record in records]


_PARAM = re.compile(r"(?<![:\w]):(\w+)")


def pg_statement(step: Q) -> tuple[str, dict[str, Any]]:
    """Where the dialects differ: a portable statement as `databases` + asyncpg need it.

    SQLAlchemy's `text().bindparams()` refuses a value the statement does not name (a use
    case may pass one only some of its variants use), so only the named ones are sent.
    """
    names = set(_PARAM.findall(step.sql))
    return step.sql, {k: v for k, v in step.params.items() if k in names}


# Versioned migrations: append, never edit one that has shipped. Portable SQL only:
# TEXT ids, BIGINT epoch seconds, INTEGER 0/1 flags.
MIGRATIONS: tuple[tuple[int, str, tuple[str, ...]], ...] = (
    (
        1,
        "initial schema",
        (
            """CREATE TABLE users (
                id TEXT PRIMARY KEY,
                email TEXT NOT NULL,
                email_key TEXT NOT NULL UNIQUE,
                created_at BIGINT NOT NULL,
                last_login_at BIGINT
            )""",
            """CREATE TABLE login_flows (
                id TEXT PRIMARY KEY,
                email TEXT NOT NULL,
                email_key TEXT NOT NULL,
                code_hash TEXT NOT NULL,
                link_hash TEXT NOT NULL,
                next_url TEXT NOT NULL,
                created_at BIGINT NOT NULL,
                expires_at BIGINT NOT NULL,
                attempts INTEGER NOT NULL DEFAULT 0,
                consumed_at BIGINT,
                outcome TEXT,
                mail_seq INTEGER NOT NULL DEFAULT 1,
                mail_status TEXT NOT NULL,
                mail_error TEXT,
                mail_at BIGINT NOT NULL,
                ip TEXT NOT NULL,
                user_agent TEXT NOT NULL
            )""",
            "CREATE INDEX login_flows_email_key ON login_flows (email_key, created_at)",
            "CREATE INDEX login_flows_ip ON login_flows (ip, created_at)",
            "CREATE INDEX login_flows_created ON login_flows (created_at)",
            """CREATE TABLE mail_log (
                flow_id TEXT NOT NULL,
                email_key TEXT NOT NULL,
                created_at BIGINT NOT NULL
            )""",
            "CREATE INDEX mail_log_email_key ON mail_log (email_key, created_at)",
            "CREATE INDEX mail_log_created ON mail_log (created_at)",
            """CREATE TABLE address_failures (
                email_key TEXT PRIMARY KEY,
                failures INTEGER NOT NULL,
                locked_until BIGINT NOT NULL DEFAULT 0,
                updated_at BIGINT NOT NULL
            )""",
            """CREATE TABLE sessions (
                id TEXT PRIMARY KEY,
                user_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
                refresh_hash TEXT NOT NULL UNIQUE,
                prev_refresh_hash TEXT,
                rotated_at BIGINT,
                created_at BIGINT NOT NULL,
                last_used_at BIGINT NOT NULL,
                idle_expires_at BIGINT NOT NULL,
                expires_at BIGINT NOT NULL,
                revoked_at BIGINT,
                ip TEXT NOT NULL,
                user_agent TEXT NOT NULL
            )""",
            "CREATE INDEX sessions_user ON sessions (user_id)",
            "CREATE INDEX sessions_prev_refresh ON sessions (prev_refresh_hash)",
            "CREATE INDEX sessions_expires ON sessions (expires_at)",
        ),
    ),
    (
        2,
        "sign-in steps: second factors, pending sign-ins, session assurance",
        (
            # Space-separated second-factor methods ("totp recovery_code"); '' = none. The
            # factor features maintain it, so the sign-in reads it with the user upsert it
            # already makes (no extra statement on the verify path).
            "ALTER TABLE users ADD COLUMN second_factors TEXT NOT NULL DEFAULT ''",
            # How the session was signed in: aal 1|2, amr space-separated (RFC 8176 values),
            # auth_time the moment the last step passed. Older sessions were email-only.
            "ALTER TABLE sessions ADD COLUMN aal INTEGER NOT NULL DEFAULT 1",
            "ALTER TABLE sessions ADD COLUMN amr TEXT NOT NULL DEFAULT 'email'",
            "ALTER TABLE sessions ADD COLUMN auth_time BIGINT NOT NULL DEFAULT 0",
            "UPDATE sessions SET auth_time = created_at",
            # A sign-in whose first step passed and whose next step is due (docs/design.md §11).
            """CREATE TABLE signins (
                id TEXT PRIMARY KEY,
                user_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
                flow_id TEXT NOT NULL,
                amr TEXT NOT NULL,
                next_url TEXT NOT NULL,
                attempts INTEGER NOT NULL DEFAULT 0,
                created_at BIGINT NOT NULL,
                expires_at BIGINT NOT NULL,
                ip TEXT NOT NULL,
                user_agent TEXT NOT NULL,
                consumed_at BIGINT
            )""",
            "CREATE INDEX signins_expires ON signins (expires_at)",
            "CREATE INDEX signins_user ON signins (user_id)",
        ),
    ),
)


@replayable
def migrate(now: int) -> UseCase[list[int]]:
    """Apply pending migrations in one transaction, under a lock; returns the versions applied."""
    yield Lock("latch.migrate")
    yield Q(
        "CREATE TABLE IF NOT EXISTS schema_version ("
        "version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at BIGINT NOT NULL)"
    )
    rows = yield Q("SELECT version FROM schema_version")
    done = {row["version"] for row in rows}
    applied = []
    for version, name, statements in MIGRATIONS:
        if version in done:
            continue
        for sql in statements:
            yield Q(sql)
        yield Q(
            "INSERT INTO schema_version (version, name, applied_at) VALUES (:v, :n, :t)",
            {"v": version, "n": name, "t": now},
        )
        applied.append(version)
    return applied


def ping() -> UseCase[bool]:
    """A trivial query: the database answers."""
    rows = yield Q("SELECT 1 AS ok")
    return bool(rows and rows[0]["ok"] == 1)
