"""`Access-Control-Allow-Origin: *` on the public `/.well-known/*` documents, and only there.

The JWKS and latch-configuration are public, hold no credential and differ for nobody, so any
web page may read them, as every OpenID provider's discovery and JWKS allow. Nothing else gets
a wildcard: the JSON API answers with cookies, and its CORS (credentials, ALLOWED_ORIGINS only)
stays with CORSMiddleware, which this sits outside of.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

PREFIX = "/.well-known/"
# Headers this middleware owns on a well-known response; whatever an inner layer set for them
# (CORSMiddleware echoes an allowed origin and adds credentials) is replaced.
_OWNED = (
    b"access-control-allow-origin",
    b"access-control-allow-credentials",
    b"access-control-allow-methods",
    b"access-control-allow-headers",
    b"access-control-max-age",
)
_METHODS = b"GET, HEAD, OPTIONS"


class PublicCorsMiddleware:
    """Wildcard CORS for GET/HEAD of `/.well-known/*`, and their preflights answered here."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(PREFIX):
            await self.app(scope, receive, send)
            return
        if scope["method"] == "OPTIONS":
            await self._preflight(send)
            return

        async def send_wildcard(message: Message) -> None:
            if message["type"] == "http.response.start":
                raw = [(k, v) for k, v in message.get("headers", []) if k.lower() not in _OWNED]
                # `*` without credentials: a browser sends no cookie with such a request, and
                # would refuse the answer if Latch said it allowed credentials with `*`.
                raw.append((b"access-control-allow-origin", b"*"))
                message["headers"] = raw
            await send(message)

        await self.app(scope, receive, send_wildcard)

    @staticmethod
    async def _preflight(send: Send) -> None:
        # Any origin, the read methods only, any request header (a fetch with a custom header
        # preflights); a day's caching, which browsers cap lower (Chromium at 2 hours).
        # A plain OPTIONS (no Access-Control-Request-Method) gets the same answer: it is
        # harmless and says which methods there are.
        await send(
            {
                "type": "http.response.start",
                "status": 204,
                "headers": [
                    (b"access-control-allow-origin", b"*"),
                    (b"access-control-allow-methods", _METHODS),
                    (b"access-control-allow-headers", b"*"),
                    (b"access-control-max-age", b"86400"),
                    (b"allow", _METHODS),
                    (b"cache-control", b"public, max-age=86400"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": b""})
