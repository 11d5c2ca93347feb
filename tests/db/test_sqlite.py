"""The SQLite backend's group commit: batched use cases stay isolated from each other."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from service.db import Q, UseCase
from service.db.sqlite import SQLiteDatabase
from service.errors import UnavailableError
from tests.support.wait import eventually_async


def _create() -> UseCase[None]:
    yield Q("CREATE TABLE t (n INTEGER PRIMARY KEY)")


def _slow_insert(n: int) -> UseCase[int]:
    time.sleep(0.2)  # holds the database thread so that the others queue up into one batch
    yield Q("INSERT INTO t (n) VALUES (:n)", {"n": n})
    return n


def _insert(n: int, fail: bool = False) -> UseCase[int]:
    yield Q("INSERT INTO t (n) VALUES (:n)", {"n": n})
    if fail:
        raise ValueError("this use case fails after writing")
    return n


def _all() -> UseCase[list[int]]:
    rows = yield Q("SELECT n FROM t ORDER BY n")
    return [row["n"] for row in rows]


async def _scenario(path: Path) -> tuple[list[object], list[int]]:
    db = SQLiteDatabase(str(path))
    await db.connect()
    try:
        await db.run(_create())
        slow = asyncio.ensure_future(db.run(_slow_insert(0)))
        await asyncio.sleep(0.05)
        results: list[object] = await asyncio.gather(
            *(db.run(_insert(n, fail=n == 5)) for n in range(1, 10)), return_exceptions=True
        )
        await slow
        return results, await db.run(_all(), write=False)
    finally:
        await db.disconnect()


def test_a_failing_use_case_in_a_batch_rolls_back_only_its_own_work(tmp_path: Path) -> None:
    results, stored = asyncio.run(_scenario(tmp_path / "t.db"))
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
