"""What a passed step opens: a session row and its refresh token, or, when a second step turns
out to be due, the pending sign-in that replaces it (docs/design.md §11)."""

from __future__ import annotations

from service import crypto, store
from service.settings import SessionSettings
from service.signin.assurance import Level, Method

# How long a pending sign-in waits for its second step (docs/design.md §11).
SIGNIN_TTL = 300


def new_session(
    sessions: SessionSettings,
    now: int,
    ip: str,
    user_agent: str,
    *,
    amr: tuple[str, ...] = (Method.EMAIL.value,),
    aal: Level = Level.AAL1,
    policy: str = "enrolled",
) -> tuple[store.NewSession, str]:
    """A session to open (and its refresh token), with the pending sign-in that replaces
    it when a second step turns out to be due.

    `policy` is REQUIRE_SECOND_FACTOR (off | enrolled | all); only a first step's sign-in
    reads it (a second step completes a pending sign-in, it never opens another)."""
    refresh = crypto.new_secret()
    return store.NewSession(
        id=crypto.new_id(),
        refresh_hash=crypto.sha256_hex(refresh),
        idle_expires_at=now + sessions.idle_ttl,
        expires_at=now + sessions.max_ttl,
        ip=ip,
        user_agent=user_agent[:300],
        new_user_id=crypto.new_id(),
        amr=amr,
        aal=int(aal),
        step=store.NewStep(id=crypto.new_id(), expires_at=now + SIGNIN_TTL),
        policy=policy,
    ), refresh
