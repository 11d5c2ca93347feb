"""Subkeys, codes, link tokens and keyed hashes: the secrets of a sign-in and how they are kept.

Only keyed hashes of codes and link secrets reach the database. The key lives outside it, so a
leaked database alone reveals nothing usable; a slow hash would add nothing that a 10**6 space
and a 5-try limit per flow do not already give.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

CODE_DIGITS = 6
_CODE_INPUT = re.compile(r"[\s\-]+")


def derive_subkey(secret_key: bytes, purpose: str) -> bytes:
    """A separate key per purpose, so the raw SECRET_KEY never does two jobs."""
    return hmac.new(secret_key, b"latch/v1/" + purpose.encode("ascii"), hashlib.sha256).digest()


@dataclass(frozen=True, kw_only=True)
class Keys:
    """The per-purpose subkeys derived from SECRET_KEY."""

    code: bytes
    link: bytes
    signing: bytes
    csrf: bytes
    jwt_hmac: bytes
    totp_seal: bytes
    recovery: bytes
    webhook_seal: bytes

    @classmethod
    def from_secret(cls, secret_key: bytes) -> Keys:
        """Derive every subkey from one secret."""
        return cls(
            code=derive_subkey(secret_key, "code-hash"),
            link=derive_subkey(secret_key, "link-hash"),
            signing=derive_subkey(secret_key, "itsdangerous"),
            csrf=derive_subkey(secret_key, "csrf"),
            jwt_hmac=derive_subkey(secret_key, "jwt-hs256"),
            totp_seal=derive_subkey(secret_key, "totp-seal"),
            recovery=derive_subkey(secret_key, "recovery-code-hash"),
            webhook_seal=derive_subkey(secret_key, "webhook-seal"),
        )


def new_id() -> str:
    """A random 128-bit identifier (flows, sessions, users)."""
    return secrets.token_hex(16)


def new_code() -> str:
    """Six uniformly random digits."""
    return f"{secrets.randbelow(10**CODE_DIGITS):0{CODE_DIGITS}d}"


def normalise_code(raw: str) -> str | None:
    """Accept `123456`, `123 456`, `123-456`; None when it cannot be a code."""
    code = _CODE_INPUT.sub("", raw)
    if len(code) != CODE_DIGITS or not code.isascii() or not code.isdigit():
        return None
    return code


def keyed_hash(key: bytes, *parts: str) -> str:
    """HMAC-SHA256 over the parts joined by ':' (the flow id binds a code to its flow)."""
    return hmac.new(key, ":".join(parts).encode("utf-8"), hashlib.sha256).hexdigest()


def same(a: str, b: str) -> bool:
    """Constant-time comparison of two hex digests."""
    return hmac.compare_digest(a.encode("ascii"), b.encode("ascii"))


def sha256_hex(value: str) -> str:
    """Plain SHA-256: enough for 256-bit random tokens (refresh tokens), which cannot be guessed.

    Any text hashes, not only ASCII: a presented token is attacker input, and one that cannot be
    ours (non-ASCII, even a lone surrogate) must simply match nothing — raising here was a 500 on
    `POST /oauth/token` and `/oauth/revoke`."""
    return hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()


def new_secret() -> str:
    """A 256-bit random secret, URL-safe."""
    return secrets.token_urlsafe(32)


_NONCE = 12
SEALED_PREFIX = "v1."


def seal(key: bytes, plaintext: bytes, bound_to: str) -> str:
    """AES-256-GCM under `key` with a fresh 96-bit nonce; `bound_to` (e.g. the user id) is the
    associated data, so a sealed value copied into another row does not open there.

    For secrets Latch must read back (TOTP secrets, webhook signing secrets bound to their
    endpoint's id), where a hash will not do: a leaked
    database alone holds only ciphertext, and the key lives outside it (SECRET_KEY).
    """
    nonce = secrets.token_bytes(_NONCE)
    sealed = AESGCM(key).encrypt(nonce, plaintext, bound_to.encode("utf-8"))
    return SEALED_PREFIX + base64.urlsafe_b64encode(nonce + sealed).decode("ascii")


def unseal(key: bytes, value: str, bound_to: str) -> bytes | None:
    """The plaintext of `seal`, or None when the value was tampered with, moved to another
    row, or sealed under another SECRET_KEY (the reason is never shown)."""
    if not value.startswith(SEALED_PREFIX):
        return None
    try:
        raw = base64.urlsafe_b64decode(value[len(SEALED_PREFIX) :].encode("ascii"))
        return AESGCM(key).decrypt(raw[:_NONCE], raw[_NONCE:], bound_to.encode("utf-8"))
    except (InvalidTag, ValueError, binascii.Error, UnicodeError):
        return None


class LinkTokenError(Exception):
    """The link token is not one of ours (bad signature, malformed): reads as 'invalid link'."""


class LinkTokenExpiredError(Exception):
    """The link token is ours but older than the code lifetime."""


class LinkSigner:
    """Signs and reads magic-link tokens: (flow id, 256-bit secret), signed and timestamped."""

    def __init__(self, signing_key: bytes) -> None:
        self._serializer = URLSafeTimedSerializer(signing_key, salt="latch.link")

    def dumps(self, flow_id: str, secret: str) -> str:
        """The token that goes into the mailed link."""
        return self._serializer.dumps([flow_id, secret])

    def loads(self, token: str, max_age: int) -> tuple[str, str]:
        """(flow id, secret) of a token, or LinkTokenError / LinkTokenExpiredError."""
        try:
            value = self._serializer.loads(token, max_age=max_age)
        except SignatureExpired as e:
            raise LinkTokenExpiredError from e
        except (BadSignature, ValueError, TypeError, UnicodeError) as e:
            raise LinkTokenError(type(e).__name__) from e
        if (
            not isinstance(value, list)
            or len(value) != 2
            or not all(isinstance(v, str) and 0 < len(v) <= 64 for v in value)
        ):
            raise LinkTokenError("malformed payload")
        return value[0], value[1]


class ValueSigner:
    """Signed, timestamped small values for cookies (flow binding, CSRF)."""

    def __init__(self, signing_key: bytes, salt: str) -> None:
        self._serializer = URLSafeTimedSerializer(signing_key, salt=salt)

    def dumps(self, value: str) -> str:
        """Sign a value."""
        return self._serializer.dumps(value)

    def loads(self, token: str, max_age: int) -> str | None:
        """The value, or None if the token is forged, malformed or too old."""
        try:
            value = self._serializer.loads(token, max_age=max_age)
        except (BadSignature, ValueError, TypeError, UnicodeError):
            return None
        return value if isinstance(value, str) else None
