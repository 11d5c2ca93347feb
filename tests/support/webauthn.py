"""A software WebAuthn authenticator for server-side tests: a real P-256 key that makes real
registration and assertion responses (attestation `none`), in WebAuthn's JSON form.

The browser tests use Chromium's own virtual authenticator; this one lets a test say what no
browser would send on purpose: another origin or RP id, a sign count that goes back, the
answer to a challenge it was not given.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
from typing import Any

import cbor2
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

UP, UV, AT = 0x01, 0x04, 0x40


def b64url(data: bytes) -> str:
    """base64url without padding."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class SoftAuthenticator:
    """One credential on one authenticator, with a sign count the test can steer."""

    def __init__(self, *, user_verification: bool = True) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.credential_id = secrets.token_bytes(16)
        self.sign_count = 0
        self.user_verification = user_verification
        self.user_handle = b""

    @property
    def id(self) -> str:
        """The credential id, base64url."""
        return b64url(self.credential_id)

    def _flags(self, extra: int = 0) -> bytes:
        return bytes([UP | (UV if self.user_verification else 0) | extra])

    def _client_data(self, kind: str, challenge: str, origin: str) -> bytes:
        return json.dumps(
            {"type": kind, "challenge": challenge, "origin": origin, "crossOrigin": False}
        ).encode()

    def _cose_key(self) -> bytes:
        numbers = self.key.public_key().public_numbers()
        return cbor2.dumps(
            {
                1: 2,  # kty: EC2
                3: -7,  # alg: ES256
                -1: 1,  # crv: P-256
                -2: numbers.x.to_bytes(32, "big"),
                -3: numbers.y.to_bytes(32, "big"),
            }
        )

    def create(
        self, options: dict[str, Any], *, origin: str, rp_id: str | None = None
    ) -> dict[str, Any]:
        """A registration response to creation options (`publicKey`)."""
        rp = rp_id or options["rp"]["id"]
        self.user_handle = base64.urlsafe_b64decode(options["user"]["id"] + "==")
        attested = (
            bytes(16)  # AAGUID: none
            + len(self.credential_id).to_bytes(2, "big")
            + self.credential_id
            + self._cose_key()
        )
        auth_data = (
            hashlib.sha256(rp.encode()).digest()
            + self._flags(AT)
            + self.sign_count.to_bytes(4, "big")
            + attested
        )
        attestation = cbor2.dumps({"fmt": "none", "attStmt": {}, "authData": auth_data})
        client_data = self._client_data("webauthn.create", options["challenge"], origin)
        return {
            "id": self.id,
            "rawId": self.id,
            "type": "public-key",
            "response": {
                "clientDataJSON": b64url(client_data),
                "attestationObject": b64url(attestation),
                "transports": ["internal"],
            },
            "clientExtensionResults": {},
            "authenticatorAttachment": "platform",
        }

    def get(
        self,
        options: dict[str, Any],
        *,
        origin: str,
        rp_id: str | None = None,
        sign_count: int | None = None,
    ) -> dict[str, Any]:
        """An assertion for request options (`publicKey`); the count goes up by one unless
        `sign_count` says what to send."""
        rp = rp_id or options["rpId"]
        self.sign_count = self.sign_count + 1 if sign_count is None else sign_count
        auth_data = (
            hashlib.sha256(rp.encode()).digest()
            + self._flags()
            + self.sign_count.to_bytes(4, "big")
        )
        client_data = self._client_data("webauthn.get", options["challenge"], origin)
        signed = auth_data + hashlib.sha256(client_data).digest()
        signature = self.key.sign(signed, ec.ECDSA(hashes.SHA256()))
        return {
            "id": self.id,
            "rawId": self.id,
            "type": "public-key",
            "response": {
                "clientDataJSON": b64url(client_data),
                "authenticatorData": b64url(auth_data),
                "signature": b64url(signature),
                "userHandle": b64url(self.user_handle),
            },
            "clientExtensionResults": {},
            "authenticatorAttachment": "platform",
        }
