"""A real, small second factor for tests, and how a test gives a user one.

No second factor ships with Latch yet (TOTP, recovery codes and passkeys come with their own
features), so the tests of the sign-in-steps machinery register this one of their own: TOTP as
RFC 6238 has it (HMAC-SHA1, 6 digits, 30 s, ±1 step), secrets kept in memory. It is not the
product's TOTP (no sealing at rest, no replay guard): it only proves that a registered factor
plugs in, and that nothing passes without it.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets

from service import store
from service.addresses import parse_email
from service.db import Q, UseCase
from service.signin.assurance import Method


def totp(secret: bytes, counter: int) -> str:
    """RFC 4226 HOTP of a counter (RFC 6238: the counter is the 30-second step)."""
    mac = hmac.new(secret, counter.to_bytes(8, "big"), hashlib.sha1).digest()
    offset = mac[-1] & 0x0F
    value = int.from_bytes(mac[offset : offset + 4], "big") & 0x7FFFFFFF
    return f"{value % 10**6:06d}"


class TestTotp:
    """A `SecondFactor` (service/signin/steps.py) for the tests: TOTP with in-memory secrets."""

    __test__ = False  # not a pytest test class
    method = "totp"
    amr = (Method.OTP,)

    def __init__(self) -> None:
        self.secrets: dict[str, bytes] = {}
        self.checked = 0

    def enrol(self, user_id: str) -> None:
        """Give the user a secret."""
        self.secrets[user_id] = secrets.token_bytes(20)

    def code(self, user_id: str, now: float) -> str:
        """The user's code at `now`."""
        return totp(self.secrets[user_id], int(now) // 30)

    async def check(
        self, user_id: str, answer: str, now: int, *, actor: store.Actor = store.ANONYMOUS
    ) -> bool:
        """Right for the step of `now` or either neighbour."""
        self.checked += 1
        await asyncio.sleep(0)  # a real factor reads the database here: let others run
        secret = self.secrets.get(user_id)
        if secret is None:
            return False
        step = now // 30
        return any(hmac.compare_digest(totp(secret, step + d), answer) for d in (-1, 0, 1))


def give_second_factors(email: str, methods: str, now: int) -> UseCase[str]:
    """Create the user if need be and set their `second_factors` (what the factor features
    will maintain); returns the user's id."""
    address, email_key = parse_email(email, ())
    user, _ = yield from store.add_user(secrets.token_hex(16), address, email_key, now)
    yield Q("UPDATE users SET second_factors = :m WHERE id = :id", {"m": methods, "id": user["id"]})
    return str(user["id"])
