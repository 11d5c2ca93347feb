"""The purge runs in bounded batches, each its own transaction, and lets other work run
between them: a backlog of millions of rows never holds the database for one long transaction
while sign-ins wait."""

from __future__ import annotations

import asyncio
import os
import time

import pytest

from service import db, store
from service.accounts.housekeeping import FLOW_RETENTION
from service.crypto import new_id
from service.settings import Settings
from service.store.flows import NewFlow, Verdict
from tests.conftest import SettingsFactory
from tests.support.backlog import seed_backlog, seed_provider_backlog


def _flow(email: str, now: int, flow_id: str | None = None) -> NewFlow:
    return NewFlow(
        id=flow_id or new_id(),
        email=email,
        email_key=email,
        code_hash="h",
        link_hash="h",
        next_url="/",
        expires_at=now + 600,
        ip="192.0.2.7",
        user_agent="test",
    )


async def _purge_with_starts(
    url: str, settings: Settings, *, flows: int, sessions: int, batch: int
) -> tuple[dict[str, int], list[str], int]:
    """Seed a backlog, then purge it while a sign-in starts between every two batches.

    Returns the counts, the order in which purge batches and starts ran, and how many of the
    fresh flows the starts made are still there.
    """
    database = db.open_database(url)
    await database.connect()
    try:
        now = int(time.time())
        await database.run(db.migrate(now))
        old = now - FLOW_RETENTION - 3600
        await database.run(seed_backlog(flows=flows, sessions=sessions, old=old))
        order: list[str] = []
        fresh: list[str] = []
        run = database.run

        async def recording_run(use_case: db.UseCase[object], *, write: bool = True) -> object:
            order.append("purge")
            return await run(use_case, write=write)

        async def start_a_sign_in(_pause: float) -> None:
            # Ids after the backlog's ('f1'..'f45' < 'fz…'): the purge walks over them later
            # in the same run, and must leave them.
            flow = _flow(f"new{len(fresh)}@example.com", now, f"fz{len(fresh):03d}{new_id()}")
            outcome = await run(store.open_flow(flow, settings.limits, now))
            assert outcome.state == Verdict.OK
            fresh.append(flow.id)
            order.append("start")

        database.run = recording_run  # type: ignore[method-assign,assignment]
        try:
            counts = await store.purge(
                database, now, FLOW_RETENTION, batch=batch, between=start_a_sign_in
            )
        finally:
            database.run = run  # type: ignore[method-assign]
        kept = 0
        for flow_id in fresh:
            kept += await run(store.get_flow(flow_id), write=False) is not None
        return counts, order, kept
    finally:
        await database.disconnect()


def test_purge_is_batched_and_sign_ins_run_between_batches(
    database_url: str, make_settings: SettingsFactory
) -> None:
    counts, order, kept = asyncio.run(
        _purge_with_starts(database_url, make_settings(), flows=45, sessions=23, batch=10)
    )
    assert counts["flows"] == 45 and counts["mail_log"] == 45 and counts["sessions"] == 23
    # 45 rows in batches of 10 is five batches per table (the last one short), so no batch
    # ever held more than 10 rows; after each full batch a sign-in ran and was committed.
    # (flows, mail_log, address_failures, sessions, signins, then the three empty tables of
    # passkeys and the OpenID provider: one short batch each).
    assert order.count("purge") == 5 + 5 + 1 + 3 + 1 + 3
    assert order.count("start") == 4 + 4 + 0 + 2 + 0
    assert "purge,start,purge" in ",".join(order)
    assert "start,start" not in ",".join(order)
    # The new flows, made while the purge ran, are not its to delete.
    assert kept == order.count("start")


@pytest.mark.soak
def test_a_purge_of_millions_of_rows_runs_in_small_batches(
    database_url: str, make_settings: SettingsFactory
) -> None:
    # `make soak` runs the size: 1,000,000 dead sessions and 3,000,000 old flows and
    # mail-log rows (minutes); the suite runs a hundredth of it (LATCH_SOAK_PURGE_SCALE).
    scale = float(os.environ.get("LATCH_SOAK_PURGE_SCALE", "0.01"))
    flows, sessions = int(3_000_000 * scale), int(1_000_000 * scale)
    counts, order, kept = asyncio.run(
        _purge_with_starts(
            database_url, make_settings(), flows=flows, sessions=sessions, batch=store.BATCH
        )
    )
    assert counts["flows"] == flows and counts["mail_log"] == flows
    assert counts["sessions"] == sessions
    assert order.count("start") >= (2 * flows + sessions) // store.BATCH - 3
    assert kept == order.count("start")


def test_openid_rows_and_passkey_challenges_are_purged_in_batches_too(
    database_url: str,
) -> None:
    async def purge() -> tuple[dict[str, int], int, dict[str, list[str]]]:
        database = db.open_database(database_url)
        await database.connect()
        try:
            now = int(time.time())
            await database.run(db.migrate(now))
            await database.run(seed_provider_backlog(old=now - FLOW_RETENTION - 3600, now=now))
            pauses = 0

            async def pause(_pause: float) -> None:
                nonlocal pauses
                pauses += 1

            counts = await store.purge(database, now, FLOW_RETENTION, batch=2, between=pause)
            left = {}
            for table in ("oauth_requests", "oauth_grants", "webauthn_challenges"):
                rows = await database.run(_ids(table), write=False)
                left[table] = rows
            return counts, pauses, left
        finally:
            await database.disconnect()

    counts, pauses, left = asyncio.run(purge())
    assert counts["oauth_requests"] == 5
    assert counts["oauth_grants"] == 7
    assert counts["webauthn_challenges"] == 5
    assert left == {"oauth_requests": ["q6"], "oauth_grants": ["g8"], "webauthn_challenges": ["w6"]}
    # Windows of 2 keys, live rows counted: the 6 requests are three full windows (then an
    # empty one), the 8 grants four, the 6 challenges three; a pause after every full window
    # (the backlog's other tables are empty; the user's one live session is a short window).
    assert pauses == 3 + 4 + 3


def _ids(table: str) -> db.UseCase[list[str]]:
    rows = yield db.Q(f"SELECT id FROM {table} ORDER BY id")
    return [str(r["id"]) for r in rows]
