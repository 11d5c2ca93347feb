"""The OpenID Connect provider (docs/design.md §13): discovery, authorize, consent, token,
userinfo, revocation, logout. Its use cases (provider.py, exchange.py, clients.py, params.py,
jwts.py) know no HTTP; the other modules are its endpoints.

Two surfaces: the browser-facing endpoints render errors as pages, the back-channel ones
(token, revocation, userinfo, discovery) as RFC 6749 JSON.
"""

from __future__ import annotations

from collections.abc import Callable

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute

from service.db import Database
from service.errors import ErrorCode, ServiceError
from service.oidc import authorize, discovery, logout, token
from service.oidc.exchange import Tokens
from service.oidc.provider import Provider
from service.oidc.render import error_page
from service.oidc.state import OidcState, attach_oidc
from service.settings import Settings
from service.tokens import Keyring
from service.web.surface import Surface

# Latch's own error codes, as RFC 6749 names them.
_OAUTH_CODES = {
    ErrorCode.INTERNAL: "server_error",
    ErrorCode.UNAVAILABLE: "temporarily_unavailable",
}


async def _render_page_error(request: Request, error: ServiceError) -> Response:
    heading = "Page not found" if error.code == ErrorCode.NOT_FOUND else "Something went wrong"
    return error_page(request, heading, error.message, error.status)


async def _render_json_error(request: Request, error: ServiceError) -> Response:
    body = {
        "error": _OAUTH_CODES.get(error.code, "invalid_request"),
        "error_description": error.message,
    }
    return JSONResponse(body, status_code=error.status, headers=error.headers)


pages_surface = Surface("oidc", _render_page_error, json=False)
api_surface = Surface("oidc-api", _render_json_error, json=True)
page_routes: list[BaseRoute] = [*authorize.routes, *logout.routes]
api_routes: list[BaseRoute] = [*discovery.routes, *token.routes]
# The public documents the hot path answers itself (service/web/hot.py), by path.
documents = discovery.documents


def attach(
    app: object,
    settings: Settings,
    database: Database,
    keyring: Keyring,
    clock: Callable[[], float],
) -> None:
    """Build the provider's collaborators once, for its handlers."""
    attach_oidc(
        app,
        OidcState(
            provider=Provider(settings, database, clock),
            tokens=Tokens(settings, database, keyring, clock),
        ),
    )
