"""The core behaviours on both backends (SQLite file and PostgreSQL), the CLI's migrate and
purge on PostgreSQL, and a PostgreSQL outage: 503 while it lasts, recovery without a restart."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from contextlib import ExitStack

from starlette.testclient import TestClient

from service import store
from service.app import create_app
from service.settings import Settings
from tests.conftest import (
    BASE_URL,
    ClientFactory,
    FakeClock,
    RecordingTransport,
    mail_code,
    start,
)
from tests.support.db import run_on, wrong


def test_wrong_codes_are_counted_and_the_sixth_try_is_refused(
    database_url: str, make_client: ClientFactory, transport: RecordingTransport
) -> None:
    with make_client(database_url=database_url) as client:
        flow = start(client, "bob@example.com")
        code = mail_code(transport.wait_for("bob@example.com"))
        tries = []
        for _ in range(5):
            response = client.post(
                "/api/verify", json={"flow_id": flow["flow_id"], "code": wrong(code)}
            )
            assert response.status_code == 400, response.text
            tries.append(response.json()["error"]["tries_left"])
        sixth = client.post("/api/verify", json={"flow_id": flow["flow_id"], "code": code})
    assert tries == [4, 3, 2, 1, 0]
    assert sixth.status_code == 410
    assert sixth.json()["error"]["code"] == "flow_dead"
    row = run_on(database_url, store.get_flow(flow["flow_id"]))
    assert row is not None and row["attempts"] == 5 and row["outcome"] == "too_many_attempts"


def test_twenty_concurrent_verifications_of_one_code_give_one_success(
    database_url: str,
    make_settings: Callable[..., Settings],
    clock: FakeClock,
    transport: RecordingTransport,
) -> None:
    settings = make_settings(DATABASE_URL=database_url)
    # Four app instances, each with its own event loop thread and its own connection (SQLite)
    # or pool (PostgreSQL): the verifications really overlap in the database.
    with ExitStack() as stack:
        clients = [
            stack.enter_context(
                TestClient(
                    create_app(settings, mail_transport=transport, clock=clock), base_url=BASE_URL
                )
            )
            for _ in range(4)
        ]
        flow = start(clients[0], "race@example.com")
        code = mail_code(transport.wait_for("race@example.com"))
        barrier = threading.Barrier(20)
        statuses: list[int] = []

        def verify(i: int) -> None:
            barrier.wait()
            response = clients[i % 4].post(
                "/api/verify", json={"flow_id": flow["flow_id"], "code": code}
            )
            statuses.append(response.status_code)

        threads = [threading.Thread(target=verify, args=(i,)) for i in range(20)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
    assert Counter(statuses) == Counter({200: 1, 409: 19})
    row = run_on(database_url, store.get_flow(flow["flow_id"]))
    assert row is not None and row["outcome"] == "signed_in"
