"""The code page's view of a flow: its state, mail status and counters, and no secret."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from service import store
from service.db import Database
from service.settings import Settings


class CodePage:
    """What the code page (and its polling) may show about a flow."""

    def __init__(self, settings: Settings, database: Database, clock: Callable[[], float]) -> None:
        self.settings = settings
        self.db = database
        self.clock = clock

    async def view(self, flow_id: str) -> dict[str, Any] | None:
        """The flow as the code page shows it, or None when there is no such flow."""
        row = await self.db.run(store.get_flow(flow_id), write=False)
        if row is None:
            return None
        now = int(self.clock())
        limits = self.settings.limits
        status = row["mail_status"]
        if status == "suppressed":
            # From outside a suppressed mail looks exactly like a sent one, and the code page
            # words "queued" and "sent" alike (a real mail is queued while SMTP is slow).
            status = "sent"
        elif status == "queued" and now - row["mail_at"] > self.settings.mail.stale_after:
            status = "not_delivered"
        return {
            "state": store.flow_state(row, now, limits.code_attempts),
            "email": row["email"],
            "mail_status": status,
            "attempts": row["attempts"],
            "tries_left": max(0, limits.code_attempts - row["attempts"]),
            "expires_at": row["expires_at"],
            "resend_in": max(0, row["mail_at"] + limits.mail_interval - now),
        }
