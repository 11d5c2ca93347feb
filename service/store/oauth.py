"""The OpenID provider's tables (docs/design.md §13): clients, pending authorization requests,
grants (an authorization code and the tokens issued from it) and consents.

Locks: no advisory lock; each use case touches one grant row (locked by a no-op UPDATE before
it is judged, so two racing exchanges of one code, or of one refresh token, are decided one
after the other), or one client's / one person's rows.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from service.db import Q, Row, UseCase, replayable
from service.store.audit import Actor, Event, record

_GRANT = (
    "g.id, g.client_id, g.user_id, g.session_id, g.scope, g.redirect_uri, g.nonce,"
    " g.code_challenge, g.code_expires_at, g.code_used_at, g.refresh_hash,"
    " g.prev_refresh_hash, g.aal, g.amr, g.auth_time, g.created_at, g.revoked_at"
)
_LIVE_SESSION = (
    "SELECT 1 AS live FROM sessions WHERE id = :sid AND revoked_at IS NULL"
    " AND expires_at > :now AND idle_expires_at > :now"
)
_CLIENT = (
    "id, name, secret_hash, redirect_uris, post_logout_redirect_uris, scopes, first_party,"
    " require_aal2, id_token_alg, created_at"
)


# --- clients ---------------------------------------------------------------------------------


@replayable
def add_client(client: dict[str, Any]) -> UseCase[None]:
    """Store a new client (columns as in the oauth_clients table)."""
    yield Q(
        "INSERT INTO oauth_clients (id, name, secret_hash, redirect_uris,"
        " post_logout_redirect_uris, scopes, first_party, require_aal2, id_token_alg, created_at)"
        " VALUES (:id, :name, :secret_hash, :redirect_uris, :post_logout_redirect_uris,"
        " :scopes, :first_party, :require_aal2, :id_token_alg, :created_at)",
        client,
    )


def get_client(client_id: str) -> UseCase[Row | None]:
    """A client by id."""
    rows = yield Q(f"SELECT {_CLIENT} FROM oauth_clients WHERE id = :id", {"id": client_id})
    return rows[0] if rows else None


def list_clients() -> UseCase[list[Row]]:
    """Every client, oldest first."""
    rows = yield Q(f"SELECT {_CLIENT} FROM oauth_clients ORDER BY created_at, id")
    return rows


@replayable
def remove_client(client_id: str) -> UseCase[bool]:
    """Delete a client and (by cascade) its requests, grants and consents."""
    for table in ("oauth_requests", "oauth_grants", "oauth_consents"):
        yield Q(f"DELETE FROM {table} WHERE client_id = :id", {"id": client_id})
    rows = yield Q("DELETE FROM oauth_clients WHERE id = :id RETURNING id", {"id": client_id})
    return bool(rows)


@replayable
def set_client_secret(client_id: str, secret_hash: str) -> UseCase[bool]:
    """Replace a confidential client's secret hash; False when there is no such client."""
    rows = yield Q(
        "UPDATE oauth_clients SET secret_hash = :h WHERE id = :id AND secret_hash IS NOT NULL"
        " RETURNING id",
        {"h": secret_hash, "id": client_id},
    )
    return bool(rows)


# --- pending authorization requests ----------------------------------------------------------


@replayable
def save_request(
    request_id: str, client_id: str, params: str, *, now: int, expires_at: int
) -> UseCase[None]:
    """Keep an authorization request (its parameters as JSON) while the person signs in."""
    yield Q(
        "INSERT INTO oauth_requests (id, client_id, params, created_at, expires_at, consumed_at)"
        " VALUES (:id, :cid, :p, :now, :exp, NULL)",
        {"id": request_id, "cid": client_id, "p": params, "now": now, "exp": expires_at},
    )


def get_request(request_id: str, now: int) -> UseCase[Row | None]:
    """A pending request that is neither used nor expired."""
    rows = yield Q(
        "SELECT id, client_id, params, created_at FROM oauth_requests WHERE id = :id"
        " AND consumed_at IS NULL AND expires_at > :now",
        {"id": request_id, "now": now},
    )
    return rows[0] if rows else None


# --- grants ----------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class NewGrant:
    """What an authorization code is issued for."""

    id: str
    client_id: str
    user_id: str
    session_id: str
    scope: str
    redirect_uri: str
    nonce: str | None
    code_challenge: str | None
    code_hash: str
    code_expires_at: int
    aal: int
    amr: str
    auth_time: int


@replayable
def open_grant(grant: NewGrant, request_id: str | None, now: int) -> UseCase[bool]:
    """Store an authorization code's grant; with a pending request, consume it in the same
    transaction (False, and nothing stored, when it was consumed already: two racing
    consents or returns from sign-in issue one code).

    Consuming deletes the request: the grant keeps what is needed of it, and a request holds
    a person's login_hint, state and nonce without naming their user id, so a row kept until
    the purge could not be found when that person deletes their account (§14)."""
    if request_id is not None:
        rows = yield Q(
            "DELETE FROM oauth_requests WHERE id = :id AND consumed_at IS NULL"
            " AND expires_at > :now RETURNING id",
            {"id": request_id, "now": now},
        )
        if not rows:
            return False
    yield Q(
        "INSERT INTO oauth_grants (id, client_id, user_id, session_id, scope, redirect_uri,"
        " nonce, code_challenge, code_hash, code_expires_at, code_used_at, refresh_hash,"
        " prev_refresh_hash, rotated_at, aal, amr, auth_time, created_at, revoked_at)"
        " VALUES (:id, :client_id, :user_id, :session_id, :scope, :redirect_uri, :nonce,"
        " :code_challenge, :code_hash, :code_expires_at, NULL, NULL, NULL, NULL, :aal, :amr,"
        " :auth_time, :now, NULL)",
        {**grant.__dict__, "now": now},
    )
    return True


class CodeState(StrEnum):
    """What redeem_code decided about a presented authorization code."""

    REDEEMED = "redeemed"
    UNKNOWN = "unknown"  # no such code for this client, or its grant was revoked
    REUSED = "reused"  # used before: the grant (and every token from it) is now revoked
    EXPIRED = "expired"
    MISMATCH = "mismatch"  # wrong redirect_uri or PKCE verifier: the code is spent
    SESSION_ENDED = "session_ended"


@dataclass(frozen=True)
class Redemption:
    """The verdict, and the grant with its user's address when redeemed."""

    state: CodeState
    grant: Row | None = None


def _same(a: str | None, b: str | None) -> bool:
    if a is None or b is None:
        return a is b
    return hmac.compare_digest(a.encode(), b.encode())


@replayable
def redeem_code(
    code_hash: str,
    *,
    client_id: str,
    redirect_uri: str,
    challenge: str | None,
    refresh_hash: str,
    now: int,
) -> UseCase[Redemption]:
    """Exchange an authorization code, once (RFC 6749 §4.1.2, RFC 9700 §4.5).

    `challenge` is the S256 of the presented code_verifier (None when none was sent). The row
    is locked before it is judged, so of two racing exchanges one redeems and the other finds
    the code used, which revokes the grant: an attacker who replays a stolen code takes the
    legitimate tokens down with it, as RFC 6749 §4.1.2 asks. A verifier sent for a code issued
    without a challenge is a mismatch too (a PKCE downgrade, RFC 9700 §2.1.1).
    """
    rows = yield Q(
        "UPDATE oauth_grants SET code_used_at = code_used_at WHERE code_hash = :h"
        " RETURNING id, client_id, session_id, redirect_uri, code_challenge,"
        " code_expires_at, code_used_at, revoked_at",
        {"h": code_hash},
    )
    if not rows or rows[0]["client_id"] != client_id or rows[0]["revoked_at"] is not None:
        return Redemption(CodeState.UNKNOWN)
    row = rows[0]
    if row["code_used_at"] is not None:
        yield Q(
            "UPDATE oauth_grants SET revoked_at = :now WHERE id = :id",
            {"now": now, "id": row["id"]},
        )
        return Redemption(CodeState.REUSED)
    if row["code_expires_at"] <= now:
        return Redemption(CodeState.EXPIRED)
    if not _same(row["redirect_uri"], redirect_uri) or not _same(row["code_challenge"], challenge):
        yield Q(
            "UPDATE oauth_grants SET code_used_at = :now, revoked_at = :now WHERE id = :id",
            {"now": now, "id": row["id"]},
        )
        return Redemption(CodeState.MISMATCH)
    live = yield Q(_LIVE_SESSION, {"sid": row["session_id"], "now": now})
    if not live:
        return Redemption(CodeState.SESSION_ENDED)
    yield Q(
        "UPDATE oauth_grants SET code_used_at = :now, refresh_hash = :rh, rotated_at = :now"
        " WHERE id = :id",
        {"now": now, "rh": refresh_hash, "id": row["id"]},
    )
    return Redemption(CodeState.REDEEMED, (yield from _grant_with_email(row["id"])))


def _grant_with_email(grant_id: str) -> UseCase[Row | None]:
    rows = yield Q(
        f"SELECT {_GRANT}, u.email FROM oauth_grants g JOIN users u ON u.id = g.user_id"
        " WHERE g.id = :id",
        {"id": grant_id},
    )
    return rows[0] if rows else None


class RefreshState(StrEnum):
    """What rotate_grant decided about a presented refresh token."""

    ROTATED = "rotated"
    THEFT = "theft"  # the previous token, presented again: the grant is revoked
    UNKNOWN = "unknown"
    ENDED = "ended"  # revoked grant, or its Latch session has ended


@replayable
def rotate_grant(
    old_hash: str, new_hash: str, *, client_id: str, now: int
) -> UseCase[tuple[RefreshState, Row | None]]:
    """Rotate a refresh token (RFC 9700 §4.14.2): the current one is replaced; the one it
    replaced, presented again, means two parties hold the chain, and the grant is revoked."""
    rows = yield Q(
        "UPDATE oauth_grants SET rotated_at = rotated_at WHERE (refresh_hash = :h"
        " OR prev_refresh_hash = :h) AND client_id = :cid"
        " RETURNING id, session_id, refresh_hash, revoked_at",
        {"h": old_hash, "cid": client_id},
    )
    if not rows:
        return RefreshState.UNKNOWN, None
    row = rows[0]
    if row["revoked_at"] is not None:
        return RefreshState.ENDED, None
    if row["refresh_hash"] != old_hash:
        yield Q(
            "UPDATE oauth_grants SET revoked_at = :now WHERE id = :id",
            {"now": now, "id": row["id"]},
        )
        return RefreshState.THEFT, None
    live = yield Q(_LIVE_SESSION, {"sid": row["session_id"], "now": now})
    if not live:
        return RefreshState.ENDED, None
    yield Q(
        "UPDATE oauth_grants SET refresh_hash = :new, prev_refresh_hash = :old,"
        " rotated_at = :now WHERE id = :id",
        {"new": new_hash, "old": old_hash, "now": now, "id": row["id"]},
    )
    return RefreshState.ROTATED, (yield from _grant_with_email(row["id"]))


def live_grant(grant_id: str, now: int) -> UseCase[Row | None]:
    """A grant (with its user's address) that is unrevoked and whose Latch session is live:
    what userinfo asks of an access token."""
    rows = yield Q(
        f"SELECT {_GRANT}, u.email FROM oauth_grants g JOIN users u ON u.id = g.user_id"
        " JOIN sessions s ON s.id = g.session_id WHERE g.id = :id AND g.revoked_at IS NULL"
        " AND g.code_used_at IS NOT NULL AND s.revoked_at IS NULL AND s.expires_at > :now"
        " AND s.idle_expires_at > :now",
        {"id": grant_id, "now": now},
    )
    return rows[0] if rows else None


@replayable
def revoke_grant(
    *, client_id: str, now: int, grant_id: str = "", refresh_hash: str = ""
) -> UseCase[bool]:
    """Revoke a client's grant, named by id (an access token's) or by its refresh token."""
    rows = yield Q(
        "UPDATE oauth_grants SET revoked_at = :now WHERE client_id = :cid"
        " AND revoked_at IS NULL AND (id = :gid OR refresh_hash = :rh) RETURNING id",
        {"cid": client_id, "now": now, "gid": grant_id, "rh": refresh_hash},
    )
    return bool(rows)


# --- consents and the person's apps ----------------------------------------------------------


def get_consent(user_id: str, client_id: str) -> UseCase[str | None]:
    """The scopes a person has allowed a client, if any."""
    rows = yield Q(
        "SELECT scope FROM oauth_consents WHERE user_id = :uid AND client_id = :cid",
        {"uid": user_id, "cid": client_id},
    )
    return str(rows[0]["scope"]) if rows else None


@replayable
def save_consent(
    user_id: str, client_id: str, scope: str, now: int, *, actor: Actor
) -> UseCase[None]:
    """Remember what a person allowed a client (replacing what they allowed before)."""
    yield Q(
        "INSERT INTO oauth_consents (user_id, client_id, scope, created_at)"
        " VALUES (:uid, :cid, :scope, :now) ON CONFLICT (user_id, client_id)"
        " DO UPDATE SET scope = excluded.scope, created_at = excluded.created_at",
        {"uid": user_id, "cid": client_id, "scope": scope, "now": now},
    )
    details = {"client_id": client_id, "scope": scope}
    yield from record(Event.CONSENT_GRANTED, actor=actor, now=now, user_id=user_id, details=details)


def list_apps(user_id: str) -> UseCase[list[Row]]:
    """The apps a person has let in (a consent) or is signed in to (a live grant)."""
    rows = yield Q(
        "SELECT c.id, c.name, c.first_party, co.scope AS consented, co.created_at AS since,"
        " (SELECT COUNT(*) FROM oauth_grants g WHERE g.client_id = c.id"
        " AND g.user_id = :uid AND g.revoked_at IS NULL AND g.refresh_hash IS NOT NULL) AS grants"
        " FROM oauth_clients c LEFT JOIN oauth_consents co ON co.client_id = c.id"
        " AND co.user_id = :uid WHERE co.user_id IS NOT NULL OR EXISTS (SELECT 1 FROM"
        " oauth_grants g WHERE g.client_id = c.id AND g.user_id = :uid"
        " AND g.revoked_at IS NULL AND g.refresh_hash IS NOT NULL) ORDER BY c.name, c.id",
        {"uid": user_id},
    )
    return rows


@replayable
def revoke_app(user_id: str, client_id: str, now: int, *, actor: Actor) -> UseCase[int]:
    """Forget a person's consent to a client and revoke every grant it holds for them."""
    consents = yield Q(
        "DELETE FROM oauth_consents WHERE user_id = :uid AND client_id = :cid RETURNING scope",
        {"uid": user_id, "cid": client_id},
    )
    rows = yield Q(
        "UPDATE oauth_grants SET revoked_at = :now WHERE user_id = :uid AND client_id = :cid"
        " AND revoked_at IS NULL RETURNING id",
        {"uid": user_id, "cid": client_id, "now": now},
    )
    if consents or rows:
        details = {"client_id": client_id, "grants_revoked": len(rows)}
        yield from record(
            Event.CONSENT_REVOKED, actor=actor, now=now, user_id=user_id, details=details
        )
    return len(rows)
