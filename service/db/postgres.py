"""PostgreSQL: `databases` + asyncpg, one pooled connection and transaction per use case, each
statement awaited in turn; `Lock` becomes a transaction-level advisory lock, taken in LOCK_ORDER."""

from __future__ import annotations

import asyncio
import functools
import hashlib
import logging
import re
from typing import Any

from service.db.protocol import (
    Lock,
    Replayable,
    Rows,
    Step,
    T,
    UseCase,
)
from service.errors import UnavailableError

log = logging.getLogger("latch.db")


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


def _drop_outcome(task: asyncio.Future[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.info("db.dropped outcome of a cancelled caller: %s", type(task.exception()).__name__)


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
        """Run the use case as one transaction (see `_run`), to its end even when the caller
        is cancelled.

        A caller cancelled mid-statement (a mail sender stopped at shutdown, a request whose
        task is cancelled) used to cancel the transaction inside `databases`/asyncpg, which
        could leave the pooled connection checked out for good, and `disconnect()` then
        waited forever (reproduced: tests/db/test_postgres.py). So the transaction runs in a
        task of its own that the caller's cancellation does not reach: it commits or rolls
        back as it would have, the connection goes back to the pool, and only the caller
        sees CancelledError. The result of a cancelled caller's use case is dropped, as
        SQLite's thread drops it (one transaction per use case, whole or not at all).
        """
        task = asyncio.ensure_future(self._run(use_case))
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            # Nobody awaits the task any more: take its outcome so none goes unreported.
            task.add_done_callback(_drop_outcome)
            raise

    async def _run(self, use_case: UseCase[T]) -> T:
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
        # Straight to asyncpg, on the connection and inside the transaction `databases` opened:
        # its `fetch_all` compiled every statement through SQLAlchemy's `text()` again, ~65 us
        # of CPU a statement here (180 against 115 for asyncpg alone), a dozen a sign-in.
        # asyncpg prepares each statement once per connection and keeps it.
        raw = conn.raw_connection
        if isinstance(step, Lock):
            await raw.execute("SELECT pg_advisory_xact_lock($1)", advisory_key(step.key))
            return []
        sql, names = positional(step.sql)
        params = step.params
        records = await raw.fetch(sql, *[params[name] for name in names])
        return [dict(record) for record in records]


_PARAM = re.compile(r"(?<![:\w]):(\w+)")


@functools.lru_cache(maxsize=2048)
def positional(sql: str) -> tuple[str, tuple[str, ...]]:
    """A portable statement (`:name` parameters) as asyncpg takes it (`$1`, `$2`, …), with the
    names in order; a name used twice is one parameter. Statements are fixed strings, so the
    cache holds each once."""
    names: list[str] = []

    def number(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in names:
            names.append(name)
        return f"${names.index(name) + 1}"

    return _PARAM.sub(number, sql), tuple(names)
