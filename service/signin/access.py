"""Access tokens: the signed JWT a session's holder carries, and the tokens of a session just
opened (a first step with nothing more due, a second step passed, or a refresh)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from service import crypto, store
from service.settings import Settings
from service.signin.assurance import Assurance
from service.tokens import Keyring


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


class AccessTokens:
    """Issues access JWTs for this Latch's issuer and audience."""

    def __init__(self, settings: Settings, keyring: Keyring) -> None:
        self.settings = settings
        self.keyring = keyring

    def issue(self, user_id: str, email: str, session_id: str, assurance: Assurance) -> str:
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
            # RFC 9068 §2.2 requires `client_id`, and strict validators (oauth4webapi) refuse a
            # token without it. The client that asked for a cookie token is Latch's own sign-in,
            # so the id is Latch's own URL: no registered client can share it, and `client_id
            # == iss` reads as "first-party" (docs/design.md §2).
            "client_id": self.settings.public_url,
            "amr": list(assurance.amr),
            "acr": assurance.aal.acr,
            "auth_time": assurance.auth_time,
        }
        return self.keyring.sign(claims)

    def authenticated(self, sign_in: store.SignIn, refresh: str) -> Authenticated:
        """The tokens of a session just opened."""
        s = sign_in
        return self.grant(
            user_id=s.user_id,
            email=s.email,
            session_id=s.session_id,
            session_expires_at=s.session_expires_at,
            assurance=Assurance.of(aal=s.aal, amr=s.amr, auth_time=s.auth_time),
            refresh=refresh,
            next_url=s.next_url,
        )

    def grant(
        self,
        *,
        user_id: str,
        email: str,
        session_id: str,
        session_expires_at: int,
        assurance: Assurance,
        refresh: str,
        next_url: str,
    ) -> Authenticated:
        """A new access JWT for a session, with the refresh token that goes with it."""
        return Authenticated(
            user_id=user_id,
            email=email,
            session_id=session_id,
            session_expires_at=session_expires_at,
            access_token=self.issue(user_id, email, session_id, assurance),
            refresh_token=refresh,
            next_url=next_url,
        )
