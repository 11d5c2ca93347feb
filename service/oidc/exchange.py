"""The token endpoint's use cases, userinfo and revocation (RFC 6749 §4.1.3 and §6, RFC 7009,
OpenID Connect Core §3.1.3 and §5.3). No HTTP: the handlers in token.py parse the form and the
Authorization header, call these, and render `TokenError` as RFC 6749 §5.2 JSON.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

import service.oidc.clients as clients
import service.oidc.jwts as jwts
from service import crypto
from service.db import Database, Row
from service.oidc.clients import Client
from service.settings import Settings
from service.store import oauth
from service.tokens import Keyring

log = logging.getLogger("latch.oidc")


class TokenError(Exception):
    """An RFC 6749 §5.2 error: `error` code, a description, and the HTTP status."""

    def __init__(self, error: str, description: str, status: int = 400) -> None:
        super().__init__(description)
        self.error = error
        self.description = description
        self.status = status


@dataclass(frozen=True, kw_only=True)
class Credentials:
    """How the client said who it is (at most one way, RFC 6749 §2.3)."""

    client_id: str
    secret: str | None
    basic: bool


def parse_credentials(authorization: str, form: Mapping[str, str]) -> Credentials:
    """client_secret_basic, client_secret_post, or none (a public client's bare client_id)."""
    posted_id, posted_secret = form.get("client_id"), form.get("client_secret")
    if authorization[:6].lower() == "basic ":
        if posted_secret is not None:
            raise TokenError("invalid_request", "use one client authentication method")
        try:
            raw = base64.b64decode(authorization[6:].strip(), validate=True).decode("utf-8")
        except (ValueError, UnicodeError) as e:
            raise TokenError("invalid_client", "malformed Basic credentials", 401) from e
        user, sep, password = raw.partition(":")
        if not sep:
            raise TokenError("invalid_client", "malformed Basic credentials", 401)
        # RFC 6749 §2.3.1: both parts are form-urlencoded before Basic encoding.
        client_id, secret = unquote(user.replace("+", " ")), unquote(password.replace("+", " "))
        if posted_id is not None and posted_id != client_id:
            raise TokenError("invalid_request", "client_id differs from the Basic credentials")
        return Credentials(client_id=client_id, secret=secret, basic=True)
    if not posted_id:
        raise TokenError("invalid_client", "client authentication is required", 401)
    return Credentials(client_id=posted_id, secret=posted_secret, basic=False)


def s256(verifier: str) -> str:
    """BASE64URL(SHA256(verifier)) (RFC 7636 §4.2)."""
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def _verifier_ok(verifier: str) -> bool:
    # RFC 7636 §4.1: 43 to 128 characters of [A-Za-z0-9-._~].
    allowed = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
    return 43 <= len(verifier) <= 128 and set(verifier) <= allowed


class Tokens:
    """Token, refresh, revocation and userinfo."""

    def __init__(
        self,
        settings: Settings,
        database: Database,
        keyring: Keyring,
        clock: Callable[[], float],
    ) -> None:
        self.settings = settings
        self.db = database
        self.keyring = keyring
        self.clock = clock
        self.issuer = settings.public_url

    async def authenticate(self, credentials: Credentials) -> Client:
        """The client, if it proved who it is; else invalid_client (RFC 6749 §5.2)."""
        client = await clients.find(self.db, credentials.client_id)
        if client is None:
            raise TokenError("invalid_client", "client authentication failed", 401)
        if client.public:
            # A public client cannot keep a secret; sending one anyway is a configuration error.
            if credentials.secret is not None:
                raise TokenError("invalid_client", "client authentication failed", 401)
            return client
        if credentials.secret is None or not clients.secret_matches(client, credentials.secret):
            log.info("oidc.client_refused client=%s", client.id[:8])
            raise TokenError("invalid_client", "client authentication failed", 401)
        return client

    async def exchange_code(self, client: Client, form: Mapping[str, str]) -> dict[str, Any]:
        """grant_type=authorization_code: the code, once, for its client and redirect URI."""
        code, redirect_uri = form.get("code") or "", form.get("redirect_uri") or ""
        if not code or not redirect_uri:
            raise TokenError("invalid_request", "code and redirect_uri are required")
        verifier = form.get("code_verifier")
        if verifier is not None and not _verifier_ok(verifier):
            raise TokenError("invalid_grant", "code_verifier is malformed")
        if client.public and verifier is None:
            raise TokenError("invalid_grant", "code_verifier is required")
        refresh = secrets.token_urlsafe(32)
        done = await self.db.run(
            oauth.redeem_code(
                crypto.sha256_hex(code),
                client_id=client.id,
                redirect_uri=redirect_uri,
                challenge=None if verifier is None else s256(verifier),
                refresh_hash=crypto.sha256_hex(refresh),
                now=int(self.clock()),
            )
        )
        if done.state != oauth.CodeState.REDEEMED or done.grant is None:
            log.info("oidc.code_refused client=%s state=%s", client.id[:8], done.state)
            raise TokenError("invalid_grant", "the code is invalid, expired or used")
        return self._response(client, done.grant, refresh, nonce=done.grant["nonce"])

    async def refresh(self, client: Client, form: Mapping[str, str]) -> dict[str, Any]:
        """grant_type=refresh_token: rotate; a replayed token revokes the grant."""
        presented = form.get("refresh_token") or ""
        if not presented or len(presented) > 200:
            raise TokenError("invalid_request", "refresh_token is required")
        refresh = secrets.token_urlsafe(32)
        state, grant = await self.db.run(
            oauth.rotate_grant(
                crypto.sha256_hex(presented),
                crypto.sha256_hex(refresh),
                client_id=client.id,
                now=int(self.clock()),
            )
        )
        if state != oauth.RefreshState.ROTATED or grant is None:
            log.info("oidc.refresh_refused client=%s state=%s", client.id[:8], state)
            raise TokenError("invalid_grant", "the refresh token is invalid or revoked")
        return self._response(client, grant, refresh, nonce=None)

    def _response(
        self, client: Client, grant: Row, refresh: str, *, nonce: str | None
    ) -> dict[str, Any]:
        who = jwts.Subject(
            user_id=grant["user_id"],
            email=grant["email"],
            session_id=grant["session_id"],
            grant_id=grant["id"],
            scope=tuple(grant["scope"].split()),
            aal=int(grant["aal"]),
            amr=tuple(grant["amr"].split()),
            auth_time=int(grant["auth_time"]),
        )
        ttl = self.settings.sessions.access_ttl
        alg = client.id_token_alg
        access = jwts.access_token(
            self.keyring, issuer=self.issuer, client_id=client.id, alg=alg, who=who, ttl=ttl
        )
        return {
            "access_token": access,
            "token_type": "Bearer",
            "expires_in": ttl,
            "refresh_token": refresh,
            "scope": " ".join(who.scope),
            "id_token": jwts.id_token(
                self.keyring,
                issuer=self.issuer,
                client_id=client.id,
                alg=alg,
                who=who,
                nonce=nonce,
                access=access,
            ),
        }

    async def revoke(self, client: Client, token: str) -> None:
        """RFC 7009: revoke the grant behind a refresh or access token of this client. An
        unknown token, or another client's, is not an error (§2.2) and changes nothing."""
        if not token or len(token) > 8192:
            return
        now = int(self.clock())
        grant_id = ""
        if token.count(".") == 2:
            try:
                claims = jwts.read_access_token(self.keyring, token, issuer=self.issuer)
                grant_id = str(claims["jti"]).partition(".")[0]
            except jwts.JwtError:
                return
        await self.db.run(
            oauth.revoke_grant(
                client_id=client.id,
                now=now,
                grant_id=grant_id,
                refresh_hash="" if grant_id else crypto.sha256_hex(token),
            )
        )

    async def userinfo(self, token: str) -> dict[str, Any]:
        """The claims userinfo answers for a live access token (OpenID Core §5.3)."""
        try:
            claims = jwts.read_access_token(self.keyring, token, issuer=self.issuer)
        except jwts.JwtError as e:
            log.debug("userinfo refused: %s", e)
            raise TokenError("invalid_token", "the access token is not valid", 401) from e
        grant_id = str(claims["jti"]).partition(".")[0]
        grant = await self.db.run(oauth.live_grant(grant_id, int(self.clock())), write=False)
        if grant is None or grant["client_id"] != claims["aud"]:
            raise TokenError("invalid_token", "the access token has been revoked", 401)
        answer: dict[str, Any] = {"sub": grant["user_id"]}
        if "email" in grant["scope"].split():
            answer.update(email=grant["email"], email_verified=True)
        return answer
