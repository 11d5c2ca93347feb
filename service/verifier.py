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

One strict reader (`parse_token`, `verify_token`, `check_claims`) serves this module and Latch's
own /auth/check, which imports it from here: canonical unpadded base64url segments only, a header
of `alg`/`kid`/`typ` and nothing else, JSON without duplicate members or NaN/Infinity, times that
are JSON integers, short printable ids, and no token living longer than `max_lifetime` (Latch's
ACCESS_TTL). A cached token counts only while the key that verified it is still in the JWKS, and a
stale JWKS is refetched before the cache answers, so a key that is unpublished takes its tokens
with it within `jwks_max_age`.

Assurance (docs/design.md §11): tokens say how the session signed in: `amr` (RFC 8176 methods,
e.g. ["email"] or ["email", "otp", "mfa"]), `acr` ("aal1" or "aal2") and `auth_time`.
`Verifier(require_aal=2)` refuses an aal1 token with `InsufficientAssuranceError` (a kind of
InvalidTokenError, so code that catches only that still refuses). A token without `acr` (from
a Latch before levels existed) is aal1.
"""

from __future__ import annotations

import base64
import json
import logging
import re
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
from jwt.algorithms import get_default_algorithms

if TYPE_CHECKING:  # Starlette is needed by the middleware only, not by Verifier
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.types import ASGIApp, Receive, Scope, Send

log = logging.getLogger("latch.verifier")

TOKEN_TYPES = ("at+jwt", "application/at+jwt")
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
    # RFC 9068 §2.2: who asked for the token. Latch's own sign-in writes its PUBLIC_URL (equal
    # to `iss`); "" in tokens from a Latch before `client_id` was written.
    client_id: str = ""

    @property
    def user_id(self) -> str:
        """The user's id (`sub`)."""
        return self.sub

    @property
    def aal(self) -> int:
        """The assurance level: 2 for `acr` "aal2", else 1 (email alone is one factor)."""
        return 2 if self.acr == "aal2" else 1


# --- one strict reading of a Latch access JWT ----------------------------------------------------
# Latch's own /auth/check (service/tokens.py) reads tokens with these same functions, imported
# from here: this module stands alone, so the import points from Latch to it, never back. Two
# readers that disagree about one token (a numeric-string `exp`, a padded segment, a duplicate
# member) are what an attacker looks for, so there is only one reader.

MAX_TOKEN = 8192  # Latch's tokens are ~600 bytes; a bigger one is not ours
MAX_TIME = 10**11  # seconds since 1970 (the year 5138): anything larger is an overflow in waiting
MAX_ID, MAX_EMAIL, MAX_URL = 256, 320, 2048
MAX_METHODS = 8  # `amr` entries: Latch writes at most four
# Latch writes exactly these header members. Others either change how the token is read (`crit`,
# RFC 7797's `b64`, `zip`) or point at keys (`jku`, `x5u`, `jwk`, `x5c`): none is honoured, so a
# token carrying one is not Latch's and is refused rather than half-understood.
HEADER_MEMBERS = frozenset({"alg", "kid", "typ"})
_B64URL = re.compile(r"[A-Za-z0-9_-]*")
# sub, sid, jti and email are printable ASCII in every token Latch issues (ids are hex, addresses
# are IDNA-encoded). They end up in X-Latch-* headers: a CR, LF or non-Latin-1 character there is
# a header injection or a crash, so nothing else is accepted.
_PRINTABLE = re.compile(r"[!-~]+")
_ALGORITHMS = get_default_algorithms()


@dataclass(frozen=True)
class SignedToken:
    """A compact JWS split and decoded; its signature is NOT checked yet."""

    alg: str
    kid: str
    signing_input: bytes
    payload: bytes
    signature: bytes


def b64url_decode(segment: str) -> bytes:
    """Canonical unpadded base64url only, so that one token has exactly one spelling.

    Python's decoder (and so PyJWT's) accepts `=` padding, the `+/` alphabet, stray characters
    and non-zero unused bits in the last character: four more spellings of the same bytes, which
    a cache keyed on the token string, a deny-list or a log search would each treat as another
    token.
    """
    if not _B64URL.fullmatch(segment) or len(segment) % 4 == 1:
        raise InvalidTokenError("not base64url")
    data = base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    if base64.urlsafe_b64encode(data).rstrip(b"=") != segment.encode("ascii"):
        raise InvalidTokenError("non-canonical base64url")  # unused bits were not zero
    return data


def _unique_members(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # {"sub": "a", "sub": "b"}: Python keeps the last, other parsers the first. Refused.
    members: dict[str, Any] = {}
    for name, value in pairs:
        if name in members:
            raise ValueError("duplicate member")
        members[name] = value
    return members


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")  # NaN, Infinity: Python's json reads them, RFC 8259 not


def json_object(data: bytes) -> dict[str, Any]:
    """A JSON object read strictly: UTF-8, no duplicate members, no NaN/Infinity."""
    try:
        value = json.loads(
            data.decode("utf-8"), object_pairs_hook=_unique_members, parse_constant=_no_constant
        )
    except (ValueError, RecursionError) as e:  # UnicodeDecodeError and 5000-digit ints included
        raise InvalidTokenError("malformed JSON") from e
    if not isinstance(value, dict):
        raise InvalidTokenError("not a JSON object")
    return value


def parse_token(token: str) -> SignedToken:
    """Split and decode a compact JWS, checking its header; the signature is checked later."""
    parts = token.split(".") if len(token) <= MAX_TOKEN else []
    if len(parts) != 3:
        raise InvalidTokenError("malformed")
    header_bytes, payload, signature = (b64url_decode(part) for part in parts)
    header = json_object(header_bytes)
    if not header.keys() <= HEADER_MEMBERS:
        raise InvalidTokenError("header member refused")
    alg, kid, typ = header.get("alg"), header.get("kid"), header.get("typ")
    if not isinstance(alg, str) or not isinstance(kid, str) or not 0 < len(kid) <= MAX_ID:
        raise InvalidTokenError("no alg or kid")
    if not isinstance(typ, str) or typ.lower() not in TOKEN_TYPES:
        raise InvalidTokenError("wrong typ")
    return SignedToken(alg, kid, f"{parts[0]}.{parts[1]}".encode("ascii"), payload, signature)


def verify_token(
    token: SignedToken,
    alg: str,
    key: Any,
    *,
    issuer: str,
    audience: str,
    now: float,
    leeway: int,
    max_lifetime: int,
) -> Claims:
    """The claims of `token` if `key`, pinned to `alg`, signed it, and they pass `check_claims`."""
    # The key decides the algorithm; the header may only agree with it (RFC 8725 §2.1, §3.1).
    algorithm = _ALGORITHMS.get(alg)
    if token.alg != alg or algorithm is None or alg == "none":
        raise InvalidTokenError("algorithm mismatch")
    try:
        genuine = algorithm.verify(token.signing_input, key, token.signature)
    except (jwt.PyJWTError, ValueError, TypeError) as e:
        raise InvalidTokenError("signature unreadable") from e
    if not genuine:
        raise InvalidTokenError("bad signature")
    return check_claims(
        json_object(token.payload),
        issuer=issuer,
        audience=audience,
        now=now,
        leeway=leeway,
        max_lifetime=max_lifetime,
    )


def check_claims(
    raw: Mapping[str, Any],
    *,
    issuer: str,
    audience: str,
    now: float,
    leeway: int,
    max_lifetime: int,
) -> Claims:
    """The claims of a genuine token, if they are well-formed and valid at `now`.

    `leeway` stretches `nbf`/`iat` only (another host's clock may run a little behind Latch's);
    `exp` is never stretched. `max_lifetime` is Latch's ACCESS_TTL: a token that claims to live
    longer was not minted by Latch's login flow, whoever holds the key, and must not outlive the
    key's retirement by years.
    """
    # Exact string equality: never a prefix, suffix or membership test.
    if raw.get("iss") != issuer or raw.get("aud") != audience:
        raise InvalidTokenError("iss/aud mismatch")
    claims = Claims(
        sub=_text(raw, "sub", MAX_ID),
        email=_text(raw, "email", MAX_EMAIL),
        sid=_text(raw, "sid", MAX_ID),
        iss=issuer,
        aud=audience,
        iat=_time(raw, "iat"),
        nbf=_time(raw, "nbf"),
        exp=_time(raw, "exp"),
        jti=_text(raw, "jti", MAX_ID),
        amr=_methods(raw),
        acr=_text(raw, "acr", MAX_ID) if "acr" in raw else "",
        auth_time=_time(raw, "auth_time") if "auth_time" in raw else None,
        client_id=_text(raw, "client_id", MAX_URL) if "client_id" in raw else "",
    )
    if not claims.iat <= claims.nbf < claims.exp:
        raise InvalidTokenError("iat, nbf and exp out of order")
    if claims.exp - claims.iat > max_lifetime:
        raise InvalidTokenError(f"lifetime {claims.exp - claims.iat} s over {max_lifetime} s")
    if claims.nbf > now + leeway:
        raise InvalidTokenError("not yet valid")
    if claims.exp <= now:
        raise ExpiredTokenError("expired")
    return claims


def _text(raw: Mapping[str, Any], name: str, limit: int) -> str:
    value = raw.get(name)
    if not isinstance(value, str) or len(value) > limit or not _PRINTABLE.fullmatch(value):
        raise InvalidTokenError(f"{name} is not a short printable string")
    return value


def _methods(raw: Mapping[str, Any]) -> tuple[str, ...]:
    # `amr` (RFC 8176): a short list of short printable names; absent in tokens from a Latch
    # before sign-in steps existed.
    value = raw.get("amr", [])
    if type(value) is not list or len(value) > MAX_METHODS:
        raise InvalidTokenError("amr is not a short list")
    return tuple(_text({"amr": m}, "amr", MAX_ID) for m in value)


def _time(raw: Mapping[str, Any], name: str) -> int:
    value = raw.get(name)
    # A JSON integer, nothing else: not a bool (an int to Python), not a float (1e400 reads as
    # infinity, NaN compares false with everything), not a numeric string that one reader
    # converts and another refuses.
    if type(value) is not int or not 0 <= value <= MAX_TIME:
        raise InvalidTokenError(f"{name} is not a time")
    return value


# --- the JWKS cache and the Verifier -------------------------------------------------------------


@dataclass(frozen=True)
class _Key:
    alg: str
    key: Any
    jwk: str  # canonical JSON of the JWK: a refetch that changes nothing keeps this object


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
            keys[str(kid)] = _Key(
                alg, jwt.PyJWK(jwk, algorithm=alg).key, json.dumps(jwk, sort_keys=True)
            )
        except jwt.PyJWTError as e:
            log.warning("JWKS key %s skipped: %s", kid, type(e).__name__)
    return keys


class Verifier:
    """Verifies Latch access JWTs against Latch's JWKS, with caches.

    `max_lifetime` is Latch's ACCESS_TTL (`access_token_ttl` in its latch-configuration): a
    token whose `exp - iat` is longer is refused, whatever key signed it. The default is Latch's
    default; a Latch run with a longer ACCESS_TTL needs it raised here, or every token is refused
    (and logged as such) - failing closed, not open.
    """

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
        max_lifetime: int = 900,
        timeout: float = 5.0,
        require_aal: int = 1,
        client_id: str | None = None,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if require_aal not in (1, 2):
            raise ValueError("require_aal must be 1 or 2")
        self.issuer, self.audience, self.jwks_url = issuer, audience, jwks_url
        self.require_aal = require_aal
        # When set, tokens must name this `client_id` (Latch's own cookie tokens carry Latch's
        # PUBLIC_URL): a service that wants only first-party sessions, not tokens Latch issued
        # to some other client, says so here. Unset, `client_id` is read but not required,
        # so tokens from a Latch before it was written still verify.
        self.client_id = client_id
        self.refetch_interval, self.jwks_max_age = refetch_interval, jwks_max_age
        # Leeway for `nbf`/`iat` only (another host's clock may run a little behind Latch's);
        # `exp` is never stretched.
        self.leeway, self.max_lifetime, self.timeout = leeway, max_lifetime, timeout
        self.clock, self.monotonic = clock, monotonic
        self.cache_size = cache_size
        self._keys: dict[str, _Key] = {}
        self._fetched_at: float | None = None
        # token -> (claims, the key that verified it): an entry counts only while that very
        # key is still in the JWKS, so a key that leaves takes its tokens with it.
        self._verified: OrderedDict[str, tuple[Claims, str, _Key]] = OrderedDict()
        self._lock = threading.Lock()
        self._ssl: ssl.SSLContext | None = None

    def _tls(self) -> ssl.SSLContext:
        # Built once: loading the CA bundle costs more than the fetch itself.
        if self._ssl is None:
            self._ssl = httpx.create_ssl_context()
        return self._ssl

    # --- the JWKS -------------------------------------------------------------------------

    def _stale(self) -> bool:
        """The JWKS copy is older than `jwks_max_age` (checked before the token cache too)."""
        return (
            self._fetched_at is not None
            and self.monotonic() - self._fetched_at >= self.jwks_max_age
        )

    def _due(self, kid: str) -> bool:
        """Whether to fetch now: never fetched, stale, or an unknown kid (rate-limited)."""
        if self._fetched_at is None or self._stale():
            return True
        # An unknown kid may be a key published moments ago, or garbage: refetch at most once
        # per `refetch_interval`, so a flood of made-up kids cannot hammer Latch.
        age = self.monotonic() - self._fetched_at
        return kid not in self._keys and age >= self.refetch_interval

    def _mark_fetch(self) -> None:
        self._fetched_at = self.monotonic()  # before the fetch: a failing one is rate-limited too

    def _store(self, response: httpx.Response) -> None:
        if response.status_code != 200:
            log.warning("JWKS fetch answered %d; keeping the keys we have", response.status_code)
            return
        keys = _parse_jwks(response.json())
        with self._lock:
            # An unchanged key keeps its object (and so its cached tokens); a key that left or
            # changed does not, and its cached tokens are dropped now.
            for kid, key in keys.items():
                old = self._keys.get(kid)
                if old is not None and old.jwk == key.jwk and old.alg == key.alg:
                    keys[kid] = old
            gone = [t for t, (_, kid, key) in self._verified.items() if keys.get(kid) is not key]
            for token in gone:
                del self._verified[token]
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
        # A stale JWKS is refetched before the cache answers: a cached token must not outlive
        # its key, and only a refetch tells that the key has gone.
        if self._stale():
            self.refresh_keys()
        hit = self._cached(token)
        if hit is None:
            parsed = self._parse(token)
            if self._due(parsed.kid):
                self.refresh_keys()
            hit = self._verify(token, parsed)
        return self._assured(hit)

    async def averify(self, token: str) -> Claims:
        """As `verify`, fetching the JWKS without blocking the event loop."""
        if self._stale():
            await self.arefresh_keys()
        hit = self._cached(token)
        if hit is None:
            parsed = self._parse(token)
            if self._due(parsed.kid):
                await self.arefresh_keys()
            hit = self._verify(token, parsed)
        return self._assured(hit)

    def _assured(self, claims: Claims) -> Claims:
        # Checked on every answer, cached or not: the cache holds genuine tokens, whatever
        # their level, and the level asked for is this verifier's.
        if claims.aal < self.require_aal:
            raise InsufficientAssuranceError(f"aal{claims.aal} < aal{self.require_aal}")
        return claims

    def _cached(self, token: str) -> Claims | None:
        with self._lock:
            entry = self._verified.get(token)
            if entry is None:
                return None
            claims, kid, key = entry
            if claims.exp <= self.clock() or self._keys.get(kid) is not key:
                del self._verified[token]
                return None
            self._verified.move_to_end(token)
            return claims

    @staticmethod
    def _parse(token: str) -> SignedToken:
        parsed = parse_token(token)
        # Refused before any key is looked at: `none` in any spelling, and every HMAC (a JWKS
        # never carries a shared secret).
        alg = parsed.alg
        if alg.lower() == "none" or alg.upper().startswith("HS"):
            raise InvalidTokenError("algorithm refused")
        return parsed

    def _verify(self, token: str, parsed: SignedToken) -> Claims:
        key = self._keys.get(parsed.kid)
        if key is None:
            raise InvalidTokenError("unknown kid")
        claims = verify_token(
            parsed,
            key.alg,
            key.key,
            issuer=self.issuer,
            audience=self.audience,
            now=self.clock(),
            leeway=self.leeway,
            max_lifetime=self.max_lifetime,
        )
        # Before the cache: a token for another client is never cached as verified.
        if self.client_id is not None and claims.client_id != self.client_id:
            raise InvalidTokenError("client_id mismatch")
        with self._lock:
            self._verified[token] = (claims, parsed.kid, key)
            if len(self._verified) > self.cache_size:
                self._verified.popitem(last=False)
        return claims


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
        self.api_prefixes = api_prefixes
        self.public_paths = tuple(p.rstrip("/") for p in public_paths)

    def is_public(self, scope: Scope) -> bool:
        """Whether the path is one of `public_paths` or under one, by whole segments.

        `/public` opens `/public` and `/public/...`, never `/public-admin` or `/publicity`.
        uvicorn puts the percent-DECODED path in scope["path"] and leaves dot segments alone, so
        `/public%2F..%2Fadmin` arrives as `/public/../admin`: a path with a `.`/`..` segment, a
        backslash, or an encoded `/`, `\\` or `.` in the raw target may mean something else to
        whatever reads it next (a proxy, a static-file handler, another framework), so it is
        never public: it needs a token like any other path (failing closed).
        """
        path: str = scope["path"]
        if not path.startswith("/") or "\\" in path:
            return False
        if any(segment in (".", "..") for segment in path.split("/")):
            return False
        raw = scope.get("raw_path")
        if isinstance(raw, bytes) and any(e in raw.lower() for e in (b"%2f", b"%5c", b"%2e")):
            return False
        return any(path == p or path.startswith(p + "/") for p in self.public_paths)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self.is_public(scope):
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
