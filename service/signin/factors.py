"""The account's second factors as use cases (docs/design.md §11): what a person has, adding
and removing an authenticator app, regenerating recovery codes, and step-up.

No HTTP here. Every change of factors needs a step passed within STEP_UP_TTL (a sign-in, or
`step_up`): whoever borrows an unlocked laptop with a day-old session must not be able to add
their own authenticator, or remove the owner's. Each change mails the person.

The methods live in a general registry (`SecondFactors`, service/signin/steps.py): TOTP and
recovery codes here; a passkey feature registers its own beside them. A step-up takes the
authenticator app's code, or a method passed in as a `StepUpMethod` (a passkey,
service/signin/passkey_step.py).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Protocol

from service import store
from service.db import Database
from service.delivery.notices import Notice, Notices
from service.errors import (
    InvalidCodeError,
    InvalidPasskeyError,
    InvalidRequestError,
    StepUpRequiredError,
)
from service.settings import Settings
from service.signin.access import AccessTokens
from service.signin.assurance import Assurance, Method, assurance_of
from service.signin.recovery import RecoveryCodes, new_codes
from service.signin.sessions import Identity
from service.signin.totp import Enrolment, Totp

log = logging.getLogger("latch.factors")
# An enrolment not confirmed within this is forgotten (design §11: pending for 10 minutes).
ENROL_TTL = 600
# Methods a step-up takes, strongest first (a recovery code is a way back in, not a step-up:
# signing in with one is). A passkey before the app: its assertion is bound to this origin, so
# a phishing page cannot relay it as it can relay a typed code, and nothing is typed.
STEP_UP_METHODS = (store.PASSKEY, store.TOTP)
NAMES = {store.TOTP: "an authenticator app"}
MAX_CODE = 200  # longer than any typed code: refused before any work


class StepUpMethod(Protocol):
    """A step-up method beside the authenticator app (a passkey).

    `step_up` answers the RFC 8176 values a right answer adds, or raises the method's own
    refusal (InvalidPasskeyError); a method that must prevent replay does it inside.
    """

    @property
    def method(self) -> str: ...
    @property
    def max_answer(self) -> int: ...

    async def step_up(self, user_id: str, answer: str, now: int) -> tuple[Method, ...]: ...


@dataclass(frozen=True)
class Confirmed:
    """An authenticator confirmed: the recovery codes to show once (empty when the person
    already had some)."""

    recovery_codes: list[str]


class AccountFactors:
    """The second factors of a signed-in person."""

    def __init__(
        self,
        settings: Settings,
        database: Database,
        access: AccessTokens,
        totp: Totp,
        recovery: RecoveryCodes,
        notices: Notices,
        clock: Callable[[], float],
        step_ups: Iterable[StepUpMethod] = (),
    ) -> None:
        self.settings = settings
        self.db = database
        self.access = access
        self.totp = totp
        self.recovery = recovery
        self.notices = notices
        self.clock = clock
        self.step_ups = {m.method: m for m in step_ups}

    def now(self) -> int:
        """The injected clock, in whole seconds."""
        return int(self.clock())

    async def summary(self, identity: Identity) -> store.FactorSummary:
        """What the person has (no secret)."""
        return await self.db.run(store.factor_summary(identity.user_id), write=False)

    async def step_up_methods(self, user_id: str) -> tuple[str, ...]:
        """The methods a step-up can take for this person (none: an emailed code, by signing
        in again)."""
        summary = await self.db.run(store.factor_summary(user_id), write=False)
        # A method nobody registered is not offered (passkeys turned off: a person who has one
        # steps up with their app, or signs in again).
        can = {store.TOTP, *self.step_ups}
        return tuple(m for m in STEP_UP_METHODS if m in summary.methods and m in can)

    async def recent_step(self, identity: Identity) -> bool:
        """Whether this session passed a step within STEP_UP_TTL (read from the session row,
        not from the token, which may be older than a step-up)."""
        row = await self.db.run(store.get_session(identity.session_id), write=False)
        if row is None or row["revoked_at"] is not None:
            return False
        return bool(row["auth_time"] >= self.now() - self.settings.factors.step_up_ttl)

    async def require_recent_step(self, identity: Identity) -> None:
        """StepUpRequiredError unless a step passed within STEP_UP_TTL."""
        if not await self.recent_step(identity):
            raise StepUpRequiredError(await self.step_up_methods(identity.user_id))

    async def step_up(
        self, identity: Identity, method: str, answer: str, *, ip: str = "", user_agent: str = ""
    ) -> str:
        """Pass a step on this session with `method` (the app's code, or a passkey's assertion
        as JSON); a new access token saying so (`auth_time` now, and the level the session's
        methods with this one are worth). Passed and failed steps are audited."""
        methods = await self.step_up_methods(identity.user_id)
        if method not in methods:
            raise InvalidRequestError(
                "This way of confirming is not set up for you.", field="method"
            )
        other = self.step_ups.get(method)
        if not answer or len(answer) > (other.max_answer if other else MAX_CODE):
            raise InvalidRequestError("Enter the code.", field="code")
        now = self.now()
        actor = store.Actor("user", ip, user_agent)
        try:
            if other is not None:
                added = await other.step_up(identity.user_id, answer, now)
            elif await self.totp.check(identity.user_id, answer, now):
                added = self.totp.amr
            else:
                raise InvalidCodeError(tries_left=None)
        except (InvalidCodeError, InvalidPasskeyError):
            log.info("step_up.failed method=%s user=%s", method, identity.user_id[:8])
            # Its own transaction, after the check's (which counted the failure against the
            # address): a failure path, and the factor's check stays the registry's plain one.
            await self.db.run(
                store.record_alone(
                    store.Event.STEP_UP_FAILED,
                    actor=actor,
                    now=now,
                    user_id=identity.user_id,
                    method=method,
                    session_id=identity.session_id,
                )
            )
            raise
        row = await self.db.run(store.get_session(identity.session_id), write=False)
        before = tuple(row["amr"].split()) if row else ()
        amr, level = assurance_of((*before, *added))
        raised = await self.db.run(
            store.raise_assurance(
                identity.session_id,
                identity.user_id,
                aal=int(level),
                amr=amr,
                method=method,
                actor=actor,
                now=now,
            )
        )
        if raised is None:
            raise InvalidRequestError("This session has ended. Please sign in again.")
        log.info(
            "step_up.passed method=%s user=%s session=%s",
            method,
            identity.user_id[:8],
            identity.session_id[:8],
        )
        return self.access.issue(
            identity.user_id,
            identity.email,
            identity.session_id,
            Assurance.of(aal=raised["aal"], amr=raised["amr"].split(), auth_time=now),
        )

    async def begin_totp(self, identity: Identity) -> Enrolment:
        """A new authenticator secret to show once; confirmed by `confirm_totp`."""
        await self.require_recent_step(identity)
        enrolment = await self.totp.begin(identity.user_id, identity.email, self.now())
        if enrolment is None:
            raise InvalidRequestError(
                "An authenticator app is already set up. Remove it first to add another."
            )
        log.info("factor.totp_begun user=%s", identity.user_id[:8])
        return enrolment

    async def confirm_totp(
        self, identity: Identity, code: str, *, ip: str = "", user_agent: str = ""
    ) -> Confirmed:
        """Confirm the pending authenticator with one code from the app."""
        await self.require_recent_step(identity)
        actor = store.Actor("user", ip, user_agent)
        return await self.confirm_for(identity.user_id, identity.email, code, actor=actor)

    async def confirm_for(
        self, user_id: str, email: str, code: str, *, actor: store.Actor
    ) -> Confirmed:
        """Confirm a user's pending authenticator (a signed-in person, or a sign-in under
        REQUIRE_SECOND_FACTOR=all): the recovery codes when it is their first factor."""
        now = self.now()
        step = await self.totp.pending_step(user_id, code, now, since=now - ENROL_TTL)
        if step is None:
            raise InvalidRequestError(
                "That code is not right. Check the app shows a code for this account, "
                "and that your phone's clock is set automatically.",
                field="code",
            )
        codes = new_codes()
        issued = await self.db.run(
            store.confirm_totp(
                user_id,
                step=step,
                since=now - ENROL_TTL,
                recovery_hashes=self.recovery.hashes(user_id, codes),
                actor=actor,
                now=now,
            )
        )
        if issued is None:
            raise InvalidRequestError("This setup has expired. Please start again.", field="code")
        log.info("factor.added method=totp user=%s", user_id[:8])
        self.notices.send(Notice(kind="factor_added", to=email, factor=NAMES[store.TOTP]))
        return Confirmed(codes if issued else [])

    async def remove_totp(self, identity: Identity, *, ip: str = "", user_agent: str = "") -> None:
        """Remove the authenticator app (its recovery codes go too when it was the last
        factor)."""
        await self.require_recent_step(identity)
        actor = store.Actor("user", ip, user_agent)
        if await self.db.run(store.remove_totp(identity.user_id, actor=actor, now=self.now())):
            log.info("factor.removed method=totp user=%s", identity.user_id[:8])
            self.notices.send(
                Notice(kind="factor_removed", to=identity.email, factor=NAMES[store.TOTP])
            )

    async def regenerate_recovery_codes(
        self, identity: Identity, *, ip: str = "", user_agent: str = ""
    ) -> list[str]:
        """Ten new codes replacing all the old ones."""
        await self.require_recent_step(identity)
        actor = store.Actor("user", ip, user_agent)
        codes = await self.recovery.regenerate(identity.user_id, self.now(), actor=actor)
        if codes is None:
            raise InvalidRequestError("Set up an authenticator app first.")
        return codes
