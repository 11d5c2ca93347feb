"""The periodic purge, in full: the flows, sessions, sign-ins, passkey challenges and OpenID
requests and grants of store.purge, then audit events past AUDIT_RETENTION and finished
webhook messages, each in batches sized by time and spaced in proportion (store.Pacer), so
sign-ins go on between them."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable

from service import store
from service.db import Database, UseCase
from service.errors import ServiceError
from service.settings import Settings
from service.store import webhooks as hooks_store

# Flows are kept as long as the longest limit window, so that limits can be counted.
FLOW_RETENTION = 86400
# Delivered, failed and cancelled webhook messages stay visible to the admin API this long.
OUTBOX_RETENTION = 7 * 86400

log = logging.getLogger("latch.purge")


async def purge_all(
    database: Database,
    settings: Settings,
    now: int,
    *,
    between: Callable[[float], Awaitable[None]] = store.breathe,
    batch: int | None = None,
) -> dict[str, int]:
    """Purge everything that has expired; counts per table. `between` runs between batches
    (never inside one): the periodic purge stops there at shutdown. `batch` fixes the size of
    every batch (tests count them); by default they are sized by time."""
    counts = await store.purge(database, now, FLOW_RETENTION, between=between, batch=batch)
    audit_cut = now - settings.operator.audit_retention
    counts["audit_events"] = await _batches(
        database, lambda n: store.purge_events(audit_cut, n), between, batch
    )
    counts["webhook_outbox"] = await _batches(
        database, lambda n: hooks_store.purge_outbox(now - OUTBOX_RETENTION, n), between, batch
    )
    return counts


async def _batches(
    database: Database,
    batch: Callable[[int], UseCase[int]],
    between: Callable[[float], Awaitable[None]],
    size: int | None,
) -> int:
    """Run a batch deleting use case until a batch comes back short."""
    pacer = store.Pacer.of(size)
    total = 0
    while True:
        n = pacer.size
        began = time.monotonic()
        deleted = await database.run(batch(n))
        total += deleted
        if deleted < n:
            return total
        await between(pacer.done(time.monotonic() - began))


class _PurgeStopped(Exception):
    """Raised between two purge batches once shutdown has begun."""


class Purge:
    """The periodic purge; safe on every instance at once (deletes are idempotent).

    Stopped by a signal checked between batches, not by cancelling: a task cancelled inside a
    database call can leave its pooled PostgreSQL connection checked out, and closing the pool
    then waits for it forever (seen as a hung shutdown in the test suite)."""

    def __init__(self, database: Database, settings: Settings, clock: Callable[[], float]):
        self.database, self.settings, self.clock = database, settings, clock
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self.settings.storage.purge_interval:
            self._task = asyncio.create_task(self._run(), name="latch-purge")

    async def stop(self) -> None:
        if self._task is None:
            return
        self._stopping.set()
        try:
            # A batch is milliseconds; the bound only guards against a stuck database.
            await asyncio.wait_for(self._task, self.settings.runtime.shutdown_grace + 5)
        except TimeoutError:
            log.warning("purge: the batch in flight was abandoned at shutdown")
        self._task = None

    async def _between(self, pause: float) -> None:
        if self._stopping.is_set():
            raise _PurgeStopped
        # The pause ends early at shutdown (the next check stops the purge).
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), pause)
        if self._stopping.is_set():
            raise _PurgeStopped

    async def _run(self) -> None:
        interval = self.settings.storage.purge_interval
        while not self._stopping.is_set():
            try:
                await asyncio.wait_for(self._stopping.wait(), interval)
                return
            except TimeoutError:
                pass
            try:
                # In batches, yielding between them: sign-ins go on while a backlog is purged.
                counts = await purge_all(
                    self.database, self.settings, int(self.clock()), between=self._between
                )
                log.info("purge: %s", counts)
            except _PurgeStopped:
                return
            except ServiceError as e:
                log.warning("purge skipped: %s", e.message)
