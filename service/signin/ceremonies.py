"""The WebAuthn relying party (docs/design.md §12): options out, answers checked, with the
`webauthn` package (py_webauthn) doing the ceremony checks.

Challenges are 32 random bytes, stored server-side (by their SHA-256) with what they are for,
single use and five minutes long. An answer is matched to its challenge by the challenge the
browser signed into `clientDataJSON`; that row is consumed before anything else is checked,
so a replayed answer, or one for a challenge never handed out, finds nothing. Attestation is
`none`: Latch does not restrict which authenticators people use.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from webauthn import (
    generate_authentication_options,
    generate_registration_options,
    options_to_json,
    verify_authentication_response,
    verify_registration_response,
)
from webauthn.authentication.verify_authentication_response import VerifiedAuthentication
from webauthn.helpers.structs import (
    AttestationConveyancePreference,
    AuthenticatorSelectionCriteria,
    AuthenticatorTransport,
    PublicKeyCredentialDescriptor,
    ResidentKeyRequirement,
    UserVerificationRequirement,
)
from webauthn.registration.verify_registration_response import VerifiedRegistration

from service import store
from service.db import Database, Row
from service.errors import InvalidPasskeyError, RateLimitedError
from service.settings import Settings

log = logging.getLogger("latch.passkeys")

CHALLENGE_TTL = 300  # seconds (docs/design.md §12)
MAX_CLIENT_DATA = 4096  # characters of base64url: real ones are a few hundred
_TRANSPORTS = {t.value for t in AuthenticatorTransport}


class Purpose(StrEnum):
    """What a challenge was handed out for."""

    REGISTER = "register"  # adding a passkey to the signed-in person
    LOGIN = "login"  # signing in with a passkey, no address typed
    STEP = "step"  # a passkey as the second step of a pending sign-in
    STEP_UP = "step_up"  # a signed-in person confirming it's them (a step-up)


def b64url(data: bytes) -> str:
    """base64url without padding (WebAuthn's JSON encoding)."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def unb64url(text: str) -> bytes:
    """The bytes of base64url text (padding optional); ValueError if it is not."""
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError) as e:
        raise ValueError("not base64url") from e


def refused(reason: str) -> InvalidPasskeyError:
    """The one public answer to a refused passkey; the log says why."""
    log.info("passkey.refused reason=%s", reason)
    return InvalidPasskeyError()


@dataclass(frozen=True)
class Challenge:
    """A consumed challenge: its bytes and what it was handed out for."""

    value: bytes
    purpose: Purpose
    user_id: str | None
    signin_id: str | None


def challenge_of(credential: dict[str, Any]) -> bytes:
    """The challenge the browser signed into an answer's clientDataJSON (not yet trusted:
    it only finds the stored challenge; the library checks the rest)."""
    response = credential.get("response")
    raw = response.get("clientDataJSON") if isinstance(response, dict) else None
    if not isinstance(raw, str) or len(raw) > MAX_CLIENT_DATA:
        raise refused("no-client-data")
    try:
        client_data = json.loads(unb64url(raw))
        return unb64url(client_data["challenge"])
    except (ValueError, KeyError, TypeError):
        raise refused("malformed-client-data") from None


class RelyingParty:
    """Hands out options and checks answers, for this Latch's RP id and origins."""

    def __init__(self, settings: Settings, database: Database, clock: Callable[[], float]):
        self.rp_id = settings.webauthn_rp_id
        self.rp_name = settings.brand.app_name
        self.origins = list(settings.webauthn_origins)
        self.max_per_ip = settings.passkeys.challenges_per_ip
        self.db = database
        self.clock = clock

    def _now(self) -> int:
        return int(self.clock())

    async def _new_challenge(
        self,
        purpose: Purpose,
        *,
        ip: str,
        user_id: str | None = None,
        signin_id: str | None = None,
    ) -> bytes:
        value = secrets.token_bytes(32)
        stored = await self.db.run(
            store.add_challenge(
                hashlib.sha256(value).hexdigest(),
                purpose,
                user_id=user_id,
                signin_id=signin_id,
                ip=ip,
                max_per_ip=self.max_per_ip,
                now=self._now(),
                ttl=CHALLENGE_TTL,
            )
        )
        if not stored:
            log.info("limit.hit what=passkey-challenges")
            raise RateLimitedError(CHALLENGE_TTL)
        return value

    async def peek_purpose(self, credential: dict[str, Any]) -> Purpose | None:
        """What the answer's challenge was handed out for, consuming nothing (None: unknown)."""
        key = hashlib.sha256(challenge_of(credential)).hexdigest()
        purpose = await self.db.run(store.challenge_purpose(key), write=False)
        return Purpose(purpose) if purpose in tuple(Purpose) else None

    async def take(self, credential: dict[str, Any], purpose: Purpose) -> Challenge:
        """Consume the answer's challenge; refused unless it was handed out for `purpose` and
        is under five minutes old."""
        value = challenge_of(credential)
        row = await self.db.run(
            store.take_challenge(hashlib.sha256(value).hexdigest(), self._now())
        )
        if row is None:
            raise refused("unknown-used-or-expired-challenge")
        if row["purpose"] != purpose:
            raise refused("challenge-of-another-ceremony")
        return Challenge(value, Purpose(row["purpose"]), row["user_id"], row["signin_id"])

    async def registration_options(
        self, *, user_id: str, email: str, existing: list[Row], ip: str
    ) -> dict[str, Any]:
        """Creation options for the signed-in person (discoverable credential preferred, user
        verification preferred, attestation none, their passkeys excluded)."""
        challenge = await self._new_challenge(Purpose.REGISTER, ip=ip, user_id=user_id)
        options = generate_registration_options(
            rp_id=self.rp_id,
            rp_name=self.rp_name,
            # The user handle is the user's random id: no address inside the authenticator's
            # record of who the credential is for, and the same id a discoverable assertion
            # hands back.
            user_id=user_id.encode(),
            user_name=email,
            user_display_name=email,
            challenge=challenge,
            timeout=CHALLENGE_TTL * 1000,
            attestation=AttestationConveyancePreference.NONE,
            authenticator_selection=AuthenticatorSelectionCriteria(
                resident_key=ResidentKeyRequirement.PREFERRED,
                user_verification=UserVerificationRequirement.PREFERRED,
            ),
            exclude_credentials=_descriptors(existing),
        )
        out: dict[str, Any] = json.loads(options_to_json(options))
        return out

    async def authentication_options(
        self,
        purpose: Purpose,
        *,
        ip: str,
        user_id: str | None = None,
        signin_id: str | None = None,
        allowed: list[Row] | None = None,
    ) -> dict[str, Any]:
        """Request options: no allowCredentials for a first step (discoverable credentials),
        the user's own for a second step."""
        challenge = await self._new_challenge(purpose, ip=ip, user_id=user_id, signin_id=signin_id)
        options = generate_authentication_options(
            rp_id=self.rp_id,
            challenge=challenge,
            timeout=CHALLENGE_TTL * 1000,
            allow_credentials=_descriptors(allowed or []),
            user_verification=UserVerificationRequirement.PREFERRED,
        )
        out: dict[str, Any] = json.loads(options_to_json(options))
        return out

    def verify_registration(
        self, credential: dict[str, Any], challenge: Challenge
    ) -> VerifiedRegistration:
        """The checked registration, or refused."""
        try:
            return verify_registration_response(
                credential=credential,
                expected_challenge=challenge.value,
                expected_rp_id=self.rp_id,
                expected_origin=self.origins,
            )
        except Exception as e:  # hostile input reaches a parser: any failure is a refusal
            raise refused(f"registration-{type(e).__name__}") from None

    def verify_assertion(
        self, credential: dict[str, Any], challenge: Challenge, passkey: Row
    ) -> VerifiedAuthentication:
        """The checked assertion, or refused. The sign count is judged by the store (see
        store.passkeys), after the signature has shown the count is the authenticator's."""
        try:
            return verify_authentication_response(
                credential=credential,
                expected_challenge=challenge.value,
                expected_rp_id=self.rp_id,
                expected_origin=self.origins,
                credential_public_key=unb64url(passkey["public_key"]),
                credential_current_sign_count=0,
            )
        except Exception as e:  # hostile input reaches a parser: any failure is a refusal
            raise refused(f"assertion-{type(e).__name__}") from None


def transports_of(credential: dict[str, Any]) -> tuple[str, ...]:
    """The transports a registration reports, only the known names."""
    response = credential.get("response")
    found = response.get("transports") if isinstance(response, dict) else None
    if not isinstance(found, list):
        return ()
    return tuple(t for t in found if isinstance(t, str) and t in _TRANSPORTS)


def _descriptors(rows: list[Row]) -> list[PublicKeyCredentialDescriptor]:
    return [
        PublicKeyCredentialDescriptor(
            id=unb64url(row["credential_id"]),
            transports=[AuthenticatorTransport(t) for t in row["transports"].split()] or None,
        )
        for row in rows
    ]
