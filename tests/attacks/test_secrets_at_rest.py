"""The database holds hashes only: no code, link secret or link token in the file."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

from starlette.testclient import TestClient

from service.web.state import app_state_of
from tests.conftest import RecordingTransport, mail_code, mail_token, start


def test_database_file_holds_no_plaintext_code_or_link_token(
    client: TestClient, transport: RecordingTransport, tmp_path: Path
) -> None:
    start(client, "bob@example.com")
    message = transport.wait_for("bob@example.com")
    code, token = mail_code(message), mail_token(message)
    _, secret = app_state_of(client).login.links.loads(token, max_age=600)
    data_dir = tmp_path / "data"
    raw = b"".join(p.read_bytes() for p in data_dir.glob("latch.db*"))
    assert raw, "the database file was not found"
    assert token.encode() not in raw
    assert secret.encode() not in raw
    # A 6-digit run may occur by chance inside a hex digest; outside one it must never appear.
    conn = sqlite3.connect(data_dir / "latch.db")
    hexdigest = re.compile(r"^[0-9a-f]{32}$|^[0-9a-f]{64}$")
    for (table,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'"):
        for row in conn.execute(f"SELECT * FROM {table}"):  # noqa: S608
            for cell in row:
                if isinstance(cell, str) and code in cell:
                    assert hexdigest.match(cell), f"code found in {table}: {cell!r}"
    flow = conn.execute("SELECT code_hash, link_hash FROM login_flows").fetchone()
    assert len(flow[0]) == 64 and len(flow[1]) == 64
    conn.close()
