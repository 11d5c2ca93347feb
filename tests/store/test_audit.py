"""The audit log: each action recorded once, in its own transaction, without secrets; purged in
batches after AUDIT_RETENTION."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from typing import Any

import pytest

from service import db, store
from service.accounts.housekeeping import purge_all
from service.settings import Settings
from service.web.state import app_state_of
from tests.conftest import (
    ClientFactory,
    FakeClock,
    RecordingTransport,
    SettingsFactory,
    mail_code,
    sign_in,
    start,
)
from tests.support.db import run_on, wrong

EMAIL = "audrey@example.com"
BROWSER = {"User-Agent": "AuditTest/1.0"}


def events(url: str, **filters: Any) -> list[dict[str, Any]]:
    return run_on(url, store.list_events(limit=1000, **filters))


def kinds(url: str) -> Counter[str]:
    return Counter(e["event"] for e in events(url))


def test_each_sign_in_event_is_recorded_once_with_ip_and_user_agent(
    make_client: ClientFactory, transport: RecordingTransport, database_url: str
) -> None:
    with make_client(database_url=database_url) as client:
        client.headers.update(BROWSER)
        body = sign_in(client, transport, EMAIL)
        user_id = body["user"]["id"]
        assert kinds(database_url) == {"user.created": 1, "login.succeeded": 1}
        # A wrong code.
        flow = start(client, EMAIL)
        code = mail_code(transport.wait_for(EMAIL, index=1))
        client.post("/api/verify", json={"flow_id": flow["flow_id"], "code": wrong(code)})
        # Sign out.
        assert client.post("/api/logout", json={}).status_code == 204
        counted = kinds(database_url)
    assert counted == {
        "user.created": 1,
        "login.succeeded": 1,
        "login.failed": 1,
        "session.revoked": 1,
    }
    for event in events(database_url):
        assert event["user_id"] == user_id
        assert event["ip"] == "testclient" and event["user_agent"] == "AuditTest/1.0"
    failed = events(database_url, event="login.failed")[0]
    assert failed["details"]["reason"] == "wrong_code" and failed["actor"] == "anonymous"
    revoked = events(database_url, event="session.revoked")[0]
    assert revoked["details"] == {
        "session_ids": [body["session"]["id"]],
        "reason": "sign_out",
    }
    assert revoked["actor"] == "user"


def test_refresh_reuse_is_recorded_as_a_revocation_with_the_presenters_address(
    make_client: ClientFactory, transport: RecordingTransport, clock: FakeClock
) -> None:
    with make_client(REFRESH_GRACE="0") as client:
        body = sign_in(client, transport, EMAIL)
        old = client.cookies["latch_refresh"]
        assert client.post("/api/refresh", json={}).status_code == 200
        clock.advance(5)
        client.cookies.clear()
        replay = client.post(
            "/api/refresh",
            json={},
            headers={"Cookie": f"latch_refresh={old}", "User-Agent": "Thief/2"},
        )
        assert replay.status_code == 401
        url = app_state_of(client).settings.storage.resolved_database_url
    revoked = events(url, event="session.revoked")
    assert len(revoked) == 1
    assert revoked[0]["details"]["reason"] == "refresh_reuse"
    assert revoked[0]["details"]["session_ids"] == [body["session"]["id"]]
    assert revoked[0]["user_agent"] == "Thief/2"


def test_no_secret_and_no_address_reaches_the_audit_log(
    make_client: ClientFactory, transport: RecordingTransport, database_url: str
) -> None:
    with make_client(database_url=database_url) as client:
        flow = start(client, EMAIL)
        message = transport.wait_for(EMAIL)
        code = mail_code(message)
        client.post("/api/verify", json={"flow_id": flow["flow_id"], "code": wrong(code)})
        client.post("/api/verify", json={"flow_id": flow["flow_id"], "code": code})
        secrets = [code, client.cookies["latch_session"], client.cookies["latch_refresh"]]
        client.post("/api/logout", json={})
    dump = json.dumps(events(database_url))
    assert len(events(database_url)) == 4
    for secret in [*secrets, EMAIL, "audrey"]:
        assert secret not in dump


def _records_then_fails(now: int) -> db.UseCase[None]:
    yield from store.record(store.Event.USER_DISABLED, actor=store.CLI, now=now, user_id="u1")
    raise RuntimeError("the action failed after its event was written")


def test_an_action_that_fails_leaves_no_event(database_url: str, clock: FakeClock) -> None:
    run_on(database_url, db.migrate(int(clock())))
    with pytest.raises(RuntimeError):
        run_on(database_url, _records_then_fails(int(clock())))
    assert events(database_url) == []


def test_a_refused_sign_in_on_a_used_flow_leaves_no_event(
    make_client: ClientFactory, transport: RecordingTransport, database_url: str
) -> None:
    with make_client(database_url=database_url) as client:
        flow = start(client, EMAIL)
        code = mail_code(transport.wait_for(EMAIL))
        assert client.post(
            "/api/verify", json={"flow_id": flow["flow_id"], "code": code}
        ).is_success
        before = kinds(database_url)
        again = client.post("/api/verify", json={"flow_id": flow["flow_id"], "code": code})
        assert again.status_code == 409
        assert kinds(database_url) == before


def test_events_past_the_retention_are_purged_in_batches(
    make_settings: SettingsFactory, database_url: str, clock: FakeClock
) -> None:
    settings: Settings = make_settings(DATABASE_URL=database_url, AUDIT_RETENTION="86400")
    now = int(clock())
    old, young = now - 2 * 86400, now - 3600
    run_on(database_url, db.migrate(now))
    run_on(database_url, _many(old, store.BATCH * 2 + 5))
    run_on(database_url, _many(young, 3))

    async def purge(database: db.Database) -> dict[str, int]:
        return await purge_all(database, settings, now)

    counts = _with_database(database_url, purge)
    assert counts["audit_events"] == store.BATCH * 2 + 5
    left = events(database_url)
    assert len(left) == 3 and all(e["at"] == young for e in left)


def _many(at: int, n: int) -> db.UseCase[None]:
    for i in range(n):
        yield from store.record(store.Event.USER_ENABLED, actor=store.CLI, now=at, user_id=str(i))


def _with_database(url: str, work: Any) -> Any:
    async def main() -> Any:
        database = db.open_database(url)
        await database.connect()
        try:
            return await work(database)
        finally:
            await database.disconnect()

    return asyncio.run(main())
