"""Authorization: does this person's Latch session satisfy this request, and if so, a code.

No HTTP here: the handlers in authorize.py read the request and the session, call `decide`,
and turn the decision into a redirect or a page.

Single sign-on: a live Latch session satisfies a request unless the request (or the client's
policy) asks for more than the session has: `prompt=login`, a `max_age` exceeded, AAL2 when
the session is AAL1. A sign-in made *after* the request was stored satisfies `prompt=login`
and `max_age` (the person has just proved themselves), so coming back from the sign-in pages
ends the loop; AAL2 is never waived (a person without a second factor cannot reach it, and
is told so by `unmet_authentication_requirements`, rather than sent round again).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from urllib.parse import urlencode

from service import crypto
from service.db import Database
from service.oidc.clients import Client
from service.oidc.params import AuthorizationRequest
from service.settings import Settings
from service.store import Actor, oauth

CODE_TTL = 60
# Long enough to receive a code, open the mail and pass a second step; the flow itself
# (CODE_TTL of the sign-in) and the pending sign-in (5 min) expire on their own terms.
REQUEST_TTL = 30 * 60


@dataclass(frozen=True, kw_only=True)
class SessionInfo:
    """The person's current Latch session, as authorization needs it."""

    user_id: str
    email: str
    session_id: str
    aal: int
    amr: tuple[str, ...]
    auth_time: int


class Next(StrEnum):
    """What has to happen before a code can be issued."""

    ISSUE = "issue"
    SIGN_IN = "sign_in"
    CONSENT = "consent"


@dataclass(frozen=True)
class Decision:
    """The next step, or an error for the client (`error` set, then `next` is unused)."""

    next: Next
    error: str | None = None
    description: str = ""


def _fresh(session: SessionInfo, stored_at: int | None) -> bool:
    return stored_at is not None and session.auth_time >= stored_at


class Provider:
    """The use cases of the authorization endpoint and the consent page."""

    def __init__(self, settings: Settings, database: Database, clock: Callable[[], float]):
        self.settings = settings
        self.db = database
        self.clock = clock
        self.issuer = settings.public_url

    def now(self) -> int:
        """The injected clock, in whole seconds."""
        return int(self.clock())

    async def decide(
        self,
        request: AuthorizationRequest,
        client: Client,
        session: SessionInfo | None,
        *,
        stored_at: int | None = None,
    ) -> Decision:
        """What comes next for `request` with `session` (None: not signed in). `stored_at`
        is when the request was kept server-side, for one coming back from the sign-in."""
        interactive = "none" not in request.prompt
        if session is None:
            return self._sign_in(interactive, "login_required")
        fresh = _fresh(session, stored_at)
        if request.require_aal2 and session.aal < 2:
            if fresh:
                return Decision(
                    Next.ISSUE,
                    "unmet_authentication_requirements",
                    "this app requires a second factor, and none was used",
                )
            return self._sign_in(interactive, "login_required")
        too_old = request.max_age is not None and self.now() - session.auth_time > request.max_age
        if ("login" in request.prompt or too_old) and not fresh:
            return self._sign_in(interactive, "login_required")
        if not client.first_party:
            allowed = await self.db.run(oauth.get_consent(session.user_id, client.id), write=False)
            covered = allowed is not None and set(request.scope) <= set(allowed.split())
            if "consent" in request.prompt or not covered:
                if not interactive:
                    return Decision(Next.ISSUE, "consent_required", "the person must consent")
                return Decision(Next.CONSENT)
        return Decision(Next.ISSUE)

    @staticmethod
    def _sign_in(interactive: bool, error: str) -> Decision:
        if interactive:
            return Decision(Next.SIGN_IN)
        return Decision(Next.ISSUE, error, "prompt=none, and the person must sign in")

    async def keep(self, request: AuthorizationRequest) -> str:
        """Store the request while the person signs in or consents; its id."""
        request_id = crypto.new_id()
        now = self.now()
        await self.db.run(
            oauth.save_request(
                request_id,
                request.client_id,
                request.to_json(),
                now=now,
                expires_at=now + REQUEST_TTL,
            )
        )
        return request_id

    async def kept(self, request_id: str) -> tuple[AuthorizationRequest, int] | None:
        """A stored request that is still pending, with when it was stored."""
        if not request_id or len(request_id) > 64:
            return None
        row = await self.db.run(oauth.get_request(request_id, self.now()), write=False)
        if row is None:
            return None
        return AuthorizationRequest.from_json(row["params"]), int(row["created_at"])

    async def consent(
        self,
        request: AuthorizationRequest,
        session: SessionInfo,
        *,
        ip: str = "",
        user_agent: str = "",
    ) -> None:
        """Remember that the person allowed this client these scopes (audited)."""
        await self.db.run(
            oauth.save_consent(
                session.user_id,
                request.client_id,
                " ".join(request.scope),
                self.now(),
                actor=Actor("user", ip, user_agent),
            )
        )

    async def issue(
        self, request: AuthorizationRequest, session: SessionInfo, request_id: str | None = None
    ) -> str | None:
        """A code for the request, as the URL to send the browser to (None when the stored
        request was used meanwhile)."""
        code = secrets.token_urlsafe(32)  # 256 bits; only its hash is stored
        now = self.now()
        grant = oauth.NewGrant(
            id=crypto.new_id(),
            client_id=request.client_id,
            user_id=session.user_id,
            session_id=session.session_id,
            scope=" ".join(request.scope),
            redirect_uri=request.redirect_uri,
            nonce=request.nonce,
            code_challenge=request.code_challenge,
            code_hash=crypto.sha256_hex(code),
            code_expires_at=now + CODE_TTL,
            aal=session.aal,
            amr=" ".join(session.amr),
            auth_time=session.auth_time,
        )
        if not await self.db.run(oauth.open_grant(grant, request_id, now)):
            return None
        return self.answer(request.redirect_uri, {"code": code, "state": request.state})

    def answer(self, redirect_uri: str, params: dict[str, str | None]) -> str:
        """The redirect URI with the response parameters and `iss` (RFC 9207) in its query."""
        query = urlencode({k: v for k, v in {**params, "iss": self.issuer}.items() if v})
        return f"{redirect_uri}{'&' if '?' in redirect_uri else '?'}{query}"

    def error(self, request_redirect: str, error: str, description: str, state: str | None) -> str:
        """An error response for the client (RFC 6749 §4.1.2.1)."""
        return self.answer(
            request_redirect,
            {"error": error, "error_description": description, "state": state},
        )
