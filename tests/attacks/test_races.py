"""Races on PostgreSQL between two Latch instances sharing one database.

Each instance is an app of its own with its own connection pool and event-loop thread, so the
requests really overlap in the database, as behind a load balancer. The limits must be exact
(count-then-insert under one lock), and two sign-ins of one address at the same moment must end
cleanly (one wins, the other finds its flow ended), never in a deadlock answered with a 500.
"""

from __future__ import annotations

import asyncio
import functools
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any

import httpx2
import pytest
from starlette.testclient import TestClient

from service import db
from service.app import create_app
from service.errors import UnavailableError
from tests.conftest import BASE_URL, FakeClock, RecordingTransport, SettingsFactory, mail_code
from tests.support.db import run_on, wrong
from tests.support.postgres import PostgresCluster

pytestmark = pytest.mark.postgres


@dataclass
class Instances:
    """Two running apps on one database; `pick(i)` alternates between them."""

    a: TestClient
    b: TestClient
    url: str

    def pick(self, i: int) -> TestClient:
        return self.a if i % 2 else self.b


@pytest.fixture
def instances(
    pg_cluster: PostgresCluster,
    make_settings: SettingsFactory,
    clock: FakeClock,
    transport: RecordingTransport,
) -> Callable[..., Any]:
    """`with instances(LIMIT_X="1") as pair:` — two apps with those settings, one database."""
    from contextlib import contextmanager

    @contextmanager
    def make(**env: str) -> Iterator[Instances]:
        url = pg_cluster.create_database()
        settings = make_settings(DATABASE_URL=url, **env)
        with ExitStack() as stack:
            a, b = (
                stack.enter_context(
                    TestClient(
                        create_app(settings, mail_transport=transport, clock=clock),
                        base_url=BASE_URL,
                        # A 500 is an answer to count, not an exception in the client thread.
                        raise_server_exceptions=False,
                    )
                )
                for _ in range(2)
            )
            yield Instances(a, b, url)

    return make


def together(n: int, request: Callable[[int], httpx2.Response]) -> list[httpx2.Response]:
    """Send n requests from n threads released at the same moment."""
    barrier = threading.Barrier(n)
    responses: list[httpx2.Response | None] = [None] * n

    def one(i: int) -> None:
        barrier.wait()
        responses[i] = request(i)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert all(r is not None for r in responses), "a request did not finish"
    return [r for r in responses if r is not None]


def _answer(response: httpx2.Response) -> tuple[int, str]:
    """(status, error code), or "ok" for a success."""
    if response.status_code < 400:
        return response.status_code, "ok"
    try:
        return response.status_code, str(response.json()["error"]["code"])
    except ValueError:
        return response.status_code, response.text[:40]


def _flow_id(response: httpx2.Response) -> str:
    assert response.status_code == 202, response.text
    flow_id: str = response.json()["flow_id"]
    return flow_id


def test_sixty_concurrent_starts_from_one_ip_over_two_instances_accept_exactly_thirty(
    instances: Callable[..., Any], caplog: pytest.LogCaptureFixture
) -> None:
    with instances(LIMIT_STARTS_PER_IP="30") as pair:
        responses = together(
            60, lambda i: pair.pick(i).post("/api/start", json={"email": f"s{i}@example.com"})
        )
    statuses = Counter(r.status_code for r in responses)
    assert statuses == Counter({202: 30, 429: 30}), statuses
    refused = [r for r in responses if r.status_code == 429]
    assert {r.json()["error"]["code"] for r in refused} == {"rate_limited"}
    assert all(int(r.headers["Retry-After"]) >= 1 for r in refused)
    assert sum("limit.hit what=start" in m for m in caplog.messages) == 30
    assert not [m for m in caplog.messages if "postgresql transaction" in m]


def _attempts(flow_ids: list[str]) -> db.UseCase[int]:
    names = {f"f{i}": flow_id for i, flow_id in enumerate(flow_ids)}
    rows = yield db.Q(
        "SELECT SUM(attempts) AS n FROM login_flows WHERE id IN"
        f" ({', '.join(':' + n for n in names)})",
        names,
    )
    return int(rows[0]["n"])


def test_concurrent_wrong_codes_over_two_instances_stop_at_exactly_the_address_limit(
    instances: Callable[..., Any], transport: RecordingTransport, caplog: pytest.LogCaptureFixture
) -> None:
    email = "target@example.com"
    with instances(LIMIT_ADDRESS_FAILURES="10") as pair:
        # Six flows of five tries each: thirty guesses, three times the address's limit.
        flow_ids = [_flow_id(pair.a.post("/api/start", json={"email": email})) for _ in range(6)]
        codes = [mail_code(transport.wait_for(email, index=i)) for i in range(6)]
        responses = together(
            30,
            lambda i: pair.pick(i).post(
                "/api/verify", json={"flow_id": flow_ids[i % 6], "code": wrong(codes[i % 6])}
            ),
        )
        # The owner's right code is refused too while typed codes are locked (links still work).
        later = pair.b.post("/api/verify", json={"flow_id": flow_ids[0], "code": codes[0]})
        attempts = run_on(pair.url, _attempts(flow_ids))
    answers = Counter(_answer(r) for r in responses)
    assert answers == Counter({(400, "invalid_code"): 10, (429, "codes_locked"): 20}), answers
    assert attempts == 10
    assert later.status_code == 429
    assert later.json()["error"]["code"] == "codes_locked"
    assert sum("login.failed how=code reason=codes_locked" in m for m in caplog.messages) == 21
    assert not [m for m in caplog.messages if "postgresql transaction" in m]


def _verify(pair: Instances, flow_ids: list[str], codes: list[str], i: int) -> httpx2.Response:
    return pair.pick(i).post("/api/verify", json={"flow_id": flow_ids[i], "code": codes[i]})


def test_two_flows_of_one_address_verified_at_once_never_answer_500(
    instances: Callable[..., Any], transport: RecordingTransport, caplog: pytest.LogCaptureFixture
) -> None:
    outcomes: Counter[tuple[tuple[int, str], ...]] = Counter()
    with instances() as pair:
        for round_ in range(30):
            # Each address twice: the first round creates the user, the second finds it.
            email = f"pair{round_ // 2}@example.com"
            before = len([m for m in transport.messages if str(m["To"]) == email])
            flow_ids = [
                _flow_id(c.post("/api/start", json={"email": email}))
                for c in (pair.pick(0), pair.pick(1))
            ]
            codes = [mail_code(transport.wait_for(email, index=before + i)) for i in range(2)]
            verify = functools.partial(_verify, pair, flow_ids, codes)
            responses = together(2, verify)
            outcomes[tuple(sorted(_answer(r) for r in responses))] += 1
    # Signing in with one flow ends the address's other flows: one success, one "already used".
    assert outcomes == Counter({((200, "ok"), (409, "flow_used")): 30}), outcomes
    # The lock order prevents the deadlock; the retry (below) is not what saves these.
    assert not [m for m in caplog.messages if "postgresql transaction" in m]


# --- a deadlock that can still happen is retried, never a 500 ---------------------------------


def _crossing(first: int, second: int, runs: list[int]) -> db.UseCase[int]:
    """Take two advisory locks in the given order; on its first run, wait until the other
    transaction holds `second`, so that two of these in opposite orders surely deadlock."""
    runs.append(first)
    yield db.Q("SELECT pg_advisory_xact_lock(:k)", {"k": first})
    if runs.count(first) == 1:
        for _ in range(2000):
            rows = yield db.Q(
                "SELECT COUNT(*) AS n FROM pg_locks WHERE locktype = 'advisory' AND granted"
                " AND classid = 0 AND objid = :k",
                {"k": second},
            )
            if rows[0]["n"]:
                break
            yield db.Q("SELECT pg_sleep(0.005)")
    yield db.Q("SELECT pg_advisory_xact_lock(:k)", {"k": second})
    return first


def _run_crossed(url: str, make: Callable[[int, int, list[int]], db.UseCase[int]]) -> Any:
    runs: list[int] = []

    async def main() -> list[int | BaseException]:
        databases = [db.open_database(url) for _ in range(2)]
        for d in databases:
            await d.connect()
        try:
            return list(
                await asyncio.gather(
                    databases[0].run(make(7001, 7002, runs)),
                    databases[1].run(make(7002, 7001, runs)),
                    return_exceptions=True,
                )
            )
        finally:
            for d in databases:
                await d.disconnect()

    return asyncio.run(main()), runs


def test_a_deadlocked_write_use_case_is_run_again_and_both_complete(
    pg_cluster: PostgresCluster, caplog: pytest.LogCaptureFixture
) -> None:
    results, runs = _run_crossed(pg_cluster.create_database(), db.replayable(_crossing))
    assert sorted(results) == [7001, 7002]
    assert len(runs) == 3  # both ran once, the deadlock's victim ran a second time
    assert any("retried" in m and "DeadlockDetectedError" in m for m in caplog.messages)


def test_a_deadlock_in_a_use_case_that_cannot_be_rerun_is_a_503_not_a_500(
    pg_cluster: PostgresCluster,
) -> None:
    results, runs = _run_crossed(pg_cluster.create_database(), _crossing)
    failed = [r for r in results if isinstance(r, BaseException)]
    assert len(runs) == 2
    assert len(failed) == 1 and isinstance(failed[0], UnavailableError), results
    assert failed[0].status == 503


def _against_the_order() -> db.UseCase[None]:
    yield db.address_lock("x@example.com")
    yield db.ip_lock("192.0.2.1")


def test_a_lock_taken_against_the_lock_order_is_refused(pg_cluster: PostgresCluster) -> None:
    with pytest.raises(RuntimeError, match="lock") as refused:
        run_on(pg_cluster.create_database(), _against_the_order())
    assert "x@example.com" not in str(refused.value)
