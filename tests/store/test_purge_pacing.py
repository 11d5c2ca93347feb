"""The purge's batches are bounded by what they look at and by the time they take: a batch
walks at most its size of keys, live rows included, a slow batch shrinks the next, and the
pause after a batch grows with it (the purge's share of the database stays bounded)."""

from __future__ import annotations

import asyncio
import time

from service import db, store
from service.accounts.housekeeping import FLOW_RETENTION
from service.store.purge import LARGEST, LONGEST_PAUSE, PAUSE, SHARE, SMALLEST, TARGET

_NUMBERS = "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < :n) "


def _live_sessions_then_a_dead_one(*, live: int, now: int) -> db.UseCase[None]:
    yield db.Q(
        "INSERT INTO users (id, email, email_key, created_at) VALUES"
        " ('u', 'u@example.com', 'u@example.com', :now)",
        {"now": now},
    )
    # 'a0001'.. sort before 'b': the one dead session comes after every live one.
    yield db.Q(
        _NUMBERS + "INSERT INTO sessions (id, user_id, refresh_hash, created_at, last_used_at,"
        " idle_expires_at, expires_at, ip, user_agent) SELECT 'a' || (10000 + i), 'u', 'r' || i,"
        " :now, :now, :later, :later, '192.0.2.1', 'ua' FROM n",
        {"n": live, "now": now, "later": now + 86400},
    )
    yield db.Q(
        "INSERT INTO sessions (id, user_id, refresh_hash, created_at, last_used_at,"
        " idle_expires_at, expires_at, ip, user_agent) VALUES ('b', 'u', 'rb', :old, :old,"
        " :old, :old, '192.0.2.1', 'ua')",
        {"old": now - 60},
    )


def _session_ids() -> db.UseCase[list[str]]:
    rows = yield db.Q("SELECT id FROM sessions ORDER BY id")
    return [str(r["id"]) for r in rows]


def test_a_batch_looks_at_no_more_keys_than_its_size_live_rows_included(
    database_url: str,
) -> None:
    # Before: "the next 10 dead sessions after the cursor" scanned all 95 live ones in one
    # statement to reach the dead one (with a million live sessions, every periodic purge was
    # one statement over the whole table). Now 95 live keys are nine full windows of 10 before
    # the short one that holds the dead session.
    async def main() -> tuple[dict[str, int], list[float], list[str]]:
        database = db.open_database(database_url)
        await database.connect()
        try:
            now = int(time.time())
            await database.run(db.migrate(now))
            await database.run(_live_sessions_then_a_dead_one(live=95, now=now))
            pauses: list[float] = []

            async def between(pause: float) -> None:
                pauses.append(pause)

            counts = await store.purge(database, now, FLOW_RETENTION, batch=10, between=between)
            return counts, pauses, await database.run(_session_ids(), write=False)
        finally:
            await database.disconnect()

    counts, pauses, left = asyncio.run(main())
    assert counts["sessions"] == 1
    assert "b" not in left and len(left) == 95
    assert len(pauses) == 9


def test_a_slow_batch_shrinks_the_next_and_a_quick_one_grows_it() -> None:
    pacer = store.Pacer(1000)
    pacer.done(TARGET * 4)  # four times too slow: halved, not quartered
    assert pacer.size == 500
    pacer.done(TARGET * 1.25)
    assert pacer.size == 400
    pacer.done(TARGET / 10)  # ten times quicker: doubled, not tenfold
    assert pacer.size == 800


def test_the_batch_size_stays_within_its_bounds() -> None:
    pacer = store.Pacer(SMALLEST)
    pacer.done(10.0)
    assert pacer.size == SMALLEST  # the purge always progresses
    pacer = store.Pacer(LARGEST)
    pacer.done(0.0)
    assert pacer.size == LARGEST


def test_a_fixed_pacer_keeps_its_size() -> None:
    pacer = store.Pacer(10, fixed=True)
    pacer.done(10.0)
    pacer.done(0.0)
    assert pacer.size == 10


def test_the_pause_grows_with_the_batch_so_the_purge_keeps_to_its_share() -> None:
    pacer = store.Pacer()
    took = 0.02
    pause = pacer.done(took)
    assert took / (took + pause) <= SHARE + 1e-9
    assert pacer.done(0.0) == PAUSE
    assert pacer.done(3600.0) == LONGEST_PAUSE
