"""Changing a person's address (docs/design.md §14): the new address gets a code and a link,
as a sign-in's (same code shape, lifetime, attempts and mail limits); either one moves the
account there, keeping its sessions and factors, and the old address is told.

An address that already has an account is refused only at confirmation, and only to whoever
holds the code or link mailed to it: that person could learn as much by signing in with the
address. Starting a change answers the same for a free address and a taken one.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import assert_never

from service import crypto, store
from service.addresses import parse_email
from service.crypto import Keys, ValueSigner
from service.db import Database
from service.delivery.account_mail import Notice, NoticeKind
from service.delivery.mail import Mailer
from service.display import mask_email
from service.errors import (
    AddressTakenError,
    FlowDeadError,
    FlowExpiredError,
    FlowUsedError,
    InvalidCodeError,
    InvalidLinkError,
    InvalidRequestError,
    NotFoundError,
    RateLimitedError,
    ServiceError,
    UnavailableError,
)
from service.settings import Settings
from service.signin.factors import AccountFactors
from service.signin.notices import when
from service.signin.sessions import Identity
from service.store import address_changes as changes
from service.store.address_changes import ChangeOutcome, ChangeState

log = logging.getLogger("latch.account")
LINK_PATH = "/account/email/link"


@dataclass(frozen=True, kw_only=True)
class PendingChange:
    """What the confirmation page shows of a change waiting for its code."""

    masked_email: str
    expires_at: int


@dataclass(frozen=True, kw_only=True)
class Moved:
    """An account that moved: to which address (the old one has been told)."""

    user_id: str
    email: str


class AddressChange:
    """Start and confirm changes of address."""

    def __init__(
        self,
        settings: Settings,
        database: Database,
        mailer: Mailer,
        clock: Callable[[], float],
        factors: AccountFactors,
        *,
        new_code: Callable[[], str] = crypto.new_code,
    ) -> None:
        self.settings = settings
        self.db = database
        self.mailer = mailer
        self.clock = clock
        # Starting a change needs a step within STEP_UP_TTL (§11, as changing factors does):
        # whoever holds a session for a moment must not be able to move the account away.
        self.factors = factors
        self.new_code = new_code
        keys = Keys.from_secret(settings.secret_key)
        self._code_key = keys.code
        # Salts and a hash key of their own: a sign-in link cannot confirm a change of
        # address, nor the other way round.
        self._signer = ValueSigner(keys.signing, "latch.address")
        self._link_key = crypto.derive_subkey(settings.secret_key, "address-link-hash")
        self.ttl = settings.signin.code_ttl
        self.attempts = settings.limits.code_attempts or 5

    def _now(self) -> int:
        return int(self.clock())

    def _code_hash(self, change_id: str, code: str) -> str:
        return crypto.keyed_hash(self._code_key, "address", change_id, code)

    def _link_hash(self, change_id: str, secret: str) -> str:
        return crypto.keyed_hash(self._link_key, change_id, secret)

    async def start(
        self, identity: Identity, *, current: str, new_email: str, ip: str, user_agent: str
    ) -> PendingChange:
        """Mail a code and a link to `new_email`; StepUpRequiredError without a recent step."""
        await self.factors.require_recent_step(identity)
        address, email_key = parse_email(new_email, self.settings.signin.allowed_email_domains)
        if email_key == parse_email(current)[1]:
            raise InvalidRequestError("This is already your address.", field="email")
        if self.mailer.full:
            raise UnavailableError(message="Too many emails at once. Try again in a moment.")
        now = self._now()
        change_id, secret, code = crypto.new_id(), crypto.new_secret(), self.new_code()
        change = changes.NewChange(
            id=change_id,
            user_id=identity.user_id,
            email=address,
            email_key=email_key,
            code_hash=self._code_hash(change_id, code),
            link_hash=self._link_hash(change_id, secret),
            expires_at=now + self.ttl,
            ip=ip,
            user_agent=user_agent[:300],
        )
        outcome = await self.db.run(changes.open_change(change, self.settings.limits, now))
        if outcome.state is not ChangeState.OK:
            log.info("limit.hit what=address_change user=%s", identity.user_id[:8])
            raise _refusal(outcome)
        token = self._signer.dumps(f"{change_id}.{secret}")
        self.mailer.notify(
            Notice(
                kind=NoticeKind.CONFIRM_ADDRESS,
                to=address,
                ref=change_id,
                expires_at=now + self.ttl,
                context={
                    "code": code,
                    "code_display": f"{code[:3]} {code[3:]}",
                    "link": f"{self.settings.public_url}{LINK_PATH}?t={token}",
                    "expires_minutes": str(max(1, self.ttl // 60)),
                },
            )
        )
        log.info("email.change_started change=%s user=%s", change_id[:8], identity.user_id[:8])
        return PendingChange(masked_email=mask_email(address), expires_at=now + self.ttl)

    async def pending(self, identity: Identity) -> PendingChange | None:
        """The person's change waiting for its code, if any."""
        row = await self.db.run(changes.pending_change(identity.user_id, self._now()), write=False)
        if row is None:
            return None
        return PendingChange(masked_email=mask_email(row["email"]), expires_at=row["expires_at"])

    async def confirm_code(
        self, identity: Identity, code: str, *, ip: str = "", user_agent: str = ""
    ) -> Moved:
        """Move the account with the code typed on the signed-in person's page."""
        normalised = crypto.normalise_code(code)
        if normalised is None:
            raise InvalidRequestError("Enter the 6-digit code from the email.", field="code")
        row = await self.db.run(changes.pending_change(identity.user_id, self._now()), write=False)
        if row is None:
            raise FlowExpiredError("This change has ended. Please start again.")
        candidate = self._code_hash(row["id"], normalised)
        actor = store.Actor("user", ip, user_agent)
        return await self._confirm(row["id"], candidate, by_link=False, actor=actor)

    def _read(self, token: str) -> tuple[str, str]:
        value = self._signer.loads(token, max_age=self.ttl + 60)
        change_id, dot, secret = (value or "").partition(".")
        if not dot or not change_id or not secret:
            raise InvalidLinkError()
        return change_id, self._link_hash(change_id, secret)

    async def peek_link(self, token: str) -> PendingChange:
        """What the link's GET shows; consumes nothing (mail scanners fetch links)."""
        change_id, link_hash = self._read(token)
        row = await self.db.run(
            changes.peek_change(change_id, link_hash, self._now(), self.attempts), write=False
        )
        if not row:
            raise InvalidLinkError("This link does not work any more. Please start again.")
        return PendingChange(masked_email=mask_email(row["email"]), expires_at=row["expires_at"])

    async def confirm_link(self, token: str, *, ip: str = "", user_agent: str = "") -> Moved:
        """Move the account with the mailed link (on any device: the link is the proof)."""
        change_id, link_hash = self._read(token)
        actor = store.Actor("anonymous", ip, user_agent)  # whoever holds the link
        return await self._confirm(change_id, link_hash, by_link=True, actor=actor)

    async def _confirm(
        self, change_id: str, candidate: str, *, by_link: bool, actor: store.Actor
    ) -> Moved:
        now = self._now()
        outcome = await self.db.run(
            changes.confirm_change(
                change_id,
                candidate,
                by_link=by_link,
                max_attempts=self.attempts,
                actor=actor,
                now=now,
            )
        )
        if outcome.state is not ChangeState.OK:
            log.info("email.change_refused change=%s reason=%s", change_id[:8], outcome.state)
            raise _refusal(outcome)
        # The old address hears of it: if the change was not its owner's doing, that mailbox
        # is where they still read (docs/design.md §14).
        self.mailer.notify(
            Notice(
                kind=NoticeKind.ADDRESS_CHANGED,
                to=outcome.old_email,
                ref=change_id,
                expires_at=now + 86400,
                context={"when": when(now), "new_masked": mask_email(outcome.email)},
            )
        )
        log.info("email.changed change=%s user=%s", change_id[:8], outcome.user_id[:8])
        return Moved(user_id=outcome.user_id, email=outcome.email)


def _refusal(outcome: ChangeOutcome) -> ServiceError:
    """The public error for a refused change of address."""
    match outcome.state:
        case ChangeState.WRONG:
            return InvalidCodeError(outcome.tries_left)
        case ChangeState.USED:
            return FlowUsedError("This code or link has already been used.")
        case ChangeState.EXPIRED:
            return FlowExpiredError("This code or link has expired. Please start again.")
        case ChangeState.DEAD:
            return FlowDeadError()
        case ChangeState.TAKEN:
            return AddressTakenError()
        case ChangeState.RATE_LIMITED:
            return RateLimitedError(outcome.retry_after)
        case ChangeState.INVALID:
            return InvalidLinkError()
        case ChangeState.OK | ChangeState.PENDING:
            return NotFoundError("This change has ended. Please start again.")
        case _:
            assert_never(outcome.state)
