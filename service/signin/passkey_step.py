"""Checking a passkey assertion against its stored credential, a passkey as a second-step
method (service/signin/steps.py `SecondFactor`), beside TOTP and recovery codes, and as a
step-up method (service/signin/factors.py `StepUpMethod`).

Built before the step machinery (which holds it in its registry) and shared with the passkey
use cases, which check first-step assertions the same way.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from service import store
from service.db import Database, Row
from service.errors import InvalidPasskeyError
from service.signin.assurance import Method
from service.signin.ceremonies import Challenge, Purpose, RelyingParty, b64url, refused

log = logging.getLogger("latch.passkeys")
MAX_CREDENTIAL_ID = 1400  # base64url of WebAuthn's 1023-byte maximum


def count_refused(verdict: store.UseVerdict, passkey: Row) -> InvalidPasskeyError:
    """The refusal of a verified assertion whose use could not be recorded."""
    if verdict is store.UseVerdict.REPLAYED:
        # A signed assertion whose count did not move forward: another authenticator may hold
        # a copy of this key. Refused, and said loudly for whoever watches the logs.
        log.warning(
            "passkey.clone_suspected user=%s passkey=%s",
            passkey["user_id"][:8],
            passkey["id"][:8],
        )
        return refused("sign-count-went-back")
    return refused("removed-during-sign-in")


class PasskeyFactor:
    """A passkey as a second step: the answer is the assertion's JSON, for a challenge handed
    out to this user's pending sign-in."""

    method = store.PASSKEY
    amr = (Method.HWK,)
    # An assertion in JSON is several hundred characters, more than any typed code.
    max_answer = 8192

    def __init__(self, rp: RelyingParty, database: Database) -> None:
        self.rp = rp
        self.db = database

    async def assertion(
        self, credential: dict[str, Any], challenge: Challenge, user_id: str | None
    ) -> tuple[Row, bool, int]:
        """The passkey a consumed challenge's assertion is for (of `user_id` when given),
        whether the authenticator verified the user, and its sign count; else refused.

        The credential is looked up on every assertion, so a removed passkey stops at once.
        """
        credential_id = credential.get("id")
        if not isinstance(credential_id, str) or len(credential_id) > MAX_CREDENTIAL_ID:
            raise refused("no-credential-id")
        passkey = await self.db.run(store.find_passkey(credential_id), write=False)
        if passkey is None:
            raise refused("unknown-or-removed-credential")
        if user_id is not None and passkey["user_id"] != user_id:
            raise refused("credential-of-another-user")
        response = credential.get("response")
        handle = response.get("userHandle") if isinstance(response, dict) else None
        # A discoverable credential names its user: it must be the one it was registered for.
        if handle and handle != b64url(passkey["user_id"].encode()):
            raise refused("user-handle-mismatch")
        verified = self.rp.verify_assertion(credential, challenge, passkey)
        return passkey, verified.user_verified, verified.new_sign_count

    async def check(
        self, user_id: str, answer: str, now: int, *, actor: store.Actor = store.ANONYMOUS
    ) -> bool:
        """Whether `answer` is a good assertion of one of the user's passkeys, for a challenge
        handed out to their pending sign-in; a right one records the passkey's use."""
        try:
            credential = json.loads(answer)
        except ValueError:
            return False
        if not isinstance(credential, dict):
            return False
        try:
            challenge = await self.rp.take(credential, Purpose.STEP)
            if challenge.user_id != user_id:
                raise refused("step-challenge-of-another-user")
            passkey, _, count = await self.assertion(credential, challenge, user_id)
        except InvalidPasskeyError:
            return False
        verdict = await self.db.run(store.use_passkey(passkey["id"], count, now))
        if verdict is not store.UseVerdict.OK:
            count_refused(verdict, passkey)
            return False
        return True

    # --- step-up ---------------------------------------------------------------------------

    async def step_up_options(self, user_id: str, ip: str) -> dict[str, Any]:
        """Request options for a signed-in person's step-up: a challenge of its own purpose
        (a sign-in's cannot answer it, nor it a sign-in), bound to the user, listing only
        their passkeys."""
        allowed = await self.db.run(store.list_passkeys(user_id), write=False)
        return await self.rp.authentication_options(
            Purpose.STEP_UP, ip=ip, user_id=user_id, allowed=allowed
        )

    async def step_up(self, user_id: str, answer: str, now: int) -> tuple[Method, ...]:
        """The `amr` a right step-up answer adds (`hwk`, and `user` when the authenticator
        verified the user: the sign-in's reckoning, so a step-up gives the level a sign-in by
        this passkey would); refused (InvalidPasskeyError) otherwise, the log saying why.

        The challenge is consumed first, so a replayed answer finds nothing; one handed out to
        another user (whose passkey may well verify) is refused before the signature counts.
        """
        try:
            credential = json.loads(answer)
        except ValueError:
            credential = None
        if not isinstance(credential, dict):
            raise refused("malformed-credential")
        challenge = await self.rp.take(credential, Purpose.STEP_UP)
        if challenge.user_id != user_id:
            raise refused("step-up-challenge-of-another-user")
        passkey, verified_user, count = await self.assertion(credential, challenge, user_id)
        verdict = await self.db.run(store.use_passkey(passkey["id"], count, now))
        if verdict is not store.UseVerdict.OK:
            raise count_refused(verdict, passkey)
        return (Method.HWK, Method.USER) if verified_user else (Method.HWK,)
