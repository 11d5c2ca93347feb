"""The operator's use cases, shared by the admin API and `python -m service`.

Each call is one store use case (one transaction, audited inside it) plus what must happen in
this process afterwards: a disabled or deleted user's sessions are dropped from this instance's
session cache at once (others see it within /auth/check's one-second staleness).
"""

from __future__ import annotations

import base64
import secrets
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from service import crypto, store
from service.addresses import parse_email
from service.db import Database, Row
from service.errors import InvalidRequestError, NotFoundError
from service.settings import Settings
from service.store import account as account_store
from service.store import admin as admin_store
from service.store import webhooks as hooks_store

ADMIN_KEY_PREFIX = "latch_admin_"
WEBHOOK_SECRET_PREFIX = "whsec_"  # noqa: S105 (the prefix, not a secret)
MAX_PAGE = 200
MAX_URL = 2000


def new_admin_key() -> str:
    """A fresh admin key (256 bits); only its SHA-256 is ever stored."""
    return ADMIN_KEY_PREFIX + secrets.token_urlsafe(32)


def webhook_seal_key(settings: Settings) -> bytes:
    """The subkey that seals webhook signing secrets (crypto.seal, bound to the endpoint id)."""
    return crypto.Keys.from_secret(settings.secret_key).webhook_seal


class Operator:
    """Users, sessions, factors, the audit log, webhooks and admin keys, for an operator."""

    def __init__(
        self,
        settings: Settings,
        database: Database,
        clock: Callable[[], float],
        *,
        forget: Callable[..., None] = lambda *sessions: None,
    ) -> None:
        self.settings = settings
        self.db = database
        self.clock = clock
        self.forget = forget
        self.seal_key = webhook_seal_key(settings)

    def _now(self) -> int:
        return int(self.clock())

    # --- admin keys -------------------------------------------------------------------------

    async def create_key(self, name: str, actor: store.Actor) -> str:
        """A new admin key named `name`, returned once."""
        if not name or len(name) > 64 or not name.isprintable() or name.strip() != name:
            raise InvalidRequestError("A key's name is 1 to 64 printable characters.")
        key = new_admin_key()
        made = await self.db.run(
            admin_store.add_admin_key(
                crypto.new_id(), name, crypto.sha256_hex(key), actor=actor, now=self._now()
            )
        )
        if not made:
            raise InvalidRequestError(f"There is already a key named {name!r}.")
        return key

    async def authenticate(self, key: str) -> str | None:
        """The name of the live admin key `key`, else None."""
        if not key.startswith(ADMIN_KEY_PREFIX) or len(key) > 200 or not key.isascii():
            return None
        return await self.db.run(admin_store.use_admin_key(crypto.sha256_hex(key), self._now()))

    async def list_keys(self) -> list[Row]:
        """Every admin key (names and times, never a hash)."""
        return await self.db.run(admin_store.list_admin_keys(), write=False)

    async def revoke_key(self, name: str, actor: store.Actor) -> bool:
        """Revoke a key by name."""
        return await self.db.run(admin_store.revoke_admin_key(name, actor=actor, now=self._now()))

    # --- users ------------------------------------------------------------------------------

    async def list_users(
        self, *, email: str | None, cursor: str | None, limit: int
    ) -> tuple[list[Row], str | None]:
        """A page of users and the cursor of the next page (None after the last)."""
        limit = max(1, min(limit, MAX_PAGE))
        rows = await self.db.run(
            admin_store.list_users(email=email, after=cursor, limit=limit + 1), write=False
        )
        page = rows[:limit]
        return page, (page[-1]["id"] if len(rows) > limit else None)

    async def user(self, user_id: str) -> Row:
        """One user, else NotFoundError."""
        row = await self.db.run(admin_store.get_user(user_id), write=False)
        if row is None:
            raise NotFoundError("No such user.")
        return row

    async def create_user(self, email: str, actor: store.Actor) -> tuple[Row, bool]:
        """Create a user by address (or find the one that exists)."""
        address, key = parse_email(email, self.settings.signin.allowed_email_domains)
        return await self.db.run(
            admin_store.create_user(crypto.new_id(), address, key, actor=actor, now=self._now())
        )

    async def set_disabled(self, user_id: str, disabled: bool, actor: store.Actor) -> Row:
        """Disable (ending every session at once) or enable a user."""
        row, ended = await self.db.run(
            admin_store.set_disabled(user_id, disabled, actor=actor, now=self._now())
        )
        if row is None:
            raise NotFoundError("No such user.")
        self.forget(*ended)
        return row

    async def delete_user(self, user_id: str, actor: store.Actor) -> None:
        """Delete a user and everything of theirs but their (address-free) audit events: the
        person's own deletion (store/account.py), so both remove the same tables."""
        deleted = await self.db.run(
            account_store.delete_account(user_id, actor=actor, now=self._now())
        )
        if deleted is None:
            raise NotFoundError("No such user.")
        self.forget(*deleted.session_ids)

    async def sessions(self, user_id: str) -> list[Row]:
        """A user's live sessions, newest first."""
        await self.user(user_id)
        rows = await self.db.run(store.list_sessions(user_id, self._now()), write=False)
        keep = ("id", "created_at", "last_used_at", "expires_at", "ip", "user_agent", "aal")
        return [{k: row[k] for k in keep} for row in rows]

    async def revoke_sessions(self, user_id: str, actor: store.Actor) -> list[str]:
        """Revoke every session of a user; their ids."""
        await self.user(user_id)
        ended = await self.db.run(
            store.revoke_user_sessions(user_id, self._now(), actor=actor, reason="admin")
        )
        self.forget(*ended)
        return ended

    async def reset_factors(self, user_id: str, actor: store.Actor) -> list[str]:
        """Remove every second factor of a user; the methods removed."""
        removed = await self.db.run(
            admin_store.reset_factors(user_id, actor=actor, now=self._now())
        )
        if removed is None:
            raise NotFoundError("No such user.")
        return removed

    # --- audit ------------------------------------------------------------------------------

    async def audit(
        self, *, user_id: str | None, event: str | None, cursor: str | None, limit: int
    ) -> tuple[list[Row], str | None]:
        """A page of audit events, newest first, and the next page's cursor."""
        limit = max(1, min(limit, MAX_PAGE))
        rows = await self.db.run(
            store.list_events(user_id=user_id, event=event, before=cursor, limit=limit + 1),
            write=False,
        )
        page = rows[:limit]
        return page, (page[-1]["id"] if len(rows) > limit else None)

    async def note_read(self, actor: store.Actor, what: str, **details: Any) -> None:
        """Record that an admin read something (every admin call is audited)."""
        await self.db.run(
            store.record_alone(
                store.Event.ADMIN_READ, actor=actor, now=self._now(), what=what, **details
            )
        )

    # --- webhooks ---------------------------------------------------------------------------

    def _check_url(self, url: str) -> str:
        parts = urlsplit(url)
        schemes = ("https", "http") if self.settings.development else ("https",)
        if (
            len(url) > MAX_URL
            or parts.scheme not in schemes
            or not parts.hostname
            or parts.username is not None
            or parts.fragment
        ):
            need = "an http(s)" if self.settings.development else "an https"
            raise InvalidRequestError(f"`url` must be {need} URL without credentials.", field="url")
        return url

    @staticmethod
    def _check_events(events: Any) -> tuple[str, ...]:
        known = [str(e) for e in store.WEBHOOK_EVENTS]
        if (
            not isinstance(events, list)
            or not events
            or not all(isinstance(e, str) and e in known for e in events)
        ):
            raise InvalidRequestError(
                "`events` must be a non-empty list of: " + ", ".join(known), field="events"
            )
        return tuple(sorted(set(events)))

    async def create_webhook(self, url: Any, events: Any, actor: store.Actor) -> tuple[Row, str]:
        """A new endpoint and its signing secret (`whsec_…`, returned once, stored sealed)."""
        if not isinstance(url, str):
            raise InvalidRequestError("`url` is required.", field="url")
        checked = self._check_url(url)
        kinds = self._check_events(events)
        endpoint_id = "ep_" + crypto.new_id()
        secret = WEBHOOK_SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()
        row = await self.db.run(
            admin_store.create_webhook(
                endpoint_id,
                url=checked,
                events=kinds,
                sealed_secret=crypto.seal(self.seal_key, secret.encode("ascii"), endpoint_id),
                actor=actor,
                now=self._now(),
            )
        )
        return row, secret

    async def webhooks(self) -> list[Row]:
        """The live endpoints (no secret)."""
        return await self.db.run(hooks_store.list_endpoints(), write=False)

    async def webhook(self, endpoint_id: str) -> Row:
        """One live endpoint, else NotFoundError."""
        row = await self.db.run(hooks_store.get_endpoint(endpoint_id), write=False)
        if row is None:
            raise NotFoundError("No such webhook.")
        return row

    async def delete_webhook(self, endpoint_id: str, actor: store.Actor) -> None:
        """Stop an endpoint; what it was not sent yet is cancelled."""
        deleted = admin_store.delete_webhook(endpoint_id, actor=actor, now=self._now())
        if not await self.db.run(deleted):
            raise NotFoundError("No such webhook.")

    async def deliveries(
        self, endpoint_id: str, *, cursor: str | None, limit: int
    ) -> tuple[list[Row], str | None]:
        """A page of an endpoint's messages with their attempts, newest first."""
        await self.webhook(endpoint_id)
        limit = max(1, min(limit, MAX_PAGE))
        rows = await self.db.run(
            hooks_store.list_deliveries(endpoint_id, before=cursor, limit=limit + 1), write=False
        )
        page = rows[:limit]
        return page, (page[-1]["id"] if len(rows) > limit else None)
