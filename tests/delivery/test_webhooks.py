"""Webhooks from one Latch to a receiver on loopback: Standard Webhooks signatures checked by the
reference `standardwebhooks` package, retries after failures, give-up, a slow receiver, filters."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from starlette.testclient import TestClient

from service import db
from tests.admin.conftest import add_key
from tests.conftest import ClientFactory, FakeClock, RecordingTransport, sign_in
from tests.support.db import run_on
from tests.support.receiver import Receiver
from tests.support.wait import eventually

FAST = {"WEBHOOK_POLL_INTERVAL": "0.05", "WEBHOOK_TIMEOUT": "5"}


class Hooks:
    """A running app with an admin key, and a receiver on loopback."""

    def __init__(self, client: TestClient, key: str, receiver: Receiver) -> None:
        self.client, self.key, self.receiver = client, key, receiver

    def admin(self, method: str, path: str, **kwargs: Any) -> Any:
        headers = {"Authorization": f"Bearer {self.key}"}
        response = self.client.request(method, "/admin/api" + path, headers=headers, **kwargs)
        assert response.is_success, response.text
        return response.json() if response.content else None

    def subscribe(self, *events: str) -> dict[str, Any]:
        hook: dict[str, Any] = self.admin(
            "POST", "/webhooks", json={"url": self.receiver.url, "events": list(events)}
        )
        return hook

    def deliveries(self, hook: dict[str, Any]) -> list[dict[str, Any]]:
        body = self.admin("GET", f"/webhooks/{hook['id']}/deliveries")
        found: list[dict[str, Any]] = body["deliveries"]
        return found


@pytest.fixture
def hooks(make_client: ClientFactory, database_url: str, clock: FakeClock) -> Iterator[Hooks]:
    run_on(database_url, db.migrate(int(clock())))
    key = add_key(database_url, "hooks", int(clock()))
    with Receiver() as receiver, make_client(database_url=database_url, **FAST) as client:
        yield Hooks(client, key, receiver)


def test_sign_in_events_arrive_signed_per_standard_webhooks(
    hooks: Hooks, transport: RecordingTransport
) -> None:
    hook = hooks.subscribe("user.created", "login.succeeded")
    body = sign_in(hooks.client, transport, "wes@example.com")
    eventually(lambda: len(hooks.receiver.received) == 2, "two webhooks")
    payloads = hooks.receiver.verified(hook["secret"])  # raises unless every signature is good
    assert sorted(p["type"] for p in payloads) == ["login.succeeded", "user.created"]
    for payload in payloads:
        data: Any = payload["data"]
        assert data["user_id"] == body["user"]["id"] and data["email"] == "wes@example.com"
    login = next(p for p in payloads if p["type"] == "login.succeeded")
    assert login["data"]["session_id"] == body["session"]["id"]
    assert len(set(hooks.receiver.ids())) == 2
    # Another secret does not verify them.
    other = hooks.subscribe("user.deleted")
    with pytest.raises(Exception, match="[Ss]ignature"):
        hooks.receiver.verified(other["secret"])

    def delivered() -> list[dict[str, Any]] | None:
        found = hooks.deliveries(hook)
        return found if all(d["status"] == "delivered" for d in found) else None

    done = eventually(delivered, "the deliveries marked delivered")
    assert len(done) == 2 and all(d["attempt_log"][0]["status"] == 204 for d in done)


def test_a_receiver_that_is_down_then_returns_gets_every_event(
    hooks: Hooks, transport: RecordingTransport, clock: FakeClock
) -> None:
    hook = hooks.subscribe("login.succeeded")
    hooks.receiver.stop()
    sign_in(hooks.client, transport, "dee@example.com")
    failed = eventually(
        lambda: [d for d in hooks.deliveries(hook) if d["attempt_log"]],
        "a failed first attempt",
    )
    assert failed[0]["status"] == "pending" and failed[0]["attempt_log"][0]["status"] is None
    assert failed[0]["attempt_log"][0]["error"] == "ConnectError"
    hooks.receiver.status = 503
    hooks.receiver.start()
    clock.advance(60)  # past the first backoff (5 s + jitter)
    eventually(lambda: len(hooks.receiver.received) == 1, "an attempt answered 503")
    # Advance only once the sender has recorded the 503 (and so scheduled its retry).
    eventually(lambda: len(hooks.deliveries(hook)[0]["attempt_log"]) == 2, "the 503 to be recorded")
    hooks.receiver.status = 200
    clock.advance(60)
    eventually(lambda: len(hooks.receiver.received) == 2, "the retry after the 503")
    hooks.receiver.verified(hook["secret"])
    done = eventually(
        lambda: [d for d in hooks.deliveries(hook) if d["status"] == "delivered"], "delivered"
    )
    assert [a["status"] for a in done[0]["attempt_log"]] == [None, 503, 200]
    assert done[0]["attempts"] == 3


def test_delivery_is_given_up_after_the_retry_window(
    make_client: ClientFactory, database_url: str, clock: FakeClock, transport: RecordingTransport
) -> None:
    run_on(database_url, db.migrate(int(clock())))
    key = add_key(database_url, "hooks", int(clock()))
    env = {**FAST, "WEBHOOK_RETRY_FOR": "30"}
    with Receiver() as receiver, make_client(database_url=database_url, **env) as client:
        hooks = Hooks(client, key, receiver)
        receiver.status = 500
        hook = hooks.subscribe("login.succeeded")
        sign_in(client, transport, "gus@example.com")
        eventually(lambda: hooks.deliveries(hook)[0]["attempt_log"], "the first attempt")
        clock.advance(40)  # the second attempt; a third would fall after WEBHOOK_RETRY_FOR
        failed = eventually(
            lambda: [d for d in hooks.deliveries(hook) if d["status"] == "failed"], "given up"
        )
    assert failed[0]["attempts"] == 2 and len(receiver.received) == 2
    assert [a["status"] for a in failed[0]["attempt_log"]] == [500, 500]


def test_a_slow_receiver_does_not_hold_sign_ins(
    hooks: Hooks, transport: RecordingTransport
) -> None:
    hook = hooks.subscribe("login.succeeded")
    hooks.receiver.gate.clear()  # the receiver holds every request until released
    sign_in(hooks.client, transport, "sam@example.com")
    eventually(lambda: hooks.receiver.holding == 1, "the first delivery to be held")
    for i in range(3):
        sign_in(hooks.client, transport, f"sam{i}@example.com")
    # Every sign-in above completed while the first delivery was still being held.
    assert hooks.receiver.holding >= 1 and not hooks.receiver.received
    hooks.receiver.gate.set()
    eventually(lambda: len(hooks.receiver.received) == 4, "all four webhooks")
    hooks.receiver.verified(hook["secret"])


def test_endpoints_get_only_their_events_and_nothing_after_deletion(
    hooks: Hooks, transport: RecordingTransport
) -> None:
    hook = hooks.subscribe("user.deleted")
    body = sign_in(hooks.client, transport, "ada@example.com")
    hooks.admin("DELETE", f"/users/{body['user']['id']}")
    eventually(lambda: len(hooks.receiver.received) == 1, "the user.deleted webhook")
    [payload] = hooks.receiver.verified(hook["secret"])
    assert payload["type"] == "user.deleted"
    assert payload["data"] == {"user_id": body["user"]["id"], "sessions_ended": 1}
    hooks.admin("DELETE", f"/webhooks/{hook['id']}")
    sign_in(hooks.client, transport, "bo@example.com")
    made = hooks.admin("GET", "/users", params={"email": "bo@"})["users"][0]
    hooks.admin("DELETE", f"/users/{made['id']}")
    events = hooks.admin("GET", "/audit", params={"event": "user.deleted"})["events"]
    assert len(events) == 2 and len(hooks.receiver.received) == 1
