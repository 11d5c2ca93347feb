"""`python -m bench.micro`: the token verifier in-process, against a raw `jwt.decode`.

The token is a real Latch access JWT (signed by service.tokens.Keyring with a generated
Ed25519 key) and the Verifier fetches the real JWKS document from a loopback HTTP server once,
so every path measured is the one a protected service runs.
"""

from __future__ import annotations

import json
import tempfile
import threading
import time
import timeit
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jwt

from service.crypto import new_id
from service.tokens import Keyring, add_key
from service.verifier import Verifier

ISSUER = AUDIENCE = "http://127.0.0.1:8000"
ROUNDS = 2000


def per_call_us(fn: Callable[[], object], rounds: int = ROUNDS) -> float:
    """The best of five timings of `rounds` calls, in microseconds a call."""
    fn()
    return min(timeit.repeat(fn, number=rounds, repeat=5)) / rounds * 1e6


@contextmanager
def jwks_server(document: dict[str, Any]) -> Iterator[str]:
    """Serve the JWKS document on loopback; yields its URL."""
    body = json.dumps(document).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/.well-known/jwks.json"
    finally:
        server.shutdown()
        server.server_close()


def measure() -> dict[str, float]:
    """µs a call: raw decode, the Verifier uncached and cached, and Latch's own check."""
    with tempfile.TemporaryDirectory(prefix="latch-micro-") as tmp:
        keys_dir = Path(tmp) / "keys"
        add_key(keys_dir, "EdDSA", "current")
        keyring = Keyring(keys_dir, "EdDSA", b"\0" * 32)
        now = int(time.time())
        claims: dict[str, Any] = {"iss": ISSUER, "aud": AUDIENCE, "sub": new_id()}
        claims["email"] = "a@example.com"
        claims |= {"sid": new_id(), "iat": now, "nbf": now, "exp": now + 900, "jti": new_id()}
        token = keyring.sign(claims)
        public = keyring.current.public

        def raw() -> object:
            return jwt.decode(token, public, algorithms=["EdDSA"], audience=AUDIENCE, issuer=ISSUER)

        with jwks_server(keyring.jwks()) as url:
            cached = Verifier(issuer=ISSUER, audience=AUDIENCE, jwks_url=url)
            # cache_size=0: every call verifies the signature (the first sight of a token).
            uncached = Verifier(issuer=ISSUER, audience=AUDIENCE, jwks_url=url, cache_size=0)
            cached.verify(token)
            uncached.verify(token)
            timings = {
                "raw jwt.decode (EdDSA)": per_call_us(raw),
                "Verifier.verify, uncached": per_call_us(lambda: uncached.verify(token)),
                "Verifier.verify, cached": per_call_us(lambda: cached.verify(token), 50_000),
                "service.tokens verify_jwt (Latch's own, uncached)": per_call_us(
                    lambda: keyring.verify(
                        token, issuer=ISSUER, audience=AUDIENCE, max_lifetime=900
                    )
                ),
            }
    return timings


def lines(timings: dict[str, float]) -> list[str]:
    """The timings as a small Markdown table, with the speed relative to raw decode."""
    base = timings["raw jwt.decode (EdDSA)"]
    out = ["| path | µs a call | speed vs raw `jwt.decode` |", "| --- | ---: | ---: |"]
    out += [f"| {name} | {us:.2f} | {base / us:.2f}x |" for name, us in timings.items()]
    return out


def main() -> int:
    """Print the micro-benchmark (target: Verifier.verify ≥ 1.0x raw decode)."""
    print("\n".join(lines(measure())))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
