"""Enrolment as the second step of a sign-in, under REQUIRE_SECOND_FACTOR=all (§11).

A person without a factor passes the emailed code or link and holds only the `latch_signin`
cookie of a pending sign-in with no methods. They set up an authenticator app here, and the
right first code both confirms it and completes the sign-in: the first session they get is
already two-factor. Wrong codes count against the pending sign-in as answers do (five, then it
ends), so the cookie cannot be used to guess.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from service import store
from service.db import Database
from service.errors import InvalidCodeError, InvalidRequestError, SigninExpiredError
from service.settings import Settings
from service.signin.access import AccessTokens, Authenticated
from service.signin.assurance import Method, assurance_of
from service.signin.bindings import Bindings
from service.signin.factors import AccountFactors
from service.signin.opening import new_session
from service.signin.refusals import step_refusal
from service.signin.steps import MAX_ANSWER, MAX_ANSWERS, SecondStep
from service.signin.totp import Enrolment

log = logging.getLogger("latch.steps")


@dataclass(frozen=True)
class Enrolled:
    """The session of a sign-in completed by enrolment, and the recovery codes to show once."""

    auth: Authenticated
    recovery_codes: list[str]


class EnrolStep:
    """Enrolment as the second step: begin (a secret for the pending sign-in's user), confirm
    (its first code opens the session)."""

    def __init__(
        self,
        settings: Settings,
        database: Database,
        factors: AccountFactors,
        steps: SecondStep,
        *,
        bindings: Bindings,
        access: AccessTokens,
        clock: Callable[[], float],
    ) -> None:
        self.sessions = settings.sessions
        self.db = database
        self.factors = factors
        self.steps = steps
        self.bindings = bindings
        self.access = access
        self.clock = clock

    async def begin(self, cookie: str | None) -> Enrolment:
        """A new authenticator secret for the pending sign-in's user (one with no factor)."""
        step = await self.steps.pending(cookie)
        if step.methods:
            raise InvalidRequestError("Your account already has a second factor: use it.")
        enrolment = await self.factors.totp.begin(step.user_id, step.email, int(self.clock()))
        if enrolment is None:  # confirmed by another tab a moment ago
            raise InvalidRequestError("Your account already has a second factor: use it.")
        return enrolment

    async def confirm(self, *, cookie: str | None, code: str, ip: str, user_agent: str) -> Enrolled:
        """Confirm the enrolment with its first code and open the sign-in's session."""
        bound = self.bindings.signin_of(cookie)
        if bound is None:
            raise SigninExpiredError()
        if not code or len(code) > MAX_ANSWER:
            raise InvalidRequestError("Enter the code.", field="code")
        step_id, flow_id = bound
        now = int(self.clock())
        counted = await self.db.run(store.count_attempt(step_id, flow_id, now, MAX_ANSWERS))
        if counted.step is None:
            raise step_refusal(counted.state)
        step = counted.step
        if step.methods:
            raise InvalidRequestError("Your account already has a second factor: use it.")
        try:
            actor = store.Actor("anonymous", ip, user_agent)  # signing in: not signed in yet
            confirmed = await self.factors.confirm_for(step.user_id, step.email, code, actor=actor)
        except InvalidRequestError as e:
            if e.extra.get("field") != "code":
                raise
            log.info("step.failed method=enrol signin=%s", step_id[:8])
            raise InvalidCodeError(max(0, MAX_ANSWERS - step.attempts)) from e
        amr, level = assurance_of((*step.amr, Method.OTP))
        session, refresh = new_session(self.sessions, now, ip, user_agent, amr=amr, aal=level)
        done = await self.db.run(store.complete_step(step_id, flow_id, session=session, now=now))
        if isinstance(done, store.StepState):
            raise step_refusal(done)
        log.info(
            "login.succeeded how=enrol user=%s session=%s", done.user_id[:8], done.session_id[:8]
        )
        auth = self.access.authenticated(done, refresh)
        # A session opened by enrolment is a sign-in like any other for new-device notices.
        if self.steps.notices is not None:
            await self.steps.notices.session_opened(auth, ip=ip, user_agent=user_agent)
        return Enrolled(auth, confirmed.recovery_codes)
