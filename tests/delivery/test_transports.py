"""The SMTP transport on its own: how failures are classified, TLS modes, kept connections."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from email.message import EmailMessage

import pytest

from service.delivery.transports import PermanentMailError, SmtpTransport, TransientMailError
from service.settings import Settings
from tests.support.smtp import (
    SINK_LOGIN,
    DroppingSmtpServer,
    HangingSmtpServer,
    SmtpSink,
    refused_port,
    smtp_settings,
    trusted_starttls,
)

MakeSettings = Callable[..., Settings]


SENDER = "login@localhost"


def _message(to: str = "ada@example.com") -> EmailMessage:
    message = EmailMessage()
    message["From"] = "Latch <login@localhost>"
    message["To"] = to
    message["Subject"] = "Sign in"
    message.set_content("code 123 456\n")
    return message


def _send(settings: Settings, message: EmailMessage | None = None) -> None:
    async def send() -> None:
        transport = SmtpTransport(settings)
        try:
            mail = message or _message()
            await transport.send(mail, sender=SENDER, recipients=[str(mail["To"])])
        finally:
            await transport.aclose()  # the transport keeps connections open between mails
            # A closed connection finishes closing on later loop iterations (a TLS shutdown
            # takes a round trip). asyncio.run closes the loop at once and would leave the
            # socket to the garbage collector, which warns.
            await asyncio.sleep(0.2)

    asyncio.run(send())


def test_refused_connection_is_transient(make_settings: MakeSettings) -> None:
    with pytest.raises(TransientMailError):
        _send(smtp_settings(make_settings, refused_port(), SMTP_TLS="none"))


def test_silent_server_times_out_as_transient(make_settings: MakeSettings) -> None:
    with HangingSmtpServer() as server:
        settings = smtp_settings(make_settings, server.port, SMTP_TLS="none", SMTP_TIMEOUT="0.3")
        with pytest.raises(TransientMailError):
            _send(settings)
        assert server.connections == 1


def test_connection_dropped_during_data_is_transient(make_settings: MakeSettings) -> None:
    with DroppingSmtpServer() as server:
        with pytest.raises(TransientMailError):
            _send(smtp_settings(make_settings, server.port, SMTP_TLS="none", SMTP_TIMEOUT="2"))
        assert server.drops == 1


@pytest.mark.parametrize("stage", ["rcpt_reply", "data_reply"])
def test_4xx_reply_is_transient(make_settings: MakeSettings, stage: str) -> None:
    with SmtpSink(**{stage: "451 4.3.0 try again later"}) as sink:  # type: ignore[arg-type]
        with pytest.raises(TransientMailError, match="451"):
            _send(smtp_settings(make_settings, sink.port, SMTP_TLS="none"))
        assert sink.rejections == 1 and sink.messages == []


@pytest.mark.parametrize("stage", ["rcpt_reply", "data_reply"])
def test_5xx_reply_is_permanent(make_settings: MakeSettings, stage: str) -> None:
    with SmtpSink(**{stage: "550 5.1.1 no such mailbox"}) as sink:  # type: ignore[arg-type]
        with pytest.raises(PermanentMailError, match="550"):
            _send(smtp_settings(make_settings, sink.port, SMTP_TLS="none"))
        assert sink.messages == []


def test_starttls_mode_never_sends_in_clear_to_a_server_without_starttls(
    make_settings: MakeSettings,
) -> None:
    # An attacker on the path can strip STARTTLS from the EHLO answer; `starttls` must fail then.
    with SmtpSink(starttls=False) as sink:
        with pytest.raises(PermanentMailError, match="STARTTLS"):
            _send(smtp_settings(make_settings, sink.port, SMTP_TLS="starttls"))
        assert sink.messages == []


def test_starttls_mode_refuses_an_untrusted_certificate(make_settings: MakeSettings) -> None:
    with SmtpSink(starttls=True) as sink:  # its private CA is not trusted: no SMTP_CA_FILE
        with pytest.raises(PermanentMailError, match="certificate"):
            _send(smtp_settings(make_settings, sink.port, SMTP_TLS="starttls"))
        assert sink.messages == []


def test_implicit_tls_mode_refuses_an_untrusted_certificate(make_settings: MakeSettings) -> None:
    with SmtpSink(implicit_tls=True) as sink:
        with pytest.raises(PermanentMailError, match="certificate"):
            _send(smtp_settings(make_settings, sink.port, SMTP_TLS="tls"))
        assert sink.messages == []


def test_implicit_tls_mode_never_falls_back_to_plain(make_settings: MakeSettings) -> None:
    with SmtpSink() as sink:
        with pytest.raises((TransientMailError, PermanentMailError)):
            _send(smtp_settings(make_settings, sink.port, SMTP_TLS="tls"))
        assert sink.messages == []


def test_none_mode_does_not_upgrade_even_when_offered(make_settings: MakeSettings) -> None:
    # The sink offers STARTTLS with a CA we do not trust: upgrading would fail verification.
    with SmtpSink(starttls=True) as sink:
        _send(smtp_settings(make_settings, sink.port, SMTP_TLS="none"))
        assert len(sink.messages_for("ada@example.com")) == 1


def test_starttls_with_auth_delivers_when_the_ca_is_trusted(make_settings: MakeSettings) -> None:
    with SmtpSink(auth=SINK_LOGIN, require_starttls=True) as sink:
        settings = smtp_settings(make_settings, sink.port, **trusted_starttls(sink))
        _send(settings)
        assert len(sink.messages_for("ada@example.com")) == 1


def test_wrong_smtp_password_is_permanent(make_settings: MakeSettings) -> None:
    with SmtpSink(auth=SINK_LOGIN, require_starttls=True) as sink:
        env = trusted_starttls(sink, password="wrong")
        settings = smtp_settings(make_settings, sink.port, **env)
        with pytest.raises(PermanentMailError, match="535"):
            _send(settings)
        assert sink.messages == []


def test_transport_keeps_one_connection_for_several_mails(make_settings: MakeSettings) -> None:
    with SmtpSink() as sink:
        settings = smtp_settings(make_settings, sink.port, SMTP_TLS="none")

        async def send_three() -> None:
            transport = SmtpTransport(settings)
            try:
                for i in range(3):
                    to = f"user{i}@example.com"
                    await transport.send(_message(to), sender=SENDER, recipients=[to])
            finally:
                await transport.aclose()
                await asyncio.sleep(0.2)

        asyncio.run(send_three())
        assert len(sink.messages) == 3
        assert len(set(sink.peers)) == 1


def test_a_kept_connection_closed_by_the_server_is_replaced(make_settings: MakeSettings) -> None:
    with SmtpSink() as sink:
        settings = smtp_settings(make_settings, sink.port, SMTP_TLS="none")

        async def send_across_a_restart() -> None:
            transport = SmtpTransport(settings)
            try:
                first = "first@example.com"
                await transport.send(_message(first), sender=SENDER, recipients=[first])
                sink.stop()  # the server goes away, closing the kept connection
                sink.start()
                second = "second@example.com"
                await transport.send(_message(second), sender=SENDER, recipients=[second])
            finally:
                await transport.aclose()
                await asyncio.sleep(0.2)

        asyncio.run(send_across_a_restart())
        assert len(sink.messages_for("second@example.com")) == 1
        assert len(set(sink.peers)) == 2
