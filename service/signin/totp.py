"""Authenticator apps (TOTP, RFC 6238): the secret, its QR code, and checking a code.

SHA-1, 6 digits, 30-second steps (what every authenticator app defaults to; other parameters
are ignored by some apps, which then show wrong codes). pyotp does the arithmetic. A code is
right for the step of now or one either side (clocks drift, people type slowly), and only for
a step after the last one accepted: a code seen over a shoulder or replayed from a proxy log
is refused. The 160-bit secret is sealed at rest under its own subkey of SECRET_KEY and bound
to the user id; it leaves Latch only in the enrolment answer (page or JSON) and is never
logged, put in an error or shown again.
"""

from __future__ import annotations

import base64
import hmac
import logging
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import quote, urlencode

import pyotp
import segno

from service import crypto, store
from service.db import Database
from service.errors import CodesLockedError
from service.settings import Settings
from service.signin.assurance import Method

log = logging.getLogger("latch.factors")
STEP = 30
DIGITS = 6
WINDOW = 1  # steps accepted either side of now
SECRET_BYTES = 20  # 160 bits (RFC 4226 §4 recommends it)
_SPACES = re.compile(r"[\s\-]+")


def new_secret() -> str:
    """A fresh base32 secret (32 characters, no padding), as authenticator apps take it."""
    return base64.b32encode(secrets.token_bytes(SECRET_BYTES)).decode("ascii")


def grouped(secret: str) -> str:
    """The secret in groups of four, for typing it into an app by hand."""
    return " ".join(secret[i : i + 4] for i in range(0, len(secret), 4))


def otpauth_uri(secret: str, *, issuer: str, account: str) -> str:
    """`otpauth://totp/ISSUER:ACCOUNT?secret=…&issuer=ISSUER` (Google's Key URI Format); the
    label and the parameters are percent-encoded, so a name with `:` `&` or `?` stays whole."""
    label = f"{quote(issuer, safe='')}:{quote(account, safe='@')}"
    query = urlencode({"secret": secret, "issuer": issuer}, quote_via=quote)
    return f"otpauth://totp/{label}?{query}"


def qr_svg(uri: str) -> str:
    """The URI as an inline SVG QR code: no script, no image request, nothing third-party.
    Dark modules on a white quiet zone, so scanners read it in dark mode too."""
    code = segno.make(uri, error="m")
    svg: str = code.svg_inline(scale=5, border=4, dark="#000", light="#fff", omitsize=True)
    # An accessible name; the page says what it is beside it, too.
    label = '<svg role="img" aria-label="QR code for your authenticator app" '
    return svg.replace("<svg ", label, 1)


def normalise(answer: str) -> str | None:
    """`123456`, `123 456`, `123-456`; None when it cannot be a code."""
    code = _SPACES.sub("", answer)
    if len(code) != DIGITS or not code.isascii() or not code.isdigit():
        return None
    return code


def matching_step(secret: str, code: str, now: int, after: int) -> int | None:
    """The step (of now, or one either side) whose code is `code` and which is later than
    `after`; None otherwise. Every candidate is compared, in constant time."""
    totp = pyotp.TOTP(secret, digits=DIGITS, interval=STEP)
    current = now // STEP
    found = None
    for step in range(current - WINDOW, current + WINDOW + 1):
        if hmac.compare_digest(totp.generate_otp(step), code) and step > after and found is None:
            found = step
    return found


@dataclass(frozen=True)
class Enrolment:
    """What a person needs to add Latch to their app: shown once, never stored in clear."""

    secret: str
    otpauth_uri: str
    qr_svg: str

    @property
    def grouped(self) -> str:
        """The secret in groups of four."""
        return grouped(self.secret)


class Totp:
    """Enrolment and checking of authenticator codes; also the sign-in's `totp` step."""

    method = store.TOTP
    amr = (Method.OTP,)

    def __init__(self, settings: Settings, database: Database) -> None:
        self.settings = settings
        self.db = database
        self.key = crypto.Keys.from_secret(settings.secret_key).totp_seal

    def _open(self, user_id: str) -> Callable[[str], str | None]:
        def open_sealed(sealed: str) -> str | None:
            secret = crypto.unseal(self.key, sealed, user_id)
            return secret.decode("ascii") if secret is not None else None

        return open_sealed

    async def begin(self, user_id: str, account: str, now: int) -> Enrolment | None:
        """A new secret, sealed and stored unconfirmed; None when the user has one already."""
        secret = new_secret()
        sealed = crypto.seal(self.key, secret.encode("ascii"), user_id)
        if not await self.db.run(store.begin_totp(user_id, sealed, now)):
            return None
        uri = otpauth_uri(secret, issuer=self.settings.brand.app_name, account=account)
        return Enrolment(secret, uri, qr_svg(uri))

    async def pending(self, user_id: str, account: str, since: int) -> Enrolment | None:
        """The unconfirmed enrolment begun after `since`, to show again after a wrong first
        code (before confirmation only: a confirmed secret is never shown again)."""
        sealed = await self.db.run(store.pending_totp(user_id, since), write=False)
        secret = self._open(user_id)(sealed) if sealed else None
        if secret is None:
            return None
        uri = otpauth_uri(secret, issuer=self.settings.brand.app_name, account=account)
        return Enrolment(secret, uri, qr_svg(uri))

    async def pending_step(self, user_id: str, code: str, now: int, since: int) -> int | None:
        """The step of a right first code for the user's unconfirmed enrolment, else None."""
        normalised = normalise(code)
        sealed = await self.db.run(store.pending_totp(user_id, since), write=False)
        secret = self._open(user_id)(sealed) if sealed and normalised else None
        if secret is None or normalised is None:
            return None
        return matching_step(secret, normalised, now, after=-1)

    async def check(
        self, user_id: str, answer: str, now: int, *, actor: store.Actor = store.ANONYMOUS
    ) -> bool:
        """Whether `answer` is the user's code now, never accepted before (SecondFactor).

        Raises CodesLockedError while the address's typed codes are refused (§1.2).
        """
        code = normalise(answer)
        open_sealed = self._open(user_id)

        def match(sealed: str, last_step: int) -> int | None:
            secret = open_sealed(sealed)
            if secret is None:
                # Sealed under another SECRET_KEY, or tampered with: no code is right.
                log.warning("totp secret of user %s does not open", user_id[:8])
                return None
            return matching_step(secret, code, now, after=last_step) if code else None

        checked = await self.db.run(
            store.check_totp(user_id, match, limits=self.settings.limits, now=now)
        )
        if checked.verdict is store.CodeVerdict.LOCKED:
            raise CodesLockedError(
                checked.retry_after,
                "Too many wrong codes for this address: authenticator codes are paused. "
                "A recovery code still works.",
            )
        return checked.verdict is store.CodeVerdict.OK
