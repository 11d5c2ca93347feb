"""The "This wasn't me" link of a new-device notice, end to end: Latch as a uvicorn process
over TCP behind a trusted proxy (so each browser has its own network), mail through a real
SMTP server (aiosmtpd)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import ROOT, TEST_ENV, mail_code, text_of
from tests.support.process import LatchProcess
from tests.support.smtp import SmtpSink
from tests.support.wait import eventually

EMAIL = "ada@example.com"
LAPTOP = {
    "user-agent": "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
    "x-forwarded-for": "198.51.100.7",
}
PHONE = {
    "user-agent": "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15"
    " (KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1",
    "x-forwarded-for": "203.0.113.9",
}
CSRF = re.compile(r'name="csrf" value="([0-9a-f]{64})"')


@pytest.fixture
def latch(tmp_path: Path) -> Iterator[tuple[LatchProcess, SmtpSink]]:
    with SmtpSink() as sink:
        env = {
            **TEST_ENV,
            "DATA_DIR": str(tmp_path / "data"),
            "EMAIL_TEMPLATES_DIR": str(ROOT / "email_templates"),
            "SMTP_HOST": sink.host,
            "SMTP_PORT": str(sink.port),
            "SMTP_TLS": "none",
            "LOG_LEVEL": "DEBUG",
            # The test stands in for the proxy: X-Forwarded-For gives each browser a network.
            "TRUSTED_PROXIES": "127.0.0.1",
        }
        with LatchProcess(env, tmp_path / "run") as process:
            yield process, sink


def sign_in(url: str, sink: SmtpSink, headers: dict[str, str], index: int) -> httpx.Client:
    """A browser with these headers, signed in by code (its mail is the index-th to EMAIL)."""
    browser = httpx.Client(base_url=url, headers=headers, timeout=10)
    started = browser.post("/api/start", json={"email": EMAIL})
    assert started.status_code == 202, started.text
    code = mail_code(sink.wait_for(EMAIL, index=index))
    verified = browser.post(
        "/api/verify", json={"flow_id": started.json()["flow_id"], "code": code}
    )
    assert verified.status_code == 200, verified.text
    return browser


def test_not_me_from_the_notice_signs_that_session_out_once(
    latch: tuple[LatchProcess, SmtpSink],
) -> None:
    process, sink = latch
    laptop = sign_in(process.url, sink, LAPTOP, 0)  # the first sign-in: no notice
    phone = sign_in(process.url, sink, PHONE, 1)
    notice = sink.wait_for(EMAIL, index=2)
    assert str(notice["Subject"]).startswith("New sign-in to")
    text = text_of(notice)
    assert "Safari on iPhone" in text and "203.0.113.9" in text
    match = re.search(r"(http://\S+/account/not-me)\?t=(\S+)", text)
    assert match, text
    page_url, token = match.groups()

    # What a mail scanner does: fetch the link (twice). Nothing changes.
    with httpx.Client(timeout=10) as scanner:
        for _ in range(2):
            page = scanner.get(page_url, params={"t": token})
            assert page.status_code == 200
            assert "Safari on iPhone" in page.text and "203.0.113.9" in page.text
    assert phone.get("/auth/check").status_code == 200

    with httpx.Client(timeout=10, headers={"user-agent": "Person's mail app"}) as person:
        page = person.get(page_url, params={"t": token})
        csrf = CSRF.search(page.text)
        assert csrf
        form = {"csrf": csrf.group(1), "t": token, "all": "0"}
        done = person.post(page_url, data=form)
        assert done.status_code == 200, done.text
        assert "second factor" in done.text
        # The phone's session ends on forward auth (within the cache's 1 s staleness, not timed
        # here: no timed assertions); the laptop's does not.
        eventually(lambda: phone.get("/auth/check").status_code == 401, "phone refused")
        assert laptop.get("/auth/check").status_code == 200
        # Single use: the link is spent.
        again = person.post(page_url, data={**form, "all": "1"})
        assert again.status_code == 409
        assert laptop.get("/auth/check").status_code == 200
        assert person.get(page_url, params={"t": token}).status_code == 409

    laptop.close()
    phone.close()
    process.terminate()
    output = process.output()
    assert "not-me" in output  # the access log saw the path...
    assert token not in output and token.rsplit(".", 1)[1] not in output  # ...never the token


def test_not_me_everywhere_ends_every_session(latch: tuple[LatchProcess, SmtpSink]) -> None:
    process, sink = latch
    laptop = sign_in(process.url, sink, LAPTOP, 0)
    phone = sign_in(process.url, sink, PHONE, 1)
    match = re.search(r"/account/not-me\?t=(\S+)", text_of(sink.wait_for(EMAIL, index=2)))
    assert match
    with httpx.Client(base_url=process.url, timeout=10) as person:
        page = person.get("/account/not-me", params={"t": match.group(1)})
        csrf = CSRF.search(page.text)
        assert csrf
        form = {"csrf": csrf.group(1), "t": match.group(1), "all": "1"}
        assert person.post("/account/not-me", data=form).status_code == 200
    for browser in (laptop, phone):
        eventually(lambda: browser.get("/auth/check").status_code == 401, "refused")  # noqa: B023
        browser.close()


def test_a_forged_not_me_link_changes_nothing(latch: tuple[LatchProcess, SmtpSink]) -> None:
    process, _ = latch
    with httpx.Client(base_url=process.url, timeout=10) as client:
        assert client.get("/account/not-me", params={"t": "WyJ4Il0.Zm9v.YmFy"}).status_code == 400
        assert client.get("/account/not-me").status_code == 400
