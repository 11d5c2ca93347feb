"""Who is calling: the client's address and User-Agent, and the signed-in person."""

from __future__ import annotations

from starlette.requests import HTTPConnection

from service.errors import ServiceError, UnauthenticatedError
from service.settings import Settings
from service.signin.sessions import Identity
from service.web.hot import checked
from service.web.security import client_ip
from service.web.state import app_state

MAX_USER_AGENT = 300


def client(connection: HTTPConnection) -> tuple[str, str]:
    """The client IP (proxy-aware, docs/design.md §4) and a bounded User-Agent."""
    settings = app_state(connection).settings
    ip = client_ip(connection.scope, settings.web.trusted_proxies)
    return ip, connection.headers.get("user-agent", "")[:MAX_USER_AGENT]


def access_token(connection: HTTPConnection, settings: Settings) -> str | None:
    """The access JWT from the session cookie or an `Authorization: Bearer` header."""
    return connection.cookies.get(settings.session_cookie) or _bearer(connection)


def _bearer(connection: HTTPConnection) -> str | None:
    auth = connection.headers.get("authorization", "")
    if auth[:7].lower() == "bearer ":
        return auth[7:].strip()
    return None


async def current_identity(connection: HTTPConnection) -> Identity:
    """The signed-in person of this request, else UnauthenticatedError."""
    state = app_state(connection)
    token = access_token(connection, state.settings)
    already = checked(connection.scope)
    try:
        if isinstance(already, ServiceError):
            raise already
        if already is not None:
            return already
        return await state.sessions.check(token)
    except UnauthenticatedError as e:
        if token is not None and token == _bearer(connection):
            # RFC 6750 §3.1: a refused Bearer token is named in the challenge, so the client
            # knows to get a new token rather than to send one.
            e.bearer_error = "invalid_token"
        raise
