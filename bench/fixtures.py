"""State the load needs, made through Latch's own code: pre-made flows, a signed-in cookie."""

from __future__ import annotations

import asyncio
import contextlib
import re
import secrets
import time
from collections.abc import Iterable
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path

import httpx

from bench.servers import MailSink
from service import crypto, db, store
from service.addresses import parse_email
from service.crypto import Keys
from service.db import UseCase
from service.settings import LimitSettings, load_settings

CODE_TTL = 600
CHUNK = 5000


def _open_many(flows: Iterable[store.NewFlow], limits: LimitSettings, now: int) -> UseCase[int]:
    """Several store.open_flow use cases in one transaction (one hop for a whole chunk)."""
    made = 0
    for flow in flows:
        outcome = yield from store.open_flow(flow, limits, now)
        if outcome.state != "ok":
            raise RuntimeError(f"open_flow refused a bench flow: {outcome.state}")
        made += 1
    return made


def _no_limits() -> LimitSettings:
    # The same zeros the bench gives Latch: the flows are made as Latch would make them.
    settings = load_settings(
        {
            "LIMIT_MAIL_INTERVAL": "0",
            "LIMIT_MAIL_PER_WINDOW": "0",
            "LIMIT_MAIL_PER_DAY": "0",
            "LIMIT_MAIL_GLOBAL": "0",
            "LIMIT_STARTS_PER_IP": "0",
            "SECRET_KEY": "x" * 32,
        }
    )
    return settings.limits


def _address(flow_id: str) -> tuple[str, str]:
    """(address, email_key) of a bench flow: `v-<hex>@bench.example.com`.

    Every bench address has the same plain lowercase ASCII shape, for which parse_email gives
    back the address itself twice (checked on the first one in _make_flows); doing the full
    parse for each of tens of thousands of flows would cost seconds of the bench's budget.
    """
    address = f"v-{flow_id[:16]}@bench.example.com"
    return address, address


async def _make_flows(database_url: str, secret: str, files: dict[Path, int]) -> None:
    sample = _address(crypto.new_id())
    if parse_email(sample[0], ()) != sample:
        raise RuntimeError("parse_email no longer maps bench addresses to themselves")
    keys = Keys.from_secret(secret.encode("utf-8"))
    limits = _no_limits()
    database = db.open_database(database_url)
    await database.connect()
    try:
        await database.run(db.migrate(int(time.time())))
        for path, count in files.items():
            lines: list[str] = []
            for start in range(0, count, CHUNK):
                now = int(time.time())
                chunk: list[store.NewFlow] = []
                for _ in range(min(CHUNK, count - start)):
                    flow_id, code = crypto.new_id(), crypto.new_code()
                    address, key = _address(flow_id)
                    chunk.append(
                        store.NewFlow(
                            id=flow_id,
                            email=address,
                            email_key=key,
                            code_hash=crypto.keyed_hash(keys.code, flow_id, code),
                            link_hash=crypto.keyed_hash(keys.link, flow_id, crypto.new_secret()),
                            next_url="/",
                            expires_at=now + CODE_TTL,
                            ip="127.0.0.1",
                            user_agent="wrk",
                        )
                    )
                    lines.append(f"{flow_id},{code}\n")
                if database.dialect == "sqlite":
                    await database.run(_open_many(chunk, limits, now))
                else:
                    # PostgreSQL takes each flow's locks in order within a transaction, so
                    # two flows' locks cannot share one: a transaction each, the pool's
                    # connections working side by side.
                    await asyncio.gather(
                        *(database.run(_open_many([flow], limits, now)) for flow in chunk)
                    )
            path.write_text("".join(lines))
    finally:
        await database.disconnect()


def make_flows(database_url: str, secret: str, files: dict[Path, int]) -> None:
    """Store `count` pending flows per file (distinct addresses) and write `flow_id,code` lines.

    Each flow has its own address: a sign-in ends the address's other pending flows, so
    shared addresses would turn later verifies into 409s.
    """
    asyncio.run(_make_flows(database_url, secret, files))


def new_secret() -> str:
    """A SECRET_KEY for the run."""
    return secrets.token_urlsafe(48)


def sign_in(base_url: str, sink: MailSink) -> str:
    """A real sign-in (start, the mailed code, verify); the access cookie's value."""
    address = "signin-cookie@bench.example.com"
    sink.watch(address)
    with httpx.Client(base_url=base_url, timeout=10.0) as client:
        started = client.post("/api/start", json={"email": address})
        started.raise_for_status()
        message = message_from_bytes(sink.wait_message(address), policy=policy.default)
        assert isinstance(message, EmailMessage)
        body = message.get_body(("plain",))
        assert isinstance(body, EmailMessage)
        match = re.search(r"\b(\d{3}) ?(\d{3})\b", str(body.get_content()))
        if match is None:
            raise RuntimeError("no code in the sign-in mail")
        verified = client.post(
            "/api/verify",
            json={"flow_id": started.json()["flow_id"], "code": match.group(1) + match.group(2)},
        )
        verified.raise_for_status()
        cookie = verified.cookies.get("latch_session")
        if not cookie:
            raise RuntimeError("verify set no latch_session cookie")
        check = client.get("/auth/check", cookies={"latch_session": cookie})
        if check.status_code != 200:
            raise RuntimeError(f"/auth/check with the new cookie answered {check.status_code}")
        return cookie


def started_flows(database: Path, prefixes: tuple[str, ...]) -> tuple[int, int]:
    """(flows stored, flows marked sent) for addresses starting with one of `prefix-`.

    wrk counts only the answers it read before its time ran out, while the server finishes
    the requests still in flight, so the exact number of accepted starts is the database's.
    A read-only look, never a write: the flows themselves are made by Latch.
    """
    import sqlite3

    where = " OR ".join("email LIKE ?" for _ in prefixes)
    args = [f"{prefix}-%" for prefix in prefixes]
    with contextlib.closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True)) as conn:
        stored, sent = conn.execute(
            "SELECT COUNT(*), COALESCE(SUM(mail_status = 'sent'), 0) FROM login_flows"
            f" WHERE {where}",
            args,
        ).fetchone()
    return int(stored), int(sent)
