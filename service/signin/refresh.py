"""The refresh use case: exchange a refresh token for a new access JWT and a rotated token.

Refresh tokens form a keyed chain: the token that replaces `t` is HMAC(refresh subkey, t).
Rotation is therefore deterministic, which is what lets two tabs that refresh with the same
token at once both succeed *and* keep working afterwards: the second one, arriving within
REFRESH_GRACE, is handed the very token the first one got (only hashes are stored, so a random
successor could not be handed out twice). Without the subkey (it lives outside the database) a
successor cannot be computed, so a stolen database or an old token does not predict the next.

The chain also makes reuse of an *older* token detectable: the hashes of a presented token's
next few successors are looked up too, and a hit on the session's current or previous hash
means the presented token was replaced a while ago and is being replayed — theft, and the
session is revoked (RFC 9700 §4.14.2, refresh token rotation with reuse detection). A token
that matches nothing is simply refused: it cannot be tied to a session without letting anyone
who knows a session id revoke it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import re
from collections.abc import Callable

from service import crypto, store
from service.db import Database
from service.errors import UnauthenticatedError
from service.settings import Settings
from service.signin.access import AccessTokens, Authenticated
from service.signin.assurance import Assurance

log = logging.getLogger("latch.refresh")

# How many successors of a presented token are checked for reuse detection.
REUSE_DEPTH = 16
_TOKEN = re.compile(r"[A-Za-z0-9_-]{20,100}")


class RefreshRefusedError(UnauthenticatedError):
    """The refresh token is not (or no longer) good; `revoked` names a session just revoked."""

    message = "Your session has ended. Please sign in again."

    def __init__(self, revoked: str | None = None) -> None:
        super().__init__()
        self.revoked = revoked


def successor(key: bytes, token: str) -> str:
    """The refresh token that replaces `token` (256 bits, URL-safe)."""
    digest = hmac.new(key, b"latch.refresh:" + token.encode("ascii"), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def chain_of(key: bytes, token: str, depth: int = REUSE_DEPTH) -> list[str]:
    """`token` and its next `depth - 1` successors."""
    tokens = [token]
    while len(tokens) < depth:
        tokens.append(successor(key, tokens[-1]))
    return tokens


class Refresher:
    """The refresh use case, with its own collaborators (built once by create_app)."""

    def __init__(
        self,
        settings: Settings,
        database: Database,
        access: AccessTokens,
        clock: Callable[[], float],
    ) -> None:
        self.sessions = settings.sessions
        self.db = database
        self.access = access
        self.clock = clock
        # The subkey of the refresh chain: a purpose of its own, never the raw SECRET_KEY.
        self.chain_key = crypto.derive_subkey(settings.secret_key, "refresh-chain")

    async def refresh(
        self, token: str | None, *, ip: str = "", user_agent: str = ""
    ) -> Authenticated:
        """Rotate the refresh token and issue a new access JWT, else RefreshRefusedError.

        `ip` and `user_agent` are the presenter's: recorded when an old token's reuse revokes the
        session (the audit log's one sight of a thief)."""
        if not token or not _TOKEN.fullmatch(token):
            raise RefreshRefusedError()
        tokens = chain_of(self.chain_key, token)
        outcome = await self.db.run(
            store.rotate_refresh(
                [crypto.sha256_hex(t) for t in tokens],
                now=int(self.clock()),
                grace=self.sessions.refresh_grace,
                idle_ttl=self.sessions.idle_ttl,
                actor=store.Actor("anonymous", ip, user_agent),
            )
        )
        if outcome.state not in (store.RotationState.ROTATED, store.RotationState.GRACE):
            sid = outcome.session_id[:8]
            if outcome.state is store.RotationState.THEFT:
                log.warning("session.revoked reason=refresh-reuse session=%s", sid)
                raise RefreshRefusedError(revoked=outcome.session_id)
            log.info("refresh.refused reason=%s session=%s", outcome.state, sid)
            raise RefreshRefusedError()
        log.info("session.refreshed how=%s session=%s", outcome.state, outcome.session_id[:8])
        # A refreshed token says how the session signed in, not that it signed in again: amr,
        # acr and auth_time come from the session row the rotation returned.
        assurance = Assurance.of(aal=outcome.aal, amr=outcome.amr, auth_time=outcome.auth_time)
        return self.access.grant(
            user_id=outcome.user_id,
            email=outcome.email,
            session_id=outcome.session_id,
            session_expires_at=outcome.expires_at,
            assurance=assurance,
            refresh=tokens[1],
            next_url="",
        )
