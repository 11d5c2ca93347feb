"""The database holds hashes and sealed secrets only: no code, link secret, link token, TOTP
secret or recovery code in the file (nor, for the factors, in a log, a page or a mail)."""

from __future__ import annotations

import logging
import re
import sqlite3
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from service.web.state import app_state_of
from tests.conftest import FakeClock, RecordingTransport, mail_code, mail_token, sign_in, start
from tests.support.otp import next_signin_mail, oathtool, signin_mails


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


def test_authenticator_secret_and_recovery_codes_never_rest_in_clear(
    client: TestClient,
    transport: RecordingTransport,
    clock: FakeClock,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """After enrolment the TOTP secret is in no log line, no database file, no page, no JSON
    answer and no error; recovery codes are in none but the answer that issued them."""
    with caplog.at_level(logging.DEBUG):
        sign_in(client, transport, "gail@example.com")
        begun = client.post("/api/factors/totp", json={}).json()
        secret = begun["secret"]
        wrong = client.post("/api/factors/totp/confirm", json={"code": "000000"})
        confirmed = client.post(
            "/api/factors/totp/confirm", json={"code": oathtool(secret, int(clock()))}
        )
        codes = confirmed.json()["recovery_codes"]
        clock.advance(30)
        seen = [wrong.text]
        for path in ("/account", "/account/security", "/api/factors", "/api/session"):
            seen.append(client.get(path).text)
        seen.append(client.post("/api/factors/totp", json={}).text)  # already set up: an error
        seen.append(client.post("/api/step-up", json={"method": "totp", "code": "1"}).text)
        # A sign-in with the app, and one with a recovery code (which mails a notice).
        for method, answer in (
            ("totp", oathtool(secret, int(clock()))),
            ("recovery_code", codes[0]),
        ):
            client.cookies.clear()
            before = len(signin_mails(transport, "gail@example.com"))
            flow = start(client, "gail@example.com")
            code = mail_code(next_signin_mail(transport, "gail@example.com", before))
            client.post("/api/verify", json={"flow_id": flow["flow_id"], "code": code})
            done = client.post("/api/second-factor", json={"method": method, "code": answer})
            assert done.status_code == 200, done.text
            seen.append(done.text)
    forms = [secret, secret.lower(), " ".join(secret[i : i + 4] for i in range(0, 32, 4))]
    raw_codes = [c for code in codes for c in (code, code.replace("-", ""))]
    raw = b"".join(p.read_bytes() for p in (tmp_path / "data").glob("latch.db*"))
    for value in forms + raw_codes:
        assert value.encode() not in raw, "a factor secret is in the database file"
        assert value not in caplog.text, "a factor secret reached the log"
        for text in seen:
            assert value not in text, "a factor secret was shown after enrolment"
    for message in transport.messages:
        for value in forms + raw_codes:
            assert value not in message.as_string(), "a factor secret was mailed"
