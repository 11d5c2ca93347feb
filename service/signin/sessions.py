"""Access checks (the hot path of /auth/check), sign-out and session listing.

Two in-memory caches keep /auth/check close to a bare endpoint: verified JWTs (bounded LRU,
each entry kept only until the token's own `exp` and only while the keyring is unchanged), and
per-session owner (the user of a live session, or none), re-read from the database at most
`REVOCATION_STALENESS` seconds later. A revocation made on this instance drops
the entry at once; one made on another instance is seen within that staleness.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from service import store
from service.db import Database
from service.errors import UnauthenticatedError
from service.settings import Settings
from service.signin.assurance import Level
from service.tokens import Keyring, TokenError

log = logging.getLogger("latch.sessions")
REVOCATION_STALENESS = 1.0
JWT_CACHE_SIZE = 10_000
SESSION_CACHE_SIZE = 50_000


@dataclass(frozen=True, kw_only=True)
class Identity:
    """Who a valid access token speaks for."""

    user_id: str
    email: str
    session_id: str
    expires_at: int
    aal: Level = Level.AAL1


class _LRU:
    def __init__(self, size: int) -> None:
        self.size = size
        self.data: OrderedDict[str, Any] = OrderedDict()

    def get(self, key: str) -> Any:
        value = self.data.get(key)
        if value is not None:
            self.data.move_to_end(key)
        return value

    def put(self, key: str, value: Any) -> None:
        self.data[key] = value
        self.data.move_to_end(key)
        if len(self.data) > self.size:
            self.data.popitem(last=False)


class Sessions:
    """Answers "is this access token good right now?" and ends sessions."""

    def __init__(
        self,
        settings: Settings,
        database: Database,
        keyring: Keyring,
        clock: Callable[[], float],
        *,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.monotonic = monotonic
        self.settings = settings
        self.db = database
        self.keyring = keyring
        self.clock = clock
        self._tokens = _LRU(JWT_CACHE_SIZE)
        self._sessions = _LRU(SESSION_CACHE_SIZE)
        self._inflight: dict[str, asyncio.Future[str | None]] = {}

    def verify_token(self, token: str) -> Identity:
        """Signature and claims only (stateless); cached until the token expires or its key
        leaves the keyring, whichever comes first."""
        cached: tuple[Identity, int] | None = self._tokens.get(token)
        # The entry was verified against one set of keys: after a reload that changed them
        # (a rotation, a `keys retire`), it is verified again, so a key that is no longer
        # published stops its tokens here within KEYS_RELOAD_INTERVAL.
        if (
            cached is not None
            and cached[1] == self.keyring.generation
            and cached[0].expires_at > time.time()
        ):
            return cached[0]
        try:
            claims = self.keyring.verify(
                token,
                issuer=self.settings.public_url,
                audience=self.settings.tokens.audience,
                max_lifetime=self.settings.sessions.access_ttl,
            )
        except TokenError as e:
            log.debug("access token refused: %s", e)
            raise UnauthenticatedError() from e
        # Anything but an exact "aal2" (a token from before levels existed too) is the lowest.
        aal = Level.AAL2 if claims.aal == Level.AAL2 else Level.AAL1
        identity = Identity(
            user_id=claims.sub,
            email=claims.email,
            session_id=claims.sid,
            expires_at=claims.exp,
            aal=aal,
        )
        self._tokens.put(token, (identity, self.keyring.generation))
        return identity

    async def check(self, token: str | None) -> Identity:
        """A valid token of an unrevoked session of its own user, else UnauthenticatedError."""
        if not token:
            raise UnauthenticatedError()
        identity = self.verify_token(token)
        owner = await self._session_owner(identity.session_id)
        if owner is None:
            raise UnauthenticatedError("This session has ended. Please sign in again.")
        if owner != identity.user_id:
            # Only a holder of a signing key can make such a token (or a bug): the session is
            # someone else's, and its being live says nothing about this `sub`.
            log.warning("access token refused: its session does not belong to its sub")
            raise UnauthenticatedError()
        return identity

    async def _session_owner(self, sid: str) -> str | None:
        """The user of a live session (None when it has ended), never older than
        REVOCATION_STALENESS.

        Past half the staleness a background re-read starts (one per session, however many
        requests come in), so under load a hot session is never waited for; only an entry
        that is missing or too old is awaited, and then by every request on one shared read.
        """
        entry: tuple[float, str | None] | None = self._sessions.get(sid)
        if entry is not None:
            age = self.monotonic() - entry[0]
            if age <= REVOCATION_STALENESS / 2:
                return entry[1]
            if age <= REVOCATION_STALENESS:
                self._reread(sid)
                return entry[1]
        return await asyncio.shield(self._reread(sid))

    def _reread(self, sid: str) -> asyncio.Future[str | None]:
        pending = self._inflight.get(sid)
        if pending is None:
            pending = asyncio.ensure_future(self._load(sid))
            self._inflight[sid] = pending
            pending.add_done_callback(lambda done: self._reread_done(sid, done))
        return pending

    def _reread_done(self, sid: str, done: asyncio.Future[str | None]) -> None:
        self._inflight.pop(sid, None)
        if not done.cancelled() and done.exception() is not None:
            # A background re-read that failed (database away): the next request awaits a
            # fresh one and gets the 503; nothing is left unretrieved.
            log.debug("session re-read failed: %s", type(done.exception()).__name__)

    async def _load(self, sid: str) -> str | None:
        started = self.monotonic()
        owner = await self.db.run(store.session_owner(sid, int(self.clock())), write=False)
        current: tuple[float, str | None] | None = self._sessions.get(sid)
        # A revocation recorded while this read was under way (forget) must not be overwritten
        # by the read's older answer.
        if current is None or current[0] < started:
            self._sessions.put(sid, (started, owner))
            return owner
        return current[1]

    def forget(self, *session_ids: str) -> None:
        """Drop cached validity so a local revocation takes effect at once."""
        for sid in session_ids:
            self._sessions.put(sid, (self.monotonic(), None))

    async def logout(
        self, identity: Identity, *, everywhere: bool, ip: str = "", user_agent: str = ""
    ) -> list[str]:
        """Revoke this session, or every session of the person."""
        now = int(self.clock())
        actor = store.Actor("user", ip, user_agent)
        if everywhere:
            ended = await self.db.run(
                store.revoke_user_sessions(identity.user_id, now, actor=actor)
            )
        else:
            done = await self.db.run(
                store.revoke_session(identity.session_id, None, now, actor=actor)
            )
            ended = [identity.session_id] if done else []
        self.forget(identity.session_id, *ended)
        log.info("session.revoked user=%s count=%d", identity.user_id[:8], len(ended))
        return ended

    async def revoke(
        self, identity: Identity, session_id: str, *, ip: str = "", user_agent: str = ""
    ) -> bool:
        """Revoke one of the person's own sessions."""
        actor = store.Actor("user", ip, user_agent)
        done = await self.db.run(
            store.revoke_session(session_id, identity.user_id, int(self.clock()), actor=actor)
        )
        if done:
            self.forget(session_id)
            log.info("session.revoked user=%s count=1", identity.user_id[:8])
        return done

    async def describe(self, identity: Identity) -> dict[str, Any]:
        """The person and this session, for /api/session and /account."""
        row = await self.db.run(store.get_session(identity.session_id), write=False)
        if row is None or row["revoked_at"] is not None:
            raise UnauthenticatedError()
        return {
            "user": {"id": row["user_id"], "email": row["email"]},
            "session": {"id": row["id"], "expires_at": row["expires_at"]},
        }

    async def list(self, identity: Identity) -> list[dict[str, Any]]:
        """The person's live sessions, the current one marked."""
        rows = await self.db.run(
            store.list_sessions(identity.user_id, int(self.clock())), write=False
        )
        return [
            {
                "id": r["id"],
                "created_at": r["created_at"],
                "last_used_at": r["last_used_at"],
                "expires_at": r["expires_at"],
                "ip": r["ip"],
                "user_agent": r["user_agent"],
                "current": r["id"] == identity.session_id,
            }
            for r in rows
        ]
