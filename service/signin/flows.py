"""The use cases of the first step: start, resend, and verify by code or link. No HTTP here:
handlers parse, call one, shape the answer.

Collaborators, one job each: the link codec (links.py), the cookie values (bindings.py), the
rows a step opens (opening.py) and access tokens (access.py).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from service import crypto, store
from service.addresses import parse_email
from service.crypto import Keys
from service.db import Database
from service.delivery.mail import Mailer, MailJob
from service.display import mask_email
from service.errors import InvalidLinkError, InvalidRequestError
from service.settings import Settings
from service.signin.access import AccessTokens, Authenticated
from service.signin.bindings import Bindings
from service.signin.links import LinkCodec
from service.signin.notices import DeviceNotices
from service.signin.opening import new_session
from service.signin.refusals import flow_refusal

Verdict = store.Verdict
log = logging.getLogger("latch.flows")
Clock = Callable[[], float]


@dataclass(frozen=True, kw_only=True)
class Started:
    """A flow that was started or resent: what the browser or API caller is told."""

    flow_id: str
    expires_in: int
    resend_after: int
    flow_cookie: str


@dataclass(frozen=True)
class SecondStepDue:
    """The first step passed and a second one is due: no session yet, only the signed
    `latch_signin` cookie naming the pending sign-in, and the methods that can answer it."""

    methods: tuple[str, ...]
    signin_cookie: str
    next_url: str


@dataclass(frozen=True)
class LinkView:
    """What GET /login/link may show: the state and the masked address."""

    state: str
    masked_email: str


class Login:
    """Start, resend and verify (code or link) sign-ins."""

    def __init__(
        self,
        settings: Settings,
        database: Database,
        mailer: Mailer,
        clock: Clock,
        *,
        keys: Keys,
        links: LinkCodec,
        bindings: Bindings,
        access: AccessTokens,
        new_code: Callable[[], str] = crypto.new_code,
        notices: DeviceNotices | None = None,
    ) -> None:
        self.settings = settings
        self.notices = notices
        self.db = database
        self.mailer = mailer
        self.clock = clock
        self.code_key = keys.code
        self.links = links
        self.bindings = bindings
        self.access = access
        # Injected so that tests can make two codes that differ (random ones collide 1 in 10**6).
        self.new_code = new_code
        self.limits = settings.limits

    def _now(self) -> int:
        return int(self.clock())

    def _new_secrets(self, flow_id: str) -> tuple[str, str, str, str]:
        code = self.new_code()
        token, link_hash = self.links.new(flow_id)
        return code, self.code_hash(flow_id, code), token, link_hash

    def code_hash(self, flow_id: str, code: str) -> str:
        """What the store keeps of a flow's code (and compares a typed one with)."""
        return crypto.keyed_hash(self.code_key, flow_id, code)

    def _started(self, flow_id: str, expires_at: int) -> Started:
        return Started(
            flow_id=flow_id,
            expires_in=max(0, expires_at - self._now()),
            resend_after=self.settings.limits.mail_interval,
            flow_cookie=self.bindings.flow_cookie(flow_id),
        )

    def _queue_mail(
        self,
        flow_id: str,
        seq: int,
        email: str,
        code: str,
        token: str,
        expires_at: int,
        ip: str,
        user_agent: str,
    ) -> None:
        link = f"{self.settings.public_url}/login/link?t={token}"
        self.mailer.submit(
            MailJob(
                flow_id=flow_id,
                seq=seq,
                to=email,
                code=code,
                link=link,
                expires_at=expires_at,
                ip=ip,
                user_agent=user_agent,
            )
        )

    async def start(self, *, email: str, next_url: str, ip: str, user_agent: str) -> Started:
        """Validate the address, check limits, store a flow and queue its mail.

        No user lookup happens here: known and unknown addresses take the same path.
        """
        address, email_key = parse_email(email, self.settings.signin.allowed_email_domains)
        flow_id = crypto.new_id()
        code, code_hash, token, link_hash = self._new_secrets(flow_id)
        now = self._now()
        expires_at = now + self.settings.signin.code_ttl
        flow = store.NewFlow(
            id=flow_id,
            email=address,
            email_key=email_key,
            code_hash=code_hash,
            link_hash=link_hash,
            next_url=next_url,
            expires_at=expires_at,
            ip=ip,
            user_agent=user_agent[:300],
        )
        await self.mailer.reserve()
        try:
            outcome = await self.db.run(store.open_flow(flow, self.limits, now))
        except BaseException:
            self.mailer.release()
            raise
        if outcome.state is not Verdict.OK:
            self.mailer.release()
            log.info("limit.hit what=start to=%s", mask_email(address))
            raise flow_refusal(outcome)
        self._queue_mail(flow_id, 1, address, code, token, expires_at, ip, user_agent)
        log.info("login.started flow=%s to=%s", flow_id[:8], mask_email(address))
        return self._started(flow_id, expires_at)

    async def resend(self, *, flow_id: str) -> Started:
        """A new code and link on the same flow (the old ones stop working)."""
        code, code_hash, token, link_hash = self._new_secrets(flow_id)
        now = self._now()
        await self.mailer.reserve()
        try:
            outcome = await self.db.run(
                store.resend_flow(
                    flow_id,
                    code_hash=code_hash,
                    link_hash=link_hash,
                    limits=self.limits,
                    now=now,
                    ttl=self.settings.signin.code_ttl,
                )
            )
        except BaseException:
            self.mailer.release()
            raise
        if outcome.state is not Verdict.OK or outcome.flow is None:
            self.mailer.release()
            if outcome.state is Verdict.RATE_LIMITED:
                log.info("limit.hit what=resend flow=%s", flow_id[:8])
            raise flow_refusal(outcome)
        row = outcome.flow
        self._queue_mail(
            flow_id,
            row["mail_seq"],
            row["email"],
            code,
            token,
            row["expires_at"],
            row["ip"],
            row["user_agent"],
        )
        log.info("login.resent flow=%s", flow_id[:8])
        return self._started(flow_id, row["expires_at"])

    def new_session(self, ip: str, user_agent: str) -> tuple[store.NewSession, str]:
        """The session (or pending sign-in) a first step opens now, and its refresh token.
        REQUIRE_SECOND_FACTOR decides whether a pending sign-in replaces it."""
        return new_session(
            self.settings.sessions,
            self._now(),
            ip,
            user_agent,
            policy=self.settings.factors.require_second_factor,
        )

    async def verify_code(
        self, *, flow_id: str, code: str, ip: str, user_agent: str
    ) -> Authenticated | SecondStepDue:
        """Exchange a typed code for a session, or for a pending sign-in when a second step
        is due (one atomic step, see store.verify_code)."""
        normalised = crypto.normalise_code(code)
        if normalised is None:
            raise InvalidRequestError("Enter the 6-digit code from the email.", field="code")
        session, refresh = self.new_session(ip, user_agent)
        outcome = await self.db.run(
            store.verify_code(
                flow_id,
                self.code_hash(flow_id, normalised),
                session=session,
                limits=self.limits,
                allow_signup=self.settings.signin.allow_signup,
                now=self._now(),
            )
        )
        return await self._opened(self._finish(outcome, refresh, "code"), ip, user_agent)

    async def peek_link(self, token: str) -> LinkView:
        """The state of a link without consuming it (mail scanners fetch links)."""
        flow_id, link_hash = self.links.read(token)
        outcome = await self.db.run(
            store.peek_link(flow_id, link_hash, self.limits.code_attempts, self._now()),
            write=False,
        )
        if outcome.state is not Verdict.PENDING or outcome.flow is None:
            raise flow_refusal(outcome)
        return LinkView(state=outcome.state, masked_email=mask_email(outcome.flow["email"]))

    async def verify_link(
        self, *, token: str, browser_flow_id: str | None, ip: str, user_agent: str
    ) -> Authenticated | SecondStepDue:
        """Exchange a magic link for a session (or a pending sign-in, as verify_code)."""
        flow_id, link_hash = self.links.read(token)
        if self.settings.signin.link_same_browser and browser_flow_id != flow_id:
            raise InvalidLinkError(
                "Open this link in the browser where you asked for it, or use the code."
            )
        session, refresh = self.new_session(ip, user_agent)
        outcome = await self.db.run(
            store.verify_link(
                flow_id,
                link_hash,
                session=session,
                limits=self.limits,
                allow_signup=self.settings.signin.allow_signup,
                now=self._now(),
            )
        )
        return await self._opened(self._finish(outcome, refresh, "link"), ip, user_agent)

    async def _opened(
        self, auth: Authenticated | SecondStepDue, ip: str, user_agent: str
    ) -> Authenticated | SecondStepDue:
        """A session that opened gets its new-device check (a pending sign-in does later)."""
        if self.notices is not None and isinstance(auth, Authenticated):
            await self.notices.session_opened(auth, ip=ip, user_agent=user_agent)
        return auth

    def _finish(
        self, outcome: store.Outcome, refresh: str, how: str
    ) -> Authenticated | SecondStepDue:
        if outcome.step is not None:
            step = outcome.step
            log.info("login.step_due how=%s user=%s signin=%s", how, step.user_id[:8], step.id[:8])
            return SecondStepDue(
                methods=step.methods,
                signin_cookie=self.bindings.signin_cookie(step.id, step.flow_id),
                next_url=step.next_url,
            )
        if outcome.state is not Verdict.OK or outcome.sign_in is None:
            log.info("login.failed how=%s reason=%s", how, outcome.state)
            if outcome.state is Verdict.CODES_LOCKED:
                log.info("limit.hit what=codes")
            raise flow_refusal(outcome)
        s = outcome.sign_in
        log.info("login.succeeded how=%s user=%s session=%s", how, s.user_id[:8], s.session_id[:8])
        return self.access.authenticated(s, refresh)
