"""The person's own account: take their data with them (export) and leave (delete).

Both act only on the signed-in person's own account (the identity a handler resolved).
Deletion needs a step within STEP_UP_TTL, the same step-up as a change of second factors
(AccountFactors.require_recent_step, docs/design.md §11): a borrowed unlocked laptop with a
day-old session must not be able to throw the account away.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from service import store
from service.db import Database
from service.device import device_name
from service.errors import InvalidRequestError, UnauthenticatedError
from service.signin.factors import NAMES, AccountFactors
from service.signin.sessions import Identity
from service.store import account as account_store

log = logging.getLogger("latch.account")
EXPORT_VERSION = 1


class Account:
    """Export and deletion of the signed-in person's account."""

    def __init__(
        self,
        database: Database,
        clock: Callable[[], float],
        factors: AccountFactors,
        *,
        forget: Callable[..., None] = lambda *session_ids: None,
    ) -> None:
        self.db = database
        self.clock = clock
        self.factors = factors
        # Drops deleted sessions from /auth/check's cache (signin/sessions.py) at once.
        self.forget = forget

    async def export(self, identity: Identity) -> dict[str, Any]:
        """Everything Latch holds about this person, as JSON-ready data: no secret, no hash."""
        data = await self.db.run(account_store.export_account(identity.user_id), write=False)
        if data is None:
            raise UnauthenticatedError()
        for session in data["sessions"]:
            session["device"] = device_name(session["user_agent"] or "")
            session["current"] = session["id"] == identity.session_id
        for factor in data["factors"]:
            factor["name"] = NAMES.get(factor["method"], factor["method"])
        log.info("account.exported user=%s", identity.user_id[:8])
        return {"format": "latch-account-export", "version": EXPORT_VERSION, **data}

    async def delete(
        self, identity: Identity, *, confirm: str, email: str, ip: str = "", user_agent: str = ""
    ) -> None:
        """Delete the account at once, when `confirm` is its address as the person typed it.

        Typing the address (not ticking a box) is the explicit confirmation: it cannot be
        done by a stray click, and it names which account goes. The step comes first: without
        one, a wrong address is not worth telling apart.
        """
        await self.factors.require_recent_step(identity)
        if " ".join(confirm.split()).casefold() != email.casefold():
            raise InvalidRequestError(
                "Type your address exactly as shown to confirm.", field="confirm"
            )
        actor = store.Actor("user", ip, user_agent)
        deleted = await self.db.run(
            account_store.delete_account(identity.user_id, actor=actor, now=int(self.clock()))
        )
        if deleted is None:
            raise UnauthenticatedError()
        self.forget(identity.session_id, *deleted.session_ids)
        log.info(
            "account.deleted user=%s sessions=%d", identity.user_id[:8], len(deleted.session_ids)
        )
