"""A lean SMTP sink for the bench: accepts every mail, as fast as Python can.

The bench's sink stands in for the relay Latch hands mail to (Postfix and the like, written
in C, taking thousands of mails a second). aiosmtpd costs ~0.8 ms of CPU a mail on the bench
machine, on the same two cores as Latch and wrk: it, not Latch, set how fast mail could
arrive. This one speaks just enough ESMTP (EHLO with PIPELINING, MAIL, RCPT, DATA, RSET, NOOP,
QUIT) in one asyncio protocol, and hands each message to a callback.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable

Deliver = Callable[[list[str], bytes], None]
_EHLO = b"250-sink\r\n250-PIPELINING\r\n250-8BITMIME\r\n250 SIZE 10485760\r\n"
_END = b"\r\n.\r\n"


class _Session(asyncio.Protocol):
    def __init__(self, deliver: Deliver) -> None:
        self.deliver = deliver
        self.buffer = b""
        self.in_data = False
        self.rcpts: list[str] = []
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.write(b"220 sink ESMTP\r\n")

    def data_received(self, data: bytes) -> None:
        assert self.transport is not None
        self.buffer += data
        replies: list[bytes] = []
        while True:
            if self.in_data:
                # The terminating line; the CRLF before it belongs to the message.
                end = (b"\r\n" + self.buffer).find(_END)
                if end < 0:
                    break
                message, self.buffer = self.buffer[:end], self.buffer[end + 3 :]
                self.in_data = False
                self.deliver(self.rcpts, message.replace(b"\r\n..", b"\r\n."))
                replies.append(b"250 2.0.0 OK: queued\r\n")
                continue
            line, sep, rest = self.buffer.partition(b"\r\n")
            if not sep:
                break
            self.buffer = rest
            replies.append(self._command(line))
            if replies[-1].startswith(b"221"):
                self.transport.write(b"".join(replies))
                self.transport.close()
                return
        if replies:
            self.transport.write(b"".join(replies))

    def _command(self, line: bytes) -> bytes:
        verb = line[:4].upper()
        if verb == b"EHLO":
            return _EHLO
        if verb in (b"HELO", b"RSET", b"NOOP") or verb == b"MAIL":
            if verb in (b"MAIL", b"RSET"):
                self.rcpts = []
            return b"250 OK\r\n"
        if verb == b"RCPT":
            start, end = line.find(b"<"), line.find(b">")
            self.rcpts.append(line[start + 1 : end].decode("utf-8", "replace"))
            return b"250 OK\r\n"
        if verb == b"DATA":
            self.in_data = True
            return b"354 End data with <CR><LF>.<CR><LF>\r\n"
        if verb == b"QUIT":
            return b"221 Bye\r\n"
        return b"502 Command not implemented\r\n"


class LeanSink:
    """The sink's own event loop on a thread, listening on host:port."""

    def __init__(self, host: str, port: int, deliver: Deliver) -> None:
        self.host, self.port, self.deliver = host, port, deliver
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="sink", daemon=True)
        self._server: asyncio.Server | None = None

    def start(self) -> None:
        """Listen, and serve on the sink's thread."""
        self._thread.start()
        future = asyncio.run_coroutine_threadsafe(
            self._loop.create_server(lambda: _Session(self.deliver), self.host, self.port),
            self._loop,
        )
        self._server = future.result(10)

    def stop(self) -> None:
        """Stop listening and end the thread."""

        async def close() -> None:
            if self._server is not None:
                self._server.close()

        asyncio.run_coroutine_threadsafe(close(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()
