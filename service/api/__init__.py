"""The JSON surface: its routes, one module per concern, and how it renders errors.

A new area of the API is a module with a `routes` list, registered by one line below.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from service.api import (
    account,
    factors,
    flows,
    forward,
    health,
    passkeys,
    sessions,
    steps,
    wellknown,
)
from service.api.common import json_error
from service.errors import ServiceError
from service.web.surface import Surface


async def render_error(request: Request, error: ServiceError) -> Response:
    """How the JSON surface answers any error raised while it handles a request."""
    return json_error(error)


surface = Surface("api", render_error, json=True)

# The router tries routes in order: the hot path (every request of every protected service
# passes /auth/check) comes first, then the key set, then sign-in and refresh.
routes: list[Route] = [
    *forward.routes,
    *wellknown.routes,
    *flows.routes,
    *sessions.routes,
    *steps.routes,
    *factors.routes,
    *passkeys.routes,
    *account.routes,
    *health.routes,
]
