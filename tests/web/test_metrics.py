"""/metrics counts what happened; log lines are JSON with the event and request id."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator

import pytest
from starlette.testclient import TestClient

from service.app import create_app
from service.logs import JsonFormatter, request_id
from tests.conftest import BASE_URL, FakeClock, RecordingTransport, SettingsFactory, sign_in


@pytest.fixture
def client(
    make_settings: SettingsFactory, transport: RecordingTransport, clock: FakeClock
) -> Iterator[TestClient]:
    """A client on loopback: /metrics is served to METRICS_ALLOW only (loopback by default)."""
    app = create_app(make_settings(), mail_transport=transport, clock=clock)
    with TestClient(app, base_url=BASE_URL, client=("127.0.0.1", 50000)) as c:
        yield c


def _counter(text: str, event: str) -> float:
    match = re.search(rf'^latch_events_total{{event="{re.escape(event)}"}} (\S+)$', text, re.M)
    assert match, f"no counter for {event}"
    return float(match.group(1))


def test_metrics_count_sign_ins_mails_and_failures(
    client: TestClient, transport: RecordingTransport
) -> None:
    for i in range(3):
        sign_in(client, transport, f"user{i}@example.com")
    client.post("/api/verify", json={"flow_id": "0" * 32, "code": "123456"})
    text = client.get("/metrics").text
    assert _counter(text, "login.started") == 3
    assert _counter(text, "login.succeeded") == 3
    assert _counter(text, "mail.sent") == 3
    assert _counter(text, "login.failed") == 1
    assert "latch_mail_queue_depth 0.0" in text
    assert 'latch_request_seconds_count{method="POST",route="/api/verify",status="200"} 3.0' in text


def test_log_lines_are_json_with_event_and_request_id() -> None:
    record = logging.LogRecord(
        "latch.flows",
        logging.INFO,
        __file__,
        1,
        "login.started flow=%s to=%s",
        ("abcd1234", "a•••@x.com"),
        None,
    )
    token = request_id.set("r-1")
    try:
        line = json.loads(JsonFormatter().format(record))
    finally:
        request_id.reset(token)
    assert line["event"] == "login.started" and line["request_id"] == "r-1"
    assert line["msg"] == "login.started flow=abcd1234 to=a•••@x.com"


def test_access_log_has_the_path_but_never_the_query(
    client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="latch.access"):
        client.get("/login/link?t=SECRET-TOKEN-VALUE")
    lines = [r.getMessage() for r in caplog.records if r.name == "latch.access"]
    assert any("/login/link" in line for line in lines)
    assert not any("SECRET-TOKEN-VALUE" in line for line in lines)


def test_logged_exceptions_keep_where_but_not_their_message() -> None:
    try:
        raise ValueError("the code is 123456")
    except ValueError as e:
        record = logging.LogRecord(
            "latch", logging.ERROR, __file__, 1, "boom", (), (type(e), e, e.__traceback__)
        )
    line = json.loads(JsonFormatter().format(record))
    assert line["exc_type"] == "ValueError"
    assert any("test_metrics.py" in frame for frame in line["exc_where"])
    assert "123456" not in json.dumps(line)


def test_refresh_is_counted_as_session_refreshed(
    client: TestClient, transport: RecordingTransport
) -> None:
    sign_in(client, transport, "r@example.com")
    r = client.post("/api/refresh", json={})
    assert r.status_code == 200, r.text
    assert _counter(client.get("/metrics").text, "session.refreshed") == 1
