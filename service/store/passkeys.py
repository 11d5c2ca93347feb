"""Passkeys and the challenges of their ceremonies (docs/design.md §12).

A challenge is stored when options are handed out and consumed by the one answer that names it
(`DELETE … RETURNING`): an answer replayed, or answering a challenge of another purpose, user or
pending sign-in, finds nothing. A passkey's sign count only moves forward, by a conditional
UPDATE, so two racing assertions with the same count cannot both pass.

`users.second_factors` lists "passkey" while the user has one: adding and removing recompute it
(store/factors.py `sync_second_factors`, which locks the user's row first) in the same
transaction, so a TOTP enrolment racing with it cannot lose either word.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from service.db import Q, Row, UseCase, replayable
from service.store.factors import (
    lock_user,
    recovery_left,
    store_recovery_codes,
    sync_second_factors,
)
from service.store.sessions import NewSession, SignIn, open_session
from service.store.signins import PendingStep, get_step, open_step

_COLUMNS = (
    "id, user_id, credential_id, public_key, sign_count, transports, backup_eligible,"
    " backed_up, name, created_at, last_used_at"
)


@dataclass(frozen=True, kw_only=True)
class NewPasskey:
    """A credential whose registration was verified, about to be stored."""

    id: str
    credential_id: str
    public_key: str
    sign_count: int
    transports: tuple[str, ...]
    backup_eligible: bool
    backed_up: bool
    name: str


class UseVerdict(StrEnum):
    """What recording a passkey's use decided."""

    OK = "ok"
    GONE = "gone"  # removed since the assertion's look-up
    REPLAYED = "replayed"  # the sign count did not move forward: a possible clone


@dataclass(frozen=True)
class PasskeyUse:
    """A verified assertion recorded: a session, a pending sign-in, or why neither."""

    verdict: UseVerdict
    sign_in: SignIn | None = None
    step: PendingStep | None = None


# --- challenges ------------------------------------------------------------------------------


@replayable
def add_challenge(
    key: str,
    purpose: str,
    *,
    user_id: str | None,
    signin_id: str | None,
    ip: str,
    max_per_ip: int,
    now: int,
    ttl: int,
) -> UseCase[bool]:
    """Remember a challenge handed out (by its hash) for `purpose`; False (nothing stored)
    when this client IP already holds `max_per_ip` unanswered ones (0: no limit).

    Anyone may ask for sign-in options, and each stores a row until it is answered or
    purged: the limit keeps one client from filling the table. Answered challenges are
    deleted, so a person signing in again and again is never held up by their own.
    """
    if max_per_ip:
        rows = yield Q(
            "SELECT COUNT(*) AS n FROM webauthn_challenges WHERE ip = :ip AND expires_at > :now",
            {"ip": ip, "now": now},
        )
        if rows[0]["n"] >= max_per_ip:
            return False
    yield Q(
        "INSERT INTO webauthn_challenges (id, purpose, user_id, signin_id, ip, created_at,"
        " expires_at) VALUES (:id, :p, :uid, :sid, :ip, :now, :exp)",
        {
            "id": key,
            "p": purpose,
            "uid": user_id,
            "sid": signin_id,
            "ip": ip,
            "now": now,
            "exp": now + ttl,
        },
    )
    return True


@replayable
def take_challenge(key: str, now: int) -> UseCase[Row | None]:
    """Consume a challenge: its row if it was handed out and is unexpired, else None.

    Deleted whether or not it has expired, so it is never answered twice.
    """
    rows = yield Q(
        "DELETE FROM webauthn_challenges WHERE id = :id"
        " RETURNING purpose, user_id, signin_id, expires_at",
        {"id": key},
    )
    if not rows or rows[0]["expires_at"] <= now:
        return None
    return rows[0]


# --- the person's passkeys -------------------------------------------------------------------


def list_passkeys(user_id: str) -> UseCase[list[Row]]:
    """A person's passkeys, oldest first."""
    rows = yield Q(
        f"SELECT {_COLUMNS} FROM passkeys WHERE user_id = :uid ORDER BY created_at, id",
        {"uid": user_id},
    )
    return rows


def find_passkey(credential_id: str) -> UseCase[Row | None]:
    """A passkey by its credential id (what an assertion names), with its user's address
    and second factors."""
    columns = ", ".join(f"p.{c.strip()}" for c in _COLUMNS.split(","))
    rows = yield Q(
        f"SELECT {columns}, u.email, u.second_factors FROM passkeys p"
        " JOIN users u ON u.id = p.user_id WHERE p.credential_id = :cid",
        {"cid": credential_id},
    )
    return rows[0] if rows else None


@replayable
def add_passkey(
    user_id: str, passkey: NewPasskey, now: int, *, recovery_hashes: tuple[str, ...] = ()
) -> UseCase[tuple[Row, bool] | None]:
    """Store a verified credential for the user: its row, and whether `recovery_hashes` were
    stored (they are when the user has no recovery codes left, as for a first authenticator
    app: whoever loses their only passkey still has a way in). None when that credential is
    already stored (the same authenticator registering twice, for this user or another)."""
    yield from lock_user(user_id)
    rows = yield Q(
        f"INSERT INTO passkeys ({_COLUMNS}) VALUES (:id, :uid, :cid, :pk, :count, :tr, :be,"
        " :bu, :name, :now, NULL) ON CONFLICT (credential_id) DO NOTHING"
        f" RETURNING {_COLUMNS}",
        {
            "id": passkey.id,
            "uid": user_id,
            "cid": passkey.credential_id,
            "pk": passkey.public_key,
            "count": passkey.sign_count,
            "tr": " ".join(passkey.transports),
            "be": int(passkey.backup_eligible),
            "bu": int(passkey.backed_up),
            "name": passkey.name,
            "now": now,
        },
    )
    if not rows:
        return None
    issued = False
    if recovery_hashes and (yield from recovery_left(user_id)) == 0:
        yield from store_recovery_codes(user_id, recovery_hashes, now)
        issued = True
    yield from sync_second_factors(user_id)
    return rows[0], issued


@replayable
def rename_passkey(user_id: str, passkey_id: str, name: str) -> UseCase[bool]:
    """Rename one of the person's passkeys; False if they have none of that id."""
    rows = yield Q(
        "UPDATE passkeys SET name = :name WHERE id = :id AND user_id = :uid RETURNING id",
        {"id": passkey_id, "uid": user_id, "name": name},
    )
    return bool(rows)


@replayable
def remove_passkey(user_id: str, passkey_id: str) -> UseCase[str | None]:
    """Remove one of the person's passkeys (it stops working at once: every assertion looks
    the credential up): its name, or None if they have none of that id. The last one also
    leaves `second_factors`, and with it the recovery codes when it was the last factor."""
    rows = yield Q(
        "DELETE FROM passkeys WHERE id = :id AND user_id = :uid RETURNING name",
        {"id": passkey_id, "uid": user_id},
    )
    if not rows:
        return None
    yield from sync_second_factors(user_id)
    return str(rows[0]["name"])


def _count_forward(passkey_id: str, sign_count: int, now: int) -> UseCase[bool]:
    # WebAuthn §6.1.1: a count that does not move forward (and is not 0 on both sides, as
    # authenticators without a counter send) may mean a cloned authenticator.
    rows = yield Q(
        "UPDATE passkeys SET sign_count = :c, last_used_at = :now WHERE id = :id"
        " AND (sign_count < :c OR (sign_count = 0 AND :c = 0)) RETURNING id",
        {"id": passkey_id, "c": sign_count, "now": now},
    )
    return bool(rows)


def _verdict_of_refused(passkey_id: str) -> UseCase[UseVerdict]:
    rows = yield Q("SELECT id FROM passkeys WHERE id = :id", {"id": passkey_id})
    return UseVerdict.REPLAYED if rows else UseVerdict.GONE


@replayable
def use_passkey(passkey_id: str, sign_count: int, now: int) -> UseCase[UseVerdict]:
    """Record a verified assertion of a passkey (a second step, or a step-up)."""
    if (yield from _count_forward(passkey_id, sign_count, now)):
        return UseVerdict.OK
    return (yield from _verdict_of_refused(passkey_id))


@replayable
def passkey_signin(
    passkey_id: str,
    sign_count: int,
    *,
    session: NewSession,
    second_step_due: bool,
    signin_key: str,
    next_url: str,
    now: int,
) -> UseCase[PasskeyUse]:
    """Sign in with a verified passkey assertion as the first step: record its use, then open
    the session, or (`second_step_due`) a pending sign-in with `hwk` passed, in its place.

    `signin_key` stands in for a flow id in the pending sign-in (there was no mail flow): the
    `latch_signin` cookie binds the two as it binds a code's flow.
    """
    if not (yield from _count_forward(passkey_id, sign_count, now)):
        return PasskeyUse((yield from _verdict_of_refused(passkey_id)))
    rows = yield Q(
        "UPDATE users SET last_login_at = :now WHERE id = (SELECT user_id FROM passkeys"
        " WHERE id = :id) RETURNING id, email",
        {"id": passkey_id, "now": now},
    )
    user_id, email = rows[0]["id"], rows[0]["email"]
    if second_step_due and session.step is not None:
        flow = {"id": signin_key, "next_url": next_url}
        yield from open_step(
            session.step,
            flow=flow,
            user_id=user_id,
            ip=session.ip,
            user_agent=session.user_agent,
            now=now,
            amr=" ".join(session.amr),
        )
        found = yield from get_step(session.step.id, signin_key, now, 0)
        return PasskeyUse(UseVerdict.OK, step=found.step)
    yield from open_session(session, user_id, now)
    return PasskeyUse(
        UseVerdict.OK,
        sign_in=SignIn(
            user_id=user_id,
            email=email,
            session_id=session.id,
            session_expires_at=session.expires_at,
            next_url=next_url,
            flow_id=signin_key,
            amr=session.amr,
            aal=session.aal,
            auth_time=now,
        ),
    )


def challenge_purpose(key: str) -> UseCase[str | None]:
    """What a challenge was handed out for, consuming nothing."""
    rows = yield Q("SELECT purpose FROM webauthn_challenges WHERE id = :id", {"id": key})
    return str(rows[0]["purpose"]) if rows else None
