"""Web safety: security headers, request body limit, host check, client IP, safe `next`."""

from __future__ import annotations

import ipaddress
import json
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.settings import Network, Settings
from service.web.surface import surface_of

# Paths that build no URL and are called by proxies and health checkers under other names.
HOST_EXEMPT = ("/healthz", "/readyz", "/metrics", "/auth/check")


def content_security_policy(settings: Settings) -> str:
    """Strict CSP: nothing inline, nothing third-party, no framing.

    `form-action` includes the allowed redirect origins because Chrome applies it to the
    redirect that follows a POST.
    """
    form_action = " ".join(("'self'", *settings.web.allowed_redirect_origins))
    return (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
        f"connect-src 'self'; form-action {form_action}; frame-ancestors 'none'; "
        "base-uri 'none'"
    )


def security_headers(settings: Settings) -> list[tuple[bytes, bytes]]:
    """The headers of docs/design.md §5 that every response carries (Cache-Control aside)."""
    headers = [
        (b"content-security-policy", content_security_policy(settings).encode()),
        (b"x-content-type-options", b"nosniff"),
        (b"referrer-policy", b"no-referrer"),
        (b"x-frame-options", b"DENY"),
        (b"cross-origin-opener-policy", b"same-origin"),
    ]
    if settings.https:
        headers.append((b"strict-transport-security", b"max-age=63072000; includeSubDomains"))
    return headers


class SecurityHeadersMiddleware:
    """Adds the headers of docs/design.md §5 to every response (unless the endpoint set its own)."""

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.headers = security_headers(settings)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                raw = list(message.get("headers", []))
                present = {name.lower() for name, _ in raw}
                raw.extend(h for h in self.headers if h[0] not in present)
                if b"cache-control" not in present:
                    raw.append((b"cache-control", b"no-store"))
                message["headers"] = raw
            await send(message)

        await self.app(scope, receive, send_with_headers)


class _TooLarge(Exception):
    pass


def _wants_json(scope: Scope) -> bool:
    # The surface that took the request decides; before any did (an unknown host), the client's
    # Accept header: browsers ask for text/html, API clients do not.
    surface = surface_of(scope)
    if surface is not None:
        return surface.json
    return "text/html" not in Headers(scope=scope).get("accept", "")


def _error_body(scope: Scope, status: int, code: str, message: str) -> tuple[bytes, bytes]:
    if _wants_json(scope):
        body = json.dumps({"error": {"code": code, "message": message}}).encode()
        return body, b"application/json"
    page = (
        "<!doctype html><html lang=en><meta charset=utf-8><title>Error</title>"
        f"<main><h1>{status}</h1><p>{message}</p><p><a href=/login>Start again</a></p></main>"
    )
    return page.encode(), b"text/html; charset=utf-8"


async def send_error(
    scope: Scope,
    send: Send,
    status: int,
    code: str,
    message: str,
    extra_headers: list[tuple[bytes, bytes]] | None = None,
) -> None:
    """Answer a raw ASGI request with an error in the format of its endpoint."""
    body, ctype = _error_body(scope, status, code, message)
    headers = [(b"content-type", ctype), (b"content-length", str(len(body)).encode())]
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": headers + (extra_headers or []),
        }
    )
    await send({"type": "http.response.body", "body": body})


class BodyLimitMiddleware:
    """Refuse bodies over MAX_BODY_BYTES with 413, counting chunks as they arrive
    (a missing or lying Content-Length does not get past it)."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.max_bytes or scope["method"] in ("GET", "HEAD"):
            await self.app(scope, receive, send)
            return
        declared = Headers(scope=scope).get("content-length")
        # A declared length over the limit is refused at the first read of the body, inside the
        # route, so the 413 is rendered by the surface the request reached.
        seen = int(declared) if declared is not None and declared.isdigit() else 0
        seen = seen if seen > self.max_bytes else 0
        started = False

        async def counting_receive() -> Message:
            nonlocal seen
            if seen > self.max_bytes:
                raise _TooLarge
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise _TooLarge
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except _TooLarge:
            if not started:
                await send_error(scope, send, 413, "too_large", "The request body is too large.")


class HostCheckMiddleware:
    """Only PUBLIC_URL's host is served (every URL Latch writes comes from PUBLIC_URL anyway);
    in development a GET for another name is sent to PUBLIC_URL instead."""

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.settings = settings
        self.host = settings.host

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in HOST_EXEMPT:
            await self.app(scope, receive, send)
            return
        host = Headers(scope=scope).get("host", "").lower()
        if host == self.host:
            await self.app(scope, receive, send)
            return
        if self.settings.development and scope["method"] == "GET":
            location = (self.settings.public_url + location_path(scope["path"])).encode("ascii")
            await send(
                {
                    "type": "http.response.start",
                    "status": 302,
                    "headers": [(b"location", location), (b"content-length", b"0")],
                }
            )
            await send({"type": "http.response.body", "body": b""})
            return
        await send_error(scope, send, 400, "invalid_request", "Unknown host.")


# RFC 3986 `pchar` without "%": what may stand unencoded in the path of a Location.
_PATH_SAFE = "/!$&'()*+,;=:@-._~"


def location_path(path: str) -> str:
    """A decoded request path, percent-encoded for a Location header.

    The ASGI path is already percent-decoded, so `/%0D%0ASet-Cookie:…` arrives holding a real
    CR LF: put into a header raw, it splits the header (uvicorn then drops the connection).
    Everything outside `pchar` is encoded, `%` included (it was decoded once already), and
    whatever is not valid Unicode is replaced, so any path gives one ASCII header value.
    """
    encoded = quote(path, safe=_PATH_SAFE, errors="replace")
    # An asterisk-form or absolute-form target may leave a path without its leading slash.
    return encoded if encoded.startswith("/") else "/" + encoded


def client_ip(scope: Scope, trusted: tuple[Network, ...]) -> str:
    """The socket peer; X-Forwarded-For only when the peer is a trusted proxy (then the
    right-most address that is not itself a trusted proxy)."""
    peer = (scope.get("client") or ("", 0))[0] or ""
    if not trusted or not _in(peer, trusted):
        return peer
    # Every X-Forwarded-For line, in order, as one list: HAProxy's `option forwardfor` adds a
    # line of its own after the client's instead of appending to it, so reading only the first
    # line (Headers.get) would believe whatever the client wrote there.
    hops = [
        hop.strip()
        for value in Headers(scope=scope).getlist("x-forwarded-for")
        for hop in value.split(",")
        if hop.strip()
    ]
    for candidate in reversed(hops):
        if not _in(candidate, trusted):
            return candidate if _is_ip(candidate) else peer
    return peer


def _is_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def _in(value: str, networks: tuple[Network, ...]) -> bool:
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        return False
    return any(address in net for net in networks)


def safe_next(raw: Any, settings: Settings, default: str = "/account") -> str:
    """A same-site path or an https URL on an allowed origin, rebuilt from its parts; else
    `default`. Backslashes, control characters, tabs and userinfo are refused outright
    (`https://evil.com\\@ok.com` parses as ok.com but browsers go to evil.com)."""
    if not isinstance(raw, str) or not raw or len(raw) > 2000:
        return default
    if "\\" in raw or any(ord(ch) < 0x21 or ord(ch) == 0x7F for ch in raw):
        return default
    try:
        parts = urlsplit(raw)
        port = parts.port
    except ValueError:
        return default
    if not parts.scheme and not parts.netloc:
        if not raw.startswith("/") or raw.startswith("//"):
            return default
        return urlunsplit(("", "", parts.path, parts.query, parts.fragment))
    if parts.scheme != "https" or not parts.hostname or "@" in parts.netloc:
        return default
    host = parts.hostname.lower()
    netloc = f"{host}:{port}" if port else host
    origin = f"https://{netloc}"
    if origin not in settings.web.allowed_redirect_origins:
        return default
    return urlunsplit(("https", netloc, parts.path or "/", parts.query, parts.fragment))


def origin_allowed(origin: str | None, settings: Settings) -> bool:
    """An Origin header is acceptable for the JSON API: absent, Latch's own, or allowed."""
    if origin is None:
        return True
    origin = origin.lower()
    return origin == settings.origin or origin in settings.web.allowed_origins
