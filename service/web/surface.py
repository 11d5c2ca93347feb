"""Surfaces: which one a request reached decides how its errors are rendered.

Each surface (the JSON API, the HTML pages, the OpenID provider's pages and its back channel,
later the admin API) owns its routes and its error renderer. `create_app` tags every route with
its surface; when a route handles a request it records the surface in the ASGI scope, so an
error raised anywhere below — in the handler, in the body limit, in the method check — is
rendered as that surface renders errors, not by guessing from a list of path prefixes. A
request that reached no route (an unknown path) gets the app's default surface; a catch-all
mount such as `/api` claims the unknown paths under it for its surface.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Match, Mount, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from service.errors import NotFoundError, ServiceError

SCOPE_KEY = "latch.surface"
ErrorRenderer = Callable[[Request, ServiceError], Awaitable[Response]]


@dataclass(frozen=True)
class Surface:
    """A surface's name, its renderer, and whether its bare (pre-handler) errors are JSON."""

    name: str
    render: ErrorRenderer
    json: bool


class SurfaceRoute(Route):
    """A Route that records its surface in the scope before anything can fail."""

    def __init__(self, route: Route, surface: Surface) -> None:
        super().__init__(
            route.path,
            route.endpoint,
            methods=sorted(route.methods) if route.methods else None,
            name=route.name,
            include_in_schema=route.include_in_schema,
        )
        self.surface = surface

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        scope[SCOPE_KEY] = self.surface
        await super().handle(scope, receive, send)


class SurfaceMount(Mount):
    """A Mount that records its surface in the scope (static files, catch-all prefixes)."""

    def __init__(self, path: str, app: ASGIApp, surface: Surface, name: str | None = None):
        super().__init__(path, app=app, name=name)
        self.surface = surface

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        scope[SCOPE_KEY] = self.surface
        await super().handle(scope, receive, send)


def tag_routes(routes: Sequence[BaseRoute], surface: Surface) -> list[BaseRoute]:
    """The same routes, each recording `surface` when it handles a request."""
    tagged: list[BaseRoute] = []
    for route in routes:
        if isinstance(route, Route):
            tagged.append(SurfaceRoute(route, surface))
        elif isinstance(route, Mount):
            tagged.append(SurfaceMount(route.path, route.app, surface, name=route.name))
        else:
            raise TypeError(f"cannot tag {type(route).__name__} with a surface")
    return tagged


async def _not_found(scope: Scope, receive: Receive, send: Send) -> None:
    raise NotFoundError()


class _ClaimedPrefix(SurfaceMount):
    # A partial match only: a route that knows the path but not the method (a 405) comes first.
    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        match, child = super().matches(scope)
        return (Match.PARTIAL if match == Match.FULL else match), child


def claim_prefix(path: str, surface: Surface) -> BaseRoute:
    """A catch-all mount: unknown paths under `path` are the surface's 404s."""
    return _ClaimedPrefix(path, _not_found, surface)


def surface_of(scope: Scope, default: Surface | None = None) -> Surface | None:
    """The surface that handled (or is handling) this request, else `default`."""
    found: Surface | None = scope.get(SCOPE_KEY)
    return found or default
