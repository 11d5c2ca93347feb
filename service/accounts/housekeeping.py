"""The periodic purge, in full: the flows, sessions and sign-ins of store.purge, the OpenID
provider's ended requests and grants, then audit events past AUDIT_RETENTION and finished
webhook messages, each in bounded batches."""

from __future__ import annotations

from collections.abc import Callable

from service import store
from service.db import Database, UseCase
from service.settings import Settings
from service.store import oauth as oauth_store
from service.store import webhooks as hooks_store

# Flows are kept as long as the longest limit window, so that limits can be counted.
FLOW_RETENTION = 86400
# Delivered, failed and cancelled webhook messages stay visible to the admin API this long.
OUTBOX_RETENTION = 7 * 86400
BATCH = 1000


async def purge_all(database: Database, settings: Settings, now: int) -> dict[str, int]:
    """Purge everything that has expired; counts per table."""
    counts = await database.run(store.purge(now, FLOW_RETENTION))
    counts.update(await database.run(oauth_store.purge_oauth(now, FLOW_RETENTION)))
    counts["audit_events"] = await _batches(
        database, lambda: store.purge_events(now - settings.operator.audit_retention, BATCH)
    )
    counts["webhook_outbox"] = await _batches(
        database, lambda: hooks_store.purge_outbox(now - OUTBOX_RETENTION, BATCH)
    )
    return counts


async def _batches(database: Database, batch: Callable[[], UseCase[int]]) -> int:
    """Run a batch deleting use case until a batch comes back short."""
    total = 0
    while True:
        deleted = await database.run(batch())
        total += deleted
        if deleted < BATCH:
            return total
