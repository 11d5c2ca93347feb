"""Real SMTP servers on loopback ports, for tests that exercise the mail transport."""

from __future__ import annotations

import asyncio
import email
import email.policy
import shutil
import tempfile
import threading
import time
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from typing import Self

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from service.settings import Settings

from .net import HOST
from .rawsmtp import DroppingSmtpServer, HangingSmtpServer, ScriptedSmtpServer, refused_port
from .running import Running
from .tls import TlsFiles, write_tls_files
from .wait import eventually_async

__all__ = [
    "Delivery",
    "DroppingSmtpServer",
    "HangingSmtpServer",
    "ScriptedSmtpServer",
    "SmtpSink",
    "html_part",
    "refused_port",
    "text_part",
]


@dataclass(frozen=True)
class Delivery:
    """One accepted message with its SMTP envelope."""

    mail_from: str
    rcpt_tos: tuple[str, ...]
    message: EmailMessage
    raw: bytes = b""  # exactly as received (CRLF line ends): what DKIM and spam filters see


class _LoopbackController(Controller):
    """A Controller that can bind port 0 and learn the port the kernel chose."""

    def _create_server(self) -> Awaitable[asyncio.AbstractServer]:
        return self._bind()

    async def _bind(self) -> asyncio.AbstractServer:
        server = await self.loop.create_server(
            self._factory_invoker, host=self.hostname, port=self.port, ssl=self.ssl_context
        )
        # Controller.start() connects to self.port to trigger the factory, so the
        # real port has to be known before that happens.
        self.port = server.sockets[0].getsockname()[1]
        return server


class _Handler:
    """aiosmtpd hooks that defer every decision to the owning sink."""

    def __init__(self, sink: SmtpSink) -> None:
        self._sink = sink

    async def handle_EHLO(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        hostname: str,
        responses: list[str],
    ) -> list[str]:
        # aiosmtpd reads commands one line at a time, so it serves pipelined commands (RFC 2920)
        # correctly; it just does not say so unless asked to.
        session.host_name = hostname
        if self._sink.pipelining:
            responses.insert(1, "250-PIPELINING")
        return responses

    async def handle_RCPT(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        reply = self._sink._take_failure(self._sink.rcpt_reply)
        if reply is not None:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if self._sink.delay > 0:
            await asyncio.sleep(self._sink.delay)
        reply = self._sink._take_failure(self._sink.data_reply)
        if reply is not None:
            return reply
        host, port = session.peer[:2]  # type: ignore[index, str-unpack]
        self._sink.peers.append((str(host), int(port)))
        self._sink._deliver(envelope)
        return "250 2.0.0 OK: queued"


class SmtpSink(Running):
    """An aiosmtpd server on 127.0.0.1 that keeps every accepted message in memory.

    `rcpt_reply` / `data_reply` (e.g. "451 4.3.0 try later") are answered instead of
    accepting, for the first `failures` RCPT/DATA commands (None: for all of them).
    `pipelining` advertises PIPELINING; `auth_mechanisms` are the AUTH mechanisms offered;
    `size_limit` is the SIZE advertised and enforced.
    The attributes may be changed while the server runs.
    """

    def __init__(
        self,
        *,
        starttls: bool | None = None,
        require_starttls: bool = False,
        implicit_tls: bool = False,
        auth: tuple[str, str] | None = None,
        delay: float = 0.0,
        rcpt_reply: str | None = None,
        data_reply: str | None = None,
        failures: int | None = None,
        pipelining: bool = False,
        auth_mechanisms: tuple[str, ...] = ("LOGIN", "PLAIN"),
        size_limit: int | None = None,
    ) -> None:
        # STARTTLS is only offered when asked for (or implied): aiosmtplib upgrades
        # whenever it is offered and would then fail to verify our private CA.
        if starttls is None:
            starttls = require_starttls or auth is not None
        if (require_starttls or auth is not None) and not starttls:
            raise ValueError("require_starttls and auth need starttls=True")
        self.starttls = starttls
        self.require_starttls = require_starttls
        self.implicit_tls = implicit_tls
        self.auth = auth
        self.delay = delay
        self.rcpt_reply = rcpt_reply
        self.data_reply = data_reply
        self.failures = failures
        self.pipelining = pipelining
        self.auth_mechanisms = auth_mechanisms
        self.size_limit = size_limit
        self.rejections = 0
        self.host = HOST
        self.port = 0
        self._deliveries: list[Delivery] = []
        # The client (host, port) of each accepted message: one port = one kept connection.
        self.peers: list[tuple[str, int]] = []
        # Per-recipient index: soak tests wait for hundreds of addresses at once.
        self._by_rcpt: dict[str, list[EmailMessage]] = {}
        self._changed = threading.Condition()
        self._controller: _LoopbackController | None = None
        self._tls: TlsFiles | None = None
        if starttls or implicit_tls:
            tls_dir = Path(tempfile.mkdtemp(prefix="latch-smtp-tls-"))
            weakref.finalize(self, shutil.rmtree, tls_dir, ignore_errors=True)
            self._tls = write_tls_files(tls_dir)

    @property
    def tls(self) -> TlsFiles:
        """Return the certificate files; the client trusts `tls.ca_path`."""
        if self._tls is None:
            raise RuntimeError("this SmtpSink was created without TLS")
        return self._tls

    @property
    def ca_path(self) -> Path:
        """Return the CA file a client must trust to verify this server."""
        return self.tls.ca_path

    def start(self) -> Self:
        """Start listening; a restart reuses the port of the first start."""
        if self._controller is not None:
            return self
        controller = _LoopbackController(
            _Handler(self),
            hostname=self.host,
            port=self.port,
            ssl_context=self.tls.server_context() if self.implicit_tls else None,
            server_hostname="localhost",  # avoids a slow getfqdn() per connection
            ready_timeout=10.0,
            tls_context=self.tls.server_context() if self.starttls else None,
            require_starttls=self.require_starttls,
            # auth_require_tls keeps its default (True): AUTH is advertised only
            # after STARTTLS, as on any sane relay.
            auth_required=self.auth is not None,
            authenticator=self._authenticate if self.auth is not None else None,
            auth_exclude_mechanism=[m for m in ("LOGIN", "PLAIN") if m not in self.auth_mechanisms],
            data_size_limit=self.size_limit or 33554432,  # aiosmtpd's default otherwise
        )
        controller.start()
        self.port = controller.port
        self._controller = controller
        return self

    def stop(self) -> None:
        """Stop the server and close its listening socket (idempotent)."""
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    @property
    def deliveries(self) -> list[Delivery]:
        """Return a snapshot of the accepted messages with their envelopes."""
        with self._changed:
            return list(self._deliveries)

    @property
    def messages(self) -> list[EmailMessage]:
        """Return a snapshot of the accepted messages."""
        return [delivery.message for delivery in self.deliveries]

    def messages_for(self, to: str) -> list[EmailMessage]:
        """Return the accepted messages whose envelope includes recipient `to`."""
        with self._changed:
            return list(self._by_rcpt.get(to.lower(), ()))

    def clear(self) -> None:
        """Forget every message received so far."""
        with self._changed:
            self._deliveries.clear()
            self._by_rcpt.clear()

    def wait_for(self, to: str, timeout: float = 10.0, *, index: int = 0) -> EmailMessage:
        """Block until message number `index` (0-based) for `to` arrives, then return it."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while len(found := self.messages_for(to)) <= index:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(self._timeout_message(to, timeout))
                self._changed.wait(remaining)
        return found[index]

    async def wait_for_async(
        self,
        to: str,
        # A default deadline, as in wait_for, so a forgotten timeout cannot hang the run.
        timeout: float = 10.0,  # noqa: ASYNC109
        *,
        index: int = 0,
    ) -> EmailMessage:
        """Like wait_for, but yields to the event loop while waiting."""
        # Polling rather than a thread: a cancelled wait must not leave a thread
        # blocked in the default executor, which asyncio.run() would wait for.
        try:
            found = await eventually_async(
                lambda: mine if len(mine := self.messages_for(to)) > index else None,
                f"message #{index} for {to!r}",
                timeout,
            )
        except AssertionError:
            raise TimeoutError(self._timeout_message(to, timeout)) from None
        return found[index]

    def _timeout_message(self, to: str, timeout: float) -> str:
        seen = [list(d.rcpt_tos) for d in self.deliveries]
        return f"no message for {to!r} within {timeout}s; received for: {seen}"

    def _take_failure(self, reply: str | None) -> str | None:
        with self._changed:
            if reply is None or self.failures == 0:
                return None
            if self.failures is not None:
                self.failures -= 1
            self.rejections += 1
            return reply

    def _deliver(self, envelope: Envelope) -> None:
        # SMTP carries lines as CRLF; tests compare bodies against "\n"-joined text.
        received = envelope.original_content or b""
        raw = received.replace(b"\r\n", b"\n")
        message = email.message_from_bytes(raw, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        delivery = Delivery(
            mail_from=envelope.mail_from or "",
            rcpt_tos=tuple(envelope.rcpt_tos),
            message=message,
            raw=received,
        )
        with self._changed:
            self._deliveries.append(delivery)
            for rcpt in {r.lower() for r in delivery.rcpt_tos}:
                self._by_rcpt.setdefault(rcpt, []).append(delivery.message)
            self._changed.notify_all()

    def _authenticate(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        mechanism: str,
        auth_data: object,
    ) -> AuthResult:
        if not isinstance(auth_data, LoginPassword) or self.auth is None:
            return AuthResult(success=False, handled=False)
        user, password = self.auth
        ok = auth_data.login == user.encode() and auth_data.password == password.encode()
        return AuthResult(success=ok, handled=False)


# The login a sink takes when it requires authentication (SmtpSink(auth=SINK_LOGIN)).
SINK_LOGIN = ("latch", "s3cret")


def smtp_settings(make_settings: Callable[..., Settings], port: int, **env: str) -> Settings:
    """Settings pointing the mailer at a loopback SMTP port (plain unless SMTP_TLS is given)."""
    return make_settings(
        **{"SMTP_HOST": "127.0.0.1", "SMTP_PORT": str(port), "SMTP_TLS": "none", **env}
    )


def trusted_starttls(sink: SmtpSink, *, password: str = SINK_LOGIN[1]) -> dict[str, str]:
    """The settings for STARTTLS to `sink`, trusting its CA, logging in as SINK_LOGIN's user
    (with `password`, to try a wrong one)."""
    return {
        "SMTP_TLS": "starttls",
        "SMTP_CA_FILE": str(sink.ca_path),
        "SMTP_USERNAME": SINK_LOGIN[0],
        "SMTP_PASSWORD": password,
    }


def _decoded_part(message: EmailMessage, subtype: str) -> str:
    part = message.get_body(preferencelist=(subtype,))
    if part is None or part.get_content_type() != f"text/{subtype}":
        raise LookupError(f"message has no text/{subtype} part")
    content = part.get_content()
    assert isinstance(content, str)
    return content


def text_part(message: EmailMessage) -> str:
    """Return the decoded text/plain body of a (multipart/alternative) message."""
    return _decoded_part(message, "plain")


def html_part(message: EmailMessage) -> str:
    """Return the decoded text/html body of a (multipart/alternative) message."""
    return _decoded_part(message, "html")
