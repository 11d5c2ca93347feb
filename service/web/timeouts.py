"""Bounds on slow clients: the time to send the request headers, and the time to send a body.

uvicorn has neither: a client that sends half its headers, or a Content-Length and then nothing,
holds a connection (and, for a body, a running handler) for as long as it likes, so a few
hundred of them starve the server (slowloris). A proxy in front should bound both too (nginx's
`client_header_timeout` and `client_body_timeout`); these hold when Latch is reached directly.
"""

from __future__ import annotations

import asyncio
import logging

from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from service.web.security import send_error

log = logging.getLogger("latch.http")
REQUEST_TIMEOUT = (
    b"HTTP/1.1 408 Request Timeout\r\ncontent-type: text/plain; charset=utf-8\r\n"
    b"content-length: 16\r\nconnection: close\r\n\r\nRequest Timeout."
)


class _BodyTimeout(Exception):
    pass


class BodyTimeoutMiddleware:
    """408 (and the connection closed) when the body is not all there within `timeout` seconds.

    The budget is the time spent *waiting* for body chunks, so it bounds the gaps between chunks
    and the whole body alike, while a handler that is slow on its own is not charged for it.
    Once the body is complete, later `receive()` calls (waiting for a disconnect) are not timed.
    """

    def __init__(self, app: ASGIApp, timeout: float) -> None:
        self.app = app
        self.timeout = timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # GET and HEAD handlers never read a body, so nothing there could wait on one: skip the
        # wrapping on them (every forward-auth check is a GET on the hot path).
        if scope["type"] != "http" or not self.timeout or scope["method"] in ("GET", "HEAD"):
            await self.app(scope, receive, send)
            return
        loop = asyncio.get_running_loop()
        budget = self.timeout
        complete = False
        started = False

        async def timed_receive() -> Message:
            nonlocal budget, complete
            if complete:
                return await receive()
            before = loop.time()
            try:
                async with asyncio.timeout(budget):
                    message = await receive()
            except TimeoutError:
                raise _BodyTimeout from None
            budget -= loop.time() - before
            complete = message["type"] != "http.request" or not message.get("more_body", False)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, timed_receive, tracking_send)
        except _BodyTimeout:
            log.info("http.slow_body %s: body not received in time", scope.get("path", ""))
            if not started:
                # `connection: close`: uvicorn closes the socket after the answer, so the rest
                # of the body never has to be read.
                await send_error(
                    scope,
                    send,
                    408,
                    "request_timeout",
                    "The request body took too long to arrive.",
                    [(b"connection", b"close")],
                )


class HeaderTimeoutProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, with a deadline for the request line and headers.

    The clock starts when the connection opens, or at the first byte of a later request on a
    kept-alive connection (idle time between requests is uvicorn's keep-alive timeout), and
    stops when the headers are complete. At the deadline the client gets a bare 408 and the
    connection is closed. A subclass per value (see `http_protocol`), as uvicorn builds the
    protocol itself with its own arguments.
    """

    header_timeout: float = 10.0
    _header_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_header_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_header_timer()
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._header_timer is None:  # never extended by a request that starts later
            self._arm_header_timer()

    def on_headers_complete(self) -> None:
        self._disarm_header_timer()
        super().on_headers_complete()

    def _arm_header_timer(self) -> None:
        if self.header_timeout:
            self._header_timer = self.loop.call_later(self.header_timeout, self._header_late)

    def _disarm_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _header_late(self) -> None:
        self._header_timer = None
        if self.transport.is_closing():
            return
        if self.cycle is not None and not self.cycle.response_complete:
            # A pipelined request's answer is still being written: a 408 now would land in the
            # middle of it. Look again later.
            self._arm_header_timer()
            return
        log.debug("http.slow_headers: connection closed")
        self.transport.write(REQUEST_TIMEOUT)
        self.transport.close()


def http_protocol(header_timeout: float) -> type[HeaderTimeoutProtocol]:
    """The protocol class for uvicorn's `http=` with this header deadline (0: none)."""

    class LatchHttpProtocol(HeaderTimeoutProtocol):
        pass

    LatchHttpProtocol.header_timeout = header_timeout
    return LatchHttpProtocol
