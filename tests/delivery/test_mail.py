"""The mailer on its own: what the mail says, how SMTP failures are classified, the queue."""

from __future__ import annotations

import asyncio
import re
import threading
import time
from collections.abc import Callable, Sequence
from email.message import EmailMessage
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from service.app import create_app
from service.delivery.mail import MailJob, Renderer
from service.errors import ConfigError
from service.settings import Settings
from service.web.state import app_state_of
from tests.conftest import BASE_URL, FakeClock, RecordingTransport, start
from tests.support.mail import flow_view, wait_mail_status, write_templates
from tests.support.smtp import (
    html_part,
    text_part,
)
from tests.support.wait import eventually

MakeSettings = Callable[..., Settings]
LINK = f"{BASE_URL}/login/link?t=eyJmIjoiYWJjIn0.ZmQ1.c2lnbmF0dXJl"


def _job(**overrides: Any) -> MailJob:
    fields: dict[str, Any] = {
        "flow_id": "f" * 32,
        "seq": 1,
        "to": "ada@example.com",
        "code": "123456",
        "link": LINK,
        "expires_at": int(time.time()) + 600,
        "ip": "203.0.113.9",
        "user_agent": "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
    }
    fields.update(overrides)
    return MailJob(**fields)


def _header_block(message: EmailMessage) -> str:
    return message.as_bytes().split(b"\n\n", 1)[0].decode()


# --- what the mail says -----------------------------------------------------------------------


def test_sign_in_mail_is_multipart_alternative_with_code_and_link_in_both_parts(
    make_settings: MakeSettings,
) -> None:
    message = Renderer(make_settings()).render(_job())
    assert message.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in message.iter_parts()] == ["text/plain", "text/html"]
    text, html = text_part(message), html_part(message)
    assert "123 456" in text and "123456" in html
    assert LINK in text and f'href="{LINK}"' in html
    assert "ignore" in text and "10 minutes" in text
    assert message["To"] == "ada@example.com"
    assert message["Subject"] == "Sign in to Latch"


def test_sign_in_mail_has_message_id_date_and_auto_submitted(make_settings: MakeSettings) -> None:
    message = Renderer(make_settings()).render(_job())
    assert re.fullmatch(r"<[^<>@\s]+@localhost>", str(message["Message-ID"]))
    assert abs(parsedate_to_datetime(str(message["Date"])).timestamp() - time.time()) < 300
    # RFC 3834: auto-responders and vacation replies must not answer this mail.
    assert message["Auto-Submitted"] == "auto-generated"


def test_two_mails_get_different_message_ids(make_settings: MakeSettings) -> None:
    renderer = Renderer(make_settings())
    assert renderer.render(_job())["Message-ID"] != renderer.render(_job())["Message-ID"]


def test_subject_and_sender_never_carry_line_breaks(
    make_settings: MakeSettings, tmp_path: Path
) -> None:
    # An operator's subject template that spans lines, and an APP_NAME with a header in it.
    templates = write_templates(
        tmp_path / "templates",
        subject="Sign in\r\nBcc: victim@example.net\n{{ app_name }}\n",
        body="{{ code }} {{ link }}\n",
    )
    settings = make_settings(
        EMAIL_TEMPLATES_DIR=str(templates), APP_NAME="Latch\r\nX-Injected: yes"
    )
    message = Renderer(settings).render(_job())
    for name in ("Subject", "From"):
        assert "\r" not in str(message[name]) and "\n" not in str(message[name])
    headers = _header_block(message)
    assert not re.search(r"^(Bcc|X-Injected):", headers, re.MULTILINE | re.IGNORECASE)
    assert message["Bcc"] is None and message["X-Injected"] is None


@pytest.mark.parametrize("broken", ["missing", "syntax"])
def test_missing_or_malformed_template_refuses_to_start(
    make_settings: MakeSettings, tmp_path: Path, broken: str
) -> None:
    html = "<p>{{ code }</p>\n" if broken == "syntax" else None
    templates = write_templates(
        tmp_path / "templates", subject="Sign in\n", body="{{ code }}\n", html=html
    )
    with pytest.raises(ConfigError, match="EMAIL_TEMPLATES_DIR"):
        create_app(make_settings(EMAIL_TEMPLATES_DIR=str(templates)))


def test_mail_from_with_a_line_break_refuses_to_start(make_settings: MakeSettings) -> None:
    with pytest.raises(ConfigError, match="MAIL_FROM"):
        make_settings(MAIL_FROM="login@example.com\r\nBcc: victim@example.net")


def test_user_agent_cannot_add_lines_to_the_mail(make_settings: MakeSettings) -> None:
    job = _job(user_agent="Evil\r\nBcc: victim@example.net\r\n\r\nVisit http://evil.example")
    message = Renderer(make_settings()).render(job)
    assert message["Bcc"] is None
    assert "\nBcc:" not in text_part(message) and "evil.example" not in text_part(message)


# --- the queue --------------------------------------------------------------------------------


class GateTransport:
    """Holds every mail until the test opens the gate (a mail server that is slow today)."""

    def __init__(self) -> None:
        self.open = asyncio.Event()
        self.sent: list[EmailMessage] = []

    async def send(self, message: EmailMessage, *, sender: str, recipients: Sequence[str]) -> None:
        await self.open.wait()
        self.sent.append(message)


def test_mail_still_queued_after_stale_time_is_shown_as_not_delivered(
    make_settings: MakeSettings, clock: FakeClock
) -> None:
    gate = GateTransport()
    app = create_app(make_settings(MAIL_STALE_AFTER="120"), mail_transport=gate, clock=clock)
    with TestClient(app, base_url=BASE_URL) as client:
        flow_id = start(client, "ada@example.com")["flow_id"]
        assert flow_view(client, flow_id)["mail_status"] == "queued"
        clock.advance(120)
        assert flow_view(client, flow_id)["mail_status"] == "queued"
        clock.advance(1)
        assert flow_view(client, flow_id)["mail_status"] == "not_delivered"
        assert client.portal is not None
        client.portal.call(gate.open.set)
        assert wait_mail_status(client, flow_id, "sent")["state"] == "pending"
    assert len(gate.sent) == 1


def test_a_start_that_finds_the_queue_full_waits_for_a_place(
    make_settings: MakeSettings, clock: FakeClock
) -> None:
    gate = GateTransport()
    settings = make_settings(MAIL_QUEUE_SIZE="1", MAIL_QUEUE_WAIT="60")
    app = create_app(settings, mail_transport=gate, clock=clock)
    with TestClient(app, base_url=BASE_URL) as client:
        start(client, "ada@example.com")  # its mail holds the only place, stuck at the gate
        answers: list[int] = []
        second = threading.Thread(
            target=lambda: answers.append(
                client.post("/api/start", json={"email": "bob@example.com"}).status_code
            )
        )
        second.start()
        mailer = app_state_of(client).mailer
        # The second start is waiting in line for a place, not refused.
        eventually(lambda: len(mailer._waiters) == 1, "the second start to wait for a place")
        assert answers == []
        assert client.portal is not None
        client.portal.call(gate.open.set)
        second.join(30)
    assert answers == [202]
    assert len(gate.sent) == 2


def test_broken_template_fails_the_mail_and_ends_the_flow(
    make_settings: MakeSettings, clock: FakeClock, transport: RecordingTransport, tmp_path: Path
) -> None:
    templates = write_templates(
        tmp_path / "broken", subject="Sign in\n", body="{{ code }} {{ no_such_function() }}\n"
    )
    app = create_app(
        make_settings(EMAIL_TEMPLATES_DIR=str(templates)), mail_transport=transport, clock=clock
    )
    with TestClient(app, base_url=BASE_URL) as client:
        flow_id = start(client, "ada@example.com")["flow_id"]
        view = wait_mail_status(client, flow_id, "failed")
        assert view["state"] == "mail_failed"
    assert transport.messages == []
