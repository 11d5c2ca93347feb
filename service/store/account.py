"""A person's account as a whole: everything Latch holds about them (export), and deleting it.

Locks: delete takes the address lock of the account's address (as a sign-in of that address
does, LOCK_ORDER) before any row, so a sign-in racing the deletion either finished first (its
session is deleted with the rest) or comes after it (and starts a new person).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from service.addresses import limit_key
from service.db import Q, Row, UseCase, address_lock, replayable
from service.store.audit import Actor, Event, record
from service.store.factors import FACTOR_TABLES
from service.store.signins import split
from service.store.webhooks import forget_user

# Columns only: no code, link or refresh hash, nor any other secret, ever leaves in an export.
_EXPORTS = (
    (
        "sessions",
        "SELECT id, created_at, last_used_at, idle_expires_at, expires_at, revoked_at, ip,"
        " user_agent, aal, amr, auth_time FROM sessions WHERE user_id = :uid"
        " ORDER BY created_at DESC",
    ),
    (
        "pending_sign_ins",
        "SELECT id, amr, created_at, expires_at, consumed_at, ip, user_agent FROM signins"
        " WHERE user_id = :uid ORDER BY created_at DESC",
    ),
    (
        "known_devices",
        "SELECT device, network, first_seen_at, last_seen_at FROM known_devices"
        " WHERE user_id = :uid ORDER BY last_seen_at DESC",
    ),
    (
        "new_device_notices",
        "SELECT created_at, device, network, ip, session_id, expires_at, used_at"
        " FROM device_notices WHERE user_id = :uid ORDER BY created_at DESC",
    ),
    (
        "address_changes",
        "SELECT email, created_at, expires_at, consumed_at, outcome, ip, user_agent"
        " FROM address_changes WHERE user_id = :uid ORDER BY created_at DESC",
    ),
    # Second factors (§11): which and when; never the sealed secret nor a code's hash.
    (
        "factors",
        "SELECT 'totp' AS method, created_at, confirmed_at FROM totp_factors WHERE user_id = :uid",
    ),
    (
        "recovery_codes",
        "SELECT created_at, used_at FROM recovery_codes WHERE user_id = :uid"
        " ORDER BY created_at DESC, used_at",
    ),
    # Passkeys (§12): their names and dates; the credential id and public key are no
    # secret, but they mean nothing to a person and name the authenticator to any site.
    (
        "passkeys",
        "SELECT name, created_at, last_used_at FROM passkeys WHERE user_id = :uid"
        " ORDER BY created_at, id",
    ),
    # OpenID apps (§13): what the person allowed, and each sign-in to an app (a grant);
    # never a code, token or PKCE value.
    (
        "app_consents",
        "SELECT c.client_id, o.name AS app, c.scope, c.created_at FROM oauth_consents c"
        " JOIN oauth_clients o ON o.id = c.client_id WHERE c.user_id = :uid"
        " ORDER BY c.created_at DESC",
    ),
    (
        "app_sign_ins",
        "SELECT g.client_id, o.name AS app, g.session_id, g.scope, g.redirect_uri, g.aal,"
        " g.amr, g.auth_time, g.created_at, g.code_used_at, g.rotated_at, g.revoked_at"
        " FROM oauth_grants g JOIN oauth_clients o ON o.id = g.client_id"
        " WHERE g.user_id = :uid ORDER BY g.created_at DESC",
    ),
)


def export_account(user_id: str) -> UseCase[dict[str, Any] | None]:
    """Everything Latch holds about a person, without a secret or a hash; None if no such
    user."""
    users = yield Q(
        "SELECT id, email, email_key, created_at, last_login_at, second_factors FROM users"
        " WHERE id = :uid",
        {"uid": user_id},
    )
    if not users:
        return None
    user = users[0]
    out: dict[str, Any] = {
        "account": {
            "id": user["id"],
            "email": user["email"],
            "created_at": user["created_at"],
            "last_login_at": user["last_login_at"],
            "second_factors": list(split(user["second_factors"])),
        }
    }
    for name, sql in _EXPORTS:
        out[name] = yield Q(sql, {"uid": user_id})
    # Sign-in attempts with this address (kept a day, for the limits): when, from where, and
    # how they ended; never their code or link hash.
    out["sign_in_attempts"] = yield Q(
        "SELECT created_at, expires_at, attempts, outcome, mail_status, ip, user_agent"
        " FROM login_flows WHERE email_key = :k ORDER BY created_at DESC",
        {"k": user["email_key"]},
    )
    failures = yield Q(
        "SELECT failures, locked_until, updated_at FROM address_failures WHERE email_key = :k",
        {"k": user["email_key"]},
    )
    out["wrong_codes"] = failures[0] if failures else None
    return out


@dataclass(frozen=True)
class Deleted:
    """What a deletion removed that others must hear of: the sessions (for /auth/check's
    cache) and the address the account had."""

    email: str
    session_ids: tuple[str, ...]


@replayable
def delete_account(user_id: str, *, actor: Actor, now: int) -> UseCase[Deleted | None]:
    """Delete a person and everything of theirs, in one transaction; None if no such user.
    The person's own deletion and an operator's (admin API, CLI) are this one use case.

    Rows keyed by address (flows, mail log, failure counts) go for every address the account
    had that Latch still holds (its address changes name them), not only the current one.
    The audit log keeps the person's events: they name the user by id and never held the
    address; the webhook messages that carried it have it blanked (`forget_user`).
    """
    users = yield Q("SELECT email, email_key FROM users WHERE id = :uid", {"uid": user_id})
    if not users:
        return None
    yield address_lock(limit_key(users[0]["email_key"]))
    users = yield Q("SELECT email, email_key FROM users WHERE id = :uid", {"uid": user_id})
    if not users:
        return None
    p: dict[str, Any] = {"uid": user_id}
    changes = yield Q(
        "SELECT email_key, old_email_key FROM address_changes WHERE user_id = :uid", p
    )
    keys = {users[0]["email_key"]}
    keys |= {r[c] for r in changes for c in ("email_key", "old_email_key") if r[c]}
    names = {f"k{i}": k for i, k in enumerate(sorted(keys))}
    inboxes = {f"i{i}": k for i, k in enumerate(sorted({limit_key(k) for k in keys}))}
    in_keys = ", ".join(f":{n}" for n in names)
    in_inboxes = ", ".join(f":{n}" for n in inboxes)
    p |= names | inboxes
    yield Q(f"DELETE FROM login_flows WHERE email_key IN ({in_keys})", p)
    yield Q(f"DELETE FROM address_failures WHERE email_key IN ({in_keys})", p)
    # mail_log counts the mail limits per inbox (`+tag` dropped): its rows name the address.
    yield Q(f"DELETE FROM mail_log WHERE email_key IN ({in_inboxes})", p)
    sessions: list[Row] = yield Q(
        "DELETE FROM sessions WHERE user_id = :uid RETURNING id, revoked_at, expires_at", p
    )
    # Every table with a user_id references users ON DELETE CASCADE; they are named here as
    # well so that the deletion does not hang on a connection's foreign_keys setting.
    for table in (
        "signins",
        "known_devices",
        "device_notices",
        "address_changes",
        *FACTOR_TABLES,
        # Challenges handed out to this person (adding a passkey, a second step); those of a
        # first step name nobody and wait for the purge.
        "webauthn_challenges",
        "oauth_grants",
        "oauth_consents",
    ):
        yield Q(f"DELETE FROM {table} WHERE user_id = :uid", p)
    yield Q("DELETE FROM users WHERE id = :uid", p)
    yield from forget_user(user_id)
    live = [r for r in sessions if r["revoked_at"] is None and r["expires_at"] > now]
    yield from record(
        Event.USER_DELETED,
        actor=actor,
        now=now,
        user_id=user_id,
        details={"sessions_ended": len(live)},
    )
    return Deleted(users[0]["email"], tuple(r["id"] for r in sessions))
