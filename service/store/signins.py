"""Pending sign-ins: the first step passed, the next one is due (docs/design.md §11).

A row is opened by the transaction that consumed the login flow, in place of the session it
would otherwise have opened; it holds no secret (the browser's `latch_signin` cookie names it,
signed). Completing it is two transactions around the factor's own check: the attempt is
counted first (so a wrong answer is counted even if the check fails half-way), then a right
answer consumes the row with `UPDATE … WHERE consumed_at IS NULL … RETURNING`, so of two racing
right answers exactly one opens a session.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from service.db import Q, Row, UseCase, replayable
from service.store.audit import Actor, Event, record
from service.store.sessions import NewSession, NewStep, SignIn, open_session

_COLUMNS = (
    "id, user_id, flow_id, amr, next_url, attempts, created_at, expires_at, ip, user_agent,"
    " consumed_at"
)


class StepState(StrEnum):
    """Where a pending sign-in stands."""

    PENDING = "pending"
    USED = "used"  # completed (or lost the race to a right answer)
    EXPIRED = "expired"
    DEAD = "dead"  # too many wrong answers
    NOT_FOUND = "not_found"  # unknown id, or the cookie of another flow


@dataclass(frozen=True)
class PendingStep:
    """A pending sign-in as the next step sees it: whose, what passed, what may come next."""

    id: str
    user_id: str
    email: str
    flow_id: str
    amr: tuple[str, ...]
    methods: tuple[str, ...]
    next_url: str
    attempts: int
    expires_at: int


@dataclass(frozen=True)
class Attempt:
    """The result of counting an answer: the pending sign-in, or why there is none to answer."""

    state: StepState
    step: PendingStep | None = None


def split(words: str) -> tuple[str, ...]:
    """A space-separated column as a tuple ('' is empty)."""
    return tuple(words.split())


def step_state(row: Row, now: int, max_attempts: int) -> StepState:
    """Where a pending sign-in stands, from its row."""
    if row["consumed_at"] is not None:
        return StepState.USED
    if max_attempts and row["attempts"] >= max_attempts:
        return StepState.DEAD
    if row["expires_at"] <= now:
        return StepState.EXPIRED
    return StepState.PENDING


def open_step(
    step: NewStep,
    *,
    flow: Row,
    user_id: str,
    ip: str,
    user_agent: str,
    now: int,
    amr: str = "email",
) -> UseCase[None]:
    """Record that `flow`'s first step (`amr`: the email, or a passkey) passed for `user_id`;
    a part of verify."""
    yield Q(
        f"INSERT INTO signins ({_COLUMNS}) VALUES (:id, :uid, :fid, :amr, :next, 0, :now,"
        " :exp, :ip, :ua, NULL)",
        {
            "amr": amr,
            "id": step.id,
            "uid": user_id,
            "fid": flow["id"],
            "next": flow["next_url"],
            "now": now,
            "exp": step.expires_at,
            "ip": ip,
            "ua": user_agent,
        },
    )


def _pending(row: Row, user: Row) -> PendingStep:
    return PendingStep(
        id=row["id"],
        user_id=row["user_id"],
        email=user["email"],
        flow_id=row["flow_id"],
        amr=split(row["amr"]),
        methods=split(user["second_factors"]),
        next_url=row["next_url"],
        attempts=row["attempts"],
        expires_at=row["expires_at"],
    )


def _user(user_id: str) -> UseCase[Row | None]:
    # A user disabled since the first step passed counts as gone: the sign-in cannot finish.
    rows = yield Q(
        "SELECT email, second_factors FROM users WHERE id = :id AND disabled_at IS NULL",
        {"id": user_id},
    )
    return rows[0] if rows else None


def get_step(step_id: str, flow_id: str, now: int, max_attempts: int) -> UseCase[Attempt]:
    """A pending sign-in of that flow (for the second-factor page); consumes nothing."""
    rows = yield Q(
        f"SELECT {_COLUMNS} FROM signins WHERE id = :id AND flow_id = :fid",
        {"id": step_id, "fid": flow_id},
    )
    user = (yield from _user(rows[0]["user_id"])) if rows else None
    if not rows or user is None:
        return Attempt(StepState.NOT_FOUND)
    state = step_state(rows[0], now, max_attempts)
    return Attempt(state, _pending(rows[0], user) if state is StepState.PENDING else None)


@replayable
def count_attempt(step_id: str, flow_id: str, now: int, max_attempts: int) -> UseCase[Attempt]:
    """Count one answer to a pending sign-in, before the answer is checked.

    The UPDATE refuses a sign-in that is consumed, expired or out of attempts, so the attempt
    that reaches `max_attempts` is the last one ever checked, however many race.
    """
    rows = yield Q(
        "UPDATE signins SET attempts = attempts + 1 WHERE id = :id AND flow_id = :fid"
        " AND consumed_at IS NULL AND expires_at > :now AND attempts < :max"
        f" RETURNING {_COLUMNS}",
        {"id": step_id, "fid": flow_id, "now": now, "max": max_attempts},
    )
    if not rows:
        return (yield from get_step(step_id, flow_id, now, max_attempts))
    user = yield from _user(rows[0]["user_id"])
    if user is None:
        return Attempt(StepState.NOT_FOUND)
    return Attempt(StepState.PENDING, _pending(rows[0], user))


@replayable
def complete_step(
    step_id: str, flow_id: str, *, session: NewSession, now: int
) -> UseCase[SignIn | StepState]:
    """Consume a pending sign-in whose answer was right and open its session (`session.amr`
    and `session.aal` say which steps passed); else why not (another right answer won)."""
    rows = yield Q(
        "UPDATE signins SET consumed_at = :now WHERE id = :id AND flow_id = :fid"
        f" AND consumed_at IS NULL AND expires_at > :now RETURNING {_COLUMNS}",
        {"id": step_id, "fid": flow_id, "now": now},
    )
    if not rows:
        found = yield from get_step(step_id, flow_id, now, 0)
        return found.state
    row = rows[0]
    user = yield from _user(row["user_id"])
    if user is None:
        return StepState.NOT_FOUND
    yield from open_session(session, row["user_id"], now)
    yield from record(
        Event.LOGIN_SUCCEEDED,
        actor=Actor("anonymous", session.ip, session.user_agent),
        now=now,
        user_id=row["user_id"],
        details={"session_id": session.id, "amr": list(session.amr)},
        email=user["email"],
    )
    return SignIn(
        user_id=row["user_id"],
        email=user["email"],
        session_id=session.id,
        session_expires_at=session.expires_at,
        next_url=row["next_url"],
        flow_id=flow_id,
        amr=session.amr,
        aal=session.aal,
        auth_time=now,
    )
