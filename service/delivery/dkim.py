"""DKIM signing of a finished message (RFC 6376, rsa-sha256, relaxed/relaxed) with dkimpy.

The mailer signs the finished bytes it hands to SMTP as they are (`sign_bytes`), so what is
signed is what is sent. `sign` keeps the message-object form for callers that have one: the
message is 7-bit clean (quoted-printable bodies, RFC 2047 headers), so every serialisation
with CRLF line ends yields the signed bytes, and the signed message is re-read with
refold_source="none", so its headers are written back exactly as signed.
tests/delivery/test_reputation.py verifies what actually arrives over SMTP.
"""

from __future__ import annotations

import email
import email.policy
from email.message import EmailMessage

import dkim

from service.errors import ConfigError
from service.settings import DkimSettings

# Serialisation of the signed bytes: what SMTP carries for a 7-bit message.
_WIRE = email.policy.SMTP.clone(cte_type="7bit")
# Re-reading: keep the signed header lines (DKIM-Signature included) byte for byte.
_READ_BACK = email.policy.default.clone(refold_source="none")

# Signed once each, and From once more than present ("oversigning", RFC 6376 §8.15): a second
# From header added on the way would break the signature instead of changing what is displayed.
_SIGNED = (
    b"from",
    b"from",
    b"to",
    b"subject",
    b"date",
    b"message-id",
    b"mime-version",
    b"content-type",
    b"auto-submitted",
    b"x-auto-response-suppress",
)


class DkimSigner:
    """Signs each sign-in mail as DKIM_DOMAIN with DKIM_SELECTOR's key."""

    def __init__(self, settings: DkimSettings) -> None:
        self.domain = settings.domain.encode("ascii")
        self.selector = settings.selector.encode("ascii")
        self._key = settings.private_key()
        try:
            # What dkim.sign will do with the key on every mail: fail at start, not per mail.
            dkim.crypto.parse_pem_private_key(self._key)
        except (dkim.crypto.UnparsableKeyError, ValueError) as e:
            raise ConfigError(
                "DKIM_PRIVATE_KEY_FILE holds a key dkimpy cannot use: " + type(e).__name__
            ) from None

    def sign(self, message: EmailMessage) -> EmailMessage:
        """The message with a DKIM-Signature header first; the original is left as it was."""
        signed = email.message_from_bytes(
            self.sign_bytes(message.as_bytes(policy=_WIRE)), policy=_READ_BACK
        )
        if not isinstance(signed, EmailMessage):  # pragma: no cover (policy.default's class)
            raise TypeError("the signed message did not parse as an EmailMessage")
        return signed

    def sign_bytes(self, raw: bytes) -> bytes:
        """The finished message (CRLF bytes, 7-bit) with a DKIM-Signature header first: signed
        exactly as it will be sent, since the bytes are handed to SMTP as they are."""
        head = raw.split(b"\r\n\r\n", 1)[0]
        present = {
            line.split(b":", 1)[0].strip().lower()
            for line in head.split(b"\r\n")
            if line and line[:1] not in b" \t"
        }
        headers = [h for h in _SIGNED if h in present or h == b"from"]
        try:
            signature = dkim.sign(
                raw,
                self.selector,
                self.domain,
                self._key,
                canonicalize=(b"relaxed", b"relaxed"),
                include_headers=headers,
            )
        except dkim.DKIMException as e:
            # A ValueError fails the flow (Mailer._attempt): no unsigned mail goes out instead.
            raise ValueError(f"DKIM signing failed: {type(e).__name__}") from None
        return bytes(signature) + raw
