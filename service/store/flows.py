"""Login flows: open, resend, verify by code or link, and the sign-in that completes one."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from service.addresses import limit_key
from service.crypto import same
from service.db import Lock, Q, Row, UseCase
from service.store.limits import Limits, mail_limit_wait
from service.store.users import find_user

FlowState = Literal["pending", "used", "expired", "dead", "mail_failed", "not_found"]

_FLOW_COLUMNS = (
    "id, email, email_key, code_hash, link_hash, next_url, created_at, expires_at, attempts, "
    "consumed_at, outcome, mail_seq, mail_status, mail_error, mail_at, ip, user_agent"
)


@dataclass(frozen=True)
class NewFlow:
    """A login flow about to be stored (hashes only, never the code or link secret)."""

    id: str
    email: str
    email_key: str
    code_hash: str
    link_hash: str
    next_url: str
    expires_at: int
    ip: str
    user_agent: str


@dataclass(frozen=True)
class NewSession:
    """A session about to be opened by a successful sign-in."""

    id: str
    refresh_hash: str
    idle_expires_at: int
    expires_at: int
    ip: str
    user_agent: str
    new_user_id: str


@dataclass(frozen=True)
class SignIn:
    """Who signed in, into which session, and where they go next."""

    user_id: str
    email: str
    session_id: str
    session_expires_at: int
    next_url: str
    flow_id: str


@dataclass(frozen=True)
class Outcome:
    """The result of a use case that may be refused: `state` says why."""

    state: str
    sign_in: SignIn | None = None
    tries_left: int = 0
    retry_after: int = 0
    flow: Row | None = None


def flow_state(row: Row, now: int, max_attempts: int) -> FlowState:
    """Where a flow stands, from its row."""
    outcome = row["outcome"]
    if outcome in ("signed_in", "superseded"):
        return "used"
    if outcome == "too_many_attempts":
        return "dead"
    if outcome == "mail_failed":
        return "mail_failed"
    if row["expires_at"] <= now:
        return "expired"
    if max_attempts and row["attempts"] >= max_attempts:
        return "dead"
    return "pending"


def open_flow(flow: NewFlow, limits: Limits, now: int) -> UseCase[Outcome]:
    """Check the mail and start limits, then store the flow and log its mail."""
    # The mail limits count per inbox (limit_key: `+tag` dropped), not per account spelling.
    # Count-then-insert must not interleave for one inbox (PostgreSQL; SQLite serialises).
    key = limit_key(flow.email_key)
    yield Lock("address:" + key)
    wait = yield from mail_limit_wait(key, flow.ip, limits, now)
    if wait > 0:
        return Outcome("rate_limited", retry_after=wait)
    yield Q(
        f"INSERT INTO login_flows ({_FLOW_COLUMNS}) VALUES (:id, :email, :email_key, :code_hash,"
        " :link_hash, :next_url, :now, :expires_at, 0, NULL, NULL, 1, 'queued', NULL, :now,"
        " :ip, :user_agent)",
        {**flow.__dict__, "now": now},
    )
    # mail_log.email_key holds the limit key: the log exists only to count the mail limits.
    yield Q(
        "INSERT INTO mail_log (flow_id, email_key, created_at) VALUES (:id, :k, :now)",
        {"id": flow.id, "k": key, "now": now},
    )
    return Outcome("ok")


def _lock_flow(flow_id: str) -> UseCase[Row | None]:
    """Read a flow and hold its row until the transaction ends (a no-op UPDATE locks it)."""
    rows = yield Q(
        f"UPDATE login_flows SET attempts = attempts WHERE id = :id RETURNING {_FLOW_COLUMNS}",
        {"id": flow_id},
    )
    return rows[0] if rows else None


def resend_flow(
    flow_id: str, *, code_hash: str, link_hash: str, limits: Limits, now: int, ttl: int
) -> UseCase[Outcome]:
    """Put a new code and link on a pending flow (attempts kept), within the mail limits."""
    row = yield from _lock_flow(flow_id)
    if row is None:
        return Outcome("not_found")
    state = flow_state(row, now, limits.code_attempts)
    if state not in ("pending", "mail_failed"):
        return Outcome(state)
    key = limit_key(row["email_key"])
    yield Lock("address:" + key)
    wait = yield from mail_limit_wait(key, None, limits, now)
    if wait > 0:
        return Outcome("rate_limited", retry_after=wait)
    rows = yield Q(
        "UPDATE login_flows SET code_hash = :c, link_hash = :l, mail_seq = mail_seq + 1,"
        " mail_status = 'queued', mail_error = NULL, mail_at = :now, expires_at = :exp,"
        " consumed_at = NULL, outcome = NULL WHERE id = :id"
        f" RETURNING {_FLOW_COLUMNS}",
        {"c": code_hash, "l": link_hash, "now": now, "exp": now + ttl, "id": flow_id},
    )
    yield Q(
        "INSERT INTO mail_log (flow_id, email_key, created_at) VALUES (:id, :k, :now)",
        {"id": flow_id, "k": key, "now": now},
    )
    return Outcome("ok", flow=rows[0])


def get_flow(flow_id: str) -> UseCase[Row | None]:
    """A flow's row, for the code page and link page."""
    rows = yield Q(f"SELECT {_FLOW_COLUMNS} FROM login_flows WHERE id = :id", {"id": flow_id})
    return rows[0] if rows else None


def verify_code(
    flow_id: str,
    candidate_hash: str,
    *,
    session: NewSession,
    limits: Limits,
    allow_signup: bool,
    now: int,
) -> UseCase[Outcome]:
    """Count the attempt, check the code, and on success consume the flow and open a session.

    One transaction: the attempt counter goes up before the hash is compared, and the consuming
    UPDATE is conditional on `consumed_at IS NULL`, so of two racing right answers one wins and
    the other finds the flow used (not a wrong code).
    """
    rows = yield Q("SELECT email_key FROM login_flows WHERE id = :id", {"id": flow_id})
    if not rows:
        return Outcome("not_found")
    email_key = rows[0]["email_key"]
    # Failures count per account (email_key), not per inbox (limit_key): the lock protects an
    # account's codes, and a code for user+a@ can only sign in to user+a@. Sharing it across
    # tags would only let anyone lock user@ out by failing codes on user+anything@.
    if limits.address_failures:
        rows = yield Q(
            "SELECT locked_until FROM address_failures WHERE email_key = :k", {"k": email_key}
        )
        if rows and rows[0]["locked_until"] > now:
            return Outcome("codes_locked", retry_after=rows[0]["locked_until"] - now)
    under = " AND attempts < :max" if limits.code_attempts else ""
    rows = yield Q(
        "UPDATE login_flows SET attempts = attempts + 1 WHERE id = :id AND consumed_at IS NULL"
        f" AND expires_at > :now{under} RETURNING {_FLOW_COLUMNS}",
        {"id": flow_id, "now": now, "max": limits.code_attempts},
    )
    if not rows:
        row = yield from get_flow(flow_id)
        return Outcome(flow_state(row, now, limits.code_attempts) if row else "not_found")
    row = rows[0]
    # A suppressed flow (no mail was sent) fails exactly as a wrong code does.
    ok = same(row["code_hash"], candidate_hash) and row["mail_status"] != "suppressed"
    if ok and not allow_signup:
        ok = (yield from find_user(email_key)) is not None
    if not ok:
        return (yield from _wrong_code(row, limits, now))
    sign_in = yield from _complete_sign_in(row, session, limits, allow_signup, now)
    return Outcome("ok", sign_in=sign_in)


def _wrong_code(row: Row, limits: Limits, now: int) -> UseCase[Outcome]:
    if limits.code_attempts and row["attempts"] >= limits.code_attempts:
        yield Q(
            "UPDATE login_flows SET consumed_at = :now, outcome = 'too_many_attempts'"
            " WHERE id = :id",
            {"id": row["id"], "now": now},
        )
    if limits.address_failures:
        rows = yield Q(
            "INSERT INTO address_failures (email_key, failures, locked_until, updated_at)"
            " VALUES (:k, 1, 0, :now) ON CONFLICT (email_key) DO UPDATE SET"
            " failures = address_failures.failures + 1, updated_at = :now RETURNING failures",
            {"k": row["email_key"], "now": now},
        )
        if rows[0]["failures"] >= limits.address_failures:
            yield Q(
                "UPDATE address_failures SET failures = 0, locked_until = :until"
                " WHERE email_key = :k",
                {"k": row["email_key"], "until": now + limits.address_lock},
            )
    tries_left = max(0, limits.code_attempts - row["attempts"]) if limits.code_attempts else 1
    return Outcome("wrong", tries_left=tries_left)


def verify_link(
    flow_id: str,
    candidate_hash: str,
    *,
    session: NewSession,
    limits: Limits,
    allow_signup: bool,
    now: int,
) -> UseCase[Outcome]:
    """Check a link secret's hash and on success consume the flow and open a session."""
    row = yield from _lock_flow(flow_id)
    if row is None or not same(row["link_hash"], candidate_hash):
        return Outcome("invalid")
    state = flow_state(row, now, limits.code_attempts)
    if state != "pending":
        return Outcome(state)
    if row["mail_status"] == "suppressed":
        return Outcome("invalid")
    if not allow_signup and (yield from find_user(row["email_key"])) is None:
        return Outcome("invalid")
    sign_in = yield from _complete_sign_in(row, session, limits, allow_signup, now)
    return Outcome("ok", sign_in=sign_in)


def peek_link(flow_id: str, candidate_hash: str, max_attempts: int, now: int) -> UseCase[Outcome]:
    """What GET /login/link shows: the flow's state if the link is genuine. Consumes nothing."""
    row = yield from get_flow(flow_id)
    if row is None or not same(row["link_hash"], candidate_hash):
        return Outcome("invalid")
    return Outcome(flow_state(row, now, max_attempts), flow=row)


def _complete_sign_in(
    row: Row, session: NewSession, limits: Limits, allow_signup: bool, now: int
) -> UseCase[SignIn]:
    """Consume the flow, end the address's other flows, find or create the user, open a session."""
    p = {"id": row["id"], "k": row["email_key"], "now": now}
    yield Q("UPDATE login_flows SET consumed_at = :now, outcome = 'signed_in' WHERE id = :id", p)
    yield Q(
        "UPDATE login_flows SET consumed_at = :now, outcome = 'superseded'"
        " WHERE email_key = :k AND consumed_at IS NULL AND id <> :id",
        p,
    )
    if limits.address_failures:
        yield Q("DELETE FROM address_failures WHERE email_key = :k", p)
    if allow_signup:
        users = yield Q(
            "INSERT INTO users (id, email, email_key, created_at, last_login_at)"
            " VALUES (:uid, :email, :k, :now, :now) ON CONFLICT (email_key)"
            " DO UPDATE SET last_login_at = :now RETURNING id, email",
            {**p, "uid": session.new_user_id, "email": row["email"]},
        )
    else:
        users = yield Q(
            "UPDATE users SET last_login_at = :now WHERE email_key = :k RETURNING id, email", p
        )
    user = users[0]
    yield Q(
        "INSERT INTO sessions (id, user_id, refresh_hash, prev_refresh_hash, rotated_at,"
        " created_at, last_used_at, idle_expires_at, expires_at, revoked_at, ip, user_agent)"
        " VALUES (:sid, :uid, :rh, NULL, NULL, :now, :now, :idle, :exp, NULL, :ip, :ua)",
        {
            "sid": session.id,
            "uid": user["id"],
            "rh": session.refresh_hash,
            "now": now,
            "idle": session.idle_expires_at,
            "exp": session.expires_at,
            "ip": session.ip,
            "ua": session.user_agent,
        },
    )
    return SignIn(
        user_id=user["id"],
        email=user["email"],
        session_id=session.id,
        session_expires_at=session.expires_at,
        next_url=row["next_url"],
        flow_id=row["id"],
    )
