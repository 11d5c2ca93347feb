"""The purge, in bounded batches: old flows and mail records, dead sessions, stale sign-ins,
unanswered passkey challenges, and ended OpenID requests and grants.

One DELETE per table was one transaction over everything waiting: after an outage, or on first
enabling the purge, that is millions of rows, and the database thread (SQLite) or the locks
(PostgreSQL) were held for over a minute while `POST /api/start` waited behind them. Here each
batch is its own small use case of at most `batch` rows, and the caller yields between batches
(`between`), so sign-ins run between them; a batch costs milliseconds whatever the backlog.

Flows, sessions, sign-ins, passkey challenges, OpenID requests and grants are walked in key
order from where the last batch stopped (keyset: their ids are hex, which every collation
orders alike), so no batch scans again the live rows an earlier one passed over. `mail_log`
has no key, but its condition is its index (`created_at`), and `address_failures` is small:
those are taken by the row's own address (SQLite's rowid, PostgreSQL's ctid, a TID scan).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from service.db import Database, Lock, Q, UseCase, replayable

BATCH = 2000
PAUSE = 0.005


@dataclass(frozen=True)
class Target:
    """A table the purge empties of rows matching `where` (with :now and :cut)."""

    name: str
    table: str
    where: str
    key: str | None  # a unique column walked in order; None: the row address


TARGETS = (
    Target("flows", "login_flows", "created_at < :cut", "id"),
    Target("mail_log", "mail_log", "created_at < :cut", None),
    # Keyed by address, whose order the database's collation decides; the table holds only
    # addresses with recent failures, so it is small and taken by row address instead.
    Target(
        "address_failures",
        "address_failures",
        "locked_until < :now AND updated_at < :cut",
        None,
    ),
    Target(
        "sessions",
        "sessions",
        "expires_at < :now OR idle_expires_at < :now OR revoked_at < :cut",
        "id",
    ),
    Target("signins", "signins", "expires_at < :now", "id"),
    # Passkey challenges nobody answered within their five minutes (§12).
    Target("webauthn_challenges", "webauthn_challenges", "expires_at < :now", "id"),
    # OpenID authorization requests never finished (§13): a finished one is deleted at once.
    Target("oauth_requests", "oauth_requests", "expires_at < :cut", "id"),
    # Grants whose code was never exchanged, revoked ones, and those whose session has gone
    # (a grant's tokens die with its session): after `sessions`, so this run's ended sessions
    # take their grants with them.
    Target(
        "oauth_grants",
        "oauth_grants",
        "(code_used_at IS NULL AND code_expires_at < :cut) OR revoked_at < :cut"
        " OR NOT EXISTS (SELECT 1 FROM sessions s WHERE s.id = oauth_grants.session_id)",
        "id",
    ),
)


def _statement(target: Target, dialect: str) -> str:
    t, where = target.table, target.where
    if target.key is not None:
        k = target.key
        return (
            f"DELETE FROM {t} WHERE {k} IN (SELECT {k} FROM {t} WHERE {k} > :after"
            f" AND ({where}) ORDER BY {k} LIMIT :n) RETURNING {k} AS k"
        )
    if dialect == "postgresql":
        # `ctid = ANY(ARRAY(...))` is a TID scan; `ctid IN (SELECT ...)` would scan the table.
        return (
            f"DELETE FROM {t} WHERE ctid = ANY(ARRAY(SELECT ctid FROM {t} WHERE {where}"
            " LIMIT :n)) RETURNING '' AS k"
        )
    return (
        f"DELETE FROM {t} WHERE rowid IN (SELECT rowid FROM {t} WHERE {where} LIMIT :n)"
        " RETURNING '' AS k"
    )


@replayable
def purge_batch(
    target: Target, dialect: str, *, now: int, cut: int, after: str, n: int
) -> UseCase[list[str]]:
    """Delete at most `n` rows of one table; the keys deleted (in order where keyed)."""
    # Every instance purges on its own timer: one at a time does a batch and the others find
    # those rows gone, instead of racing over the same rows (and risking a deadlock).
    yield Lock("latch.purge")
    rows = yield Q(_statement(target, dialect), {"now": now, "cut": cut, "after": after, "n": n})
    return sorted(str(r["k"]) for r in rows)


async def breathe() -> None:
    """The pause between two batches: the event loop and the database serve others."""
    await asyncio.sleep(PAUSE)


async def purge(
    database: Database,
    now: int,
    keep_flows: int,
    *,
    batch: int = BATCH,
    between: Callable[[], Awaitable[None]] = breathe,
) -> dict[str, int]:
    """Purge every table in batches of `batch` rows, awaiting `between` after each full batch
    (the event loop and the database serve others there); the rows deleted per table."""
    cut = now - keep_flows
    counts: dict[str, int] = {}
    for target in TARGETS:
        after, total = "", 0
        while True:
            keys = await database.run(
                purge_batch(target, database.dialect, now=now, cut=cut, after=after, n=batch)
            )
            total += len(keys)
            if len(keys) < batch:
                break
            if target.key is not None:
                after = keys[-1]
            await between()
        counts[target.name] = total
    return counts
