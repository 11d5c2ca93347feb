"""A lean SMTP client for the mail queue's hot path (RFC 5321; PIPELINING, RFC 2920).

Why not aiosmtplib: under a rush of sign-ins it cost a quarter of the event loop's time
(a regex over every message to normalise line ends Latch already writes as CRLF, a wait_for per
command, one round trip per command), and it cannot pipeline: replies that arrive together in
one read are lost. Here one asyncio protocol splits whatever arrives into complete replies
(`ReplyParser`: several per read, or one across many reads), and a message costs one write of
MAIL, RCPT and DATA and one of the body when the server offers PIPELINING.

A connection is used by one sender at a time (transports.py keeps them between mails).
"""

from __future__ import annotations

import asyncio
import base64
import ipaddress
import re
import ssl
from collections import deque
from dataclasses import dataclass
from typing import NamedTuple, cast

MAX_LINE = 4096  # RFC 5321 allows 512 octets a reply line; a server sending more is broken
MAX_LINES = 100  # lines in one (multi-line) reply
_ANY_LINE_END = re.compile(rb"\r\n|\r|\n")


class Reply(NamedTuple):
    """One complete SMTP reply: its code and its text (lines joined by newlines)."""

    code: int
    text: str


class SmtpReplyError(Exception):
    """The server refused a step with this reply (4xx: try later; 5xx: do not)."""

    def __init__(self, stage: str, reply: Reply) -> None:
        super().__init__(f"{reply.code} {reply.text} (to {stage})")
        self.stage = stage
        self.code = reply.code


class SmtpRefused(Exception):
    """Not sent, and sending again will not help: TLS or AUTH required but not offered, a
    message over the server's SIZE, an address that cannot go in a command."""


class SmtpProtocolError(ConnectionError):
    """The server's bytes are not SMTP replies (or arrive where none may): the connection is
    dropped, and the mail counts as not sent (a ConnectionError: transient)."""


class ReplyParser:
    """Splits received bytes into complete replies, however the reads cut or merge them.

    A reply is lines of `DDD-text` ending with one `DDD text` (or a bare `DDD`); a read may hold
    the end of one reply, several whole ones and the start of the next.
    """

    def __init__(self) -> None:
        self._buffer = b""
        self._lines: list[bytes] = []

    @property
    def partial(self) -> bool:
        """True while part of a reply has arrived but not its end."""
        return bool(self._buffer or self._lines)

    def feed(self, data: bytes) -> list[Reply]:
        """The replies `data` completes (none, one or several), in order."""
        buffer = self._buffer + data if self._buffer else data
        replies: list[Reply] = []
        start = 0
        while (end := buffer.find(b"\n", start)) >= 0:
            line = buffer[start:end]
            start = end + 1
            if line.endswith(b"\r"):
                line = line[:-1]
            if len(line) < 3 or not line[:3].isdigit() or line[3:4] not in (b"", b" ", b"-"):
                raise SmtpProtocolError("the server sent something that is not an SMTP reply")
            self._lines.append(line)
            if line[3:4] == b"-":
                if len(self._lines) > MAX_LINES:
                    raise SmtpProtocolError("the server's reply has too many lines")
                continue
            text = "\n".join(part[4:].decode("utf-8", "replace") for part in self._lines)
            replies.append(Reply(int(line[:3]), text))
            self._lines = []
        self._buffer = buffer[start:]
        if len(self._buffer) > MAX_LINE:
            raise SmtpProtocolError("the server's reply line is too long")
        return replies


def wire_body(data: bytes) -> bytes:
    """A message as DATA carries it: CRLF line ends, dot-stuffed, ended by `.` on its own line.

    Latch writes messages with CRLF line ends already, which three counts confirm (no regex over
    every message). A bare CR or LF would otherwise reach the server as something each server
    reads its own way: `\\n.\\n` is the end of the message to some and text to others ("SMTP
    smuggling"): a second, forged message hidden in the first. So any other line end becomes
    CRLF before the stuffing, and no line of the message can end the DATA early.
    """
    lf = data.count(b"\n")
    if data.count(b"\r\n") != lf or data.count(b"\r") != lf:
        data = _ANY_LINE_END.sub(b"\r\n", data)
    if data.startswith(b"."):
        data = b"." + data
    data = data.replace(b"\r\n.", b"\r\n..")
    if not data.endswith(b"\r\n"):
        data += b"\r\n"
    return data + b".\r\n"


def _path(address: str) -> bytes:
    """`<address>` for MAIL FROM or RCPT TO; refused when it could change the command."""
    if not address.isascii() or any(c in address for c in "<>\r\n\0 \t") or len(address) > 254:
        raise SmtpRefused("an envelope address cannot be written in an SMTP command")
    return b"<" + address.encode("ascii") + b">"


def ehlo_name(host: str) -> str:
    """What to say in EHLO for Latch's host name: the name, or an address literal."""
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return host or "localhost"
    return f"[{ip}]" if ip.version == 4 else f"[IPv6:{ip}]"


@dataclass(frozen=True, kw_only=True)
class Endpoint:
    """Where and how to connect: `tls` is "tls" (implicit), "starttls" (required) or "none"."""

    host: str
    port: int
    tls: str
    tls_context: ssl.SSLContext | None
    username: str
    password: str
    timeout: float
    ehlo: str


class _Protocol(asyncio.Protocol):
    """Collects replies as they arrive; wakes the one task waiting for them."""

    def __init__(self) -> None:
        self.parser = ReplyParser()
        self.replies: deque[Reply] = deque()
        self.waiter: asyncio.Future[None] | None = None
        self.transport: asyncio.Transport | None = None
        self.error: BaseException | None = None
        self.paused: asyncio.Future[None] | None = None
        self.writing = True

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A cast, not an isinstance check: uvloop's transports (Latch's loop under uvicorn)
        # are not subclasses of asyncio.Transport.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        try:
            self.replies.extend(self.parser.feed(data))
        except SmtpProtocolError as e:
            self._fail(e)
            if self.transport is not None:
                self.transport.abort()
            return
        if self.replies:
            self._wake(None)

    def eof_received(self) -> bool:
        self._fail(ConnectionResetError("the SMTP server closed the connection"))
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(exc or ConnectionResetError("the SMTP connection was closed"))
        if self.paused is not None and not self.paused.done():
            self.paused.set_result(None)

    def pause_writing(self) -> None:
        self.writing = False

    def resume_writing(self) -> None:
        self.writing = True
        if self.paused is not None and not self.paused.done():
            self.paused.set_result(None)

    def _fail(self, error: BaseException) -> None:
        if self.error is None:
            self.error = error
        self._wake(error)

    def _wake(self, error: BaseException | None) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            if error is None:
                waiter.set_result(None)
            else:
                waiter.set_exception(error)


class Connection:
    """One SMTP session, after greeting, EHLO, TLS and AUTH: `send` delivers messages."""

    def __init__(
        self, endpoint: Endpoint, transport: asyncio.Transport, protocol: _Protocol
    ) -> None:
        self.endpoint = endpoint
        self._transport = transport
        self._protocol = protocol
        self._loop = asyncio.get_running_loop()
        self.extensions: dict[str, str] = {}
        # True from the moment the message's terminating dot may have reached the server: after
        # that, a lost connection leaves unknown whether the server took the mail (RFC 1047),
        # so it must not be sent again at once on a fresh connection.
        self.committed = False

    @classmethod
    async def open(cls, endpoint: Endpoint) -> Connection:
        """Connect and prepare a session (TimeoutError, OSError, SmtpReplyError, SmtpRefused)."""
        loop = asyncio.get_running_loop()
        implicit = endpoint.tls == "tls"
        async with asyncio.timeout(endpoint.timeout):
            transport, protocol = await loop.create_connection(
                _Protocol,
                endpoint.host,
                endpoint.port,
                ssl=endpoint.tls_context if implicit else None,
                server_hostname=endpoint.host if implicit else None,
            )
        connection = cls(endpoint, transport, protocol)
        try:
            await connection._prepare()
        except BaseException:
            connection.abort()
            raise
        return connection

    async def _prepare(self) -> None:
        endpoint = self.endpoint
        _expect("greeting", await self.reply(), 220)
        await self._hello()
        if endpoint.tls == "starttls":
            # Required, never "when offered": an attacker on the path can strip STARTTLS from
            # the EHLO reply, and the code would then cross the network in clear text.
            if "STARTTLS" not in self.extensions:
                raise SmtpRefused("SMTP_TLS=starttls, but the server does not offer STARTTLS")
            _expect("STARTTLS", await self.command(b"STARTTLS\r\n"), 220)
            if self._protocol.replies or self._protocol.parser.partial:
                # Bytes after the 220 were sent before TLS and would be read as if sent within
                # it (the STARTTLS command-injection attack): no session on such a connection.
                raise SmtpProtocolError("the server sent data after its STARTTLS reply")
            assert endpoint.tls_context is not None
            async with asyncio.timeout(endpoint.timeout):
                upgraded = await self._loop.start_tls(
                    self._transport,
                    self._protocol,
                    endpoint.tls_context,
                    server_hostname=endpoint.host,
                )
            assert upgraded is not None
            self._transport = self._protocol.transport = upgraded
            await self._hello()  # what the server offers over TLS (AUTH, often) is new
        if endpoint.username:
            await self._login()

    async def _hello(self) -> None:
        reply = await self.command(f"EHLO {self.endpoint.ehlo}\r\n".encode())
        if 500 <= reply.code < 600 and self.endpoint.tls == "none":
            # An old server without ESMTP: plain HELO, no extensions (so no TLS, no AUTH).
            _expect("HELO", await self.command(f"HELO {self.endpoint.ehlo}\r\n".encode()), 250)
            self.extensions = {}
            return
        _expect("EHLO", reply, 250)
        extensions: dict[str, str] = {}
        for line in reply.text.split("\n")[1:]:
            keyword, _, params = line.strip().partition(" ")
            extensions[keyword.upper()] = params
        self.extensions = extensions

    async def _login(self) -> None:
        endpoint = self.endpoint
        offered = self.extensions.get("AUTH", "").upper().split()
        user, password = endpoint.username.encode(), endpoint.password.encode()
        if "PLAIN" in offered:
            token = base64.b64encode(b"\0" + user + b"\0" + password)
            _expect("AUTH", await self.command(b"AUTH PLAIN " + token + b"\r\n"), 235)
        elif "LOGIN" in offered:
            _expect("AUTH", await self.command(b"AUTH LOGIN\r\n"), 334)
            _expect("AUTH", await self.command(base64.b64encode(user) + b"\r\n"), 334)
            _expect("AUTH", await self.command(base64.b64encode(password) + b"\r\n"), 235)
        else:
            raise SmtpRefused("SMTP_USERNAME is set, but the server offers no AUTH PLAIN or LOGIN")

    @property
    def usable(self) -> bool:
        """Still open, between transactions, with nothing unread (a 421 sent while idle)."""
        p = self._protocol
        return p.error is None and not p.replies and not p.parser.partial

    async def reply(self) -> Reply:
        """The next reply, waiting at most the endpoint's timeout for it."""
        p = self._protocol
        if p.replies:
            return p.replies.popleft()
        if p.error is not None:
            raise p.error
        waiter = p.waiter = self._loop.create_future()
        # A timer instead of asyncio.wait_for: no task or timeout context per reply.
        timer = self._loop.call_later(self.endpoint.timeout, _time_out, waiter)
        try:
            await waiter
        finally:
            timer.cancel()
            p.waiter = None
        return p.replies.popleft()

    async def command(self, line: bytes) -> Reply:
        """Send one command and read its reply."""
        await self.write(line)
        return await self.reply()

    async def write(self, data: bytes) -> None:
        """Write, and wait while the transport's buffer is over its high-water mark."""
        p = self._protocol
        if p.error is not None:
            raise p.error
        self._transport.write(data)
        if not p.writing:
            p.paused = self._loop.create_future()
            async with asyncio.timeout(self.endpoint.timeout):
                await p.paused
            if p.error is not None:
                raise p.error

    async def send(self, sender: str, recipients: list[str], body: bytes) -> None:
        """Deliver one message; `body` comes from `wire_body`. Raises SmtpReplyError when the
        server refuses a step (the connection stays usable when RSET then succeeds)."""
        self.committed = False
        size = self.extensions.get("SIZE")
        mail = b"MAIL FROM:" + _path(sender)
        if size is not None:
            limit = int(size) if size.isdigit() else 0
            if limit and len(body) > limit:
                raise SmtpRefused(f"the message ({len(body)} bytes) is over the server's SIZE")
            mail += b" SIZE=%d" % len(body)
        commands = [mail + b"\r\n"]
        commands += [b"RCPT TO:" + _path(r) + b"\r\n" for r in recipients]
        commands.append(b"DATA\r\n")
        stages = ["MAIL", *("RCPT" for _ in recipients), "DATA"]
        if "PIPELINING" in self.extensions:
            await self.write(b"".join(commands))
            replies = [await self.reply() for _ in commands]
        else:
            replies = []
            for command in commands:
                replies.append(reply := await self.command(command))
                if reply.code >= 400:
                    break
        refusal = _refusal(stages, replies)
        if refusal is not None:
            await self._abandon(data_open=len(replies) == len(commands) and replies[-1].code == 354)
            raise refusal
        self.committed = True
        await self.write(body)
        _expect("end of data", await self.reply(), 250)

    async def _abandon(self, *, data_open: bool) -> None:
        """End a refused transaction: a lone dot if the server took DATA anyway (RFC 2920
        §3.1), then RSET; a server that will not reset is dropped."""
        try:
            if data_open:
                await self.write(b".\r\n")
                await self.reply()
            reset = await self.command(b"RSET\r\n")
        except (OSError, TimeoutError, SmtpProtocolError):
            reset = None
        if reset is None or reset.code != 250:
            self.abort()

    async def quit(self) -> None:
        """Say QUIT (briefly) and close; never raises."""
        try:
            if self.usable:
                await self.write(b"QUIT\r\n")
                async with asyncio.timeout(2):
                    await self.reply()
        except Exception:  # noqa: S110 (closed below all the same)
            pass
        self._transport.close()

    def abort(self) -> None:
        """Drop the connection now, nothing more said."""
        self._protocol._fail(ConnectionResetError("the SMTP connection was dropped"))
        self._transport.abort()


def _expect(stage: str, reply: Reply, code: int) -> None:
    if reply.code != code:
        raise SmtpReplyError(stage, reply)


def _time_out(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_exception(TimeoutError("no SMTP reply in time"))


def _refusal(stages: list[str], replies: list[Reply]) -> SmtpReplyError | None:
    """The refusal to report: MAIL's, else a temporary RCPT one before a permanent one (a
    greylisted recipient is worth a retry), else DATA's; None when all went through."""
    mail, *rest = replies
    if mail.code != 250:
        return SmtpReplyError("MAIL", mail)
    rcpts = [(s, r) for s, r in zip(stages[1:], rest, strict=False) if s == "RCPT"]
    refused = [r for _, r in rcpts if r.code not in (250, 251)]
    if refused:
        temporary = [r for r in refused if 400 <= r.code < 500]
        return SmtpReplyError("RCPT", (temporary or refused)[0])
    if len(replies) == len(stages) and replies[-1].code != 354:
        return SmtpReplyError("DATA", replies[-1])
    return None
