"""Changing the address end to end: Latch as a uvicorn process over TCP, every mail through a
real SMTP server (aiosmtpd): the code to the new address, the notice to the old one, and a
taken address refused."""

from __future__ import annotations

import re
from pathlib import Path

import httpx

from tests.conftest import ROOT, TEST_ENV, mail_code, text_of
from tests.support.process import LatchProcess
from tests.support.smtp import SmtpSink

ADA, NEW, BOB = "ada@example.com", "countess@example.com", "bob@example.com"
CSRF = re.compile(r'name="csrf" value="([0-9a-f]{64})"')


def env(tmp_path: Path, sink: SmtpSink) -> dict[str, str]:
    return {
        **TEST_ENV,
        "DATA_DIR": str(tmp_path / "data"),
        "EMAIL_TEMPLATES_DIR": str(ROOT / "email_templates"),
        "SMTP_HOST": sink.host,
        "SMTP_PORT": str(sink.port),
        "SMTP_TLS": "none",
    }


def sign_in(url: str, sink: SmtpSink, email: str) -> httpx.Client:
    browser = httpx.Client(base_url=url, timeout=10)
    index = len(sink.messages_for(email))
    started = browser.post("/api/start", json={"email": email})
    assert started.status_code == 202, started.text
    code = mail_code(sink.wait_for(email, index=index))
    verified = browser.post(
        "/api/verify", json={"flow_id": started.json()["flow_id"], "code": code}
    )
    assert verified.status_code == 200, verified.text
    return browser


def post_page_form(browser: httpx.Client, path: str, fields: dict[str, str]) -> httpx.Response:
    """GET the page, POST its form back with the CSRF field (not following the redirect)."""
    page = browser.get(path)
    assert page.status_code == 200, page.text
    csrf = CSRF.search(page.text)
    assert csrf
    return browser.post(path, data={"csrf": csrf.group(1), **fields})


def test_change_of_address_over_tcp_and_smtp(tmp_path: Path) -> None:
    with SmtpSink() as sink, LatchProcess(env(tmp_path, sink), tmp_path / "run") as latch:
        bob = sign_in(latch.url, sink, BOB)
        ada = sign_in(latch.url, sink, ADA)
        ada_id = ada.get("/api/session").json()["user"]["id"]

        # A taken address: asked for like any other, refused when its code comes back.
        asked = post_page_form(ada, "/account/email", {"email": BOB})
        assert asked.status_code == 303
        code = mail_code(sink.wait_for(BOB, index=1))
        refused = post_page_form(ada, "/account/email/confirm", {"code": code})
        assert refused.status_code == 409
        assert ada.get("/api/session").json()["user"]["email"] == ADA

        # A free one: the code moves the account.
        asked = post_page_form(ada, "/account/email", {"email": NEW})
        assert asked.status_code == 303
        message = sink.wait_for(NEW)
        assert str(message["Subject"]) == "Confirm your new address for Latch"
        moved = post_page_form(ada, "/account/email/confirm", {"code": mail_code(message)})
        assert moved.status_code == 303
        account = ada.get(moved.headers["location"], follow_redirects=True)
        assert account.status_code == 200 and NEW in account.text

        notice = sink.wait_for(ADA, index=1)
        assert str(notice["Subject"]) == "The address of your Latch account was changed"
        assert "c•••@example.com" in text_of(notice)

        # The session went on, now with the new address on forward auth.
        check = ada.get("/auth/check")
        assert check.status_code == 200 and check.headers["x-latch-email"] == NEW
        again = sign_in(latch.url, sink, NEW)
        assert again.get("/api/session").json()["user"]["id"] == ada_id
        assert bob.get("/api/session").json()["user"]["email"] == BOB
        for browser in (ada, bob, again):
            browser.close()
