"""How the sign-in mail is delivered: SMTP (aiosmtplib) or, in development, the console."""

from __future__ import annotations

import asyncio
import email
import email.policy
import logging
import ssl
import sys
import time
from collections.abc import Sequence
from email.message import EmailMessage
from typing import Protocol

import aiosmtplib

from service.settings import Settings

log = logging.getLogger("latch.mail")
_READ = email.policy.default


class Transport(Protocol):
    """Delivers a finished message to exactly `recipients`, from `sender` (the SMTP envelope).

    The envelope is always given: never derived from the message's headers, whose parsing can
    turn one validated address into several recipients.
    """

    async def send(
        self, message: EmailMessage, *, sender: str, recipients: Sequence[str]
    ) -> None: ...


async def send_bytes(
    transport: Transport, data: bytes, sender: str, recipients: Sequence[str]
) -> None:
    """Hand a finished message to `transport`: as bytes to a transport with `send_raw(data, *,
    sender, recipients)` (SMTP: nothing parses or serialises it again), else parsed into a
    message (the console, and tests' recording transports, read it as one)."""
    raw = getattr(transport, "send_raw", None)
    if raw is not None:
        await raw(data, sender=sender, recipients=recipients)
        return
    message = email.message_from_bytes(data, policy=_READ)
    assert isinstance(message, EmailMessage)  # policy.default's message class
    await transport.send(message, sender=sender, recipients=recipients)


class TransientMailError(Exception):
    """Worth retrying: refused or reset connection, timeout, 4xx reply."""


class PermanentMailError(Exception):
    """Not worth retrying: 5xx reply, TLS required but not offered, bad credentials."""


class ConsoleTransport:
    """Development: print the mail to standard output (never to the log)."""

    async def send(self, message: EmailMessage, *, sender: str, recipients: Sequence[str]) -> None:
        """Print the plain-text part with its headers."""
        text = message.get_body(("plain",))
        body = text.get_content() if isinstance(text, EmailMessage) else ""
        sys.stdout.write(
            f"\n----- mail to {', '.join(recipients)} -----\nSubject: {message['Subject']}\n\n"
            f"{body}\n----- end of mail -----\n"
        )
        sys.stdout.flush()


class SmtpTransport:
    """SMTP through aiosmtplib. `starttls` REQUIRES the upgrade (start_tls=True), so a server
    or attacker that does not offer STARTTLS gets an error, not the code in clear text.

    Connections are kept open between mails (at most one per sender task, closed after
    IDLE_SECONDS unused): a new connection costs a TCP and TLS handshake, EHLO, STARTTLS and
    AUTH, several times the cost of the mail itself during a sign-in storm.
    """

    IDLE_SECONDS = 15.0

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._tls_context: ssl.SSLContext | None = None
        if settings.mail.smtp_tls != "none":
            self._tls_context = ssl.create_default_context(
                cafile=settings.mail.smtp_ca_file or None
            )
        self._idle: list[tuple[aiosmtplib.SMTP, float]] = []

    def _new_client(self) -> aiosmtplib.SMTP:
        s = self.settings
        return aiosmtplib.SMTP(
            hostname=s.mail.smtp_host,
            port=s.mail.smtp_port or {"tls": 465, "starttls": 587, "none": 25}[s.mail.smtp_tls],
            username=s.mail.smtp_username or None,
            password=s.mail.smtp_password or None,
            use_tls=s.mail.smtp_tls == "tls",
            start_tls=s.mail.smtp_tls == "starttls",
            tls_context=self._tls_context,
            timeout=s.mail.smtp_timeout,
        )

    async def _connected(self) -> tuple[aiosmtplib.SMTP, bool]:
        """A connected client: a kept one if still fresh (True), else a new one (False)."""
        while self._idle:
            client, since = self._idle.pop()
            if client.is_connected and time.monotonic() - since < self.IDLE_SECONDS:
                return client, True
            await _close_quietly(client)
        client = self._new_client()
        await client.connect()  # with start_tls=True this fails unless STARTTLS succeeds
        return client, False

    async def _send_once(
        self, message: EmailMessage | bytes, sender: str, recipients: Sequence[str]
    ) -> None:
        client, reused = await self._connected()
        try:
            try:
                await _deliver(client, message, sender, recipients)
            except (aiosmtplib.SMTPServerDisconnected, ConnectionError) as e:
                if not reused:
                    raise
                # The server closed a kept connection while it sat idle: one fresh try.
                log.debug("kept SMTP connection was closed (%s); reconnecting", type(e).__name__)
                await _close_quietly(client)
                client = self._new_client()
                await client.connect()
                await _deliver(client, message, sender, recipients)
        except BaseException:
            await _close_quietly(client)
            raise
        self._idle.append((client, time.monotonic()))

    async def send(self, message: EmailMessage, *, sender: str, recipients: Sequence[str]) -> None:
        """Send one message, classifying failures as transient or permanent."""
        await self._send_classified(message, sender, recipients)

    async def send_raw(self, data: bytes, *, sender: str, recipients: Sequence[str]) -> None:
        """Send one finished message as it is (CRLF bytes), classifying failures alike."""
        await self._send_classified(data, sender, recipients)

    async def _send_classified(
        self, message: EmailMessage | bytes, sender: str, recipients: Sequence[str]
    ) -> None:
        if not recipients:
            raise PermanentMailError("no recipient")  # aiosmtplib would read the headers
        try:
            await self._send_once(message, sender, list(recipients))
        except aiosmtplib.SMTPResponseException as e:
            if 400 <= e.code < 500:
                raise TransientMailError(f"{e.code} {e.message}") from e
            raise PermanentMailError(f"{e.code} {e.message}") from e
        except aiosmtplib.SMTPRecipientsRefused as e:
            # Not an SMTPResponseException: it wraps one refusal per recipient. A 4xx to RCPT
            # (greylisting, a full mailbox) is as temporary as a 4xx to DATA.
            replies = "; ".join(f"{r.code} {r.message}" for r in e.recipients)
            if any(400 <= r.code < 500 for r in e.recipients):
                raise TransientMailError(replies) from e
            raise PermanentMailError(replies) from e
        except (
            aiosmtplib.SMTPConnectError,
            aiosmtplib.SMTPServerDisconnected,
            aiosmtplib.SMTPTimeoutError,
            TimeoutError,
            ConnectionError,
            OSError,
        ) as e:
            if _untrusted_certificate(e):
                # A certificate we cannot verify will not verify on the next try either: a
                # wrong SMTP_CA_FILE or host name, or someone in the middle. Never retried
                # into sending the code over an unverified channel.
                raise PermanentMailError(f"TLS certificate not trusted: {e}") from e
            raise TransientMailError(f"{type(e).__name__}: {e}") from e
        except aiosmtplib.SMTPException as e:
            raise PermanentMailError(str(e)) from e

    async def aclose(self) -> None:
        """Say QUIT on every kept connection (shutdown)."""
        idle, self._idle = self._idle, []
        for client, _ in idle:
            await _close_quietly(client)


async def _deliver(
    client: aiosmtplib.SMTP, message: EmailMessage | bytes, sender: str, recipients: Sequence[str]
) -> None:
    if isinstance(message, bytes):
        await client.sendmail(sender, list(recipients), message)
    else:
        await client.send_message(message, sender=sender, recipients=recipients)


async def _close_quietly(client: aiosmtplib.SMTP) -> None:
    """QUIT if possible, else drop the connection; never raise."""
    try:
        if client.is_connected:
            await asyncio.wait_for(client.quit(), 2)
    except Exception:  # noqa: S110 (a broken connection is closed below all the same)
        pass
    client.close()


def _untrusted_certificate(error: BaseException) -> bool:
    """True when the failure (or what caused it) is a failed certificate verification."""
    seen: BaseException | None = error
    for _ in range(5):  # aiosmtplib wraps the ssl error in SMTPConnectError on connect
        if seen is None:
            return False
        if isinstance(seen, ssl.SSLCertVerificationError):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def default_transport(settings: Settings) -> Transport:
    """SMTP when SMTP_HOST is set, else the console."""
    return SmtpTransport(settings) if settings.mail.smtp_host else ConsoleTransport()
