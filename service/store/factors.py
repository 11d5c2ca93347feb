"""Second factors at rest: authenticator apps (TOTP) and recovery codes (docs/design.md §11).

Nothing here holds a secret in clear: the TOTP secret arrives sealed (AES-GCM, service/crypto.py)
and recovery codes as keyed hashes. `users.second_factors` (what a sign-in reads with its user
upsert) is recomputed from these tables by `sync_second_factors` in the same transaction as
every change, so it can never name a factor that is not there.

Locks: checking an authenticator code takes the address's advisory lock (it counts toward the
address's consecutive-failure lock, like an emailed code), then the factor's row; the accepting
UPDATE is conditional on `last_step < :step`, so of racing requests with one code exactly one
is accepted. Every write here is replayable.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from service.addresses import limit_key
from service.db import Q, Row, UseCase, address_lock, replayable
from service.settings import LimitSettings
from service.store.audit import ANONYMOUS, Actor, Event, record
from service.store.limits import (
    codes_locked_for,
    count_address_failure,
    reset_address_failures,
)

TOTP = "totp"
PASSKEY = "passkey"
RECOVERY_CODE = "recovery_code"
# Every table that holds a person's second factors: THE list an operator's reset and an
# account's deletion clear.
# sync_second_factors).
FACTOR_TABLES = ("totp_factors", "recovery_codes", "passkeys")


class CodeVerdict(StrEnum):
    """What checking an authenticator code decided."""

    OK = "ok"
    WRONG = "wrong"  # not the code of the step before, of, or after now; or already used
    LOCKED = "locked"  # the address's typed codes are refused for now
    NONE = "none"  # no confirmed authenticator


@dataclass(frozen=True)
class CodeCheck:
    """A verdict, and how long the address stays locked when it is."""

    verdict: CodeVerdict
    retry_after: int = 0


@dataclass(frozen=True)
class FactorSummary:
    """What the account page and GET /api/factors show: no secret, only facts."""

    totp_enrolled: bool
    totp_created_at: int | None
    passkeys: int
    recovery_left: int
    methods: tuple[str, ...]


def sync_second_factors(user_id: str) -> UseCase[tuple[str, ...]]:
    """Recompute `users.second_factors` from the factor tables; returns the methods.

    Recovery codes are a fallback for a factor, never a factor of their own: when the last
    real factor goes, so do they (else ten 50-bit codes would silently stand in for it).
    """
    # The user's row first, before the factor tables are read: on PostgreSQL two changes
    # racing (a passkey added while an app is confirmed) then each read them only once the
    # other has committed, so neither method is lost from the list.
    yield from lock_user(user_id)
    methods: list[str] = []
    rows = yield Q(
        "SELECT 1 AS one FROM totp_factors WHERE user_id = :u AND confirmed_at IS NOT NULL",
        {"u": user_id},
    )
    if rows:
        methods.append(TOTP)
    passkeys = yield Q("SELECT 1 AS one FROM passkeys WHERE user_id = :u LIMIT 1", {"u": user_id})
    if passkeys:
        methods.append(PASSKEY)
    if methods:
        left = yield from _recovery_left(user_id)
        if left:
            methods.append(RECOVERY_CODE)
    else:
        yield Q("DELETE FROM recovery_codes WHERE user_id = :u", {"u": user_id})
    yield Q(
        "UPDATE users SET second_factors = :m WHERE id = :u", {"m": " ".join(methods), "u": user_id}
    )
    return tuple(methods)


def lock_user(user_id: str) -> UseCase[None]:
    """Lock the user's row until the transaction ends (a no-op UPDATE: FOR UPDATE, portably)."""
    yield Q("UPDATE users SET second_factors = second_factors WHERE id = :u", {"u": user_id})


def recovery_left(user_id: str) -> UseCase[int]:
    """How many unused recovery codes the user has."""
    return (yield from _recovery_left(user_id))


def store_recovery_codes(user_id: str, hashes: tuple[str, ...], now: int) -> UseCase[None]:
    """Replace the user's recovery codes by these (keyed hashes); for a first factor."""
    yield from _store_recovery_codes(user_id, hashes, now)


def _recovery_left(user_id: str) -> UseCase[int]:
    rows = yield Q(
        "SELECT COUNT(*) AS n FROM recovery_codes WHERE user_id = :u AND used_at IS NULL",
        {"u": user_id},
    )
    return int(rows[0]["n"])


def factor_summary(user_id: str) -> UseCase[FactorSummary]:
    """The user's factors as the account page shows them."""
    rows = yield Q(
        "SELECT confirmed_at FROM totp_factors WHERE user_id = :u AND confirmed_at IS NOT NULL",
        {"u": user_id},
    )
    passkeys = yield Q("SELECT COUNT(*) AS n FROM passkeys WHERE user_id = :u", {"u": user_id})
    left = yield from _recovery_left(user_id)
    users = yield Q("SELECT second_factors FROM users WHERE id = :u", {"u": user_id})
    return FactorSummary(
        totp_enrolled=bool(rows),
        totp_created_at=rows[0]["confirmed_at"] if rows else None,
        passkeys=int(passkeys[0]["n"]),
        recovery_left=left,
        methods=tuple(users[0]["second_factors"].split()) if users else (),
    )


@replayable
def begin_totp(user_id: str, sealed_secret: str, now: int) -> UseCase[bool]:
    """Store a new, unconfirmed authenticator secret (replacing an unconfirmed one); False
    when the user already has a confirmed one (remove it first)."""
    rows = yield Q(
        "INSERT INTO totp_factors (user_id, sealed_secret, created_at, confirmed_at, last_step)"
        " VALUES (:u, :s, :now, NULL, -1) ON CONFLICT (user_id) DO UPDATE SET"
        " sealed_secret = :s, created_at = :now, last_step = -1"
        " WHERE totp_factors.confirmed_at IS NULL RETURNING user_id",
        {"u": user_id, "s": sealed_secret, "now": now},
    )
    return bool(rows)


def pending_totp(user_id: str, since: int) -> UseCase[str | None]:
    """The sealed secret of an unconfirmed enrolment begun after `since`."""
    rows = yield Q(
        "SELECT sealed_secret FROM totp_factors WHERE user_id = :u AND confirmed_at IS NULL"
        " AND created_at > :since",
        {"u": user_id, "since": since},
    )
    return str(rows[0]["sealed_secret"]) if rows else None


@replayable
def confirm_totp(
    user_id: str,
    *,
    step: int,
    since: int,
    recovery_hashes: tuple[str, ...],
    actor: Actor,
    now: int,
) -> UseCase[bool | None]:
    """Confirm an enrolment whose first code (for `step`) was right.

    None: no enrolment to confirm (none, or begun before `since`). Otherwise whether
    `recovery_hashes` were stored: they are when the user has no recovery codes left (their
    first factor), so the caller shows the codes once, now.
    """
    rows = yield Q(
        "UPDATE totp_factors SET confirmed_at = :now, last_step = :step WHERE user_id = :u"
        " AND confirmed_at IS NULL AND created_at > :since RETURNING user_id",
        {"u": user_id, "step": step, "since": since, "now": now},
    )
    if not rows:
        return None
    issued = False
    if (yield from _recovery_left(user_id)) == 0:
        yield from _store_recovery_codes(user_id, recovery_hashes, now)
        issued = True
    yield from sync_second_factors(user_id)
    details = {"method": TOTP, "recovery_codes_issued": issued}
    yield from record(Event.FACTOR_ADDED, actor=actor, now=now, user_id=user_id, details=details)
    return issued


def _methods(user_id: str) -> UseCase[list[str]]:
    rows = yield Q("SELECT second_factors FROM users WHERE id = :u", {"u": user_id})
    return rows[0]["second_factors"].split() if rows else []


def _removed(
    user_id: str, before: list[str], *, reason: str, actor: Actor, now: int
) -> UseCase[list[str]]:
    """Recompute the methods and record those that went (recovery codes go with the last
    factor); the methods removed."""
    after = yield from sync_second_factors(user_id)
    gone = [m for m in before if m not in after]
    if gone:
        details = {"methods": gone, "reason": reason}
        yield from record(
            Event.FACTOR_REMOVED, actor=actor, now=now, user_id=user_id, details=details
        )
    return gone


@replayable
def remove_totp(user_id: str, *, actor: Actor, now: int) -> UseCase[bool]:
    """Remove the user's authenticator (confirmed or not); whether there was one."""
    before = yield from _methods(user_id)
    rows = yield Q(
        "DELETE FROM totp_factors WHERE user_id = :u RETURNING confirmed_at", {"u": user_id}
    )
    yield from _removed(user_id, before, reason="user", actor=actor, now=now)
    return any(row["confirmed_at"] is not None for row in rows)


@replayable
def remove_all_factors(
    user_id: str, *, reason: str, actor: Actor, now: int
) -> UseCase[list[str] | None]:
    """Clear every factor table of a user (an operator's reset: they sign in with the email
    step alone); the methods removed, or None when there is no such user."""
    users = yield Q("SELECT second_factors FROM users WHERE id = :u", {"u": user_id})
    if not users:
        return None
    before: list[str] = users[0]["second_factors"].split()
    for table in FACTOR_TABLES:
        yield Q(f"DELETE FROM {table} WHERE user_id = :u", {"u": user_id})
    return (yield from _removed(user_id, before, reason=reason, actor=actor, now=now))


def _totp_row(user_id: str) -> UseCase[Row | None]:
    rows = yield Q(
        "SELECT sealed_secret, last_step FROM totp_factors"
        " WHERE user_id = :u AND confirmed_at IS NOT NULL",
        {"u": user_id},
    )
    return rows[0] if rows else None


@replayable
def check_totp(
    user_id: str,
    match: Callable[[str, int], int | None],
    *,
    limits: LimitSettings,
    now: int,
) -> UseCase[CodeCheck]:
    """Check an authenticator code and, when right, record its step so it is never accepted
    again. `match(sealed_secret, last_step)` returns the step the code belongs to if it is
    right and later than `last_step`, else None (the arithmetic lives in service/signin).

    A wrong code counts toward the address's consecutive-failure lock (§1.2): whoever holds
    the mailbox gets five tries a sign-in, and no more than the lock allows in all.
    """
    users = yield Q("SELECT email_key FROM users WHERE id = :u", {"u": user_id})
    if not users:
        return CodeCheck(CodeVerdict.NONE)
    email_key: str = users[0]["email_key"]
    yield address_lock(limit_key(email_key))  # before any row (LOCK_ORDER), as flows do
    row = yield from _totp_row(user_id)
    if row is None:
        return CodeCheck(CodeVerdict.NONE)
    locked = yield from codes_locked_for(email_key, limits, now)
    if locked:
        return CodeCheck(CodeVerdict.LOCKED, retry_after=locked)
    step = match(row["sealed_secret"], row["last_step"])
    if step is not None:
        # Conditional: a racing request with the same code that got here first wins.
        accepted = yield Q(
            "UPDATE totp_factors SET last_step = :s WHERE user_id = :u AND last_step < :s"
            " RETURNING user_id",
            {"u": user_id, "s": step},
        )
        if accepted:
            yield from reset_address_failures(email_key, limits)
            return CodeCheck(CodeVerdict.OK)
    yield from count_address_failure(email_key, limits, now)
    return CodeCheck(CodeVerdict.WRONG)


def _store_recovery_codes(user_id: str, hashes: tuple[str, ...], now: int) -> UseCase[None]:
    yield Q("DELETE FROM recovery_codes WHERE user_id = :u", {"u": user_id})
    for code_hash in hashes:
        yield Q(
            "INSERT INTO recovery_codes (user_id, code_hash, created_at, used_at)"
            " VALUES (:u, :h, :now, NULL)",
            {"u": user_id, "h": code_hash, "now": now},
        )


@replayable
def replace_recovery_codes(
    user_id: str, hashes: tuple[str, ...], now: int, *, actor: Actor
) -> UseCase[bool]:
    """Replace every recovery code of a user who has a factor; False when they have none."""
    methods = yield from sync_second_factors(user_id)
    if not [m for m in methods if m != RECOVERY_CODE]:
        return False
    yield from _store_recovery_codes(user_id, hashes, now)
    yield from sync_second_factors(user_id)
    details = {"count": len(hashes)}
    yield from record(
        Event.RECOVERY_CODES_REPLACED, actor=actor, now=now, user_id=user_id, details=details
    )
    return True


@replayable
def use_recovery_code(
    user_id: str, code_hash: str, now: int, *, actor: Actor = ANONYMOUS
) -> UseCase[int | None]:
    """Spend one recovery code: the number left after it, or None when it is not one of the
    user's unused codes. The UPDATE is conditional, so a code is spent once however many race.

    Recorded in the spending transaction: a code spent counts even if the sign-in it was for
    never finishes (the second step's login.succeeded, with the client's IP, follows it).
    """
    rows = yield Q(
        "UPDATE recovery_codes SET used_at = :now WHERE user_id = :u AND code_hash = :h"
        " AND used_at IS NULL RETURNING user_id",
        {"u": user_id, "h": code_hash, "now": now},
    )
    if not rows:
        return None
    left = yield from _recovery_left(user_id)
    yield from sync_second_factors(user_id)
    details = {"left": left}
    yield from record(
        Event.RECOVERY_CODE_USED, actor=actor, now=now, user_id=user_id, details=details
    )
    return left


def user_email(user_id: str) -> UseCase[str | None]:
    """The user's address (for the notices a factor change mails)."""
    rows = yield Q("SELECT email FROM users WHERE id = :u", {"u": user_id})
    return str(rows[0]["email"]) if rows else None


@replayable
def raise_assurance(
    session_id: str,
    user_id: str,
    *,
    aal: int,
    amr: tuple[str, ...],
    method: str,
    actor: Actor,
    now: int,
) -> UseCase[Row | None]:
    """Record a step passed on a live session (step-up): its level, methods and `auth_time`
    become those of now. None when the session is not the user's or has ended."""
    rows = yield Q(
        "UPDATE sessions SET aal = :aal, amr = :amr, auth_time = :now WHERE id = :id"
        " AND user_id = :u AND revoked_at IS NULL AND expires_at > :now"
        " RETURNING id, user_id, expires_at, aal, amr, auth_time",
        {"id": session_id, "u": user_id, "aal": aal, "amr": " ".join(amr), "now": now},
    )
    if not rows:
        return None
    details = {"session_id": session_id, "method": method, "aal": aal, "amr": list(amr)}
    yield from record(Event.STEP_UP_PASSED, actor=actor, now=now, user_id=user_id, details=details)
    return rows[0]
