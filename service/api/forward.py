"""Forward auth: GET /auth/check for nginx, Caddy and Traefik."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from service.web.identity import current_identity


async def auth_check(request: Request) -> Response:
    """GET /auth/check: forward auth for nginx, Caddy and Traefik (the hot path)."""
    identity = await current_identity(request)
    return Response(
        status_code=200,
        headers={
            "X-Latch-User": identity.user_id,
            "X-Latch-Email": identity.email,
            "X-Latch-Session": identity.session_id,
            "X-Latch-AAL": str(int(identity.aal)),
        },
    )


routes = [
    Route("/auth/check", auth_check, methods=["GET", "HEAD"]),
]
