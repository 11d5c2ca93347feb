"""ALLOW_SIGNUP=false: operators create users; unknown addresses look the same from outside."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from starlette.testclient import TestClient

from service import store
from service.web.state import app_state_of
from tests.conftest import ClientFactory, RecordingTransport, SettingsFactory, mail_code, start
from tests.support.wait import eventually


def _mail_status(client: TestClient, flow_id: str) -> str:
    def left_the_queue() -> str:
        database = app_state_of(client).database
        row = client.portal.call(database.run, store.get_flow(flow_id))  # type: ignore[union-attr]
        return "" if row is None or row["mail_status"] == "queued" else str(row["mail_status"])

    return eventually(left_the_queue, "the mail to leave the queue")


def test_unknown_address_gets_the_same_answer_and_no_mail_and_no_account(
    make_client: ClientFactory, transport: RecordingTransport
) -> None:
    with make_client(ALLOW_SIGNUP="false") as client:
        response = client.post("/api/start", json={"email": "stranger@example.com"})
        assert response.status_code == 202
        assert set(response.json()) == {"flow_id", "expires_in", "resend_after"}
        flow_id = response.json()["flow_id"]
        assert _mail_status(client, flow_id) == "suppressed"
        assert transport.messages == []
        # A suppressed flow fails exactly as a wrong code does: a guess cannot create a user.
        response = client.post("/api/verify", json={"flow_id": flow_id, "code": "123456"})
        assert response.status_code == 400
        assert response.json()["error"]["code"] == "invalid_code"
        assert response.json()["error"]["tries_left"] == 4


def test_operator_added_user_can_sign_in(
    make_settings: SettingsFactory,
    make_client: ClientFactory,
    transport: RecordingTransport,
    tmp_path: Path,
) -> None:
    env = {"ALLOW_SIGNUP": "false"}
    settings = make_settings(**env)
    result = subprocess.run(
        [sys.executable, "-m", "service", "users", "add", "Carol@Example.com"],
        env={"DATA_DIR": str(settings.storage.data_dir), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert "created" in result.stdout
    with make_client(settings) as client:
        flow = start(client, "carol@example.com")
        code = mail_code(transport.wait_for("carol@example.com"))
        response = client.post("/api/verify", json={"flow_id": flow["flow_id"], "code": code})
        assert response.status_code == 200
        assert response.json()["user"]["email"] == "Carol@example.com"
