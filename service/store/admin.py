"""The operator's use cases on users and admin keys (docs/design.md §14), each audited in its
own transaction. Deleting a user is the person's own deletion (store/account.py), by another
actor.

Disabling a user and ending their sessions is one transaction, after which every refresh finds
its session revoked and /auth/check sees it within its one-second staleness; a sign-in racing
the disable locks the same users row in its upsert, so it either commits first (and its new
session is among those ended here) or sees `disabled_at` and is refused (store/flows.py).
"""

from __future__ import annotations

from urllib.parse import urlsplit

from service.addresses import limit_key
from service.db import Q, Row, UseCase, address_lock, replayable
from service.store.audit import Actor, Event, record
from service.store.factors import remove_all_factors
from service.store.sessions import end_user_sessions
from service.store.webhooks import add_endpoint, delete_endpoint

_USER = "id, email, created_at, last_login_at, disabled_at"


def _user(row: Row) -> Row:
    return {**row, "disabled": row["disabled_at"] is not None}


def _like(text: str) -> str:
    """A LIKE pattern matching `text` anywhere, its own wildcards escaped."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def list_users(*, email: str | None, after: str | None, limit: int) -> UseCase[list[Row]]:
    """Users in id order after the cursor `after`, those whose address contains `email`."""
    where, p = [], {"limit": limit, "after": after, "pattern": _like((email or "").lower())}
    if email:
        where.append("LOWER(email) LIKE :pattern ESCAPE '\\'")
    if after is not None:
        where.append("id > :after")
    clause = f" WHERE {' AND '.join(where)}" if where else ""
    rows = yield Q(f"SELECT {_USER} FROM users{clause} ORDER BY id LIMIT :limit", p)
    return [_user(row) for row in rows]


def get_user(user_id: str) -> UseCase[Row | None]:
    """One user by id."""
    rows = yield Q(f"SELECT {_USER} FROM users WHERE id = :id", {"id": user_id})
    return _user(rows[0]) if rows else None


@replayable
def create_user(
    user_id: str, email: str, email_key: str, *, actor: Actor, now: int
) -> UseCase[tuple[Row, bool]]:
    """Create a user (an operator's); returns (user, created). Under the address lock, like a
    sign-in that may create the same user."""
    yield address_lock(limit_key(email_key))
    rows = yield Q(f"SELECT {_USER} FROM users WHERE email_key = :k", {"k": email_key})
    if rows:
        return _user(rows[0]), False
    rows = yield Q(
        "INSERT INTO users (id, email, email_key, created_at, last_login_at)"
        f" VALUES (:id, :email, :k, :now, NULL) RETURNING {_USER}",
        {"id": user_id, "email": email, "k": email_key, "now": now},
    )
    yield from record(
        Event.USER_CREATED,
        actor=actor,
        now=now,
        user_id=user_id,
        details={"via": "admin"},
        email=email,
    )
    return _user(rows[0]), True


@replayable
def set_disabled(
    user_id: str, disabled: bool, *, actor: Actor, now: int
) -> UseCase[tuple[Row | None, list[str]]]:
    """Disable (ending every session) or enable a user; (the user or None, sessions ended).

    Idempotent: disabling a disabled user changes and records nothing."""
    change = "disabled_at = :now WHERE id = :id AND disabled_at IS NULL"
    if not disabled:
        change = "disabled_at = NULL WHERE id = :id AND disabled_at IS NOT NULL"
    changed = yield Q(f"UPDATE users SET {change} RETURNING id", {"id": user_id, "now": now})
    ended: list[str] = []
    if changed:
        if disabled:
            ended = yield from end_user_sessions(user_id, now, actor=actor, reason="disabled")
        event = Event.USER_DISABLED if disabled else Event.USER_ENABLED
        yield from record(event, actor=actor, now=now, user_id=user_id)
    return (yield from get_user(user_id)), ended


@replayable
def reset_factors(user_id: str, *, actor: Actor, now: int) -> UseCase[list[str] | None]:
    """Remove every second factor of a user, their rows included (they sign in with the email
    step alone); the methods removed, or None when there is no such user."""
    return (yield from remove_all_factors(user_id, reason="admin_reset", actor=actor, now=now))


@replayable
def add_admin_key(
    key_id: str, name: str, key_hash: str, *, actor: Actor, now: int
) -> UseCase[bool]:
    """Store a new admin key's hash; False when the name is taken."""
    rows = yield Q(
        "INSERT INTO admin_keys (id, name, key_hash, created_at, last_used_at, revoked_at)"
        " VALUES (:id, :name, :h, :now, NULL, NULL) ON CONFLICT DO NOTHING RETURNING id",
        {"id": key_id, "name": name, "h": key_hash, "now": now},
    )
    if rows:
        yield from record(Event.ADMIN_KEY_CREATED, actor=actor, now=now, details={"name": name})
    return bool(rows)


@replayable
def use_admin_key(key_hash: str, now: int) -> UseCase[str | None]:
    """The name of the live admin key with this hash (its use noted), else None."""
    rows = yield Q(
        "UPDATE admin_keys SET last_used_at = :now WHERE key_hash = :h AND revoked_at IS NULL"
        " RETURNING name",
        {"h": key_hash, "now": now},
    )
    return str(rows[0]["name"]) if rows else None


def list_admin_keys() -> UseCase[list[Row]]:
    """Every admin key (never its hash), oldest first."""
    rows = yield Q(
        "SELECT name, created_at, last_used_at, revoked_at FROM admin_keys"
        " ORDER BY created_at, name"
    )
    return rows


@replayable
def revoke_admin_key(name: str, *, actor: Actor, now: int) -> UseCase[bool]:
    """Revoke a key by name at once (no cache: the next call with it is a 401)."""
    rows = yield Q(
        "UPDATE admin_keys SET revoked_at = :now WHERE name = :name AND revoked_at IS NULL"
        " RETURNING id",
        {"name": name, "now": now},
    )
    if rows:
        yield from record(Event.ADMIN_KEY_REVOKED, actor=actor, now=now, details={"name": name})
    return bool(rows)


@replayable
def create_webhook(
    endpoint_id: str,
    *,
    url: str,
    events: tuple[str, ...],
    sealed_secret: str,
    actor: Actor,
    now: int,
) -> UseCase[Row]:
    """Add a webhook endpoint, audited (with the URL's host only: a URL's path or query may
    itself be a credential, as many receivers' are)."""
    row = yield from add_endpoint(
        endpoint_id, url=url, events=events, sealed_secret=sealed_secret, now=now
    )
    details = {"webhook_id": endpoint_id, "host": urlsplit(url).hostname, "events": list(events)}
    yield from record(Event.WEBHOOK_CREATED, actor=actor, now=now, details=details)
    return row


@replayable
def delete_webhook(endpoint_id: str, *, actor: Actor, now: int) -> UseCase[bool]:
    """Stop a webhook endpoint (its pending messages cancelled), audited."""
    done = yield from delete_endpoint(endpoint_id, now)
    if done:
        details = {"webhook_id": endpoint_id}
        yield from record(Event.WEBHOOK_DELETED, actor=actor, now=now, details=details)
    return done
