"""Known devices and new-device notices (docs/design.md §14): which (device, network) pairs a
person signs in from, the notice a new pair gets, and its single-use "This wasn't me" link.

Locks: no advisory lock. Recording a sign-in touches only this user's device rows and notices;
using a notice locks its own row (the conditional UPDATE), then the user's sessions, as
revoking does in store/sessions.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from service.crypto import same
from service.db import Q, Row, UseCase, replayable
from service.store.audit import SYSTEM, Actor, Event, record
from service.store.sessions import revoked

# A pair not seen for this long is new again.
KNOWN_FOR = 90 * 86400
# At most one notice per device (the recognised name) per this long, whatever the networks:
# a phone moving between networks all day gets one mail, not one per network.
NOTICE_EVERY = 86400


@dataclass(frozen=True, kw_only=True)
class NewNotice:
    """The notice to store if this sign-in turns out to deserve one (hash only, never the
    link's secret)."""

    id: str
    link_hash: str
    expires_at: int


@dataclass(frozen=True, kw_only=True)
class Seen:
    """A sign-in, as the notices see it."""

    user_id: str
    session_id: str
    device: str
    network: str
    ip: str


@replayable
def record_sign_in(seen: Seen, notice: NewNotice, now: int) -> UseCase[str | None]:
    """Remember where a session was opened; the address to notify when the pair is new, the
    person had signed in before, and this device had no notice today. Else None."""
    p = {
        "uid": seen.user_id,
        "dev": seen.device,
        "net": seen.network,
        "now": now,
        "since": now - KNOWN_FOR,
    }
    rows = yield Q(
        "SELECT device, network, last_seen_at FROM known_devices WHERE user_id = :uid", p
    )
    first = not rows
    known = any(
        r["device"] == seen.device
        and r["network"] == seen.network
        and r["last_seen_at"] > p["since"]
        for r in rows
    )
    yield Q(
        "INSERT INTO known_devices (user_id, device, network, first_seen_at, last_seen_at)"
        " VALUES (:uid, :dev, :net, :now, :now) ON CONFLICT (user_id, device, network)"
        " DO UPDATE SET last_seen_at = :now",
        p,
    )
    # The first sign-in of a person (or the first since devices were recorded) has nothing to
    # compare with: a notice would only teach people to ignore notices.
    if first or known:
        return None
    recent = yield Q(
        "SELECT id FROM device_notices WHERE user_id = :uid AND device = :dev"
        " AND created_at > :day",
        {**p, "day": now - NOTICE_EVERY},
    )
    if recent:
        return None
    users = yield Q("SELECT email FROM users WHERE id = :uid", p)
    if not users:
        return None
    yield Q(
        "INSERT INTO device_notices (id, user_id, session_id, device, network, ip, link_hash,"
        " created_at, expires_at, used_at) VALUES (:id, :uid, :sid, :dev, :net, :ip, :lh,"
        " :now, :exp, NULL)",
        {
            **p,
            "id": notice.id,
            "sid": seen.session_id,
            "ip": seen.ip,
            "lh": notice.link_hash,
            "exp": notice.expires_at,
        },
    )
    # Recorded with the notice it queues (the mail follows this transaction, never in it).
    details = {
        "notice_id": notice.id,
        "session_id": seen.session_id,
        "device": seen.device,
        "network": seen.network,
    }
    yield from record(
        Event.NEW_DEVICE_NOTICE, actor=SYSTEM, now=now, user_id=seen.user_id, details=details
    )
    return str(users[0]["email"])


class NoticeState(StrEnum):
    """Where a "This wasn't me" link stands."""

    PENDING = "pending"
    USED = "used"
    EXPIRED = "expired"
    INVALID = "invalid"


@dataclass(frozen=True)
class NoticeUse:
    """What using a notice did: its state, and the sessions it ended when it was pending."""

    state: NoticeState
    ended: tuple[str, ...] = ()
    user_id: str = ""


def _state(row: Row | None, link_hash: str, now: int) -> NoticeState:
    if row is None or not same(row["link_hash"], link_hash):
        return NoticeState.INVALID
    if row["used_at"] is not None:
        return NoticeState.USED
    if row["expires_at"] <= now:
        return NoticeState.EXPIRED
    return NoticeState.PENDING


def peek_notice(notice_id: str, link_hash: str, now: int) -> UseCase[tuple[NoticeState, Row]]:
    """A notice's state and row (device, network, time), for the page its link's GET shows."""
    rows = yield Q(
        "SELECT id, device, network, ip, created_at, expires_at, used_at, link_hash"
        " FROM device_notices WHERE id = :id",
        {"id": notice_id},
    )
    row = rows[0] if rows else None
    return _state(row, link_hash, now), row or {}


@replayable
def use_notice(
    notice_id: str, link_hash: str, *, everywhere: bool, actor: Actor, now: int
) -> UseCase[NoticeUse]:
    """Spend the link once: revoke the session it is about, or every session of its person.

    The conditional UPDATE (`used_at IS NULL`) is the single use: of two racing POSTs one
    finds the notice unused and the other finds it used.
    """
    rows = yield Q(
        "SELECT link_hash, used_at, expires_at FROM device_notices WHERE id = :id",
        {"id": notice_id},
    )
    state = _state(rows[0] if rows else None, link_hash, now)
    if state is not NoticeState.PENDING:
        return NoticeUse(state)
    used = yield Q(
        "UPDATE device_notices SET used_at = :now WHERE id = :id AND used_at IS NULL"
        " RETURNING user_id, session_id",
        {"id": notice_id, "now": now},
    )
    if not used:
        return NoticeUse(NoticeState.USED)
    user_id, session_id = used[0]["user_id"], used[0]["session_id"]
    which = "user_id = :uid" if everywhere else "id = :sid AND user_id = :uid"
    ended = yield Q(
        f"UPDATE sessions SET revoked_at = :now WHERE {which} AND revoked_at IS NULL"
        " RETURNING id, user_id",
        {"uid": user_id, "sid": session_id, "now": now},
    )
    if ended:
        yield from revoked(ended, actor, now, "not_me")
    return NoticeUse(NoticeState.PENDING, ended=tuple(r["id"] for r in ended), user_id=str(user_id))
