"""Webhook endpoints and their outbox: one row per (event, endpoint), written in the transaction
of the action that caused the event, then claimed and delivered by delivery/webhooks.py.

Claiming is an UPDATE that leases due rows (`lease_until`): on PostgreSQL its subquery takes
them `FOR UPDATE SKIP LOCKED`, so instances polling at once each get different rows instead of
queueing behind one another, and the outer WHERE re-checks the lease on the row it locked, so
no row is leased twice. A lease outlives the attempt's timeout; an instance that dies holding one
(SIGKILL) leaves rows that become due again when it expires: delivery is at least once. Each
attempt is counted when claimed, and its result is written only by the claim that made it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from service.db import Q, Row, UseCase, replayable

_ENDPOINT = "id, url, events, created_at"
_DELIVERY = "id, endpoint_id, event, created_at, attempts, next_at, status, delivered_at"


def enqueue(
    event: str, *, message_id: str, user_id: str | None, data: Mapping[str, Any], now: int
) -> UseCase[None]:
    """Queue `event` for every live endpoint subscribed to it.

    The subscribers are read first and a row is written only for them: most deployments have
    no endpoint for most events, and an INSERT … SELECT that inserts nothing still opened the
    outbox, its four indexes and its foreign key on every sign-in (measured: ~50 us of the
    database thread a sign-in, for nothing). Same transaction, same snapshot: the read and the
    write see the same endpoints, as the single statement did.

    `user_id` is kept on the row so that a deletion can find the person's messages and blank
    the address some of them carry (`forget_user`)."""
    endpoints = yield Q(
        "SELECT id FROM webhook_endpoints"
        " WHERE deleted_at IS NULL AND (' ' || events || ' ') LIKE :pattern",
        {"pattern": f"% {event} %"},
    )
    if not endpoints:
        return
    payload = {
        "type": event,
        "timestamp": datetime.fromtimestamp(now, UTC).isoformat().replace("+00:00", "Z"),
        "data": dict(data),
    }
    encoded = json.dumps(payload, separators=(",", ":"))
    for endpoint in endpoints:
        yield Q(
            "INSERT INTO webhook_outbox (id, endpoint_id, event, user_id, payload, created_at,"
            " attempts, next_at, lease_until, status, delivered_at)"
            " VALUES (:id, :eid, :event, :uid, :payload, :now, 0, :now, 0, 'pending', NULL)",
            {
                "id": f"{message_id}_{endpoint['id']}",
                "eid": endpoint["id"],
                "event": event,
                "uid": user_id,
                "payload": encoded,
                "now": now,
            },
        )


def add_endpoint(
    endpoint_id: str, *, url: str, events: tuple[str, ...], sealed_secret: str, now: int
) -> UseCase[Row]:
    """Store a new endpoint (its secret sealed); a part of the admin's create."""
    rows = yield Q(
        "INSERT INTO webhook_endpoints (id, url, events, secret, created_at, deleted_at)"
        f" VALUES (:id, :url, :events, :secret, :now, NULL) RETURNING {_ENDPOINT}",
        {
            "id": endpoint_id,
            "url": url,
            "events": " ".join(events),
            "secret": sealed_secret,
            "now": now,
        },
    )
    return _endpoint(rows[0])


def _endpoint(row: Row) -> Row:
    return {**row, "events": row["events"].split()}


def list_endpoints() -> UseCase[list[Row]]:
    """The live endpoints, oldest first (no secret)."""
    rows = yield Q(
        f"SELECT {_ENDPOINT} FROM webhook_endpoints WHERE deleted_at IS NULL"
        " ORDER BY created_at, id"
    )
    return [_endpoint(row) for row in rows]


def get_endpoint(endpoint_id: str) -> UseCase[Row | None]:
    """A live endpoint (no secret)."""
    rows = yield Q(
        f"SELECT {_ENDPOINT} FROM webhook_endpoints WHERE id = :id AND deleted_at IS NULL",
        {"id": endpoint_id},
    )
    return _endpoint(rows[0]) if rows else None


def delete_endpoint(endpoint_id: str, now: int) -> UseCase[bool]:
    """Stop an endpoint and cancel what it has not been sent yet; a part of the admin's delete.

    Kept (marked deleted) rather than removed, so its deliveries stay visible until purged.
    """
    rows = yield Q(
        "UPDATE webhook_endpoints SET deleted_at = :now WHERE id = :id AND deleted_at IS NULL"
        " RETURNING id",
        {"id": endpoint_id, "now": now},
    )
    if rows:
        yield Q(
            "UPDATE webhook_outbox SET status = 'cancelled' WHERE endpoint_id = :id"
            " AND status = 'pending'",
            {"id": endpoint_id},
        )
    return bool(rows)


def forget_user(user_id: str) -> UseCase[int]:
    """Blank the address in a deleted person's messages (user.created, login.succeeded and
    email.changed carry one), delivered or not; a part of the deletion. How many changed.

    A message still pending goes out without it (the user.deleted that follows names the same
    id): the deletion is the person's to ask for, and a receiver has had the address since it
    was first sent. The rows stay for the admin API's view of deliveries until purged."""
    rows = yield Q("SELECT id, payload FROM webhook_outbox WHERE user_id = :uid", {"uid": user_id})
    changed = 0
    for row in rows:
        payload = json.loads(row["payload"])
        if payload.get("data", {}).pop("email", None) is None:
            continue
        yield Q(
            "UPDATE webhook_outbox SET payload = :payload WHERE id = :id",
            {"id": row["id"], "payload": json.dumps(payload, separators=(",", ":"))},
        )
        changed += 1
    return changed


@replayable
def claim_due(*, now: int, lease: int, limit: int, skip_locked: bool) -> UseCase[list[Row]]:
    """Lease up to `limit` due messages (each attempt counted now) with their endpoint's URL and
    sealed secret. `skip_locked` on PostgreSQL (SQLite serialises writers and has no such
    clause)."""
    lock = " FOR UPDATE SKIP LOCKED" if skip_locked else ""
    due = "status = 'pending' AND next_at <= :now AND lease_until <= :now"
    rows = yield Q(
        "UPDATE webhook_outbox SET lease_until = :until, attempts = attempts + 1 WHERE id IN"
        f" (SELECT id FROM webhook_outbox WHERE {due} ORDER BY next_at LIMIT :limit{lock})"
        f" AND {due} RETURNING id, endpoint_id, event, payload, attempts, created_at",
        {"now": now, "until": now + lease, "limit": limit},
    )
    if not rows:
        return []
    ids = sorted({row["endpoint_id"] for row in rows})
    names = {f"e{i}": eid for i, eid in enumerate(ids)}
    endpoints = yield Q(
        f"SELECT id, url, secret FROM webhook_endpoints WHERE id IN"
        f" ({', '.join(':' + n for n in names)})",
        names,
    )
    by_id = {e["id"]: e for e in endpoints}
    return [
        {
            **row,
            "url": by_id[row["endpoint_id"]]["url"],
            "secret": by_id[row["endpoint_id"]]["secret"],
        }
        for row in rows
        if row["endpoint_id"] in by_id
    ]


@replayable
def finish_attempt(
    message_id: str,
    attempt: int,
    *,
    now: int,
    status: int | None,
    error: str | None,
    retry_at: int | None,
) -> UseCase[bool]:
    """Record one attempt's result: delivered (a 2xx), due again at `retry_at`, or given up
    (`retry_at` None after a failure). Only the claim that made attempt number `attempt` may
    write it: if its lease ran out and another instance claimed the message, this is a no-op."""
    delivered = status is not None and 200 <= status < 300
    if delivered:
        change = "status = 'delivered', delivered_at = :now"
    elif retry_at is not None:
        change = "next_at = :retry"
    else:
        change = "status = 'failed'"
    rows = yield Q(
        f"UPDATE webhook_outbox SET {change}, lease_until = 0 WHERE id = :id"
        " AND attempts = :attempt AND status = 'pending' RETURNING id",
        {"id": message_id, "attempt": attempt, "now": now, "retry": retry_at},
    )
    yield Q(
        "INSERT INTO webhook_attempts (message_id, attempt, at, status, error)"
        " VALUES (:id, :attempt, :now, :status, :error) ON CONFLICT DO NOTHING",
        {"id": message_id, "attempt": attempt, "now": now, "status": status, "error": error},
    )
    return bool(rows)


def list_deliveries(endpoint_id: str, *, before: str | None, limit: int) -> UseCase[list[Row]]:
    """An endpoint's messages, newest first, each with its attempts (`before`: the cursor)."""
    after = " AND id < :before" if before is not None else ""
    rows = yield Q(
        f"SELECT {_DELIVERY} FROM webhook_outbox WHERE endpoint_id = :eid{after}"
        " ORDER BY id DESC LIMIT :limit",
        {"eid": endpoint_id, "before": before, "limit": limit},
    )
    if not rows:
        return []
    names = {f"m{i}": row["id"] for i, row in enumerate(rows)}
    attempts = yield Q(
        "SELECT message_id, attempt, at, status, error FROM webhook_attempts WHERE message_id"
        f" IN ({', '.join(':' + n for n in names)}) ORDER BY attempt",
        names,
    )
    by_message: dict[str, list[Row]] = {}
    for a in attempts:
        by_message.setdefault(a.pop("message_id"), []).append(a)
    return [{**row, "attempt_log": by_message.get(row["id"], [])} for row in rows]


@replayable
def purge_outbox(cut: int, batch: int) -> UseCase[int]:
    """Delete up to `batch` finished messages (delivered, failed, cancelled) older than `cut`."""
    rows = yield Q(
        "DELETE FROM webhook_outbox WHERE id IN (SELECT id FROM webhook_outbox WHERE"
        " created_at < :cut AND status <> 'pending' ORDER BY created_at LIMIT :batch)"
        " RETURNING id",
        {"cut": cut, "batch": batch},
    )
    return len(rows)
