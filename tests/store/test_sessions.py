"""Sessions on both backends: refresh, listing and revocation, logout seen by every instance,
and the purge of ended sessions and old flows."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from contextlib import ExitStack

from starlette.testclient import TestClient

from service import db, store
from service.accounts.housekeeping import FLOW_RETENTION
from service.app import create_app
from service.settings import Settings
from tests.conftest import (
    BASE_URL,
    ClientFactory,
    FakeClock,
    RecordingTransport,
    mail_token,
    sign_in,
    start,
)
from tests.support.db import purge_on, run_on
from tests.support.wait import eventually


def test_resend_link_refresh_and_session_management_work(
    database_url: str, make_client: ClientFactory, transport: RecordingTransport
) -> None:
    # The remaining use cases (resend, link, rotate_refresh, list/revoke sessions, logout all)
    # each issue statements the code sign-in does not.
    with make_client(database_url=database_url) as client:
        first = sign_in(client, transport, "lin@example.com")
        flow = start(client, "lin@example.com")
        resent = client.post("/api/resend", json={"flow_id": flow["flow_id"]})
        token = mail_token(transport.wait_for("lin@example.com", index=2))
        linked = client.post("/api/link", json={"token": token})
        refreshed = client.post("/api/refresh", json={})
        listed = client.get("/api/sessions")
        revoked = client.delete(f"/api/sessions/{first['session']['id']}")
        ended = client.post("/api/logout", json={"all": True})
        after = client.get("/api/session")
    assert resent.status_code == 202, resent.text
    assert linked.status_code == 200, linked.text
    assert refreshed.status_code == 200, refreshed.text
    assert listed.status_code == 200 and len(listed.json()["sessions"]) == 2, listed.text
    assert revoked.status_code in (200, 204), revoked.text
    assert ended.status_code == 204
    assert after.status_code == 401


def test_logout_is_honoured_by_auth_check_on_every_instance(
    database_url: str,
    make_settings: Callable[..., Settings],
    clock: FakeClock,
    transport: RecordingTransport,
) -> None:
    settings = make_settings(DATABASE_URL=database_url)
    with ExitStack() as stack:
        a, b = (
            stack.enter_context(
                TestClient(
                    create_app(settings, mail_transport=transport, clock=clock), base_url=BASE_URL
                )
            )
            for _ in range(2)
        )
        sign_in(a, transport, "erin@example.com")
        bearer = {"Authorization": "Bearer " + a.cookies[settings.session_cookie]}
        before = a.get("/auth/check")
        logout = a.post("/api/logout", json={})
        after_a = a.get("/auth/check", headers=bearer)
        after_b = b.get("/auth/check", headers=bearer)
    assert before.status_code == 200
    assert logout.status_code == 204
    assert after_a.status_code == 401
    assert after_b.status_code == 401


def test_purge_deletes_old_flows_and_ended_sessions_only(
    database_url: str,
    make_client: ClientFactory,
    clock: FakeClock,
    transport: RecordingTransport,
) -> None:
    with make_client(database_url=database_url) as client:
        old = sign_in(client, transport, "frank@example.com")
        old_flow = start(client, "frank@example.com")
        clock.advance(FLOW_RETENTION + 60)
        new = sign_in(client, transport, "gina@example.com")
    counts = purge_on(database_url, int(clock()), FLOW_RETENTION)
    again = purge_on(database_url, int(clock()), FLOW_RETENTION)
    # Frank's two flows are past retention; his session (7-day idle) is still alive.
    assert counts["flows"] == 2
    assert counts["sessions"] == 0
    assert again == {
        "flows": 0,
        "mail_log": 0,
        "address_failures": 0,
        "sessions": 0,
        "signins": 0,
        "webauthn_challenges": 0,
        "oauth_requests": 0,
        "oauth_grants": 0,
    }
    assert run_on(database_url, store.get_flow(old_flow["flow_id"])) is None
    now = int(clock())
    assert run_on(database_url, store.session_owner(old["session"]["id"], now))
    assert run_on(database_url, store.session_owner(new["session"]["id"], now))
    later = now + 31 * 86400
    ended = purge_on(database_url, later, FLOW_RETENTION)
    assert ended["sessions"] == 2


def test_purges_running_at_once_delete_each_row_once(
    database_url: str, make_client: ClientFactory, clock: FakeClock
) -> None:
    with make_client(database_url=database_url) as client:
        for i in range(30):
            start(client, f"p{i}@example.com")
    cut = int(clock()) + FLOW_RETENTION + 60

    async def purge_together() -> list[dict[str, int]]:
        databases = [db.open_database(database_url) for _ in range(4)]
        for d in databases:
            await d.connect()
        try:
            return await asyncio.gather(
                *(store.purge(d, cut, FLOW_RETENTION, batch=7) for d in databases)
            )
        finally:
            for d in databases:
                await d.disconnect()

    results = asyncio.run(purge_together())
    assert sum(r["flows"] for r in results) == 30
    assert sum(r["mail_log"] for r in results) == 30


def test_background_purge_runs_every_purge_interval(
    database_url: str, make_client: ClientFactory, clock: FakeClock
) -> None:
    with make_client(database_url=database_url, PURGE_INTERVAL="1") as client:
        flow = start(client, "henry@example.com")
        clock.advance(FLOW_RETENTION + 60)
        eventually(
            lambda: run_on(database_url, store.get_flow(flow["flow_id"])) is None,
            "the background purge to delete the old flow",
        )
