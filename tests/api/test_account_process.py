"""Deleting an account, end to end: Latch as a uvicorn process over TCP with real SMTP; after
the deletion nothing of the person is left in the SQLite file but their address-free audit
events, and the address starts over."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import httpx

from tests.conftest import ROOT, TEST_ENV, mail_code
from tests.support.process import LatchProcess
from tests.support.smtp import SmtpSink

EMAIL = "grace.hopper@example.com"


def env(tmp_path: Path, sink: SmtpSink) -> dict[str, str]:
    return {
        **TEST_ENV,
        "DATA_DIR": str(tmp_path / "data"),
        "EMAIL_TEMPLATES_DIR": str(ROOT / "email_templates"),
        "SMTP_HOST": sink.host,
        "SMTP_PORT": str(sink.port),
        "SMTP_TLS": "none",
    }


def sign_in(url: str, sink: SmtpSink, index: int, agent: str) -> httpx.Client:
    browser = httpx.Client(base_url=url, headers={"user-agent": agent}, timeout=10)
    started = browser.post("/api/start", json={"email": EMAIL})
    assert started.status_code == 202, started.text
    code = mail_code(sink.wait_for(EMAIL, index=index))
    verified = browser.post(
        "/api/verify", json={"flow_id": started.json()["flow_id"], "code": code}
    )
    assert verified.status_code == 200, verified.text
    return browser


def test_a_deleted_account_leaves_nothing_in_the_database_file_and_can_start_over(
    tmp_path: Path,
) -> None:
    with SmtpSink() as sink:
        with LatchProcess(env(tmp_path, sink), tmp_path / "run") as latch:
            laptop = sign_in(latch.url, sink, 0, "Firefox/128.0 (X11; Linux x86_64)")
            phone = sign_in(latch.url, sink, 1, "Safari/604.1 (iPhone)")
            sink.wait_for(EMAIL, index=2)  # the phone's new-device notice
            user_id = laptop.get("/api/session").json()["user"]["id"]
            session_ids = [b.get("/api/session").json()["session"]["id"] for b in (laptop, phone)]
            phone_refresh = phone.cookies["latch_refresh"]
            deleted = laptop.request("DELETE", "/api/account", json={"confirm": EMAIL})
            assert deleted.status_code == 204
            # Every session is dead on this instance at once: forward auth, refresh.
            assert phone.get("/auth/check").status_code == 401
            assert phone.post("/api/refresh").status_code == 401
            with httpx.Client(base_url=latch.url, timeout=10) as other:
                other.cookies.set("latch_refresh", phone_refresh)
                assert other.get("/refresh", follow_redirects=False).status_code == 303
            laptop.close()
            phone.close()
            latch.terminate()

        files = list((tmp_path / "data").glob("latch.db*"))
        assert files
        for path in files:  # the address nowhere in the files, free pages included
            assert EMAIL.encode() not in path.read_bytes(), path.name
        # The ids only in the audit log, which keeps the events (by id) of a deleted person.
        with sqlite3.connect(tmp_path / "data" / "latch.db") as database:
            dump = [line for line in database.iterdump() if '"audit_events"' not in line]
        database.close()
        for trace in (user_id, *session_ids):
            assert not [line for line in dump if trace in line], trace

        with LatchProcess(env(tmp_path, sink), tmp_path / "run2") as latch:
            again = sign_in(latch.url, sink, 3, "Firefox/128.0 (X11; Linux x86_64)")
            assert again.get("/api/session").json()["user"]["id"] != user_id
            again.close()
