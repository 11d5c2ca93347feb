"""Changes of address (docs/design.md §14): opened by a signed-in person for a new address,
confirmed by the code or link mailed there, which moves the account.

Locks (LOCK_ORDER): the NEW address's lock (per inbox, as every use case of an address takes
it) before any row. A sign-up of that address and another account's move to it take the same
lock, so "is the address free?" and the move cannot interleave: the loser sees it taken (never
a UNIQUE violation, a 500). The old address is not locked: a sign-in of it racing the move
either signs in to the account before the move, or finds the address free after it and starts
a new person, which is what the old address now is.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from service.addresses import limit_key
from service.crypto import same
from service.db import Q, Row, UseCase, address_lock, replayable
from service.settings import LimitSettings
from service.store.audit import Actor, Event, record
from service.store.limits import mail_limit_wait
from service.store.users import find_user

_COLUMNS = (
    "id, user_id, email, email_key, code_hash, link_hash, created_at, expires_at, attempts,"
    " consumed_at, outcome"
)


class ChangeState(StrEnum):
    """What a change-of-address use case decided."""

    OK = "ok"
    PENDING = "pending"
    WRONG = "wrong"
    USED = "used"
    EXPIRED = "expired"
    DEAD = "dead"
    TAKEN = "taken"
    INVALID = "invalid"
    RATE_LIMITED = "rate_limited"


@dataclass(frozen=True, kw_only=True)
class NewChange:
    """A change about to be stored: hashes only, never the code or the link's secret."""

    id: str
    user_id: str
    email: str
    email_key: str
    code_hash: str
    link_hash: str
    expires_at: int
    ip: str
    user_agent: str


@dataclass(frozen=True)
class ChangeOutcome:
    """The result; `old_email`/`email` are set when the account moved."""

    state: ChangeState
    tries_left: int = 0
    retry_after: int = 0
    user_id: str = ""
    old_email: str = ""
    email: str = ""


@replayable
def open_change(change: NewChange, limits: LimitSettings, now: int) -> UseCase[ChangeOutcome]:
    """Within the new address's mail limits (the sign-in mail's, counted together), store the
    change and log its mail; the person's earlier pending change ends."""
    key = limit_key(change.email_key)
    yield address_lock(key)
    wait = yield from mail_limit_wait(key, None, limits, now)
    if wait > 0:
        return ChangeOutcome(ChangeState.RATE_LIMITED, retry_after=wait)
    yield Q(
        "UPDATE address_changes SET consumed_at = :now, outcome = 'superseded'"
        " WHERE user_id = :uid AND consumed_at IS NULL",
        {"uid": change.user_id, "now": now},
    )
    yield Q(
        "INSERT INTO address_changes (id, user_id, email, email_key, old_email_key, code_hash,"
        " link_hash, created_at, expires_at, attempts, consumed_at, outcome, ip, user_agent)"
        " VALUES (:id, :user_id, :email, :email_key, NULL, :code_hash, :link_hash, :now,"
        " :expires_at, 0, NULL, NULL, :ip, :user_agent)",
        {**change.__dict__, "now": now},
    )
    yield Q(
        "INSERT INTO mail_log (flow_id, email_key, created_at) VALUES (:id, :k, :now)",
        {"id": change.id, "k": key, "now": now},
    )
    return ChangeOutcome(ChangeState.OK)


def pending_change(user_id: str, now: int) -> UseCase[Row | None]:
    """The person's pending change (the newest: opening one ends the others), if any."""
    rows = yield Q(
        f"SELECT {_COLUMNS} FROM address_changes WHERE user_id = :uid AND consumed_at IS NULL"
        " AND expires_at > :now ORDER BY created_at DESC",
        {"uid": user_id, "now": now},
    )
    return rows[0] if rows else None


def change_state(row: Row, now: int, max_attempts: int) -> ChangeState:
    """Where a change stands, from its row."""
    if row["outcome"] in ("changed", "superseded", "taken"):
        return ChangeState.USED
    if row["outcome"] == "too_many_attempts" or row["attempts"] >= max_attempts:
        return ChangeState.DEAD
    if row["expires_at"] <= now:
        return ChangeState.EXPIRED
    return ChangeState.PENDING


def peek_change(change_id: str, link_hash: str, now: int, max_attempts: int) -> UseCase[Row]:
    """A change's row if the link is genuine and the change still pending; else {}."""
    rows = yield Q(f"SELECT {_COLUMNS} FROM address_changes WHERE id = :id", {"id": change_id})
    if not rows or not same(rows[0]["link_hash"], link_hash):
        return {}
    return rows[0] if change_state(rows[0], now, max_attempts) is ChangeState.PENDING else {}


@replayable
def confirm_change(
    change_id: str, candidate: str, *, by_link: bool, max_attempts: int, actor: Actor, now: int
) -> UseCase[ChangeOutcome]:
    """Check the code (counted before it is compared, as a sign-in's) or the link, and move
    the account to the new address unless another account has it. The change is audited
    without either address; its webhook carries the new one (receivers keep it in step)."""
    keys = yield Q("SELECT email_key FROM address_changes WHERE id = :id", {"id": change_id})
    if not keys:
        return ChangeOutcome(ChangeState.INVALID)
    yield address_lock(limit_key(keys[0]["email_key"]))
    counted = "attempts + 1" if not by_link else "attempts"
    rows = yield Q(
        f"UPDATE address_changes SET attempts = {counted} WHERE id = :id RETURNING {_COLUMNS}",
        {"id": change_id},
    )
    row = rows[0]
    state = change_state(row, now, max_attempts + (0 if by_link else 1))
    if state is not ChangeState.PENDING:
        return ChangeOutcome(state)
    if not same(row["link_hash" if by_link else "code_hash"], candidate):
        return (yield from _wrong(row, by_link, max_attempts, now))
    p = {"id": change_id, "uid": row["user_id"], "now": now}
    owner = yield from find_user(row["email_key"])
    if owner is not None and owner["id"] != row["user_id"]:
        yield Q(
            "UPDATE address_changes SET consumed_at = :now, outcome = 'taken' WHERE id = :id", p
        )
        return ChangeOutcome(ChangeState.TAKEN)
    users = yield Q("SELECT email, email_key FROM users WHERE id = :uid", p)
    if not users:
        return ChangeOutcome(ChangeState.INVALID)
    yield Q(
        "UPDATE users SET email = :email, email_key = :k WHERE id = :uid",
        {**p, "email": row["email"], "k": row["email_key"]},
    )
    yield Q(
        "UPDATE address_changes SET consumed_at = :now, outcome = 'changed', old_email_key = :old"
        " WHERE id = :id",
        {**p, "old": users[0]["email_key"]},
    )
    yield from record(
        Event.EMAIL_CHANGED,
        actor=actor,
        now=now,
        user_id=row["user_id"],
        details={"change_id": change_id, "by": "link" if by_link else "code"},
        email=row["email"],
    )
    return ChangeOutcome(
        ChangeState.OK, user_id=row["user_id"], old_email=users[0]["email"], email=row["email"]
    )


def _wrong(row: Row, by_link: bool, max_attempts: int, now: int) -> UseCase[ChangeOutcome]:
    if by_link:
        return ChangeOutcome(ChangeState.INVALID)
    if row["attempts"] >= max_attempts:
        yield Q(
            "UPDATE address_changes SET consumed_at = :now, outcome = 'too_many_attempts'"
            " WHERE id = :id",
            {"id": row["id"], "now": now},
        )
    return ChangeOutcome(ChangeState.WRONG, tries_left=max(0, max_attempts - row["attempts"]))
