"""The hot routes as raw ASGI: `GET /auth/check` and the public `/.well-known/*` documents.

Every request of every protected service passes `/auth/check`, and verifiers fetch the key set
whenever they meet a new key id, so these answer here, before Starlette's router and the
middleware that does nothing for them: no `Request` is built, no route is matched, and the
response headers are precomputed lists. What those layers would have done still happens, by
construction or by handing over:

- the security headers and `Cache-Control` of `SecurityHeadersMiddleware` are in every
  answer (`security_headers`), and the `/.well-known/*` ones carry the wildcard CORS of
  `PublicCorsMiddleware`;
- the access log line and the latency metric come from `AccessLogMiddleware`, which sits
  outside this layer;
- the body limit and body timeout never apply to a GET or HEAD;
- anything these paths do not answer themselves goes to the full stack unchanged: another
  method (405 with `Allow`, preflights), a `/.well-known/*` request for another host (the host
  check), an `Origin` when credentialed CORS is configured (CORSMiddleware's headers), and
  every refused check (the JSON surface renders the 401 or 503). A refused check is not done
  twice: its outcome travels in the scope (`CHECKED`) to `current_identity`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from starlette.requests import cookie_parser
from starlette.types import ASGIApp, Receive, Scope, Send

from service.errors import ServiceError
from service.settings import Settings
from service.signin.sessions import Identity, Sessions
from service.tokens import Keyring
from service.web.public_cors import PREFIX as PUBLIC_PREFIX
from service.web.security import security_headers

CHECK_PATH = "/auth/check"
# The scope key that carries a refused check's error from here to `current_identity`.
CHECKED = "latch.checked"
_READ = ("GET", "HEAD")
_PUBLIC_CACHE = (b"cache-control", b"public, max-age=300")
_ANY_ORIGIN = (b"access-control-allow-origin", b"*")


class RouteName:
    """What the access log reads from `scope["route"]` (the route template)."""

    __slots__ = ("path",)

    def __init__(self, path: str) -> None:
        self.path = path


# A document: its body, rebuilt whenever the keyring's generation changes.
DocumentBuilder = Callable[[], bytes]


class HotPaths:
    """Answers the hot GETs itself; everything else goes to `app`."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        settings: Settings,
        sessions: Sessions,
        keyring: Keyring,
        documents: Mapping[str, DocumentBuilder],
    ) -> None:
        self.app = app
        self.settings = settings
        self.sessions = sessions
        self.keyring = keyring
        self.documents = dict(documents)
        # Every document gets the wildcard CORS, which PublicCorsMiddleware gives only there.
        if not all(path.startswith(PUBLIC_PREFIX) for path in self.documents):
            raise ValueError(f"hot documents must be under {PUBLIC_PREFIX}")
        self.cookie_name = settings.session_cookie
        self.host = settings.host.encode("latin-1")
        # Credentialed CORS adds headers to a request with an Origin: those go the long way.
        self.cors = bool(settings.web.allowed_origins)
        secure = security_headers(settings)
        self._check_tail = [(b"content-length", b"0"), *secure, (b"cache-control", b"no-store")]
        self._doc_tail = [*secure, _ANY_ORIGIN]
        self._built: tuple[int, dict[str, tuple[bytes, list[tuple[bytes, bytes]]]]] | None = None
        self._routes = {path: RouteName(path) for path in (CHECK_PATH, *self.documents)}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] in _READ:
            path = scope["path"]
            if path == CHECK_PATH:
                await self._check(scope, receive, send)
                return
            if path in self.documents:
                await self._document(scope, receive, send)
                return
        await self.app(scope, receive, send)

    async def _check(self, scope: Scope, receive: Receive, send: Send) -> None:
        cookie = authorization = None
        for name, value in scope["headers"]:
            if name == b"cookie":
                # Several Cookie lines are joined as Starlette does (RFC 9113 §8.2.3).
                cookie = value if cookie is None else cookie + b"; " + value
            elif name == b"authorization":
                authorization = value
            elif name == b"origin" and self.cors:
                await self.app(scope, receive, send)
                return
        token = None
        if cookie is not None:
            token = cookie_parser(cookie.decode("latin-1")).get(self.cookie_name) or None
        if token is None and authorization is not None:
            auth = authorization.decode("latin-1")
            if auth[:7].lower() == "bearer ":
                token = auth[7:].strip()
        try:
            identity = await self.sessions.check(token)
        except ServiceError as e:
            # Refused (401) or unanswerable (503): the JSON surface renders it, with the
            # challenge and headers its tests hold it to.
            scope[CHECKED] = e
            await self.app(scope, receive, send)
            return
        try:
            headers = [
                (b"x-latch-user", identity.user_id.encode("latin-1")),
                (b"x-latch-email", identity.email.encode("latin-1")),
                (b"x-latch-session", identity.session_id.encode("latin-1")),
                (b"x-latch-aal", str(int(identity.aal)).encode()),
                *self._check_tail,
            ]
        except UnicodeEncodeError:
            # What a header cannot carry as Latin-1 is the routed handler's to answer.
            scope[CHECKED] = identity
            await self.app(scope, receive, send)
            return
        scope["route"] = self._routes[CHECK_PATH]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b""})

    async def _document(self, scope: Scope, receive: Receive, send: Send) -> None:
        host = None
        for name, value in scope["headers"]:
            if name == b"host":
                host = value.lower()
                break
        if host != self.host:
            await self.app(scope, receive, send)  # the host check answers
            return
        path = scope["path"]
        body, headers = self._bodies()[path]
        scope["route"] = self._routes[path]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send(
            {"type": "http.response.body", "body": b"" if scope["method"] == "HEAD" else body}
        )

    def _bodies(self) -> dict[str, tuple[bytes, list[tuple[bytes, bytes]]]]:
        """Every document's body and headers, built once per key generation."""
        generation = self.keyring.generation
        if self._built is None or self._built[0] != generation:
            built: dict[str, tuple[bytes, list[tuple[bytes, bytes]]]] = {}
            for path, build in self.documents.items():
                body = build()
                built[path] = (body, self._document_headers(body))
            self._built = (generation, built)
        return self._built[1]

    def _document_headers(self, body: bytes) -> list[tuple[bytes, bytes]]:
        return [
            _PUBLIC_CACHE,
            (b"content-length", str(len(body)).encode()),
            (b"content-type", b"application/json"),
            *self._doc_tail,
        ]


def checked(scope: Mapping[str, Any]) -> Identity | ServiceError | None:
    """The outcome of a check the hot path already made and handed over, if any."""
    found = scope.get(CHECKED)
    return found if isinstance(found, Identity | ServiceError) else None
