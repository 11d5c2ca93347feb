"""Assurance: how a sign-in passed its steps (RFC 8176 `amr`, NIST SP 800-63B levels).

Sessions record it (`aal`, `amr`, `auth_time`), access JWTs carry it (`amr`, `acr`,
`auth_time`) and /auth/check tells it (`X-Latch-AAL`), so a service can ask for more than an
emailed code (docs/design.md §11).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import IntEnum, StrEnum


class Method(StrEnum):
    """How a step was passed, as sessions and access JWTs record it (RFC 8176 `amr`)."""

    EMAIL = "email"  # the emailed code or link
    OTP = "otp"  # TOTP
    HWK = "hwk"  # a passkey (hardware- or platform-bound key)
    USER = "user"  # the authenticator verified the user (passkey UV)
    RC = "rc"  # a recovery code
    MFA = "mfa"  # two or more of the above


class Level(IntEnum):
    """Authenticator assurance level (NIST SP 800-63B), as `aal` and `acr` = `aal<n>`."""

    AAL1 = 1
    AAL2 = 2

    @property
    def acr(self) -> str:
        """The `acr` claim for this level."""
        return f"aal{int(self)}"


@dataclass(frozen=True)
class Assurance:
    """How a session signed in: what access JWTs and /auth/check say about it."""

    aal: Level
    amr: tuple[str, ...]
    auth_time: int

    @classmethod
    def of(cls, *, aal: int, amr: Iterable[str], auth_time: int) -> Assurance:
        """From a session row's columns (an unknown level reads as the lowest)."""
        level = Level.AAL2 if aal == Level.AAL2 else Level.AAL1
        return cls(level, tuple(amr), auth_time)


def assurance_of(amr: Iterable[str]) -> tuple[tuple[str, ...], Level]:
    """The recorded `amr` (with `mfa` when two or more methods passed) and its level.

    Email alone is one factor and not AAL2 (SP 800-63B does not accept email as an out-of-band
    authenticator); email and a second factor are two. A passkey that verified the user
    (`hwk` and `user`) is two on its own, AAL2 as §12 says.
    """
    methods = tuple(dict.fromkeys(str(m) for m in amr if m != Method.MFA))
    if len(methods) >= 2:
        return (*methods, Method.MFA.value), Level.AAL2
    return methods, Level.AAL1
