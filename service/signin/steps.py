"""A sign-in is a sequence of steps (docs/design.md §11): the second step, and assurance.

The first step (the emailed code or link, service/signin/flows.py) consumes the flow; when the
user has a second factor it opens a *pending sign-in* instead of a session, and the browser
holds only a `latch_signin` cookie naming it (signed, 5 minutes, bound to the flow). Nothing
is granted on that cookie: it is not an access token and no endpoint but the second step reads
it. The second step is answered here, by whichever `SecondFactor` is registered for the method.

Factors plug in through `SecondFactors`, built by `build_signin` (service/signin/wiring.py) and
held by `SecondStep`: authenticator apps (totp.py) and recovery codes (recovery.py) ship; passkeys
will register beside them. A user whose `second_factors` names a method nobody registered cannot
finish signing in: that fails closed, never back to email alone.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Protocol

from service import store
from service.db import Database
from service.errors import (
    InvalidCodeError,
    InvalidRequestError,
    SigninExpiredError,
)
from service.settings import Settings
from service.signin.access import AccessTokens, Authenticated
from service.signin.assurance import Method, assurance_of
from service.signin.bindings import Bindings
from service.signin.notices import DeviceNotices
from service.signin.opening import new_session
from service.signin.refusals import step_refusal

log = logging.getLogger("latch.steps")

# Wrong answers a pending sign-in takes before it ends (as a login flow's codes).
MAX_ANSWERS = 5
MAX_ANSWER = 200  # longer than any code or recovery code: refused before any work


class SecondFactor(Protocol):
    """A second-step method a factor feature registers (TOTP, recovery codes…).

    `method` is its name in the API and in `users.second_factors` ("totp", "recovery_code");
    `amr` the RFC 8176 values a pass adds. `check` answers whether `answer` is right for the
    user now; a factor that must prevent replay or count failures does it inside `check`, and
    one that audits what it spends names `actor` (the client, with its IP) in the event.
    """

    @property
    def method(self) -> str: ...
    @property
    def amr(self) -> tuple[Method, ...]: ...

    async def check(
        self, user_id: str, answer: str, now: int, *, actor: store.Actor = store.ANONYMOUS
    ) -> bool: ...


class SecondFactors:
    """The registry of second-step methods this Latch can check."""

    def __init__(self, factors: Iterable[SecondFactor] = ()) -> None:
        self._by_method = {factor.method: factor for factor in factors}

    def get(self, method: str) -> SecondFactor | None:
        """The factor for a method, if one is registered."""
        return self._by_method.get(method)


class SecondStep:
    """The second step's use cases: read the pending sign-in, answer it."""

    def __init__(
        self,
        settings: Settings,
        database: Database,
        factors: SecondFactors,
        *,
        bindings: Bindings,
        access: AccessTokens,
        clock: Callable[[], float],
        notices: DeviceNotices | None = None,
    ) -> None:
        self.sessions = settings.sessions
        self.notices = notices
        self.db = database
        self.factors = factors
        self.bindings = bindings
        self.access = access
        self.clock = clock

    async def pending(self, cookie: str | None) -> store.PendingStep:
        """The pending sign-in this browser's `latch_signin` cookie names, else
        SigninExpiredError."""
        bound = self.bindings.signin_of(cookie)
        if bound is None:
            raise SigninExpiredError()
        found = await self.db.run(
            store.get_step(bound[0], bound[1], int(self.clock()), MAX_ANSWERS), write=False
        )
        if found.step is None:
            raise step_refusal(found.state)
        return found.step

    async def answer(
        self,
        *,
        cookie: str | None,
        method: str,
        answer: str,
        ip: str,
        user_agent: str,
    ) -> Authenticated:
        """Check a second-step answer and, when right, open the session of the pending sign-in.

        The attempt is counted before the factor checks the answer, so the fifth wrong answer
        is the last one checked however many race; the session is opened by the transaction
        that consumes the pending sign-in, so two right answers cannot both get one.
        """
        bound = self.bindings.signin_of(cookie)
        if bound is None:
            log.info("step.refused reason=no-signin-cookie")
            raise SigninExpiredError()
        factor = self.factors.get(method)
        if factor is None:
            # A method nobody can check is refused before anything is counted: it is no guess.
            log.info("step.refused reason=method-not-registered")
            raise InvalidRequestError("This way of signing in is not available.", field="method")
        # A factor whose answers are longer than a typed code (a passkey's assertion) says so.
        if not answer or len(answer) > int(getattr(factor, "max_answer", MAX_ANSWER)):
            raise InvalidRequestError("Enter the code.", field="code")
        step_id, flow_id = bound
        now = int(self.clock())
        counted = await self.db.run(store.count_attempt(step_id, flow_id, now, MAX_ANSWERS))
        if counted.step is None:
            log.info("step.refused reason=%s signin=%s", counted.state, step_id[:8])
            raise step_refusal(counted.state)
        step = counted.step
        if method not in step.methods:
            log.info("step.refused reason=method-not-enrolled signin=%s", step_id[:8])
            raise InvalidRequestError(
                "This way of signing in is not set up for you.", field="method"
            )
        client = store.Actor("anonymous", ip, user_agent)
        if not await factor.check(step.user_id, answer, now, actor=client):
            tries_left = max(0, MAX_ANSWERS - step.attempts)
            log.info(
                "step.failed method=%s signin=%s tries_left=%d", method, step_id[:8], tries_left
            )
            # Audited here, once for every factor: its own transaction on this failure path;
            # the attempt was counted before the check.
            await self.db.run(
                store.record_alone(
                    store.Event.LOGIN_FAILED,
                    actor=client,
                    now=now,
                    user_id=step.user_id,
                    reason="wrong_second_factor",
                    method=method,
                    signin_id=step_id,
                    tries_left=tries_left,
                )
            )
            raise InvalidCodeError(tries_left)
        amr, level = assurance_of((*step.amr, *factor.amr))
        session, refresh = new_session(self.sessions, now, ip, user_agent, amr=amr, aal=level)
        done = await self.db.run(store.complete_step(step_id, flow_id, session=session, now=now))
        if isinstance(done, store.StepState):
            log.info("step.refused reason=%s signin=%s", done, step_id[:8])
            raise step_refusal(done)
        log.info(
            "login.succeeded how=%s user=%s session=%s",
            method,
            done.user_id[:8],
            done.session_id[:8],
        )
        auth = self.access.authenticated(done, refresh)
        if self.notices is not None:
            await self.notices.session_opened(auth, ip=ip, user_agent=user_agent)
        return auth
