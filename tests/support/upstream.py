"""The application a proxy protects in the forward-auth tests: it answers with the identity
header the proxy passed on, and says (in a response header) which cookies reached it."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from .net import HOST

SEEN_COOKIE = "X-Seen-Cookie"


class Echo(BaseHTTPRequestHandler):
    """Body `email=<X-Latch-Email>`; header X-Seen-Cookie: the Cookie header it received."""

    def _answer(self) -> None:
        self.rfile.read(int(self.headers.get("content-length") or 0))
        body = f"email={self.headers.get('X-Latch-Email', '')}".encode()
        self.send_response(200)
        self.send_header("content-length", str(len(body)))
        self.send_header(SEEN_COOKIE, "; ".join(self.headers.get_all("Cookie") or []))
        self.end_headers()
        self.wfile.write(body)

    do_GET = _answer
    do_POST = _answer

    def log_message(self, format: str, *args: object) -> None:
        """Quiet."""


@contextmanager
def echo_app() -> Iterator[str]:
    """The Echo app on a loopback port; yields its host:port."""
    server = ThreadingHTTPServer((HOST, 0), Echo)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"{HOST}:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def browser_cookies(browser_jar: dict[str, str]) -> dict[str, str]:
    """What a browser on Latch's host sends to an app on the same host: Latch's access and
    refresh cookies (cookies ignore ports) between two cookies of the app's own."""
    return {
        "app_pref": "dark",
        "latch_session": browser_jar["latch_session"],
        "latch_refresh": browser_jar["latch_refresh"],
        "app_cart": "3",
    }
