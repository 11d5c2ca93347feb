"""The operator's commands: admin-keys create|list|revoke, users disable|enable|delete, audit tail
(run as `python -m service …`, as an operator would)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from starlette.testclient import TestClient

from service import store
from tests.conftest import ROOT, TEST_ENV, ClientFactory, RecordingTransport, sign_in
from tests.support.db import run_on

EMAIL = "casey@example.com"
Cli = Callable[..., subprocess.CompletedProcess[str]]


def cli_in(data_dir: Path) -> Cli:
    def run(*args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
        env = {"PATH": "/usr/bin:/bin", **TEST_ENV, "DATA_DIR": str(data_dir)}
        done = subprocess.run(
            [sys.executable, "-m", "service", *args],
            env={**env, "PYTHONPATH": str(ROOT)},
            cwd=data_dir.parent,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert (done.returncode == 0) == ok, done.stderr
        return done

    return run


def _status(client: TestClient, key: str) -> int:
    headers = {"Authorization": f"Bearer {key}"}
    return client.get("/admin/api/users", headers=headers).status_code


def test_an_admin_key_is_shown_once_works_and_stops_working_when_revoked(
    make_client: ClientFactory, tmp_path: Path
) -> None:
    cli = cli_in(tmp_path / "data")
    made = json.loads(cli("admin-keys", "create", "deploy-bot", "--json").stdout)
    assert made["name"] == "deploy-bot" and made["key"].startswith("latch_admin_")
    cli("admin-keys", "create", "deploy-bot", ok=False)  # names are unique
    listed = cli("admin-keys", "list").stdout
    assert "deploy-bot\tlive" in listed and made["key"] not in listed
    with make_client() as client:
        assert _status(client, made["key"]) == 200
        cli("admin-keys", "revoke", "deploy-bot")
        assert _status(client, made["key"]) == 401
    # Only its hash was ever stored.
    db_file = (tmp_path / "data" / "latch.db").read_bytes()
    assert made["key"].encode() not in db_file


def test_users_disable_enable_delete_and_audit_tail(
    make_client: ClientFactory, transport: RecordingTransport, tmp_path: Path
) -> None:
    cli = cli_in(tmp_path / "data")
    with make_client() as client:
        signed = sign_in(client, transport, EMAIL)
        user_id = signed["user"]["id"]
        assert client.get("/auth/check").status_code == 200
        assert cli("users", "disable", EMAIL).stdout.startswith(f"disabled {user_id}")
        # Revoked in the database: this instance re-reads within a second.
        url = f"sqlite:///{tmp_path / 'data' / 'latch.db'}"
        assert run_on(url, store.session_owner(signed["session"]["id"], 0)) is None
        assert cli("users", "enable", EMAIL).stdout.startswith("enabled")
        cli("users", "delete", EMAIL)
        cli("users", "delete", EMAIL, ok=False)
    tail = cli("audit", "tail", "-n", "50").stdout.splitlines()
    events = [line.split()[1] for line in tail]
    assert events == [
        "user.created",
        "login.succeeded",
        "session.revoked",
        "user.disabled",
        "user.enabled",
        "user.deleted",
    ]
    assert all("actor=cli" in line for line in tail[2:])
    as_json = [json.loads(line) for line in cli("audit", "tail", "--json").stdout.splitlines()]
    assert [e["event"] for e in as_json] == events
    assert EMAIL not in "\n".join(tail)
