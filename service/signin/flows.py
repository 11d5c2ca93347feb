"""The use cases of signing in and out. No HTTP here: handlers parse, call one, shape the answer."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from service import crypto, store
from service.addresses import parse_email
from service.crypto import Keys, LinkSigner, LinkTokenError, LinkTokenExpiredError, ValueSigner
from service.db import Database
from service.delivery.mail import Mailer, MailJob
from service.display import mask_email
from service.errors import (
    FlowExpiredError,
    InvalidLinkError,
    InvalidRequestError,
)
from service.settings import Settings
from service.signin.assurance import Assurance, Level, Method
from service.signin.refusals import flow_refusal
from service.tokens import Keyring

Verdict = store.Verdict
log = logging.getLogger("latch.flows")
Clock = Callable[[], float]
# How long a pending sign-in waits for its second step (docs/design.md §11).
SIGNIN_TTL = 300


@dataclass(frozen=True, kw_only=True)
class Started:
    """A flow that was started or resent: what the browser or API caller is told."""

    flow_id: str
    expires_in: int
    resend_after: int
    flow_cookie: str


@dataclass(frozen=True, kw_only=True)
class Authenticated:
    """A completed sign-in: the tokens to set as cookies and where to go next."""

    user_id: str
    email: str
    session_id: str
    session_expires_at: int
    access_token: str
    refresh_token: str
    next_url: str


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
    """Start, resend, verify (code or link) and end sign-ins."""

    def __init__(
        self,
        settings: Settings,
        database: Database,
        mailer: Mailer,
        keyring: Keyring,
        clock: Clock,
        *,
        new_code: Callable[[], str] = crypto.new_code,
    ) -> None:
        self.settings = settings
        self.db = database
        self.mailer = mailer
        self.keyring = keyring
        self.clock = clock
        # Injected so that tests can make two codes that differ (random ones collide 1 in 10**6).
        self.new_code = new_code
        self.keys = Keys.from_secret(settings.secret_key)
        self.links = LinkSigner(self.keys.signing)
        self.flow_cookies = ValueSigner(self.keys.signing, "latch.flow")
        # A salt of its own: a latch_flow value can never pass for a latch_signin one.
        self.signin_cookies = ValueSigner(self.keys.signing, "latch.signin")
        self.limits = settings.limits

    def _now(self) -> int:
        return int(self.clock())

    def _new_secrets(self, flow_id: str) -> tuple[str, str, str, str]:
        code, secret = self.new_code(), crypto.new_secret()
        return (
            code,
            crypto.keyed_hash(self.keys.code, flow_id, code),
            self.links.dumps(flow_id, secret),
            crypto.keyed_hash(self.keys.link, flow_id, secret),
        )

    def _started(self, flow_id: str, expires_at: int) -> Started:
        return Started(
            flow_id=flow_id,
            expires_in=max(0, expires_at - self._now()),
            resend_after=self.settings.limits.mail_interval,
            flow_cookie=self.flow_cookies.dumps(flow_id),
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
        self.mailer.reserve()
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
        self.mailer.reserve()
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

    def new_session(
        self,
        ip: str,
        user_agent: str,
        *,
        amr: tuple[str, ...] = (Method.EMAIL.value,),
        aal: Level = Level.AAL1,
    ) -> tuple[store.NewSession, str]:
        """A session to open (and its refresh token), with the pending sign-in that replaces
        it when a second step turns out to be due."""
        refresh = crypto.new_secret()
        now = self._now()
        return store.NewSession(
            id=crypto.new_id(),
            refresh_hash=crypto.sha256_hex(refresh),
            idle_expires_at=now + self.settings.sessions.idle_ttl,
            expires_at=now + self.settings.sessions.max_ttl,
            ip=ip,
            user_agent=user_agent[:300],
            new_user_id=crypto.new_id(),
            amr=amr,
            aal=int(aal),
            step=store.NewStep(id=crypto.new_id(), expires_at=now + SIGNIN_TTL),
            policy=self.settings.factors.require_second_factor,
        ), refresh

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
                crypto.keyed_hash(self.keys.code, flow_id, normalised),
                session=session,
                limits=self.limits,
                allow_signup=self.settings.signin.allow_signup,
                now=self._now(),
            )
        )
        return self._finish(outcome, refresh, "code")

    def read_link(self, token: str) -> tuple[str, str]:
        """(flow id, secret hash) of a genuine, unexpired link token."""
        try:
            flow_id, secret = self.links.loads(token, max_age=self.settings.signin.code_ttl)
        except LinkTokenExpiredError as e:
            raise FlowExpiredError("This sign-in link has expired. Please start again.") from e
        except LinkTokenError as e:
            # The precise reason is for operators only: every forgery reads the same outside.
            log.debug("link refused: %s", e)
            raise InvalidLinkError() from e
        return flow_id, crypto.keyed_hash(self.keys.link, flow_id, secret)

    async def peek_link(self, token: str) -> LinkView:
        """The state of a link without consuming it (mail scanners fetch links)."""
        flow_id, link_hash = self.read_link(token)
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
        flow_id, link_hash = self.read_link(token)
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
        return self._finish(outcome, refresh, "link")

    def _finish(
        self, outcome: store.Outcome, refresh: str, how: str
    ) -> Authenticated | SecondStepDue:
        if outcome.step is not None:
            step = outcome.step
            log.info("login.step_due how=%s user=%s signin=%s", how, step.user_id[:8], step.id[:8])
            return SecondStepDue(
                methods=step.methods,
                signin_cookie=self.signin_cookies.dumps(f"{step.id}.{step.flow_id}"),
                next_url=step.next_url,
            )
        if outcome.state is not Verdict.OK or outcome.sign_in is None:
            log.info("login.failed how=%s reason=%s", how, outcome.state)
            if outcome.state is Verdict.CODES_LOCKED:
                log.info("limit.hit what=codes")
            raise flow_refusal(outcome)
        s = outcome.sign_in
        log.info("login.succeeded how=%s user=%s session=%s", how, s.user_id[:8], s.session_id[:8])
        return self.authenticated(s, refresh)

    def authenticated(self, sign_in: store.SignIn, refresh: str) -> Authenticated:
        """The tokens of a session just opened."""
        s = sign_in
        assurance = Assurance.of(aal=s.aal, amr=s.amr, auth_time=s.auth_time)
        return Authenticated(
            user_id=s.user_id,
            email=s.email,
            session_id=s.session_id,
            session_expires_at=s.session_expires_at,
            access_token=self.issue_access(s.user_id, s.email, s.session_id, assurance),
            refresh_token=refresh,
            next_url=s.next_url,
        )

    def issue_access(self, user_id: str, email: str, session_id: str, assurance: Assurance) -> str:
        """A signed access JWT (RFC 9068 shape) saying how the session signed in (`amr`,
        `acr`, `auth_time`: OpenID Connect Core §2). JWT times use the wall clock."""
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self.settings.public_url,
            "aud": self.settings.tokens.audience,
            "sub": user_id,
            "email": email,
            "sid": session_id,
            "iat": now,
            "nbf": now,
            "exp": now + self.settings.sessions.access_ttl,
            "jti": crypto.new_id(),
            "amr": list(assurance.amr),
            "acr": assurance.aal.acr,
            "auth_time": assurance.auth_time,
        }
        return self.keyring.sign(claims)

    def signin_from_cookie(self, value: str | None) -> tuple[str, str] | None:
        """(pending sign-in id, flow id) from a genuine `latch_signin` cookie under 5 minutes."""
        if not value:
            return None
        bound = self.signin_cookies.loads(value, max_age=SIGNIN_TTL)
        step_id, dot, flow_id = (bound or "").partition(".")
        return (step_id, flow_id) if dot and step_id and flow_id else None

    def flow_from_cookie(self, value: str | None) -> str | None:
        """The flow id bound to this browser, if its cookie is genuine and young."""
        if not value:
            return None
        return self.flow_cookies.loads(value, max_age=self.settings.signin.code_ttl + 60)

    async def flow_view(self, flow_id: str) -> dict[str, Any] | None:
        """What the code page shows about a flow (no secret in it)."""
        row = await self.db.run(store.get_flow(flow_id), write=False)
        if row is None:
            return None
        now = self._now()
        status = row["mail_status"]
        if status == "suppressed":
            # From outside a suppressed mail looks exactly like a sent one, and the code page
            # words "queued" and "sent" alike (a real mail is queued while SMTP is slow).
            status = "sent"
        elif status == "queued" and now - row["mail_at"] > self.settings.mail.stale_after:
            status = "not_delivered"
        return {
            "state": store.flow_state(row, now, self.limits.code_attempts),
            "email": row["email"],
            "mail_status": status,
            "attempts": row["attempts"],
            "tries_left": max(0, self.limits.code_attempts - row["attempts"]),
            "expires_at": row["expires_at"],
            "resend_in": max(0, row["mail_at"] + self.settings.limits.mail_interval - now),
        }
