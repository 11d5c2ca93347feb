"""The provider's JWTs: ID tokens (OpenID Connect Core §2) and access tokens (RFC 9068).

Both are signed with the current key of the client's ID token algorithm (RS256 unless the
client was registered with another), so a relying party that can check one can check the
other. Access tokens name the grant they came from in `jti` (`<grant id>.<random>`): userinfo
answers only while that grant and its Latch session are live, which is how a revoked app or a
signed-out session stops its access tokens before they expire.

An access token of the provider can never pass as a Latch session token: its `aud` is the
client's id, never JWT_AUDIENCE, and it has no `email` claim.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import jwt

from service.tokens import Keyring

ID_TOKEN_TTL = 600
ACCESS_TYP = "at+jwt"
ID_TYP = "JWT"
# OpenID Core §3.1.3.6: at_hash uses the hash of the JWS algorithm; for EdDSA (Ed25519) the
# OpenID Foundation's registry says SHA-512.
_AT_HASH = {"RS256": hashlib.sha256, "ES256": hashlib.sha256, "EdDSA": hashlib.sha512}


class JwtError(Exception):
    """A token that is not one of ours or no longer valid; the reason is for debug logs."""


@dataclass(frozen=True, kw_only=True)
class Subject:
    """Who the tokens speak for, and how they signed in."""

    user_id: str
    email: str
    session_id: str
    grant_id: str
    scope: tuple[str, ...]
    aal: int
    amr: tuple[str, ...]
    auth_time: int


def at_hash(access_token: str, alg: str) -> str:
    """The left half of the hash of the access token, base64url (OpenID Core §3.1.3.6)."""
    digest = _AT_HASH[alg](access_token.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest[: len(digest) // 2]).rstrip(b"=").decode("ascii")


def access_token(
    keyring: Keyring, *, issuer: str, client_id: str, alg: str, who: Subject, ttl: int
) -> str:
    """An RFC 9068 access token for `client_id`."""
    now = int(time.time())  # JWT times use the wall clock (docs/design.md §15.4)
    claims = {
        "iss": issuer,
        "sub": who.user_id,
        "aud": client_id,
        "client_id": client_id,
        "iat": now,
        "nbf": now,
        "exp": now + ttl,
        "jti": f"{who.grant_id}.{secrets.token_hex(8)}",
        "scope": " ".join(who.scope),
        "sid": who.session_id,
        "auth_time": who.auth_time,
        "acr": f"aal{who.aal}",
        "amr": list(who.amr),
    }
    return keyring.sign_as(alg, claims, typ=ACCESS_TYP)


def id_token(
    keyring: Keyring,
    *,
    issuer: str,
    client_id: str,
    alg: str,
    who: Subject,
    nonce: str | None,
    access: str,
) -> str:
    """An ID token for `client_id` (with `email` when the email scope was granted)."""
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": issuer,
        "sub": who.user_id,
        "aud": client_id,
        "iat": now,
        "exp": now + ID_TOKEN_TTL,
        "auth_time": who.auth_time,
        "acr": f"aal{who.aal}",
        "amr": list(who.amr),
        "sid": who.session_id,
        "at_hash": at_hash(access, alg),
    }
    if nonce is not None:
        claims["nonce"] = nonce
    if "email" in who.scope:
        claims["email"] = who.email
        claims["email_verified"] = True  # the address received a code or link to sign in
    return keyring.sign_as(alg, claims, typ=ID_TYP)


def _decode(
    keyring: Keyring, token: str, *, typ: str, issuer: str, verify_exp: bool
) -> Mapping[str, Any]:
    if not token or len(token) > 8192:
        raise JwtError("no token")
    try:
        header = jwt.get_unverified_header(token)
        key = keyring.keys.get(str(header.get("kid")))
        if key is None or key.alg == "HS256":
            raise JwtError("unknown kid")
        # The key decides the algorithm, never the header (RFC 8725 §3.1).
        if header.get("alg") != key.alg or str(header.get("typ", "")).lower() != typ.lower():
            raise JwtError("alg or typ mismatch")
        if header.keys() - {"alg", "kid", "typ"}:
            raise JwtError("header member refused")
        claims: dict[str, Any] = jwt.decode(
            token,
            key.public,
            algorithms=[key.alg],
            issuer=issuer,
            options={
                "verify_aud": False,  # the caller checks it against a registered client
                "verify_exp": verify_exp,
                "require": ["iss", "sub", "aud", "iat", "exp"],
            },
        )
    except jwt.PyJWTError as e:
        raise JwtError(type(e).__name__) from e
    if not isinstance(claims.get("aud"), str) or not isinstance(claims.get("sub"), str):
        raise JwtError("aud or sub not a string")
    return claims


def read_access_token(keyring: Keyring, token: str, *, issuer: str) -> Mapping[str, Any]:
    """The claims of a valid access token we issued (its grant is checked by the caller)."""
    claims = _decode(keyring, token, typ=ACCESS_TYP, issuer=issuer, verify_exp=True)
    if claims.get("client_id") != claims["aud"] or not isinstance(claims.get("jti"), str):
        raise JwtError("not a provider access token")
    return claims


def read_id_token_hint(keyring: Keyring, token: str, *, issuer: str) -> Mapping[str, Any]:
    """The claims of an ID token we issued, expired or not (OpenID RP-Initiated Logout §2:
    a hint is typically an old ID token)."""
    return _decode(keyring, token, typ=ID_TYP, issuer=issuer, verify_exp=False)
