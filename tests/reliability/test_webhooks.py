"""Webhooks from Latch as real processes: an event survives a SIGKILL between the action and its
delivery, and two instances on one PostgreSQL database send each event once."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import ROOT, TEST_ENV, mail_code
from tests.support.postgres import PostgresCluster
from tests.support.process import LatchProcess
from tests.support.receiver import Receiver
from tests.support.smtp import SmtpSink
from tests.support.wait import eventually

SECRET_KEY = "webhook-process-test-secret-key-0123456789"


def _env(data: Path, sink: SmtpSink, **extra: str) -> dict[str, str]:
    return {
        **TEST_ENV,
        "DATA_DIR": str(data),
        "SECRET_KEY": SECRET_KEY,  # shared: every instance opens the sealed webhook secrets
        "SMTP_HOST": sink.host,
        "SMTP_PORT": str(sink.port),
        "SMTP_TLS": "none",
        **extra,
    }


def _admin_key(env: dict[str, str]) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "service", "admin-keys", "create", "test", "--json"],
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), **env},
        cwd=Path(env["DATA_DIR"]).parent,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    key: str = json.loads(done.stdout)["key"]
    return key


def _subscribe(latch: LatchProcess, key: str, url: str) -> str:
    response = httpx.post(
        f"{latch.url}/admin/api/webhooks",
        json={"url": url, "events": ["login.succeeded"]},
        headers={"Authorization": f"Bearer {key}"},
        timeout=10,
    )
    assert response.status_code == 201, response.text
    secret: str = response.json()["secret"]
    return secret


def _sign_in(latch: LatchProcess, sink: SmtpSink, email: str) -> dict[str, Any]:
    with httpx.Client(base_url=latch.url, timeout=10) as client:
        flow = client.post("/api/start", json={"email": email})
        assert flow.status_code == 202, flow.text
        code = mail_code(sink.wait_for(email))
        done = client.post("/api/verify", json={"flow_id": flow.json()["flow_id"], "code": code})
        assert done.status_code == 200, done.text
        body: dict[str, Any] = done.json()
        return body


def test_an_event_survives_sigkill_between_the_action_and_its_delivery(tmp_path: Path) -> None:
    with SmtpSink() as sink, Receiver() as receiver:
        # The first process looks at its outbox once, at start, and then not for an hour: the
        # event it records is still undelivered when it is killed.
        asleep = _env(tmp_path / "data", sink, WEBHOOK_POLL_INTERVAL="3600")
        key = _admin_key(asleep)
        with LatchProcess(asleep, tmp_path) as first:
            secret = _subscribe(first, key, receiver.url)
            body = _sign_in(first, sink, "kai@example.com")
            first.kill()  # SIGKILL: no shutdown, no drain
        assert receiver.received == []
        awake = _env(tmp_path / "data", sink, WEBHOOK_POLL_INTERVAL="0.05")
        with LatchProcess(awake, tmp_path):
            eventually(lambda: receiver.received, "the event, delivered after the restart")
        [payload] = receiver.verified(secret)
        assert payload["type"] == "login.succeeded"
        assert payload["data"]["session_id"] == body["session"]["id"]


@pytest.mark.postgres
def test_two_instances_on_postgresql_send_each_event_once(
    tmp_path: Path, pg_cluster: PostgresCluster
) -> None:
    url = pg_cluster.create_database()
    with SmtpSink() as sink, Receiver() as receiver:
        envs = [
            _env(tmp_path / name, sink, DATABASE_URL=url, WEBHOOK_POLL_INTERVAL="0.02")
            for name in ("a", "b")
        ]
        key = _admin_key(envs[0])
        with (
            LatchProcess(envs[0], tmp_path / "a") as a,
            LatchProcess(envs[1], tmp_path / "b") as b,
        ):
            secret = _subscribe(a, key, receiver.url)
            sessions = {
                _sign_in((a, b)[i % 2], sink, f"p{i}@example.com")["session"]["id"]
                for i in range(24)
            }
            eventually(lambda: len(receiver.received) >= 24, "24 webhooks")
            # Each message was claimed once: its attempts are counted when it is leased.
            delivered = eventually(lambda: _all_delivered(b, key, 24), "24 deliveries recorded")
            assert [d["attempts"] for d in delivered] == [1] * 24
        ids = Counter(receiver.ids())
        assert len(ids) == 24 and set(ids.values()) == {1}, ids
        assert {p["data"]["session_id"] for p in receiver.verified(secret)} == sessions


def _all_delivered(latch: LatchProcess, key: str, n: int) -> list[dict[str, Any]] | None:
    headers = {"Authorization": f"Bearer {key}"}
    [hook] = httpx.get(f"{latch.url}/admin/api/webhooks", headers=headers).json()["webhooks"]
    page = httpx.get(
        f"{latch.url}/admin/api/webhooks/{hook['id']}/deliveries",
        params={"limit": "100"},
        headers=headers,
    ).json()["deliveries"]
    done = [d for d in page if d["status"] == "delivered"]
    return done if len(done) == n else None
