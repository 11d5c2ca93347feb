"""The session-validity cache behind /auth/check: at most 1 s stale, one read per session."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from service import crypto, store
from service.db import UseCase, migrate
from service.db.sqlite import SQLiteDatabase
from service.errors import UnauthenticatedError
from service.settings import LimitSettings, load_settings
from service.signin.sessions import REVOCATION_STALENESS, Sessions
from service.tokens import Keyring


class CountingDatabase:
    """The real SQLite backend, counting the use cases it is asked to run."""

    dialect = "sqlite"

    def __init__(self, inner: SQLiteDatabase) -> None:
        self.inner = inner
        self.runs = 0

    async def connect(self) -> None:
        await self.inner.connect()

    async def disconnect(self) -> None:
        await self.inner.disconnect()

    async def run(self, use_case: UseCase[Any], *, write: bool = True) -> Any:
        self.runs += 1
        return await self.inner.run(use_case, write=write)


class Ticker:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _hold_thread(seconds: float) -> UseCase[None]:
    time.sleep(seconds)  # keeps the database thread busy so the next read waits in line
    yield from ()


async def _signed_in(db: CountingDatabase, settings: Any) -> tuple[str, str]:
    """A real session row (through the sign-in use case) and a token for it."""
    limits = LimitSettings(
        mail_interval=0, mail_per_window=0, mail_per_day=0, mail_global=0, starts_per_ip=0
    )
    now = int(time.time())
    keys = crypto.Keys.from_secret(settings.secret_key)
    flow_id = crypto.new_id()
    await db.run(
        store.open_flow(
            store.NewFlow(
                id=flow_id,
                email="a@example.com",
                email_key="a@example.com",
                code_hash=crypto.keyed_hash(keys.code, flow_id, "123456"),
                link_hash="0" * 64,
                next_url="/account",
                expires_at=now + 600,
                ip="127.0.0.1",
                user_agent="test",
            ),
            limits,
            now,
        )
    )
    session = store.NewSession(
        id=crypto.new_id(),
        refresh_hash=crypto.new_id(),
        idle_expires_at=now + 3600,
        expires_at=now + 7200,
        ip="127.0.0.1",
        user_agent="test",
        new_user_id=crypto.new_id(),
    )
    outcome = await db.run(
        store.verify_code(
            flow_id,
            crypto.keyed_hash(keys.code, flow_id, "123456"),
            session=session,
            limits=limits,
            allow_signup=True,
            now=now,
        )
    )
    assert outcome.sign_in is not None
    keyring = Keyring(settings.tokens.keys_dir, "HS256", keys.jwt_hmac)
    token = keyring.sign(
        {
            "iss": settings.public_url,
            "aud": settings.tokens.audience,
            "sub": outcome.sign_in.user_id,
            "email": "a@example.com",
            "sid": session.id,
            "iat": now,
            "nbf": now,
            "exp": now + 900,
            "jti": crypto.new_id(),
        }
    )
    return session.id, token


async def _scenario(tmp_path: Path) -> None:
    settings = load_settings({"DATA_DIR": str(tmp_path), "JWT_ALGORITHM": "HS256"})
    db = CountingDatabase(SQLiteDatabase(str(tmp_path / "latch.db")))
    await db.connect()
    try:
        await db.run(migrate(0))
        sid, token = await _signed_in(db, settings)
        ticker = Ticker()
        keyring = Keyring(
            settings.tokens.keys_dir, "HS256", crypto.Keys.from_secret(settings.secret_key).jwt_hmac
        )
        sessions = Sessions(settings, db, keyring, time.time, monotonic=ticker)

        # A burst of checks for a session not yet known: ONE read, shared by all of them.
        before = db.runs
        await asyncio.gather(*(sessions.check(token) for _ in range(50)))
        assert db.runs - before == 1

        # Fresh (under half the staleness): no read at all.
        ticker.now += REVOCATION_STALENESS / 4
        before = db.runs
        await asyncio.gather(*(sessions.check(token) for _ in range(50)))
        assert db.runs == before

        # Past half: answered from the cache while one background re-read runs.
        ticker.now += REVOCATION_STALENESS / 2
        before = db.runs
        await asyncio.gather(*(sessions.check(token) for _ in range(50)))
        await asyncio.sleep(0.05)
        assert db.runs - before == 1

        # A revocation recorded while a re-read is under way is not undone by its answer.
        ticker.now += REVOCATION_STALENESS * 2
        hold = asyncio.ensure_future(db.inner.run(_hold_thread(0.2)))
        await asyncio.sleep(0.02)
        pending = asyncio.ensure_future(sessions.check(token))
        await asyncio.sleep(0.02)
        ticker.now += 0.001
        sessions.forget(sid)
        await hold
        # The request in flight may be answered either way (it began before the revocation);
        # every request after the revocation is refused.
        await asyncio.gather(pending, return_exceptions=True)
        with pytest.raises(UnauthenticatedError):
            await sessions.check(token)
    finally:
        await db.disconnect()


def test_session_validity_is_read_once_per_burst_and_revocation_wins(tmp_path: Path) -> None:
    asyncio.run(_scenario(tmp_path))
