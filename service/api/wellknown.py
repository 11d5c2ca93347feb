"""What verifiers and clients read about this Latch: /.well-known/* and /openapi.json, all
public and cacheable."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from service.api.openapi import build_spec
from service.settings import Settings
from service.tokens import Keyring
from service.web.state import app_state


def configuration_body(settings: Settings, keyring: Keyring) -> dict[str, Any]:
    """The latch-configuration document."""
    keys = keyring.jwks()["keys"]
    base = settings.public_url
    body = {
        "issuer": base,
        "audience": settings.tokens.audience,
        "jwks_uri": f"{base}/.well-known/jwks.json",
        "cookie_names": {"session": settings.session_cookie, "refresh": settings.refresh_cookie},
        "refresh_url": f"{base}/refresh",
        "login_url": f"{base}/login",
        "auth_check_url": f"{base}/auth/check",
        "algorithms": sorted({k["alg"] for k in keys}),
        "token_type": "at+jwt",
        # The `client_id` of the tokens Latch's own sign-in issues (RFC 9068 §2.2).
        "client_id": base,
        # A verifier refuses tokens that claim to live longer (Verifier(max_lifetime=...)).
        "access_token_ttl": settings.sessions.access_ttl,
    }
    return body


def documents(settings: Settings, keyring: Keyring) -> dict[str, Callable[[], bytes]]:
    """The public documents the hot path serves (service/web/hot.py), by path: each builds its
    body, called again only when the keyring's generation changes. The OpenID provider's
    discovery document is its own (`oidc.documents`: api/ and oidc/ never import each other);
    create_app joins the two."""
    return {
        "/.well-known/jwks.json": keyring.jwks_json,
        "/.well-known/latch-configuration": lambda: _json(configuration_body(settings, keyring)),
    }


def _json(body: dict[str, Any]) -> bytes:
    # The bytes JSONResponse would send: the routed handler and the hot path answer alike.
    return bytes(JSONResponse(body).body)


async def configuration(request: Request) -> Response:
    """GET /.well-known/latch-configuration: what a verifier needs to know (cacheable)."""
    state = app_state(request)
    body = configuration_body(state.settings, state.keyring)
    return JSONResponse(body, headers={"Cache-Control": "public, max-age=300"})


async def jwks(request: Request) -> Response:
    """GET /.well-known/jwks.json: the published public keys (cacheable)."""
    return Response(
        app_state(request).keyring.jwks_json(),
        media_type="application/json",
        headers={"Cache-Control": "public, max-age=300"},
    )


async def openapi(request: Request) -> Response:
    """GET /openapi.json: the JSON API described as OpenAPI 3."""
    state = app_state(request)
    spec = build_spec(state.settings, parts=state.openapi_parts)
    return JSONResponse(spec, headers={"Cache-Control": "public, max-age=300"})


# The key set first: verifiers fetch it whenever they meet a new key id.
routes = [
    Route("/.well-known/jwks.json", jwks, methods=["GET"]),
    Route("/.well-known/latch-configuration", configuration, methods=["GET"]),
    Route("/openapi.json", openapi, methods=["GET"]),
]
