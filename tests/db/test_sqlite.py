"""The SQLite backend's group commit: batched use cases stay isolated from each other."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from contextlib import closing
from pathlib import Path

import pytest

from service.db import Q, UseCase
from service.db.sqlite import SQLiteDatabase
from service.errors import UnavailableError
from tests.support.wait import eventually_async


def _create() -> UseCase[None]:
    yield Q("CREATE TABLE t (n INTEGER PRIMARY KEY)")


class Gate:
    """Holds the database thread inside a use case until the test lets it go."""

    def __init__(self) -> None:
        self.holding = threading.Event()
        self.release = threading.Event()

    def held_insert(self, n: int) -> UseCase[int]:
        self.holding.set()
        # Bounded: a broken test must not hang the run (the test releases it long before).
        self.release.wait(10)
        yield Q("INSERT INTO t (n) VALUES (:n)", {"n": n})
        return n


def _committed(path: Path) -> int:
    """Rows of `t` committed so far, as another connection (another process) sees them."""
    with closing(sqlite3.connect(path)) as other:
        count: int = other.execute("SELECT count(*) FROM t").fetchone()[0]
    return count


def _insert(path: Path, n: int, seen: list[int], fail: bool = False) -> UseCase[int]:
    yield Q("INSERT INTO t (n) VALUES (:n)", {"n": n})
    # What is committed while this use case runs tells whether it shares a transaction with
    # the use cases before it: in one batch, nothing of theirs is committed yet.
    seen.append(_committed(path))
    if fail:
        raise ValueError("this use case fails after writing")
    return n


def _all() -> UseCase[list[int]]:
    rows = yield Q("SELECT n FROM t ORDER BY n")
    return [row["n"] for row in rows]


async def _scenario(path: Path) -> tuple[list[object], list[int], list[int]]:
    db = SQLiteDatabase(str(path))
    await db.connect()
    gate = Gate()
    seen: list[int] = []
    try:
        await db.run(_create())
        held = asyncio.ensure_future(db.run(gate.held_insert(0)))
        await eventually_async(gate.holding.is_set, "the first use case to hold the thread")
        nine = [
            asyncio.ensure_future(db.run(_insert(path, n, seen, fail=n == 5))) for n in range(1, 10)
        ]
        await asyncio.sleep(0)  # one loop turn: each of the nine queues its job, then waits
        gate.release.set()
        results: list[object] = await asyncio.gather(*nine, return_exceptions=True)
        await held
        return results, await db.run(_all(), write=False), seen
    finally:
        gate.release.set()
        await db.disconnect()


def test_use_cases_queued_together_share_one_commit_and_a_failing_one_rolls_back_alone(
    tmp_path: Path,
) -> None:
    results, stored, seen = asyncio.run(_scenario(tmp_path / "t.db"))
    # One batch of nine: each saw only row 0 committed (the held use case's own commit), none
    # of the batch's rows. Committed one by one, they would have seen 1, 2, 3, …
    assert seen == [1] * 9
    assert isinstance(results[4], ValueError)
    assert [r for i, r in enumerate(results) if i != 4] == [1, 2, 3, 4, 6, 7, 8, 9]
    assert stored == [0, 1, 2, 3, 4, 6, 7, 8, 9]


def test_a_closed_database_answers_unavailable(tmp_path: Path) -> None:
    async def scenario() -> None:
        db = SQLiteDatabase(str(tmp_path / "t.db"))
        with pytest.raises(UnavailableError):
            await db.run(_all(), write=False)

    asyncio.run(scenario())


def _blobs() -> UseCase[None]:
    yield Q("CREATE TABLE b (data BLOB)")
    for _ in range(200):
        yield Q("INSERT INTO b (data) VALUES (randomblob(1000))")


async def _main_file_size_after_writes(path: Path, interval: float) -> int:
    db = SQLiteDatabase(str(path), checkpoint_interval=interval)
    await db.connect()
    try:
        await db.run(_blobs())
        # Commits go to the WAL; only a checkpoint copies pages into the main file. Reading the
        # main file's size observes that without checkpointing anything itself.
        await eventually_async(
            lambda: path.stat().st_size >= 100_000, "a checkpoint into the main file", 5
        )
        return path.stat().st_size
    finally:
        await db.disconnect()


def test_the_wal_is_checkpointed_in_the_background_not_by_commits(tmp_path: Path) -> None:
    assert asyncio.run(_main_file_size_after_writes(tmp_path / "t.db", 0.05)) >= 100_000
