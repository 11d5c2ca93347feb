"""The purge, in bounded batches: old flows and mail records, dead sessions, stale sign-ins,
unanswered passkey challenges, and ended OpenID requests and grants.

One DELETE per table was one transaction over everything waiting: after an outage, or on first
enabling the purge, that is millions of rows, and the database thread (SQLite) or the locks
(PostgreSQL) were held for over a minute while `POST /api/start` waited behind them. Here each
batch is its own small use case, and the caller pauses between batches (`between`), so
sign-ins run between them.

A batch is bounded by the time it takes, not by a row count: a `Pacer` shrinks the next batch
when one took longer than TARGET (a loaded machine, a cold cache, PostgreSQL's round trips) and
grows it when it was quicker, and pauses after each batch in proportion to how long it took,
so the purge never takes more than SHARE of the database's time however large the backlog:
sign-ins queued behind a batch wait at most a few milliseconds, and there are few of them.

Flows, sessions, sign-ins, passkey challenges, OpenID requests and grants are walked in key
order (their ids are hex, which every collation orders alike) in windows of at most `size`
keys: a batch looks at no more rows than that, deleted or not. Walking "the next `size` rows
that match" instead let one batch scan every live row up to the next match: a million live
sessions and a few dead ones made every periodic purge one statement over the whole table.
`mail_log` has no key, but its condition is its index (`created_at`), so a batch visits only
rows it deletes; `address_failures` is small: both are taken by the row's own address
(SQLite's rowid, PostgreSQL's ctid, a TID scan).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from service.db import Database, Lock, Q, UseCase, replayable

# The first batch of a table, and the bounds a Pacer keeps the size in: never so small that
# the purge stops progressing, never so large that one batch could hold the database long.
BATCH = 500
SMALLEST = 100
LARGEST = 10_000
# What a batch should take, start to finish as the caller sees it (queueing included, so a
# busy database shrinks the batches). Sign-ins queued behind a batch wait about this long.
TARGET = 0.005
# The purge's share of the database's time at most: after a batch that took t seconds it
# pauses t * (1 - SHARE) / SHARE (4t), at least PAUSE and at most LONGEST_PAUSE.
SHARE = 0.2
PAUSE = 0.005
LONGEST_PAUSE = 1.0


class Pacer:
    """Sizes the purge's batches by the time they take and spaces them in proportion.

    `fixed` keeps the size (tests count batches); the pauses are still proportional."""

    def __init__(self, size: int = BATCH, *, fixed: bool = False) -> None:
        self.size = size
        self.fixed = fixed

    @classmethod
    def of(cls, batch: int | None) -> Pacer:
        """Batches of `batch` rows each when given (tests count them), else sized by time."""
        return cls(batch, fixed=True) if batch is not None else cls()

    def done(self, took: float) -> float:
        """A full batch took `took` seconds: size the next one; the pause before it."""
        if not self.fixed:
            # At most doubling or halving a step: one slow batch (a checkpoint, a burst of
            # sign-ins) should not swing the size from one bound to the other.
            wanted = self.size * TARGET / max(took, 1e-6)
            wanted = min(max(wanted, self.size / 2), self.size * 2)
            self.size = int(min(max(wanted, SMALLEST), LARGEST))
        return min(max(took * (1 - SHARE) / SHARE, PAUSE), LONGEST_PAUSE)


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


@dataclass(frozen=True)
class Batch:
    """What one batch did: rows deleted, rows looked at, and the last key looked at."""

    deleted: int
    seen: int
    last: str


def _by_address(target: Target, dialect: str) -> str:
    t, where = target.table, target.where
    if dialect == "postgresql":
        # `ctid = ANY(ARRAY(...))` is a TID scan; `ctid IN (SELECT ...)` would scan the table.
        return (
            f"DELETE FROM {t} WHERE ctid = ANY(ARRAY(SELECT ctid FROM {t} WHERE {where}"
            " LIMIT :n)) RETURNING 1 AS k"
        )
    return (
        f"DELETE FROM {t} WHERE rowid IN (SELECT rowid FROM {t} WHERE {where} LIMIT :n)"
        " RETURNING 1 AS k"
    )


@replayable
def purge_batch(
    target: Target, dialect: str, *, now: int, cut: int, after: str, n: int
) -> UseCase[Batch]:
    """Delete what is due among the next `n` keys after `after` (a keyed table), or at most
    `n` due rows (by row address)."""
    # Every instance purges on its own timer: one at a time does a batch and the others find
    # those rows gone, instead of racing over the same rows (and risking a deadlock).
    yield Lock("latch.purge")
    if dialect == "postgresql":
        # Planned for the values of each batch: the windows change size from batch to batch
        # (the Pacer), and the generic plan PostgreSQL settles on after a few runs of a
        # prepared statement made a 100-row DELETE of flows take 4 ms instead of 0.4 ms.
        yield Q("SET LOCAL plan_cache_mode = force_custom_plan")
    params = {"now": now, "cut": cut, "after": after, "n": n}
    if target.key is None:
        rows = yield Q(_by_address(target, dialect), params)
        return Batch(deleted=len(rows), seen=len(rows), last="")
    t, k = target.table, target.key
    # The window: the next `n` keys, read from the key's index alone.
    window = yield Q(
        f"SELECT COUNT(*) AS seen, MAX({k}) AS last FROM"
        f" (SELECT {k} FROM {t} WHERE {k} > :after ORDER BY {k} LIMIT :n) w",
        params,
    )
    seen, last = int(window[0]["seen"]), window[0]["last"]
    if not seen:
        return Batch(deleted=0, seen=0, last=after)
    rows = yield Q(
        f"DELETE FROM {t} WHERE {k} > :after AND {k} <= :last AND ({target.where})"
        f" RETURNING 1 AS k",
        {**params, "last": last},
    )
    return Batch(deleted=len(rows), seen=seen, last=str(last))


async def breathe(pause: float = PAUSE) -> None:
    """The pause between two batches: the event loop and the database serve others."""
    await asyncio.sleep(pause)


async def purge(
    database: Database,
    now: int,
    keep_flows: int,
    *,
    batch: int | None = None,
    between: Callable[[float], Awaitable[None]] = breathe,
) -> dict[str, int]:
    """Purge every table in batches sized by time (of `batch` rows if given), awaiting
    `between(pause)` after each full batch (the event loop and the database serve others
    there); the rows deleted per table."""
    cut = now - keep_flows
    pacer = Pacer.of(batch)
    counts: dict[str, int] = {}
    for target in TARGETS:
        after, total = "", 0
        while True:
            n = pacer.size
            began = time.monotonic()
            done = await database.run(
                purge_batch(target, database.dialect, now=now, cut=cut, after=after, n=n)
            )
            total += done.deleted
            if done.seen < n:
                break
            after = done.last
            await between(pacer.done(time.monotonic() - began))
        counts[target.name] = total
    return counts
