"""Sessions: look-ups, revocation, refresh-token rotation, and the periodic purge.

Locks: these take no advisory lock and only session rows (rotation and revoking one session:
one row, so they cannot be part of a deadlock; "everywhere": the user's sessions). A sign-in
inserts a session but locks no existing one. The one crossing left is a purge deleting ended
sessions while "sign out everywhere" revokes them, each over many rows in its own order: rare,
and every write use case here is replayable, so PostgreSQL's deadlock victim is run again.
"""

from __future__ import annotations

from dataclasses import KW_ONLY, dataclass
from enum import StrEnum
from typing import Any

from service.db import Q, Row, UseCase, replayable
from service.store.audit import ANONYMOUS, Actor, Event, record

_SESSION_COLUMNS = (
    "s.id, s.user_id, s.created_at, s.last_used_at, s.idle_expires_at, s.expires_at,"
    " s.revoked_at, s.ip, s.user_agent, s.aal, s.amr, s.auth_time, u.email"
)
# What a rotation hands back, so that a refreshed access JWT says how the session signed in.
_ROTATED = "id, user_id, expires_at, aal, amr, auth_time"


@dataclass(frozen=True)
class NewStep:
    """The pending sign-in a verify opens instead of a session when a second step is due."""

    id: str
    expires_at: int


@dataclass(frozen=True, kw_only=True)
class NewSession:
    """A session about to be opened by a successful sign-in.

    `amr`/`aal` say how it was signed in (RFC 8176 method values; docs/design.md §11): the
    defaults are the email step alone. `step` is the pending sign-in opened instead of this
    session when the user has a second factor, or when `policy` is `all` and they must enrol
    one (None: a sign-in that cannot have one).
    """

    id: str
    refresh_hash: str
    idle_expires_at: int
    expires_at: int
    ip: str
    user_agent: str
    new_user_id: str
    amr: tuple[str, ...] = ("email",)
    aal: int = 1
    step: NewStep | None = None
    # REQUIRE_SECOND_FACTOR: off | enrolled | all (docs/design.md §11).
    policy: str = "enrolled"


@dataclass(frozen=True, kw_only=True)
class SignIn:
    """Who signed in, into which session, how, and where they go next."""

    user_id: str
    email: str
    session_id: str
    session_expires_at: int
    next_url: str
    flow_id: str
    amr: tuple[str, ...] = ("email",)
    aal: int = 1
    auth_time: int = 0


def open_session(session: NewSession, user_id: str, now: int) -> UseCase[None]:
    """Store a new session for a sign-in whose every step passed (one INSERT)."""
    yield Q(
        "INSERT INTO sessions (id, user_id, refresh_hash, prev_refresh_hash, rotated_at,"
        " created_at, last_used_at, idle_expires_at, expires_at, revoked_at, ip, user_agent,"
        " aal, amr, auth_time)"
        " VALUES (:sid, :uid, :rh, NULL, NULL, :now, :now, :idle, :exp, NULL, :ip, :ua,"
        " :aal, :amr, :now)",
        {
            "sid": session.id,
            "uid": user_id,
            "rh": session.refresh_hash,
            "now": now,
            "idle": session.idle_expires_at,
            "exp": session.expires_at,
            "ip": session.ip,
            "ua": session.user_agent,
            "aal": session.aal,
            "amr": " ".join(session.amr),
        },
    )


def get_session(session_id: str) -> UseCase[Row | None]:
    """A session with its user's address."""
    rows = yield Q(
        f"SELECT {_SESSION_COLUMNS} FROM sessions s JOIN users u ON u.id = s.user_id"
        " WHERE s.id = :id",
        {"id": session_id},
    )
    return rows[0] if rows else None


def session_owner(session_id: str, now: int) -> UseCase[str | None]:
    """The user of a live session (unrevoked, not idle-expired, within its absolute lifetime),
    else None: the /auth/check question, which also checks that this user is the token's `sub`."""
    rows = yield Q(
        "SELECT user_id FROM sessions WHERE id = :id AND revoked_at IS NULL"
        " AND expires_at > :now AND idle_expires_at > :now",
        {"id": session_id, "now": now},
    )
    return str(rows[0]["user_id"]) if rows else None


def list_sessions(user_id: str, now: int) -> UseCase[list[Row]]:
    """A person's live sessions, newest first."""
    rows = yield Q(
        f"SELECT {_SESSION_COLUMNS} FROM sessions s JOIN users u ON u.id = s.user_id"
        " WHERE s.user_id = :uid AND s.revoked_at IS NULL AND s.expires_at > :now"
        " AND s.idle_expires_at > :now ORDER BY s.created_at DESC",
        {"uid": user_id, "now": now},
    )
    return rows


@replayable
def revoke_session(
    session_id: str, user_id: str | None, now: int, *, actor: Actor, reason: str = "sign_out"
) -> UseCase[bool]:
    """Revoke one session (of that user, when given); False if there was none to revoke."""
    owner = " AND user_id = :uid" if user_id is not None else ""
    rows = yield Q(
        "UPDATE sessions SET revoked_at = :now WHERE id = :id AND revoked_at IS NULL"
        f"{owner} RETURNING id, user_id",
        {"id": session_id, "uid": user_id, "now": now},
    )
    if rows:
        yield from revoked(rows, actor, now, reason)
    return bool(rows)


@replayable
def revoke_user_sessions(
    user_id: str, now: int, *, actor: Actor, reason: str = "sign_out_everywhere"
) -> UseCase[list[str]]:
    """Revoke every live session of a user; returns their ids."""
    return (yield from end_user_sessions(user_id, now, actor=actor, reason=reason))


def end_user_sessions(user_id: str, now: int, *, actor: Actor, reason: str) -> UseCase[list[str]]:
    """Revoke every live session of a user, as a part of a larger use case (disable, delete)."""
    rows = yield Q(
        "UPDATE sessions SET revoked_at = :now WHERE user_id = :uid AND revoked_at IS NULL"
        " RETURNING id, user_id",
        {"uid": user_id, "now": now},
    )
    if rows:
        yield from revoked(rows, actor, now, reason)
    return [row["id"] for row in rows]


def revoked(rows: list[Row], actor: Actor, now: int, reason: str) -> UseCase[None]:
    """One audit event (and webhook) for the sessions of one user just revoked (each row: its
    `id` and `user_id`); a part of every use case that revokes."""
    yield from record(
        Event.SESSION_REVOKED,
        actor=actor,
        now=now,
        user_id=rows[0]["user_id"],
        details={"session_ids": sorted(row["id"] for row in rows), "reason": reason},
    )


class RotationState(StrEnum):
    """What rotate_refresh decided about a presented refresh token."""

    ROTATED = "rotated"
    GRACE = "grace"  # the previous token, within REFRESH_GRACE: handed the same successor
    THEFT = "theft"  # an older token: the session is revoked
    EXPIRED = "expired"
    REVOKED = "revoked"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class Rotation:
    """What rotate_refresh decided; the session, its user and how it signed in when found."""

    state: RotationState
    _: KW_ONLY
    session_id: str = ""
    user_id: str = ""
    email: str = ""
    expires_at: int = 0
    aal: int = 1
    amr: tuple[str, ...] = ("email",)
    auth_time: int = 0


@replayable
def rotate_refresh(
    chain: list[str], *, now: int, grace: int, idle_ttl: int, actor: Actor = ANONYMOUS
) -> UseCase[Rotation]:
    """Rotate a refresh token, given the hashes of the presented token (`chain[0]`) and of the
    tokens derived from it after it (`chain[1]` is the one that replaces it).

    Current token: rotate (previous = presented). Previous token within `grace` of the
    rotation: accepted, the current token is handed out again (both tabs end up holding the
    same working token). Previous after the grace, or an older token whose descendant is the
    session's current or previous one: theft, the session is revoked.
    """
    p: dict[str, Any] = {
        "old": chain[0],
        "new": chain[1],
        "now": now,
        "idle": now + idle_ttl,
    }
    live = "revoked_at IS NULL AND expires_at > :now AND idle_expires_at > :now"
    # The common case in one conditional UPDATE: of two racing requests with the same token
    # one rotates, the other finds the token replaced and takes the grace path below.
    rows = yield Q(
        "UPDATE sessions SET refresh_hash = :new, prev_refresh_hash = :old, rotated_at = :now,"
        " last_used_at = :now, idle_expires_at = CASE WHEN expires_at < :idle THEN expires_at"
        f" ELSE :idle END WHERE refresh_hash = :old AND {live}"
        f" RETURNING {_ROTATED}",
        p,
    )
    if rows:
        return (yield from _rotation(RotationState.ROTATED, rows[0]))
    names = [f"h{i}" for i in range(len(chain))]
    p.update(zip(names, chain, strict=True))
    in_chain = ", ".join(f":{n}" for n in names)
    # A no-op UPDATE reads the row and holds it until the transaction ends (portable locking).
    rows = yield Q(
        "UPDATE sessions SET last_used_at = last_used_at WHERE refresh_hash IN"
        f" ({in_chain}) OR prev_refresh_hash IN ({in_chain}) RETURNING id, user_id,"
        " refresh_hash, prev_refresh_hash, rotated_at, idle_expires_at, expires_at, revoked_at",
        p,
    )
    if not rows:
        return Rotation(RotationState.UNKNOWN)
    row = rows[0]
    if row["revoked_at"] is not None:
        return Rotation(RotationState.REVOKED, session_id=row["id"])
    if row["expires_at"] <= now or row["idle_expires_at"] <= now:
        return Rotation(RotationState.EXPIRED, session_id=row["id"])
    in_grace = row["rotated_at"] is not None and now - row["rotated_at"] <= grace
    if row["prev_refresh_hash"] == chain[0] and row["refresh_hash"] == chain[1] and in_grace:
        rows = yield Q(
            "UPDATE sessions SET last_used_at = :now, idle_expires_at = CASE WHEN"
            " expires_at < :idle THEN expires_at ELSE :idle END WHERE id = :id"
            f" RETURNING {_ROTATED}",
            {**p, "id": row["id"]},
        )
        return (yield from _rotation(RotationState.GRACE, rows[0]))
    theft = yield Q(
        "UPDATE sessions SET revoked_at = :now WHERE id = :id AND revoked_at IS NULL"
        " RETURNING id, user_id",
        {"now": now, "id": row["id"]},
    )
    if theft:
        # Recorded with the presenter's address: the one place a thief shows where they are.
        yield from revoked(theft, actor, now, "refresh_reuse")
    return Rotation(RotationState.THEFT, session_id=row["id"], user_id=row["user_id"])


def _rotation(state: RotationState, row: Row) -> UseCase[Rotation]:
    users = yield Q("SELECT email FROM users WHERE id = :id", {"id": row["user_id"]})
    return Rotation(
        state,
        session_id=row["id"],
        user_id=row["user_id"],
        email=users[0]["email"] if users else "",
        expires_at=row["expires_at"],
        aal=row["aal"],
        amr=tuple(row["amr"].split()),
        auth_time=row["auth_time"],
    )
