"""Login flows: open, resend, verify by code or link, and the sign-in that completes one.

Locks (db.LOCK_ORDER; SQLite serialises every write anyway): every use case here that writes
takes the address's advisory lock BEFORE any row of the address. A sign-in locks its flow,
then the address's other live flows, failure count and user: two sign-ins of one address that
each held one flow and wanted the other's deadlocked (a 500). Under the lock the first signs
in and ends the other flows, the second finds its flow used (409), as on SQLite; and every
count-then-act on the address (mail limits, failure count) is exact. A flow's email_key never
changes, so reading it before the lock is safe.
"""

from __future__ import annotations

from dataclasses import KW_ONLY, dataclass
from enum import StrEnum

from service.addresses import limit_key
from service.crypto import same
from service.db import Q, Row, UseCase, address_lock, ip_lock, replayable
from service.settings import LimitSettings
from service.store.audit import Actor, Event, record
from service.store.limits import (
    codes_locked_for,
    count_address_failure,
    mail_limit_wait,
    reset_address_failures,
)
from service.store.sessions import NewSession, SignIn, open_session
from service.store.signins import PendingStep, open_step, split
from service.store.users import find_user


class Verdict(StrEnum):
    """What a flow use case decided. Typed, so a misspelt state is a type error, not a 404."""

    OK = "ok"
    PENDING = "pending"
    WRONG = "wrong"
    USED = "used"
    EXPIRED = "expired"
    DEAD = "dead"
    MAIL_FAILED = "mail_failed"
    CODES_LOCKED = "codes_locked"
    RATE_LIMITED = "rate_limited"
    INVALID = "invalid"
    NOT_FOUND = "not_found"
    DISABLED = "disabled"  # the right answer, for a user an operator has disabled (§14)


# Where a flow stands, from its row: the subset of verdicts `flow_state` returns.
FlowState = Verdict

# A disabled user's refused sign-in is not a login (§14).
_LAST_LOGIN = (
    "last_login_at = CASE WHEN users.disabled_at IS NULL THEN :now ELSE users.last_login_at END"
)
_FLOW_COLUMNS = (
    "id, email, email_key, code_hash, link_hash, next_url, created_at, expires_at, attempts, "
    "consumed_at, outcome, mail_seq, mail_status, mail_error, mail_at, ip, user_agent"
)


@dataclass(frozen=True, kw_only=True)
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
class Outcome:
    """The result of a use case that may be refused: `state` says why."""

    state: Verdict
    _: KW_ONLY
    sign_in: SignIn | None = None
    # Set instead of `sign_in` when the first step passed and a second one is due (§11).
    step: PendingStep | None = None
    tries_left: int = 0
    retry_after: int = 0
    flow: Row | None = None


def flow_state(row: Row, now: int, max_attempts: int) -> FlowState:
    """Where a flow stands, from its row."""
    outcome = row["outcome"]
    if outcome in ("signed_in", "superseded"):
        return Verdict.USED
    if outcome == "too_many_attempts":
        return Verdict.DEAD
    if outcome == "mail_failed":
        return Verdict.MAIL_FAILED
    if outcome == "disabled":
        return Verdict.DISABLED
    if row["expires_at"] <= now:
        return Verdict.EXPIRED
    if max_attempts and row["attempts"] >= max_attempts:
        return Verdict.DEAD
    return Verdict.PENDING


@replayable
def open_flow(flow: NewFlow, limits: LimitSettings, now: int) -> UseCase[Outcome]:
    """Check the mail and start limits, then store the flow and log its mail."""
    # Count-then-insert must not interleave, or racing starts all count the same rows and
    # pass: per IP (its starts are for many addresses: the address lock alone let 36 of 60
    # through a limit of 30) and per address (mail limits). IP first (LOCK_ORDER). Not locked:
    # the global mail limit (a lock would serialise every start of the cluster); it may
    # overshoot by the starts in flight at once.
    if limits.starts_per_ip:
        yield ip_lock(flow.ip)
    # The mail limits count per inbox (limit_key: `+tag` dropped), not per account spelling,
    # and the address lock is the inbox's too (a superset of the account: see _lock_address_of).
    key = limit_key(flow.email_key)
    yield address_lock(key)
    wait = yield from mail_limit_wait(key, flow.ip, limits, now)
    if wait > 0:
        return Outcome(Verdict.RATE_LIMITED, retry_after=wait)
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
    return Outcome(Verdict.OK)


def _lock_address_of(flow_id: str) -> UseCase[str | None]:
    """Take the advisory lock of a flow's address (before any row); its email_key, or None."""
    rows = yield Q("SELECT email_key FROM login_flows WHERE id = :id", {"id": flow_id})
    if not rows:
        return None
    email_key: str = rows[0]["email_key"]
    # The lock is per inbox (limit_key), the coarsest key any use case of an address counts by:
    # the mail limits count per inbox, the failure counter per account, and one lock over both
    # keeps a single lock per address family, so the lock order (LOCK_ORDER) cannot be crossed.
    yield address_lock(limit_key(email_key))
    return email_key


def _lock_flow(flow_id: str) -> UseCase[Row | None]:
    """Read a flow and hold its row until the transaction ends (a no-op UPDATE locks it)."""
    rows = yield Q(
        f"UPDATE login_flows SET attempts = attempts WHERE id = :id RETURNING {_FLOW_COLUMNS}",
        {"id": flow_id},
    )
    return rows[0] if rows else None


@replayable
def resend_flow(
    flow_id: str, *, code_hash: str, link_hash: str, limits: LimitSettings, now: int, ttl: int
) -> UseCase[Outcome]:
    """Put a new code and link on a pending flow (attempts kept), within the mail limits."""
    # The address before the flow's row: a sign-in holds the address and wants this row.
    if (yield from _lock_address_of(flow_id)) is None:
        return Outcome(Verdict.NOT_FOUND)
    row = yield from _lock_flow(flow_id)
    if row is None:
        return Outcome(Verdict.NOT_FOUND)
    state = flow_state(row, now, limits.code_attempts)
    if state not in (Verdict.PENDING, Verdict.MAIL_FAILED):
        return Outcome(state)
    key = limit_key(row["email_key"])
    wait = yield from mail_limit_wait(key, None, limits, now)
    if wait > 0:
        return Outcome(Verdict.RATE_LIMITED, retry_after=wait)
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
    return Outcome(Verdict.OK, flow=rows[0])


def get_flow(flow_id: str) -> UseCase[Row | None]:
    """A flow's row, for the code page and link page."""
    rows = yield Q(f"SELECT {_FLOW_COLUMNS} FROM login_flows WHERE id = :id", {"id": flow_id})
    return rows[0] if rows else None


@replayable
def verify_code(
    flow_id: str,
    candidate_hash: str,
    *,
    session: NewSession,
    limits: LimitSettings,
    allow_signup: bool,
    now: int,
) -> UseCase[Outcome]:
    """Count the attempt, check the code, and on success consume the flow and open a session.

    One transaction: the attempt counter goes up before the hash is compared, and the consuming
    UPDATE is conditional on `consumed_at IS NULL`, so of two racing right answers one wins and
    the other finds the flow used (not a wrong code).

    Under the address lock, so the failure count is exact: racing wrong codes all passed the
    lock-out check before any was counted (20 evaluated for a limit of 10); now the limit-th
    wrong code locks and every later one is refused.
    """
    # Failures count per account (email_key), not per inbox (limit_key): a code for user+a@ can
    # only sign in to user+a@, and sharing the count across tags would only let anyone lock
    # user@ out by failing codes on user+anything@.
    email_key = yield from _lock_address_of(flow_id)
    if email_key is None:
        return Outcome(Verdict.NOT_FOUND)
    locked = yield from codes_locked_for(email_key, limits, now)
    if locked:
        return Outcome(Verdict.CODES_LOCKED, retry_after=locked)
    under = " AND attempts < :max" if limits.code_attempts else ""
    rows = yield Q(
        "UPDATE login_flows SET attempts = attempts + 1 WHERE id = :id AND consumed_at IS NULL"
        f" AND expires_at > :now{under} RETURNING {_FLOW_COLUMNS}",
        {"id": flow_id, "now": now, "max": limits.code_attempts},
    )
    if not rows:
        row = yield from get_flow(flow_id)
        return Outcome(flow_state(row, now, limits.code_attempts) if row else Verdict.NOT_FOUND)
    row = rows[0]
    # A suppressed flow (no mail was sent) fails exactly as a wrong code does.
    ok = same(row["code_hash"], candidate_hash) and row["mail_status"] != "suppressed"
    if ok and not allow_signup:
        ok = (yield from find_user(email_key)) is not None
    if not ok:
        return (yield from _wrong_code(row, session, limits, now))
    return (yield from _complete_first_step(row, session, limits, allow_signup, now))


def _wrong_code(row: Row, session: NewSession, limits: LimitSettings, now: int) -> UseCase[Outcome]:
    if limits.code_attempts and row["attempts"] >= limits.code_attempts:
        yield Q(
            "UPDATE login_flows SET consumed_at = :now, outcome = 'too_many_attempts'"
            " WHERE id = :id",
            {"id": row["id"], "now": now},
        )
    yield from count_address_failure(row["email_key"], limits, now)
    tries_left = max(0, limits.code_attempts - row["attempts"]) if limits.code_attempts else 1
    # Audited with the account's id when the address has one (a failure path: one more read).
    user = yield from find_user(row["email_key"])
    yield from record(
        Event.LOGIN_FAILED,
        actor=_client(session),
        now=now,
        user_id=user["id"] if user else None,
        details={"reason": "wrong_code", "flow_id": row["id"], "tries_left": tries_left},
    )
    return Outcome(Verdict.WRONG, tries_left=tries_left)


def _client(session: NewSession) -> Actor:
    return Actor("anonymous", session.ip, session.user_agent)


@replayable
def verify_link(
    flow_id: str,
    candidate_hash: str,
    *,
    session: NewSession,
    limits: LimitSettings,
    allow_signup: bool,
    now: int,
) -> UseCase[Outcome]:
    """Check a link secret's hash and on success consume the flow and open a session."""
    if (yield from _lock_address_of(flow_id)) is None:
        return Outcome(Verdict.INVALID)
    row = yield from _lock_flow(flow_id)
    if row is None or not same(row["link_hash"], candidate_hash):
        return Outcome(Verdict.INVALID)
    state = flow_state(row, now, limits.code_attempts)
    if state != Verdict.PENDING:
        return Outcome(state)
    if row["mail_status"] == "suppressed":
        return Outcome(Verdict.INVALID)
    if not allow_signup and (yield from find_user(row["email_key"])) is None:
        return Outcome(Verdict.INVALID)
    return (yield from _complete_first_step(row, session, limits, allow_signup, now))


def peek_link(flow_id: str, candidate_hash: str, max_attempts: int, now: int) -> UseCase[Outcome]:
    """What GET /login/link shows: the flow's state if the link is genuine. Consumes nothing."""
    row = yield from get_flow(flow_id)
    if row is None or not same(row["link_hash"], candidate_hash):
        return Outcome(Verdict.INVALID)
    return Outcome(flow_state(row, now, max_attempts), flow=row)


def _complete_first_step(
    row: Row, session: NewSession, limits: LimitSettings, allow_signup: bool, now: int
) -> UseCase[Outcome]:
    """Consume the flow, end the address's other flows, find or create the user, and open a
    session, or, when the user has a second factor, a pending sign-in in its place.

    Under the address lock; rows in this order: flow, other flows, user, then the pending
    sign-in, or the failure count and the session. The user upsert already returns the user's
    second factors, so a sign-in with a step still due costs exactly the statements of one
    without: the INSERT into `signins` replaces the DELETE of the failure count and the INSERT
    into `sessions`. No session exists until every step has
    passed.
    """
    p = {"id": row["id"], "k": row["email_key"], "now": now}
    # 'signed_in' says the flow's own step passed; whether a session or a pending sign-in
    # followed is in `sessions`/`signins` (marking it apart would cost a statement here).
    yield Q("UPDATE login_flows SET consumed_at = :now, outcome = 'signed_in' WHERE id = :id", p)
    # Only live flows: an expired one is dead already, and leaving it alone keeps this
    # statement off the rows the purge deletes (flows older than a day), so a sign-in and a
    # purge never lock the same flows in different orders.
    yield Q(
        "UPDATE login_flows SET consumed_at = :now, outcome = 'superseded'"
        " WHERE email_key = :k AND consumed_at IS NULL AND expires_at > :now AND id <> :id",
        p,
    )
    if allow_signup:
        users = yield Q(
            "INSERT INTO users (id, email, email_key, created_at, last_login_at)"
            " VALUES (:uid, :email, :k, :now, :now) ON CONFLICT (email_key)"
            f" DO UPDATE SET {_LAST_LOGIN} RETURNING id, email, second_factors, disabled_at",
            {**p, "uid": session.new_user_id, "email": row["email"]},
        )
    else:
        users = yield Q(
            f"UPDATE users SET {_LAST_LOGIN} WHERE email_key = :k"
            " RETURNING id, email, second_factors, disabled_at",
            p,
        )
    user = users[0]
    if user["id"] == session.new_user_id:  # the id this sign-in offered: the INSERT won
        yield from record(
            Event.USER_CREATED,
            actor=_client(session),
            now=now,
            user_id=user["id"],
            details={"via": "signup"},
            email=user["email"],
        )
    if user["disabled_at"] is not None:
        # Checked here, on the row the upsert already locks and returns: no statement more on
        # the verify path, and a disable committed before this sign-in is always seen.
        yield Q("UPDATE login_flows SET outcome = 'disabled' WHERE id = :id", p)
        yield from record(
            Event.LOGIN_FAILED,
            actor=_client(session),
            now=now,
            user_id=user["id"],
            details={"reason": "disabled", "flow_id": row["id"]},
        )
        return Outcome(Verdict.DISABLED)
    # REQUIRE_SECOND_FACTOR (§11): `off` ignores factors; `all` opens a pending sign-in even
    # for a user without one (no methods: the next step is enrolment, not an answer).
    methods = split(user["second_factors"]) if session.policy != "off" else ()
    if methods or session.policy == "all":
        if session.step is None:  # a caller that cannot carry a second step gets nothing
            raise ValueError("a second step is due but the caller offered none")
        yield from open_step(
            session.step,
            flow=row,
            user_id=user["id"],
            ip=session.ip,
            user_agent=session.user_agent,
            now=now,
        )
        step = PendingStep(
            id=session.step.id,
            user_id=user["id"],
            email=user["email"],
            flow_id=row["id"],
            amr=("email",),
            methods=methods,
            next_url=row["next_url"],
            attempts=0,
            expires_at=session.step.expires_at,
        )
        return Outcome(Verdict.OK, step=step)
    # The consecutive wrong-code count starts again only when a sign-in is complete: a first
    # step that leaves a second one due must not wipe the authenticator codes counted against
    # the address (whoever holds the mailbox would otherwise reset it with every new link).
    yield from reset_address_failures(row["email_key"], limits)
    yield from open_session(session, user["id"], now)
    yield from record(
        Event.LOGIN_SUCCEEDED,
        actor=_client(session),
        now=now,
        user_id=user["id"],
        details={"session_id": session.id, "amr": list(session.amr)},
        email=user["email"],
    )
    sign_in = SignIn(
        user_id=user["id"],
        email=user["email"],
        session_id=session.id,
        session_expires_at=session.expires_at,
        next_url=row["next_url"],
        flow_id=row["id"],
        amr=session.amr,
        aal=session.aal,
        auth_time=now,
    )
    return Outcome(Verdict.OK, sign_in=sign_in)
