"""Verify Latch access JWTs in another Python service: JWKS cache, `verify`, Starlette middleware.

Standalone on purpose: it imports neither Latch's app nor its settings, only PyJWT, httpx,
cryptography and (for the middleware) Starlette, so a service can copy or import it.

    verifier = Verifier(issuer="https://login.example.com", audience="https://login.example.com",
                        jwks_url="https://login.example.com/.well-known/jwks.json")
    claims = verifier.verify(token)          # -> Claims, or raises InvalidTokenError

Verification is local and stateless: a revoked session's access JWT stays valid here until it
expires (ACCESS_TTL, 15 minutes by default). That is why access JWTs are short; a service that
must see a sign-out at once asks Latch (`/auth/check`, forward auth) instead.

RFC 8725 in practice: the key is looked up by `kid` among the JWKS's keys only (`jku`, `x5u`
and `jwk` headers are never followed); each key's algorithm is fixed by the key itself
(`kty`/`crv`, and its `alg` must agree), never taken from the token; `none` and HS* are refused
outright (a JWKS never carries a shared secret, so an HS256 token "signed" with a public key is
a forgery); `iss` and `aud` are compared exactly; `typ` must be `at+jwt` (PyJWT does not check
it).

Assurance (docs/design.md §11): tokens say how the session signed in: `amr` (RFC 8176 methods,
e.g. ["email"] or ["email", "otp", "mfa"]), `acr` ("aal1" or "aal2") and `auth_time`.
`Verifier(require_aal=2)` refuses an aal1 token with `InsufficientAssuranceError` (a kind of
InvalidTokenError, so code that catches only that still refuses). A token without `acr` (from
a Latch before levels existed) is aal1.
"""

from __future__ import annotations

import logging
import ssl
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

import httpx
import jwt

if TYPE_CHECKING:  # Starlette is needed by the middleware only, not by Verifier
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.types import ASGIApp, Receive, Scope, Send

log = logging.getLogger("latch.verifier")

TOKEN_TYPES = ("at+jwt", "application/at+jwt")
REQUIRED = ("iss", "aud", "sub", "exp", "nbf", "iat", "jti", "sid", "email")
# kty/crv -> the one algorithm such a key is used with here.
_CURVES = {"Ed25519": "EdDSA", "P-256": "ES256", "P-384": "ES384", "P-521": "ES512"}
_RSA = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512")


class InvalidTokenError(Exception):
    """The token must not be trusted. The reason is for logs, never for the client."""


class ExpiredTokenError(InvalidTokenError):
    """Genuine in every respect but expired: a browser can be sent to Latch's /refresh."""


class InsufficientAssuranceError(InvalidTokenError):
    """Genuine and valid, but signed in with less than `require_aal` (e.g. email alone where
    aal2 is required): the person must pass a second factor (step up), not sign in again."""


@dataclass(frozen=True)
class Claims:
    """The verified claims of a Latch access JWT."""

    sub: str
    email: str
    sid: str
    iss: str
    aud: str
    iat: int
    nbf: int
    exp: int
    jti: str
    amr: tuple[str, ...] = ()
    acr: str = ""
    auth_time: int | None = None

    @property
    def user_id(self) -> str:
        """The user's id (`sub`)."""
        return self.sub

    @property
    def aal(self) -> int:
        """The assurance level: 2 for `acr` "aal2", else 1 (email alone is one factor)."""
        return 2 if self.acr == "aal2" else 1


@dataclass(frozen=True)
class _Key:
    alg: str
    key: Any


def pinned_algorithm(jwk: Mapping[str, Any]) -> str | None:
    """The only algorithm a JWK may verify, from its kty/crv (its `alg` must agree), or None."""
    kty, crv, alg = jwk.get("kty"), jwk.get("crv"), jwk.get("alg")
    if jwk.get("use", "sig") != "sig":
        return None
    if kty in ("OKP", "EC") and isinstance(crv, str):
        pinned = _CURVES.get(crv)
        if pinned is None or (kty == "OKP") != (pinned == "EdDSA"):
            return None
        return pinned if alg in (None, pinned) else None
    if kty == "RSA":
        return alg if alg in _RSA else ("RS256" if alg is None else None)
    return None  # "oct" (a shared secret) never belongs in a JWKS; unknown types are skipped


def _parse_jwks(document: Any) -> dict[str, _Key]:
    keys: dict[str, _Key] = {}
    for jwk in document.get("keys", []) if isinstance(document, dict) else []:
        kid = jwk.get("kid") if isinstance(jwk, dict) else None
        alg = pinned_algorithm(jwk) if isinstance(kid, str) else None
        if alg is None:
            continue
        try:
            keys[str(kid)] = _Key(alg, jwt.PyJWK(jwk, algorithm=alg).key)
        except jwt.PyJWTError as e:
            log.warning("JWKS key %s skipped: %s", kid, type(e).__name__)
    return keys


class Verifier:
    """Verifies Latch access JWTs against Latch's JWKS, with caches."""

    def __init__(
        self,
        *,
        issuer: str,
        audience: str,
        jwks_url: str,
        refetch_interval: float = 30.0,
        jwks_max_age: float = 300.0,
        cache_size: int = 10_000,
        leeway: int = 30,
        timeout: float = 5.0,
        require_aal: int = 1,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if require_aal not in (1, 2):
            raise ValueError("require_aal must be 1 or 2")
        self.issuer, self.audience, self.jwks_url = issuer, audience, jwks_url
        self.require_aal = require_aal
        self.refetch_interval, self.jwks_max_age = refetch_interval, jwks_max_age
        # Leeway for `nbf`/`iat` only (another host's clock may run a little behind Latch's);
        # `exp` is never stretched.
        self.leeway, self.timeout = leeway, timeout
        self.clock, self.monotonic = clock, monotonic
        self.cache_size = cache_size
        self._keys: dict[str, _Key] = {}
        self._fetched_at: float | None = None
        self._verified: OrderedDict[str, Claims] = OrderedDict()
        self._lock = threading.Lock()
        self._ssl: ssl.SSLContext | None = None

    def _tls(self) -> ssl.SSLContext:
        # Built once: loading the CA bundle costs more than the fetch itself.
        if self._ssl is None:
            self._ssl = httpx.create_ssl_context()
        return self._ssl

    # --- the JWKS -------------------------------------------------------------------------

    def _due(self, kid: str) -> bool:
        """Whether to fetch now: never fetched, stale, or an unknown kid (rate-limited)."""
        if self._fetched_at is None:
            return True
        age = self.monotonic() - self._fetched_at
        if age >= self.jwks_max_age:
            return True
        # An unknown kid may be a key published moments ago, or garbage: refetch at most once
        # per `refetch_interval`, so a flood of made-up kids cannot hammer Latch.
        return kid not in self._keys and age >= self.refetch_interval

    def _mark_fetch(self) -> None:
        self._fetched_at = self.monotonic()  # before the fetch: a failing one is rate-limited too

    def _store(self, response: httpx.Response) -> None:
        if response.status_code != 200:
            log.warning("JWKS fetch answered %d; keeping the keys we have", response.status_code)
            return
        keys = _parse_jwks(response.json())
        with self._lock:
            if keys.keys() != self._keys.keys():
                self._verified.clear()  # a key left the JWKS: its tokens must not outlive it
            self._keys = keys

    def refresh_keys(self) -> None:
        """Fetch the JWKS now (sync)."""
        self._mark_fetch()
        try:
            with httpx.Client(timeout=self.timeout, verify=self._tls()) as client:
                self._store(client.get(self.jwks_url))
        except (httpx.HTTPError, ValueError) as e:
            log.warning("JWKS fetch failed: %s", type(e).__name__)

    async def arefresh_keys(self) -> None:
        """Fetch the JWKS now (async)."""
        self._mark_fetch()
        try:
            async with httpx.AsyncClient(timeout=self.timeout, verify=self._tls()) as client:
                self._store(await client.get(self.jwks_url))
        except (httpx.HTTPError, ValueError) as e:
            log.warning("JWKS fetch failed: %s", type(e).__name__)

    # --- verification ---------------------------------------------------------------------

    def verify(self, token: str) -> Claims:
        """The claims of a valid Latch access JWT, else InvalidTokenError (sync)."""
        hit = self._cached(token)
        if hit is None:
            kid = self._kid(token)
            if self._due(kid):
                self.refresh_keys()
            hit = self._verify(token, kid)
        return self._assured(hit)

    async def averify(self, token: str) -> Claims:
        """As `verify`, fetching the JWKS without blocking the event loop."""
        hit = self._cached(token)
        if hit is None:
            kid = self._kid(token)
            if self._due(kid):
                await self.arefresh_keys()
            hit = self._verify(token, kid)
        return self._assured(hit)

    def _assured(self, claims: Claims) -> Claims:
        # Checked on every answer, cached or not: the cache holds genuine tokens, whatever
        # their level, and the level asked for is this verifier's.
        if claims.aal < self.require_aal:
            raise InsufficientAssuranceError(f"aal{claims.aal} < aal{self.require_aal}")
        return claims

    def _cached(self, token: str) -> Claims | None:
        with self._lock:
            claims = self._verified.get(token)
            if claims is None:
                return None
            if claims.exp <= self.clock():
                del self._verified[token]
                return None
            self._verified.move_to_end(token)
            return claims

    @staticmethod
    def _kid(token: str) -> str:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as e:
            raise InvalidTokenError("malformed") from e
        alg = header.get("alg")
        # Checked before any key is looked at: `none` in any spelling, and every HMAC.
        if not isinstance(alg, str) or alg.lower() == "none" or alg.upper().startswith("HS"):
            raise InvalidTokenError("algorithm refused")
        kid = header.get("kid")
        if not isinstance(kid, str):
            raise InvalidTokenError("no kid")
        typ = header.get("typ")
        if not isinstance(typ, str) or typ.lower() not in TOKEN_TYPES:
            raise InvalidTokenError("wrong typ")
        return kid

    def _verify(self, token: str, kid: str) -> Claims:
        key = self._keys.get(kid)
        if key is None:
            raise InvalidTokenError("unknown kid")
        try:
            # The algorithm list is the key's pinned one: a token claiming another is refused.
            raw = jwt.decode(
                token,
                key.key,
                algorithms=[key.alg],
                audience=self.audience,
                issuer=self.issuer,
                options={
                    "require": list(REQUIRED),
                    "strict_aud": True,
                    "verify_exp": False,  # checked below, against our clock
                    "verify_nbf": False,
                    "verify_iat": False,
                },
            )
        except jwt.PyJWTError as e:
            raise InvalidTokenError(type(e).__name__) from e
        claims = self._claims(raw)
        now = self.clock()
        if claims.nbf > now + self.leeway or claims.iat > now + self.leeway:
            raise InvalidTokenError("not yet valid")
        if claims.exp <= now:
            raise ExpiredTokenError("expired")
        with self._lock:
            self._verified[token] = claims
            if len(self._verified) > self.cache_size:
                self._verified.popitem(last=False)
        return claims

    def _claims(self, raw: dict[str, Any]) -> Claims:
        # Exact string equality: never a prefix, suffix or membership test.
        if raw.get("iss") != self.issuer or raw.get("aud") != self.audience:
            raise InvalidTokenError("iss/aud mismatch")
        try:
            return Claims(
                sub=_text(raw["sub"]),
                email=_text(raw["email"]),
                sid=_text(raw["sid"]),
                iss=_text(raw["iss"]),
                aud=_text(raw["aud"]),
                iat=_number(raw["iat"]),
                nbf=_number(raw["nbf"]),
                exp=_number(raw["exp"]),
                jti=_text(raw["jti"]),
                amr=tuple(_text(m) for m in _list(raw.get("amr", []))),
                acr=_text(raw.get("acr", "")),
                auth_time=_number(raw["auth_time"]) if "auth_time" in raw else None,
            )
        except (KeyError, TypeError, ValueError) as e:
            raise InvalidTokenError("malformed claims") from e


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError("not a string")
    return value


def _list(value: Any) -> list[Any]:
    if not isinstance(value, list):
        raise TypeError("not a list")
    return value


def _number(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError("not a number")
    return int(value)


# --- the Starlette middleware ----------------------------------------------------------------


class LatchAuthMiddleware:
    """Requires a valid Latch access JWT; sets `request.state.latch` and `scope["user"]`.

    API calls (Accept: application/json, or a path under `api_prefixes`) get 401 JSON.
    Browsers with an expired JWT go to `refresh_url?next=<this URL>` (Latch rotates the
    refresh token and sends them back); browsers with none or a bad one go to the login page.
    `next` must be allowed by Latch (ALLOWED_REDIRECT_ORIGINS), or Latch sends them to /account.

    With a verifier that requires aal2, a genuine aal1 token is not "signed out": browsers go
    to `step_up_url?next=<this URL>` (default: `login_url` + "/step-up", i.e. Latch's
    PUBLIC_URL/login/step-up; that page comes with the factor features, docs/design.md §11),
    and API calls get 403 `step_up_required` with RFC 9470's challenge in WWW-Authenticate
    (`error="insufficient_user_authentication", acr_values="aal2"`). Not 401, as RFC 9470
    has it: a client that answers 401 by refreshing would get another aal1 token and loop.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        verifier: Verifier,
        login_url: str,
        refresh_url: str,
        cookie_name: str = "latch_session",
        api_prefixes: tuple[str, ...] = ("/api/",),
        public_paths: tuple[str, ...] = (),
        step_up_url: str | None = None,
    ) -> None:
        self.app = app
        self.verifier = verifier
        self.login_url, self.refresh_url = login_url, refresh_url
        self.step_up_url = step_up_url or login_url.rstrip("/") + "/step-up"
        self.cookie_name = cookie_name
        self.api_prefixes, self.public_paths = api_prefixes, public_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith(self.public_paths):
            await self.app(scope, receive, send)
            return
        from starlette.requests import Request

        request = Request(scope)
        token = request.cookies.get(self.cookie_name) or _bearer(request.headers)
        expired = False
        if token:
            try:
                claims = await self.verifier.averify(token)
            except ExpiredTokenError:
                expired = True
            except InsufficientAssuranceError as e:
                log.debug("access token refused: %s", e)
                await self._step_up(request)(scope, receive, send)
                return
            except InvalidTokenError as e:
                log.debug("access token refused: %s", e)
            else:
                scope.setdefault("state", {})["latch"] = claims
                scope["user"] = claims
                await self.app(scope, receive, send)
                return
        await self._refuse(request, expired)(scope, receive, send)

    def _is_api(self, request: Request) -> bool:
        accept = request.headers.get("accept", "")
        return "application/json" in accept or request.url.path.startswith(self.api_prefixes)

    def _step_up(self, request: Request) -> Response:
        from starlette.responses import JSONResponse, RedirectResponse

        if self._is_api(request):
            body = {
                "error": {
                    "code": "step_up_required",
                    "message": "Confirm it is you with your second factor first.",
                }
            }
            challenge = (
                'Bearer realm="latch", error="insufficient_user_authentication",'
                f' acr_values="aal{self.verifier.require_aal}"'
            )
            return JSONResponse(body, status_code=403, headers={"WWW-Authenticate": challenge})
        return RedirectResponse(
            f"{self.step_up_url}?{urlencode({'next': str(request.url)})}", status_code=303
        )

    def _refuse(self, request: Request, expired: bool) -> Response:
        from starlette.responses import JSONResponse, RedirectResponse

        if self._is_api(request):
            body = {"error": {"code": "unauthenticated", "message": "Sign in first."}}
            return JSONResponse(
                body, status_code=401, headers={"WWW-Authenticate": 'Bearer realm="latch"'}
            )
        target = self.refresh_url if expired else self.login_url
        return RedirectResponse(
            f"{target}?{urlencode({'next': str(request.url)})}", status_code=303
        )


def _bearer(headers: Mapping[str, str]) -> str | None:
    value = headers.get("authorization", "")
    if value[:7].lower() != "bearer ":
        return None
    return value[7:].strip() or None
