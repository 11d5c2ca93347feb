"""`python -m service admin-keys …`, `users disable|enable|delete`, `audit tail`: the operator's
commands, each one call of the Operator (audited with the actor "cli")."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

from service import db, store
from service.accounts.operator import Operator
from service.addresses import parse_email
from service.db import Row
from service.settings import Settings

TAIL_POLL = 1.0


def _run(settings: Settings, work: Callable[[Operator], Awaitable[int]]) -> int:
    async def main() -> int:
        database = db.open_database(settings.storage.resolved_database_url)
        await database.connect()
        try:
            await database.run(db.migrate(int(time.time())))
            return await work(Operator(settings, database, time.time))
        finally:
            await database.disconnect()

    return asyncio.run(main())


def admin_keys(settings: Settings, action: str, name: str | None, as_json: bool) -> int:
    """create NAME [--json] | list | revoke NAME."""

    async def work(operator: Operator) -> int:
        if action == "create":
            key = await operator.create_key(name or "", store.CLI)
            if as_json:
                print(json.dumps({"name": name, "key": key}))
            else:
                print(key)
                print(f"admin key {name!r}: shown once, keep it secret", file=sys.stderr)
        elif action == "list":
            for row in await operator.list_keys():
                state = "revoked" if row["revoked_at"] else "live"
                used = row["last_used_at"] or "-"
                print(f"{row['name']}\t{state}\tcreated {row['created_at']}\tused {used}")
        elif not await operator.revoke_key(name or "", store.CLI):
            print(f"no live key named {name!r}", file=sys.stderr)
            return 1
        return 0

    return _run(settings, work)


def users(settings: Settings, action: str, email: str) -> int:
    """disable | enable | delete EMAIL."""
    _, key = parse_email(email)

    async def work(operator: Operator) -> int:
        user = await operator.db.run(store.find_user(key), write=False)
        if user is None:
            print("no such user", file=sys.stderr)
            return 1
        if action == "delete":
            await operator.delete_user(user["id"], store.CLI)
            print(f"deleted {user['id']}")
        else:
            row = await operator.set_disabled(user["id"], action == "disable", store.CLI)
            print(f"{'disabled' if row['disabled'] else 'enabled'} {row['id']} {row['email']}")
        return 0

    return _run(settings, work)


def _line(event: Row) -> str:
    at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(event["at"]))
    details = json.dumps(event["details"], separators=(",", ":"))
    who = f"user={event['user_id'] or '-'} actor={event['actor']} ip={event['ip'] or '-'}"
    return f"{at} {event['event']} {who} {details}"


def audit_tail(settings: Settings, lines: int, follow: bool, as_json: bool) -> int:
    """The last `lines` events, oldest first; with `follow`, then every new one as it comes."""

    async def work(operator: Operator) -> int:
        after: str | None = None
        rows: list[Any] = await operator.db.run(store.tail_events(None, lines), write=False)
        while True:
            for row in rows:
                print(json.dumps(row) if as_json else _line(row), flush=True)
                after = row["id"]
            if not follow:
                return 0
            await asyncio.sleep(TAIL_POLL)
            rows = await operator.db.run(store.tail_events(after, 1000), write=False)

    try:
        return _run(settings, work)
    except KeyboardInterrupt:
        return 0
