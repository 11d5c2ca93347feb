"""Running store use cases on a database of a test, as another process would."""

from __future__ import annotations

import asyncio
from typing import TypeVar

from service import db, store

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


def purge_on(url: str, now: int, keep_flows: int) -> dict[str, int]:
    """The batched purge on a database of a test, through its own connection."""

    async def main() -> dict[str, int]:
        database = db.open_database(url)
        await database.connect()
        try:
            return await store.purge(database, now, keep_flows)
        finally:
            await database.disconnect()

    return asyncio.run(main())


def wrong(code: str) -> str:
    """A 6-digit code that is not `code`."""
    return f"{(int(code) + 1) % 1_000_000:06d}"
