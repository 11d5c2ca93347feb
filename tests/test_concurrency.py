"""Racing right answers on a real SQLite file: exactly one wins, the others get 409."""

from __future__ import annotations

import threading
from collections import Counter
from contextlib import ExitStack

from starlette.testclient import TestClient

from service.app import create_app
from tests.conftest import (
    BASE_URL,
    FakeClock,
    RecordingTransport,
    SettingsFactory,
    mail_code,
    start,
)


def test_twenty_concurrent_verifications_of_one_code_give_exactly_one_success(
    make_settings: SettingsFactory, clock: FakeClock, transport: RecordingTransport
) -> None:
    settings = make_settings()
    # Four app instances = four connections to one file, each with its own event loop thread:
    # real concurrency between SQLite connections, as between processes.
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
        lock = threading.Lock()

        def verify(i: int) -> None:
            barrier.wait()
            response = clients[i % 4].post(
                "/api/verify", json={"flow_id": flow["flow_id"], "code": code}
            )
            with lock:
                statuses.append(response.status_code)

        threads = [threading.Thread(target=verify, args=(i,)) for i in range(20)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
    assert Counter(statuses) == Counter({200: 1, 409: 19})
