"""The audit log: one row per security-relevant action, written by the action's own transaction.

`record` is a fragment that a use case yields from, so the event commits or rolls back with
the action it describes: an action that fails leaves no row, and no action happens unrecorded.
Details never hold a secret (no code, token, key or hash) and never an address: events name the
user by id, so deleting a user keeps their events and removes their address with the users row
(docs/design.md §14). Events that other systems may subscribe to also go to the webhook outbox,
in the same transaction (store/webhooks.py).
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from service.db import Q, Row, UseCase, replayable
from service.store.webhooks import enqueue


class Event(StrEnum):
    """Every kind of audit event (the first eight are also webhook events)."""

    USER_CREATED = "user.created"
    USER_DELETED = "user.deleted"
    LOGIN_SUCCEEDED = "login.succeeded"
    LOGIN_FAILED = "login.failed"
    SESSION_REVOKED = "session.revoked"
    FACTOR_ADDED = "factor.added"
    FACTOR_REMOVED = "factor.removed"
    EMAIL_CHANGED = "email.changed"
    USER_DISABLED = "user.disabled"
    USER_ENABLED = "user.enabled"
    ADMIN_KEY_CREATED = "admin_key.created"
    ADMIN_KEY_REVOKED = "admin_key.revoked"
    WEBHOOK_CREATED = "webhook.created"
    WEBHOOK_DELETED = "webhook.deleted"
    ADMIN_READ = "admin.read"
    # The person's side (§11, §13, §14): in the log, not offered to webhooks.
    RECOVERY_CODE_USED = "recovery_code.used"
    RECOVERY_CODES_REPLACED = "recovery_codes.replaced"
    STEP_UP_PASSED = "step_up.passed"
    STEP_UP_FAILED = "step_up.failed"
    NEW_DEVICE_NOTICE = "notice.new_device"
    CONSENT_GRANTED = "consent.granted"
    CONSENT_REVOKED = "consent.revoked"


# What a webhook endpoint may subscribe to (docs/design.md §14).
WEBHOOK_EVENTS: tuple[Event, ...] = (
    Event.USER_CREATED,
    Event.USER_DELETED,
    Event.LOGIN_SUCCEEDED,
    Event.LOGIN_FAILED,
    Event.SESSION_REVOKED,
    Event.FACTOR_ADDED,
    Event.FACTOR_REMOVED,
    Event.EMAIL_CHANGED,
)

_COLUMNS = "id, at, event, user_id, actor, ip, user_agent, details"


@dataclass(frozen=True)
class Actor:
    """Who did it, from where: `name` is "user" (the person themselves), "anonymous" (a client
    not signed in), "admin:<key name>", "cli" or "system"."""

    name: str
    ip: str = ""
    user_agent: str = ""


SYSTEM = Actor("system")
ANONYMOUS = Actor("anonymous")
CLI = Actor("cli")


_last_stamp = 0
_stamp_lock = threading.Lock()


def event_id() -> str:
    """A time-ordered id: the wall clock in nanoseconds (strictly increasing in this process, so
    the events of one transaction keep their order), then 48 random bits (instances apart).
    Newest first is descending id order, and a cursor is simply the last id seen."""
    global _last_stamp
    with _stamp_lock:
        _last_stamp = max(time.time_ns(), _last_stamp + 1)
        stamp = _last_stamp
    return f"{stamp:016x}{secrets.token_hex(6)}"


def record(
    event: Event,
    *,
    actor: Actor,
    now: int,
    user_id: str | None = None,
    details: Mapping[str, Any] | None = None,
    email: str | None = None,
) -> UseCase[None]:
    """Append an event to the audit log (and to the webhook outbox when it is a webhook event).

    `email` goes only into the webhook's payload, never into the audit row (see above).
    """
    eid = event_id()
    yield Q(
        f"INSERT INTO audit_events ({_COLUMNS}) VALUES (:id, :at, :event, :uid, :actor, :ip,"
        " :ua, :details)",
        {
            "id": eid,
            "at": now,
            "event": str(event),
            "uid": user_id,
            "actor": actor.name,
            "ip": actor.ip,
            "ua": actor.user_agent[:300],
            "details": json.dumps(dict(details or {}), separators=(",", ":")),
        },
    )
    if event in WEBHOOK_EVENTS:
        data: dict[str, Any] = {"user_id": user_id, **(details or {})}
        if email is not None:
            data["email"] = email
        yield from enqueue(str(event), message_id=eid, user_id=user_id, data=data, now=now)


@replayable
def record_alone(
    event: Event, *, actor: Actor, now: int, user_id: str | None = None, **details: Any
) -> UseCase[None]:
    """An event with no other action in its transaction (an admin's read, a CLI command)."""
    yield from record(event, actor=actor, now=now, user_id=user_id, details=details)


def _event(row: Row) -> Row:
    return {**row, "details": json.loads(row["details"])}


def list_events(
    *,
    user_id: str | None = None,
    event: str | None = None,
    before: str | None = None,
    limit: int = 100,
) -> UseCase[list[Row]]:
    """Events newest first, filtered by user and type; `before` is the cursor (an event id)."""
    where, p = [], {"limit": limit, "uid": user_id, "event": event, "before": before}
    if user_id is not None:
        where.append("user_id = :uid")
    if event is not None:
        where.append("event = :event")
    if before is not None:
        where.append("id < :before")
    clause = f" WHERE {' AND '.join(where)}" if where else ""
    rows = yield Q(f"SELECT {_COLUMNS} FROM audit_events{clause} ORDER BY id DESC LIMIT :limit", p)
    return [_event(row) for row in rows]


def tail_events(after: str | None, limit: int = 100) -> UseCase[list[Row]]:
    """Events oldest first after the event id `after` (None: the latest `limit`): `audit tail`."""
    if after is None:
        rows = yield Q(
            f"SELECT {_COLUMNS} FROM audit_events ORDER BY id DESC LIMIT :limit", {"limit": limit}
        )
        return [_event(row) for row in reversed(rows)]
    rows = yield Q(
        f"SELECT {_COLUMNS} FROM audit_events WHERE id > :after ORDER BY id LIMIT :limit",
        {"after": after, "limit": limit},
    )
    return [_event(row) for row in rows]


@replayable
def purge_events(cut: int, batch: int) -> UseCase[int]:
    """Delete up to `batch` events older than `cut`; the caller repeats while a batch is full.

    In batches, each its own short transaction: a year of events deleted at once would hold
    the write lock (SQLite: the whole database) for as long as it took.
    """
    rows = yield Q(
        "DELETE FROM audit_events WHERE id IN (SELECT id FROM audit_events WHERE at < :cut"
        " ORDER BY at LIMIT :batch) RETURNING id",
        {"cut": cut, "batch": batch},
    )
    return len(rows)
