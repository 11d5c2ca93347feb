"""Admin keys on the admin surface: `Authorization: Bearer latch_admin_…`, checked on every call.

Declared on the route (`admin_call`), not re-checked in handlers. A key is looked up by its
SHA-256 (256 random bits: nothing to guess, so no slow hash and no lock-out is needed), is never
cached (a revoked key's next call is a 401), and names the actor of everything the call does.
No cookie is read here: a browser holding a session cannot be made to call this API (no CSRF).
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import Response

from service.errors import UnauthenticatedError
from service.store import Actor
from service.web.identity import client
from service.web.state import app_state

AdminHandler = Callable[[Request, Actor], Awaitable[Response]]


class AdminKeyError(UnauthenticatedError):
    """No admin key, a wrong one or a revoked one: all read the same (the challenge is the JSON
    API's, with `error="invalid_token"` when a key was sent, as RFC 6750 §3.1 asks)."""

    message = "A valid admin key is required (Authorization: Bearer latch_admin_…)."

    def __init__(self, *, presented: bool) -> None:
        super().__init__()
        if presented:
            self.bearer_error = "invalid_token"


def bearer(request: Request) -> str | None:
    """The bearer credential of the request, if any."""
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None


def admin_call(handler: AdminHandler) -> Callable[[Request], Awaitable[Response]]:
    """The route's endpoint: authenticate the admin key, then call `handler` with its actor."""

    @functools.wraps(handler)
    async def endpoint(request: Request) -> Response:
        key = bearer(request)
        name = await app_state(request).operator.authenticate(key) if key else None
        if name is None:
            raise AdminKeyError(presented=key is not None)
        ip, user_agent = client(request)
        return await handler(request, Actor(f"admin:{name}", ip, user_agent))

    return endpoint
