"""How the sign-in mail is delivered: SMTP (smtp_wire.py) or, in development, the console."""

from __future__ import annotations

import copy
import email
import email.policy
import logging
import ssl
import sys
import time
from collections.abc import Sequence
from email.message import EmailMessage
from typing import Protocol
from urllib.parse import urlsplit

from service.delivery import smtp_wire
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
    """SMTP through Latch's own client (delivery/smtp_wire.py). `starttls` REQUIRES the
    upgrade, so a server or attacker that does not offer STARTTLS gets an error, not the code
    in clear text; `tls` is implicit TLS; both verify the certificate against the system's CAs
    or SMTP_CA_FILE, for SMTP_HOST.

    Connections are kept open between mails (at most one per sender task, so MAIL_WORKERS of
    them; closed after IDLE_SECONDS unused): a new connection costs a TCP and TLS handshake,
    EHLO, STARTTLS and AUTH, several times the cost of the mail itself during a sign-in storm.
    """

    IDLE_SECONDS = 15.0

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        mail = settings.mail
        context: ssl.SSLContext | None = None
        if mail.smtp_tls != "none":
            context = ssl.create_default_context(cafile=mail.smtp_ca_file or None)
        self.endpoint = smtp_wire.Endpoint(
            host=mail.smtp_host,
            port=mail.smtp_port or {"tls": 465, "starttls": 587, "none": 25}[mail.smtp_tls],
            tls=mail.smtp_tls,
            tls_context=context,
            username=mail.smtp_username,
            password=mail.smtp_password,
            timeout=mail.smtp_timeout,
            ehlo=smtp_wire.ehlo_name(urlsplit(settings.public_url).hostname or ""),
        )
        self._idle: list[tuple[smtp_wire.Connection, float]] = []

    async def _connected(self) -> tuple[smtp_wire.Connection, bool]:
        """A connection: a kept one if still fresh and open (True), else a new one (False)."""
        while self._idle:
            connection, since = self._idle.pop()
            if connection.usable and time.monotonic() - since < self.IDLE_SECONDS:
                return connection, True
            await connection.quit()
        return await smtp_wire.Connection.open(self.endpoint), False

    async def _send_once(self, body: bytes, sender: str, recipients: list[str]) -> None:
        connection, reused = await self._connected()
        try:
            try:
                await connection.send(sender, recipients, body)
            except (ConnectionError, smtp_wire.SmtpReplyError) as e:
                # A kept connection the server closed while it sat idle (EOF, reset, or a 421
                # "closing"), found before the message's terminating dot went out: the server
                # cannot have taken the mail, so one fresh try cannot deliver it twice. After
                # the dot, a lost connection leaves that unknown: no second try here (the
                # mailer's retry, seconds later, may then send a second copy of the same code).
                stale = isinstance(e, ConnectionError) or e.code == 421
                if not reused or connection.committed or not stale:
                    raise
                log.debug("kept SMTP connection was closed (%s); reconnecting", type(e).__name__)
                connection.abort()
                connection = await smtp_wire.Connection.open(self.endpoint)
                await connection.send(sender, recipients, body)
        except smtp_wire.SmtpReplyError:
            # A refusal (RSET since): the connection stays good for the next mail.
            self._keep(connection)
            raise
        except BaseException:
            connection.abort()
            raise
        self._keep(connection)

    def _keep(self, connection: smtp_wire.Connection) -> None:
        if connection.usable:
            self._idle.append((connection, time.monotonic()))
        else:
            connection.abort()

    async def send(self, message: EmailMessage, *, sender: str, recipients: Sequence[str]) -> None:
        """Send one message, classifying failures as transient or permanent."""
        # Latch never sets Bcc; a message that has one must not show it to its recipients.
        if "Bcc" in message or "Resent-Bcc" in message:
            message = copy.copy(message)
            del message["Bcc"], message["Resent-Bcc"]
        await self.send_raw(
            message.as_bytes(policy=message.policy.clone(linesep="\r\n")),
            sender=sender,
            recipients=recipients,
        )

    async def send_raw(self, data: bytes, *, sender: str, recipients: Sequence[str]) -> None:
        """Send one finished message as it is (CRLF bytes), to exactly `recipients`."""
        if not recipients:
            raise PermanentMailError("no recipient")
        try:
            await self._send_once(smtp_wire.wire_body(data), sender, list(recipients))
        except smtp_wire.SmtpReplyError as e:
            # A 4xx to RCPT (greylisting, a full mailbox) is as temporary as a 4xx to DATA.
            if 400 <= e.code < 500:
                raise TransientMailError(str(e)) from e
            raise PermanentMailError(str(e)) from e
        except smtp_wire.SmtpRefused as e:
            raise PermanentMailError(str(e)) from e
        except (TimeoutError, OSError) as e:  # ConnectionError, ssl.SSLError, SmtpProtocolError
            if _untrusted_certificate(e):
                # A certificate we cannot verify will not verify on the next try either: a
                # wrong SMTP_CA_FILE or host name, or someone in the middle. Never retried
                # into sending the code over an unverified channel.
                raise PermanentMailError(f"TLS certificate not trusted: {e}") from e
            raise TransientMailError(f"{type(e).__name__}: {e}") from e

    async def aclose(self) -> None:
        """Say QUIT on every kept connection (shutdown)."""
        idle, self._idle = self._idle, []
        for connection, _ in idle:
            await connection.quit()


def _untrusted_certificate(error: BaseException) -> bool:
    """True when the failure (or what caused it) is a failed certificate verification."""
    seen: BaseException | None = error
    for _ in range(5):
        if seen is None:
            return False
        if isinstance(seen, ssl.SSLCertVerificationError):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def default_transport(settings: Settings) -> Transport:
    """SMTP when SMTP_HOST is set, else the console."""
    return SmtpTransport(settings) if settings.mail.smtp_host else ConsoleTransport()
