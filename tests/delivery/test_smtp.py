"""Sign-in over real SMTP: the app with its real SmtpTransport against aiosmtpd on loopback."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from starlette.testclient import TestClient

from service.app import create_app
from service.delivery.transports import SmtpTransport, Transport
from service.settings import Settings
from service.web.state import app_state_of
from tests.conftest import BASE_URL, mail_code, mail_token, start
from tests.support.mail import flow_view, wait_mail_status, write_templates
from tests.support.smtp import (
    SINK_LOGIN,
    HangingSmtpServer,
    SmtpSink,
    html_part,
    refused_port,
    smtp_settings,
    text_part,
    trusted_starttls,
)
from tests.support.wait import eventually

MakeSettings = Callable[..., Settings]
ADA = "ada@example.com"


@contextmanager
def running(settings: Settings, transport: Transport | None = None) -> Iterator[TestClient]:
    """The app with its lifespan running; the real SMTP transport unless one is given."""
    with TestClient(create_app(settings, mail_transport=transport), base_url=BASE_URL) as client:
        yield client


class TappedSmtp:
    """The real SmtpTransport, with every attempt recorded first (the test's own copy of the
    mail, so it can try the right code on a flow whose mail never arrived)."""

    def __init__(self, settings: Settings) -> None:
        self.inner = SmtpTransport(settings)
        self.attempts: list[EmailMessage] = []

    async def send(self, message: EmailMessage, *, sender: str, recipients: Sequence[str]) -> None:
        self.attempts.append(message)
        await self.inner.send(message, sender=sender, recipients=recipients)


def wait_queue_empty(client: TestClient) -> None:
    """Wait (bounded) until the mailer has finished every accepted mail."""
    eventually(lambda: app_state_of(client).mailer.depth == 0, "the mail queue to empty")


def verify_code(client: TestClient, flow_id: str, code: str) -> Any:
    """POST /api/verify."""
    return client.post("/api/verify", json={"flow_id": flow_id, "code": code})


def assert_signed_in(client: TestClient, email: str) -> None:
    """The session cookie now identifies `email`."""
    response = client.get("/api/session")
    assert response.status_code == 200, response.text
    assert response.json()["user"]["email"] == email


# --- delivery and sign-in ---------------------------------------------------------------------


def test_code_from_a_real_mail_over_plain_smtp_signs_in(make_settings: MakeSettings) -> None:
    with SmtpSink() as sink, running(smtp_settings(make_settings, sink.port)) as client:
        flow_id = start(client, ADA)["flow_id"]
        message = sink.wait_for(ADA)
        response = verify_code(client, flow_id, mail_code(message))
        assert response.status_code == 200, response.text
        assert_signed_in(client, ADA)
        assert flow_view(client, flow_id)["mail_status"] == "sent"
    delivery = sink.deliveries[0]
    assert delivery.rcpt_tos == (ADA,)
    assert delivery.mail_from == "login@localhost"


def test_link_from_a_real_mail_over_starttls_with_auth_signs_in(
    make_settings: MakeSettings,
) -> None:
    with SmtpSink(auth=SINK_LOGIN, require_starttls=True) as sink:
        settings = smtp_settings(make_settings, sink.port, **trusted_starttls(sink))
        with running(settings) as client:
            start(client, ADA)
            message = sink.wait_for(ADA)
            response = client.post("/api/link", json={"token": mail_token(message)})
            assert response.status_code == 200, response.text
            assert_signed_in(client, ADA)


def test_code_from_a_real_mail_over_implicit_tls_signs_in(make_settings: MakeSettings) -> None:
    with SmtpSink(implicit_tls=True) as sink:
        settings = smtp_settings(
            make_settings, sink.port, SMTP_TLS="tls", SMTP_CA_FILE=str(sink.ca_path)
        )
        with running(settings) as client:
            flow_id = start(client, ADA)["flow_id"]
            response = verify_code(client, flow_id, mail_code(sink.wait_for(ADA)))
            assert response.status_code == 200, response.text
            assert_signed_in(client, ADA)


def test_delivered_mail_has_both_parts_and_the_required_headers(
    make_settings: MakeSettings,
) -> None:
    with SmtpSink() as sink, running(smtp_settings(make_settings, sink.port)) as client:
        start(client, ADA)
        message = sink.wait_for(ADA)
    assert message.get_content_type() == "multipart/alternative"
    code, token = mail_code(message), mail_token(message)
    assert code in html_part(message) and token in html_part(message)
    assert message["Message-ID"] and message["Date"]
    assert message["Auto-Submitted"] == "auto-generated"
    assert code not in str(message["Subject"])  # subjects show on lock screens


def test_email_templates_dir_override_is_used_for_real_mail(
    make_settings: MakeSettings, tmp_path: Path
) -> None:
    templates = write_templates(
        tmp_path / "mail",
        subject="Your Acme access\n",
        body="ACME TEXT\n\n{{ code_display }}\n\n{{ link }}\n",
        html="<p>ACME HTML {{ code }}</p><a href='{{ link }}'>go</a>\n",
    )
    with SmtpSink() as sink:
        settings = smtp_settings(make_settings, sink.port, EMAIL_TEMPLATES_DIR=str(templates))
        with running(settings) as client:
            flow_id = start(client, ADA)["flow_id"]
            message = sink.wait_for(ADA)
            assert message["Subject"] == "Your Acme access"
            assert text_part(message).startswith("ACME TEXT")
            assert html_part(message).startswith("<p>ACME HTML ")
            assert verify_code(client, flow_id, mail_code(message)).status_code == 200


# --- transient failures are retried, permanent ones are not --------------------------------


def test_refused_smtp_is_retried_then_the_flow_dies_and_says_so(
    make_settings: MakeSettings,
) -> None:
    settings = smtp_settings(make_settings, refused_port(), MAIL_RETRY_DELAYS="0.1,0.2")
    tap = TappedSmtp(settings)
    with running(settings, tap) as client:
        flow_id = start(client, ADA)["flow_id"]  # answers at once: 202, SMTP is not awaited
        view = wait_mail_status(client, flow_id, "failed")
        assert view["state"] == "mail_failed"
        assert len(tap.attempts) == 3  # the first try and one per MAIL_RETRY_DELAYS entry
        code, token = mail_code(tap.attempts[0]), mail_token(tap.attempts[0])
        # Even the right code is refused: the flow ended when its mail finally failed.
        response = verify_code(client, flow_id, code)
        assert response.status_code == 410
        assert "could not deliver" in response.json()["error"]["message"]
        response = client.post("/api/link", json={"token": token})
        assert response.status_code == 410
        assert "could not deliver" in response.json()["error"]["message"]
        assert client.get("/api/session").status_code == 401


def test_temporary_rejections_are_retried_until_delivered(make_settings: MakeSettings) -> None:
    with SmtpSink(data_reply="451 4.3.0 try again later", failures=2) as sink:
        settings = smtp_settings(make_settings, sink.port, MAIL_RETRY_DELAYS="0.05,0.1,0.2")
        with running(settings) as client:
            flow_id = start(client, ADA)["flow_id"]
            message = sink.wait_for(ADA)
            assert sink.rejections == 2
            wait_mail_status(client, flow_id, "sent")
            assert verify_code(client, flow_id, mail_code(message)).status_code == 200


def test_greylisted_recipient_is_retried_until_delivered(make_settings: MakeSettings) -> None:
    with SmtpSink(rcpt_reply="450 4.2.0 greylisted, come back later", failures=1) as sink:
        settings = smtp_settings(make_settings, sink.port, MAIL_RETRY_DELAYS="0.05")
        with running(settings) as client:
            flow_id = start(client, ADA)["flow_id"]
            message = sink.wait_for(ADA)
            wait_mail_status(client, flow_id, "sent")
            assert verify_code(client, flow_id, mail_code(message)).status_code == 200
    assert sink.rejections == 1


def test_permanent_rejection_is_not_retried(make_settings: MakeSettings) -> None:
    with SmtpSink(data_reply="550 5.7.1 message refused") as sink:
        settings = smtp_settings(make_settings, sink.port, MAIL_RETRY_DELAYS="0.05,0.05,0.05")
        with running(settings) as client:
            flow_id = start(client, ADA)["flow_id"]
            assert wait_mail_status(client, flow_id, "failed")["state"] == "mail_failed"
            wait_queue_empty(client)  # no retry is waiting either
            response = verify_code(client, flow_id, "123456")
            assert response.status_code == 410
            assert "could not deliver" in response.json()["error"]["message"]
    assert sink.rejections == 1
    assert sink.messages == []


def test_starttls_required_but_not_offered_fails_the_flow_and_sends_nothing(
    make_settings: MakeSettings,
) -> None:
    with SmtpSink(starttls=False) as sink:
        settings = smtp_settings(make_settings, sink.port, SMTP_TLS="starttls")
        with running(settings) as client:
            flow_id = start(client, ADA)["flow_id"]
            assert wait_mail_status(client, flow_id, "failed")["state"] == "mail_failed"
    assert sink.messages == []


# --- a slow or silent SMTP server never slows the request -----------------------------------


def test_start_answers_while_smtp_hangs(make_settings: MakeSettings) -> None:
    # The server never greets, so no attempt can end before SMTP_TIMEOUT (60 s), and the one
    # retry would come after the flow expires, so a failed attempt marks the mail failed: a
    # start that waited for SMTP could only answer with its mail failed. Each one answering
    # while its mail is still queued proves start never waits for SMTP, with no clock in the
    # test (how fast it answers is for the bench to measure).
    with HangingSmtpServer() as server:
        settings = smtp_settings(
            make_settings,
            server.port,
            SMTP_TIMEOUT="60",
            MAIL_RETRY_DELAYS="3600",
            SHUTDOWN_GRACE="0.2",
        )
        with running(settings) as client:
            for i in range(5):
                response = client.post("/api/start", json={"email": f"user{i}@example.com"})
                assert response.status_code == 202, response.text
                view = flow_view(client, response.json()["flow_id"])
                assert view["mail_status"] == "queued", view
            eventually(lambda: server.connections >= 1, "a sender connected to the hung server")


def test_full_mail_queue_answers_503_with_retry_after(make_settings: MakeSettings) -> None:
    with HangingSmtpServer() as server:
        settings = smtp_settings(
            make_settings,
            server.port,
            MAIL_QUEUE_SIZE="1",
            MAIL_QUEUE_WAIT="0",
            SMTP_TIMEOUT="0.5",
            MAIL_RETRY_DELAYS="0.05",
            SHUTDOWN_GRACE="0.2",
        )
        with running(settings) as client:
            first = start(client, ADA)["flow_id"]
            response = client.post("/api/start", json={"email": "bob@example.com"})
            assert response.status_code == 503
            assert int(response.headers["retry-after"]) >= 1
            assert response.json()["error"]["code"] == "unavailable"
            assert client.get("/readyz").status_code == 503
            # Once the stuck mail has timed out (and failed), the queue takes mail again.
            wait_mail_status(client, first, "failed")
            wait_queue_empty(client)
            assert server.connections == 2  # ada's mail: the first try and one retry
            start(client, "bob@example.com")
