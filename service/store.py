"""Every SQL statement, as use cases: flows, limits, users, sessions, mail status, purge.

Each function returns a use case (see db.py) that a backend runs as ONE transaction. Use cases
return results instead of raising, so that what must be kept (a counted attempt) is committed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from service.crypto import same
from service.db import Lock, Q, Row, UseCase

FlowState = Literal["pending", "used", "expired", "dead", "mail_failed", "not_found"]

_FLOW_COLUMNS = (
    "id, email, email_key, code_hash, link_hash, next_url, created_at, expires_at, attempts, "
    "consumed_at, outcome, mail_seq, mail_status, mail_error, mail_at, ip, user_agent"
)


@dataclass(frozen=True)
class Limits:
    """The abuse limits of DESIGN §4 (0 = off), in seconds and counts."""

    code_attempts: int
    address_failures: int
    address_lock: int
    mail_interval: int
    mail_per_window: int
    mail_window: int
    mail_per_day: int
    mail_global: int
    starts_per_ip: int
    ip_window: int


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


# --- limits -----------------------------------------------------------------------------------


def _mail_limit_check(email_key: str, ip: str | None, limits: Limits, now: int) -> UseCase[int]:
    """Seconds until every mail/start limit allows one more; 0 when allowed now."""
    cols: list[str] = []
    p: dict[str, Any] = {"k": email_key, "ip": ip}
    if limits.mail_interval:
        cols.append("(SELECT MAX(created_at) FROM mail_log WHERE email_key = :k) AS last_mail")
    for name, count, window, where in (
        ("win", limits.mail_per_window, limits.mail_window, "mail_log WHERE email_key = :k"),
        ("day", limits.mail_per_day, 86400, "mail_log WHERE email_key = :k"),
        ("glob", limits.mail_global, 60, "mail_log WHERE 1 = 1"),
        (
            "ip",
            limits.starts_per_ip if ip is not None else 0,
            limits.ip_window,
            "login_flows WHERE ip = :ip",
        ),
    ):
        if not count:
            continue
        p[f"{name}_since"] = now - window
        cols.append(f"(SELECT COUNT(*) FROM {where} AND created_at > :{name}_since) AS {name}_n")
        cols.append(
            f"(SELECT MIN(created_at) FROM {where} AND created_at > :{name}_since) AS {name}_first"
        )
    if not cols:
        return 0
    rows = yield Q("SELECT " + ", ".join(cols), p)
    r = rows[0]
    waits = [0]
    if limits.mail_interval and r["last_mail"] is not None:
        waits.append(r["last_mail"] + limits.mail_interval - now)
    for name, count, window in (
        ("win", limits.mail_per_window, limits.mail_window),
        ("day", limits.mail_per_day, 86400),
        ("glob", limits.mail_global, 60),
        ("ip", limits.starts_per_ip, limits.ip_window),
    ):
        if f"{name}_n" in r and r[f"{name}_n"] >= count:
            waits.append(r[f"{name}_first"] + window - now + 1)
    return max(waits)


# --- flows ------------------------------------------------------------------------------------


def open_flow(flow: NewFlow, limits: Limits, now: int) -> UseCase[Outcome]:
    """Check the mail and start limits, then store the flow and log its mail."""
    # Count-then-insert must not interleave for one address (PostgreSQL; SQLite serialises).
    yield Lock("address:" + flow.email_key)
    wait = yield from _mail_limit_check(flow.email_key, flow.ip, limits, now)
    if wait > 0:
        return Outcome("rate_limited", retry_after=wait)
    yield Q(
        f"INSERT INTO login_flows ({_FLOW_COLUMNS}) VALUES (:id, :email, :email_key, :code_hash,"
        " :link_hash, :next_url, :now, :expires_at, 0, NULL, NULL, 1, 'queued', NULL, :now,"
        " :ip, :user_agent)",
        {**flow.__dict__, "now": now},
    )
    yield Q(
        "INSERT INTO mail_log (flow_id, email_key, created_at) VALUES (:id, :k, :now)",
        {"id": flow.id, "k": flow.email_key, "now": now},
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
    yield Lock("address:" + row["email_key"])
    wait = yield from _mail_limit_check(row["email_key"], None, limits, now)
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
        {"id": flow_id, "k": row["email_key"], "now": now},
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


# --- users ------------------------------------------------------------------------------------


def find_user(email_key: str) -> UseCase[Row | None]:
    """A user by address key."""
    rows = yield Q(
        "SELECT id, email, created_at, last_login_at FROM users WHERE email_key = :k",
        {"k": email_key},
    )
    return rows[0] if rows else None


def add_user(user_id: str, email: str, email_key: str, now: int) -> UseCase[tuple[Row, bool]]:
    """Create a user (operator CLI); returns (user, created)."""
    existing = yield from find_user(email_key)
    if existing is not None:
        return existing, False
    rows = yield Q(
        "INSERT INTO users (id, email, email_key, created_at, last_login_at)"
        " VALUES (:id, :email, :k, :now, NULL) RETURNING id, email, created_at, last_login_at",
        {"id": user_id, "email": email, "k": email_key, "now": now},
    )
    return rows[0], True


# --- mail status ------------------------------------------------------------------------------


def claim_mail(flow_id: str, seq: int, *, check_user: bool, now: int) -> UseCase[str]:
    """Whether a queued mail should go out: 'send', 'suppress' (recorded) or 'skip' (stale)."""
    row = yield from get_flow(flow_id)
    if (
        row is None
        or row["mail_seq"] != seq
        or row["consumed_at"] is not None
        or row["expires_at"] <= now
    ):
        return "skip"
    if check_user and (yield from find_user(row["email_key"])) is None:
        yield Q(
            "UPDATE login_flows SET mail_status = 'suppressed' WHERE id = :id AND mail_seq = :s",
            {"id": flow_id, "s": seq},
        )
        return "suppress"
    return "send"


def mark_mail(flow_id: str, seq: int, *, status: str, error: str | None) -> UseCase[None]:
    """Record a send ('sent') or a transient error (status 'queued') for the current mail."""
    yield Q(
        "UPDATE login_flows SET mail_status = :st, mail_error = :e"
        " WHERE id = :id AND mail_seq = :s AND mail_status = 'queued'",
        {"st": status, "e": error, "id": flow_id, "s": seq},
    )


def fail_mail(flow_id: str, seq: int, *, error: str, now: int) -> UseCase[None]:
    """A mail that finally failed kills its flow: no valid code is left that nobody received."""
    yield Q(
        "UPDATE login_flows SET mail_status = 'failed', mail_error = :e, consumed_at = :now,"
        " outcome = 'mail_failed' WHERE id = :id AND mail_seq = :s AND consumed_at IS NULL",
        {"e": error, "id": flow_id, "s": seq, "now": now},
    )


# --- sessions ---------------------------------------------------------------------------------

_SESSION_COLUMNS = (
    "s.id, s.user_id, s.created_at, s.last_used_at, s.idle_expires_at, s.expires_at,"
    " s.revoked_at, s.ip, s.user_agent, u.email"
)


def get_session(session_id: str) -> UseCase[Row | None]:
    """A session with its user's address."""
    rows = yield Q(
        f"SELECT {_SESSION_COLUMNS} FROM sessions s JOIN users u ON u.id = s.user_id"
        " WHERE s.id = :id",
        {"id": session_id},
    )
    return rows[0] if rows else None


def session_valid(session_id: str, now: int) -> UseCase[bool]:
    """Unrevoked, not idle-expired, within its absolute lifetime (the /auth/check question)."""
    rows = yield Q(
        "SELECT 1 AS ok FROM sessions WHERE id = :id AND revoked_at IS NULL"
        " AND expires_at > :now AND idle_expires_at > :now",
        {"id": session_id, "now": now},
    )
    return bool(rows)


def list_sessions(user_id: str, now: int) -> UseCase[list[Row]]:
    """A person's live sessions, newest first."""
    rows = yield Q(
        f"SELECT {_SESSION_COLUMNS} FROM sessions s JOIN users u ON u.id = s.user_id"
        " WHERE s.user_id = :uid AND s.revoked_at IS NULL AND s.expires_at > :now"
        " AND s.idle_expires_at > :now ORDER BY s.created_at DESC",
        {"uid": user_id, "now": now},
    )
    return rows


def revoke_session(session_id: str, user_id: str | None, now: int) -> UseCase[bool]:
    """Revoke one session (of that user, when given); False if there was none to revoke."""
    owner = " AND user_id = :uid" if user_id is not None else ""
    rows = yield Q(
        "UPDATE sessions SET revoked_at = :now WHERE id = :id AND revoked_at IS NULL"
        f"{owner} RETURNING id",
        {"id": session_id, "uid": user_id, "now": now},
    )
    return bool(rows)


def revoke_user_sessions(user_id: str, now: int) -> UseCase[list[str]]:
    """Revoke every live session of a user; returns their ids."""
    rows = yield Q(
        "UPDATE sessions SET revoked_at = :now WHERE user_id = :uid AND revoked_at IS NULL"
        " RETURNING id",
        {"uid": user_id, "now": now},
    )
    return [row["id"] for row in rows]


@dataclass(frozen=True)
class Rotation:
    """What rotate_refresh decided: 'rotated', 'grace', 'theft', 'expired', 'revoked' or
    'unknown'; the session and its user when one was found."""

    state: str
    session_id: str = ""
    user_id: str = ""
    email: str = ""
    expires_at: int = 0


def rotate_refresh(chain: list[str], *, now: int, grace: int, idle_ttl: int) -> UseCase[Rotation]:
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
        " RETURNING id, user_id, expires_at",
        p,
    )
    if rows:
        return (yield from _rotation("rotated", rows[0]))
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
        return Rotation("unknown")
    row = rows[0]
    if row["revoked_at"] is not None:
        return Rotation("revoked", session_id=row["id"])
    if row["expires_at"] <= now or row["idle_expires_at"] <= now:
        return Rotation("expired", session_id=row["id"])
    in_grace = row["rotated_at"] is not None and now - row["rotated_at"] <= grace
    if row["prev_refresh_hash"] == chain[0] and row["refresh_hash"] == chain[1] and in_grace:
        rows = yield Q(
            "UPDATE sessions SET last_used_at = :now, idle_expires_at = CASE WHEN"
            " expires_at < :idle THEN expires_at ELSE :idle END WHERE id = :id"
            " RETURNING id, user_id, expires_at",
            {**p, "id": row["id"]},
        )
        return (yield from _rotation("grace", rows[0]))
    yield Q(
        "UPDATE sessions SET revoked_at = :now WHERE id = :id AND revoked_at IS NULL",
        {"now": now, "id": row["id"]},
    )
    return Rotation("theft", session_id=row["id"], user_id=row["user_id"])


def _rotation(state: str, row: Row) -> UseCase[Rotation]:
    users = yield Q("SELECT email FROM users WHERE id = :id", {"id": row["user_id"]})
    return Rotation(
        state,
        session_id=row["id"],
        user_id=row["user_id"],
        email=users[0]["email"] if users else "",
        expires_at=row["expires_at"],
    )


# --- purge ------------------------------------------------------------------------------------


def purge(now: int, keep_flows: int) -> UseCase[dict[str, int]]:
    """Delete flows and mail records past the longest limit window, and dead sessions."""
    # Every instance purges on its own timer: one at a time does the work and the others find
    # nothing left, instead of racing over the same rows (and risking a deadlock between them).
    yield Lock("latch.purge")
    cut = now - keep_flows
    counts = {}
    for name, sql, p in (
        ("flows", "DELETE FROM login_flows WHERE created_at < :cut RETURNING id", {"cut": cut}),
        (
            "mail_log",
            "DELETE FROM mail_log WHERE created_at < :cut RETURNING flow_id",
            {"cut": cut},
        ),
        (
            "address_failures",
            "DELETE FROM address_failures WHERE locked_until < :now"
            " AND updated_at < :cut RETURNING email_key",
            {"cut": cut, "now": now},
        ),
        (
            "sessions",
            "DELETE FROM sessions WHERE expires_at < :now OR idle_expires_at < :now"
            " OR revoked_at < :cut RETURNING id",
            {"cut": cut, "now": now},
        ),
    ):
        rows = yield Q(sql, p)
        counts[name] = len(rows)
    return counts
