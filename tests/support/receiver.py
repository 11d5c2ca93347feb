"""A webhook receiver on loopback: records every POST, answers with a status the test sets, can
hold requests until released (a slow receiver), and can be stopped and started again on the same
port (a receiver that is down, then returns)."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self

from standardwebhooks.webhooks import Webhook

from .net import HOST, free_port
from .running import Running


@dataclass(frozen=True)
class Received:
    """One request as it arrived."""

    headers: dict[str, str]
    body: bytes


class Receiver(Running):
    """`with Receiver() as hooks:` — `hooks.url`, `hooks.received`, `hooks.status = 500`."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.url = f"http://{HOST}:{self.port}/hook"
        self.received: list[Received] = []
        self.status = 204
        self.gate = threading.Event()
        self.gate.set()
        self.holding = 0  # requests waiting at the gate right now
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> Self:
        """Listen (again) on the port."""
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (the stdlib's name)
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                with receiver._lock:
                    receiver.holding += 1
                receiver.gate.wait(30)
                with receiver._lock:
                    receiver.holding -= 1
                    receiver.received.append(Received(dict(self.headers.items()), body))
                    status = receiver.status
                self.send_response(status)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer((HOST, self.port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop listening: connections are refused until `start`."""
        self.gate.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def verified(self, secret: str) -> list[dict[str, Any]]:
        """Every payload received with a 2xx answer pending or given, each verified by the
        reference `standardwebhooks` package (raises on any bad signature)."""
        with self._lock:
            got = list(self.received)
        return [Webhook(secret).verify(r.body, r.headers) for r in got]

    def ids(self) -> list[str]:
        """The `webhook-id` of every request received."""
        with self._lock:
            return [r.headers["webhook-id"] for r in self.received]
