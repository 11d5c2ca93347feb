"""Sealing secrets that Latch must read back (webhook signing secrets): AES-256-GCM under a
subkey of SECRET_KEY, so a stolen database alone yields none of them.

The associated data binds a sealed value to its row (an endpoint's id): a sealed secret copied
onto another row does not open.
"""

from __future__ import annotations

import base64
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from service.crypto import derive_subkey

_VERSION = "v1"


class SealError(Exception):
    """A sealed value that does not open (another SECRET_KEY, another row, or tampered)."""


class Sealer:
    """Seals and opens short secrets for one purpose."""

    def __init__(self, secret_key: bytes, purpose: str) -> None:
        self._aead = AESGCM(derive_subkey(secret_key, "seal:" + purpose))

    def seal(self, plaintext: str, bound_to: str) -> str:
        """`v1.<base64 nonce + ciphertext>`."""
        nonce = os.urandom(12)
        sealed = self._aead.encrypt(nonce, plaintext.encode("utf-8"), bound_to.encode("utf-8"))
        return f"{_VERSION}.{base64.urlsafe_b64encode(nonce + sealed).decode('ascii')}"

    def open(self, sealed: str, bound_to: str) -> str:
        """The plaintext, else SealError."""
        version, _, body = sealed.partition(".")
        try:
            raw = base64.urlsafe_b64decode(body.encode("ascii"))
            if version != _VERSION or len(raw) < 29:
                raise SealError("not a sealed value")
            plain = self._aead.decrypt(raw[:12], raw[12:], bound_to.encode("utf-8"))
        except (InvalidTag, ValueError) as e:
            raise SealError(type(e).__name__) from e
        return plain.decode("utf-8")
