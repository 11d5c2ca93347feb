"""Passkeys as a person uses them (docs/design.md §12): add one, list, rename and remove them,
sign in with one and no mail, or answer a second step with one. No HTTP here.

Assurance: a passkey whose authenticator verified the user (UV: a fingerprint, a PIN) is two
factors on its own, AAL2 (`amr` `hwk` `user`); without UV it is one (`hwk`), and when the user
has another second factor (TOTP) the sign-in goes on to the second step with it (its recovery
codes offered too), as an email sign-in would. A user whose only factor is the passkey itself
gets the AAL1 session the passkey is worth: asking the same passkey again would add nothing.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from service import crypto, store
from service.db import Database, Row
from service.delivery.notices import Notice
from service.device import device_name
from service.errors import (
    FlowDeadError,
    FlowUsedError,
    InvalidPasskeyError,
    InvalidRequestError,
    NotFoundError,
    SigninExpiredError,
)
from service.settings import Settings
from service.signin.access import AccessTokens, Authenticated
from service.signin.assurance import Method, assurance_of
from service.signin.bindings import Bindings
from service.signin.ceremonies import Purpose, b64url, refused, transports_of
from service.signin.factors import AccountFactors
from service.signin.flows import SecondStepDue
from service.signin.opening import new_session
from service.signin.passkey_step import PasskeyFactor, count_refused
from service.signin.recovery import new_codes
from service.signin.sessions import Identity
from service.signin.steps import SecondStep

log = logging.getLogger("latch.passkeys")

# What the factor notices call a passkey (never its name: that is the person's own text).
NOTICE_NAME = "a passkey"
MAX_NAME = 64
DEFAULT_NAME = "Passkey"
_BLANKS = re.compile(r"\s+")


def clean_name(name: str, fallback: str) -> str:
    """A passkey's name: one line, printable, at most MAX_NAME characters; else `fallback`."""
    printable = "".join(ch if ch.isprintable() else " " for ch in name)
    tidy = _BLANKS.sub(" ", printable).strip()[:MAX_NAME].strip()
    return tidy or fallback


def suggested_name(user_agent: str) -> str:
    """A name for a new passkey from the device adding it ("Chrome on macOS")."""
    return device_name(user_agent) or DEFAULT_NAME


@dataclass(frozen=True)
class Added:
    """A passkey just added, and the recovery codes to show once (empty unless it was the
    person's first factor)."""

    passkey: PasskeyView
    recovery_codes: list[str]


@dataclass(frozen=True)
class PasskeyView:
    """A passkey as its owner sees it."""

    id: str
    name: str
    created_at: int
    last_used_at: int | None

    @classmethod
    def of(cls, row: Row) -> PasskeyView:
        """From a `passkeys` row."""
        return cls(row["id"], row["name"], row["created_at"], row["last_used_at"])

    def to_json(self) -> dict[str, Any]:
        """The API's shape."""
        return {
            "id": self.id,
            "name": self.name,
            "created_at": self.created_at,
            "last_used_at": self.last_used_at,
        }


class Passkeys:
    """The passkey use cases."""

    def __init__(
        self,
        settings: Settings,
        database: Database,
        clock: Callable[[], float],
        *,
        bindings: Bindings,
        access: AccessTokens,
        steps: SecondStep,
        factor: PasskeyFactor,
        account_factors: AccountFactors,
    ) -> None:
        self.settings = settings
        self.enabled = settings.passkeys_enabled
        self.db = database
        self.clock = clock
        self.factor = factor
        self.rp = factor.rp
        self.bindings = bindings
        self.access = access
        self.steps = steps
        # Adding or removing a passkey changes how the account signs in: the same recent step
        # as every factor change (docs/design.md §11), and the same notices by mail.
        self.account_factors = account_factors

    def _now(self) -> int:
        return int(self.clock())

    def _require_enabled(self) -> None:
        if not self.enabled:
            raise NotFoundError("Passkeys are not available here.")

    # --- the person's passkeys ------------------------------------------------------------

    async def list(self, identity: Identity) -> list[PasskeyView]:
        """The person's passkeys, oldest first."""
        rows = await self.db.run(store.list_passkeys(identity.user_id), write=False)
        return [PasskeyView.of(row) for row in rows]

    async def registration_options(self, identity: Identity, ip: str) -> dict[str, Any]:
        """Creation options for adding a passkey (needs a recent step)."""
        self._require_enabled()
        await self.account_factors.require_recent_step(identity)
        existing = await self.db.run(store.list_passkeys(identity.user_id), write=False)
        return await self.rp.registration_options(
            user_id=identity.user_id, email=identity.email, existing=existing, ip=ip
        )

    async def register(
        self, identity: Identity, credential: dict[str, Any], name: str, user_agent: str
    ) -> Added:
        """Check a new credential against its challenge and store it under `name`; when it
        is the person's first factor, recovery codes come with it (shown once), so losing the
        only passkey is not losing the account."""
        self._require_enabled()
        await self.account_factors.require_recent_step(identity)
        challenge = await self.rp.take(credential, Purpose.REGISTER)
        if challenge.user_id != identity.user_id:
            raise refused("registration-challenge-of-another-user")
        verified = self.rp.verify_registration(credential, challenge)
        new = store.NewPasskey(
            id=crypto.new_id(),
            credential_id=b64url(verified.credential_id),
            public_key=b64url(verified.credential_public_key),
            sign_count=verified.sign_count,
            transports=transports_of(credential),
            backup_eligible=verified.credential_device_type == "multi_device",
            backed_up=verified.credential_backed_up,
            name=clean_name(name, suggested_name(user_agent)),
        )
        codes = new_codes()
        hashes = self.account_factors.recovery.hashes(identity.user_id, codes)
        added = await self.db.run(
            store.add_passkey(identity.user_id, new, self._now(), recovery_hashes=hashes)
        )
        if added is None:
            log.info("passkey.refused reason=already-registered user=%s", identity.user_id[:8])
            raise InvalidPasskeyError("This passkey is already registered.")
        row, issued = added
        log.info("passkey.added user=%s passkey=%s", identity.user_id[:8], new.id[:8])
        self.account_factors.notices.send(
            Notice(kind="factor_added", to=identity.email, factor=NOTICE_NAME)
        )
        return Added(PasskeyView.of(row), codes if issued else [])

    async def rename(self, identity: Identity, passkey_id: str, name: str) -> None:
        """Rename one of the person's passkeys."""
        if not await self.db.run(
            store.rename_passkey(identity.user_id, passkey_id, clean_name(name, DEFAULT_NAME))
        ):
            raise NotFoundError("No such passkey.")

    async def remove(self, identity: Identity, passkey_id: str) -> None:
        """Remove one of the person's passkeys (needs a recent step, as removing any factor):
        it stops working at once; the recovery codes go too when it was the last factor."""
        await self.account_factors.require_recent_step(identity)
        if await self.db.run(store.remove_passkey(identity.user_id, passkey_id)) is None:
            raise NotFoundError("No such passkey.")
        log.info("passkey.removed user=%s passkey=%s", identity.user_id[:8], passkey_id[:8])
        self.account_factors.notices.send(
            Notice(kind="factor_removed", to=identity.email, factor=NOTICE_NAME)
        )

    async def step_up_options(self, identity: Identity, ip: str) -> dict[str, Any]:
        """Request options for confirming it's them (a step-up) with one of their passkeys."""
        self._require_enabled()
        if store.PASSKEY not in await self.account_factors.step_up_methods(identity.user_id):
            raise InvalidRequestError("You have no passkey.")
        return await self.factor.step_up_options(identity.user_id, ip)

    # --- signing in -------------------------------------------------------------------------

    async def login_options(self, signin_cookie: str | None, ip: str) -> dict[str, Any]:
        """Request options: for this browser's pending sign-in when it has one that a passkey
        can answer (that user's credentials), else for a first step (discoverable)."""
        self._require_enabled()
        if self.bindings.signin_of(signin_cookie) is not None:
            try:
                step: store.PendingStep | None = await self.steps.pending(signin_cookie)
            except (SigninExpiredError, FlowUsedError, FlowDeadError):
                # A pending sign-in that is over leaves this browser free to start afresh.
                step = None
            if step is not None and store.PASSKEY in step.methods:
                allowed = await self.db.run(store.list_passkeys(step.user_id), write=False)
                return await self.rp.authentication_options(
                    Purpose.STEP, ip=ip, user_id=step.user_id, signin_id=step.id, allowed=allowed
                )
        return await self.rp.authentication_options(Purpose.LOGIN, ip=ip)

    async def login(
        self,
        credential: dict[str, Any],
        *,
        next_url: str,
        signin_cookie: str | None,
        ip: str,
        user_agent: str,
    ) -> Authenticated | SecondStepDue:
        """Sign in with a passkey: a first step, or the second step of this browser's pending
        sign-in (the challenge says which it was handed out for)."""
        self._require_enabled()
        if await self.rp.peek_purpose(credential) is Purpose.STEP:
            return await self.steps.answer(
                cookie=signin_cookie,
                method=store.PASSKEY,
                answer=json.dumps(credential),
                ip=ip,
                user_agent=user_agent,
            )
        challenge = await self.rp.take(credential, Purpose.LOGIN)
        passkey, verified_user, count = await self.factor.assertion(credential, challenge, None)
        amr, level = assurance_of((Method.HWK, Method.USER) if verified_user else (Method.HWK,))
        others = tuple(m for m in passkey["second_factors"].split() if m != store.PASSKEY)
        # Recovery codes are a way back in, never a factor of their own (the first passkey
        # brings them): a second step is due only when another real factor exists.
        another_factor = any(m != store.RECOVERY_CODE for m in others)
        now = self._now()
        session, refresh = new_session(
            self.settings.sessions, now, ip, user_agent, amr=amr, aal=level
        )
        signin_key = crypto.new_id()
        used = await self.db.run(
            store.passkey_signin(
                passkey["id"],
                count,
                session=session,
                second_step_due=not verified_user and another_factor,
                signin_key=signin_key,
                next_url=next_url,
                now=now,
            )
        )
        if used.verdict is not store.UseVerdict.OK:
            raise count_refused(used.verdict, passkey)
        if used.step is not None:
            log.info("login.step_due how=passkey user=%s", used.step.user_id[:8])
            return SecondStepDue(
                methods=others,
                signin_cookie=self.bindings.signin_cookie(used.step.id, signin_key),
                next_url=used.step.next_url,
            )
        assert used.sign_in is not None
        s = used.sign_in
        log.info("login.succeeded how=passkey user=%s session=%s", s.user_id[:8], s.session_id[:8])
        auth = self.access.authenticated(s, refresh)
        if self.steps.notices is not None:
            # A new device signing in by passkey is told of like any other sign-in (§14).
            await self.steps.notices.session_opened(auth, ip=ip, user_agent=user_agent)
        return auth
