"""GET /.well-known/openid-configuration (OpenID Connect Discovery 1.0 §3)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from service.oidc.clients import ID_TOKEN_ALGS, SCOPES
from service.settings import Settings
from service.web.state import app_state


def metadata(settings: Settings) -> dict[str, Any]:
    """The provider's metadata; every URL comes from PUBLIC_URL."""
    base = settings.public_url
    return {
        "issuer": base,
        "authorization_endpoint": f"{base}/oauth/authorize",
        "token_endpoint": f"{base}/oauth/token",
        "userinfo_endpoint": f"{base}/oauth/userinfo",
        "jwks_uri": f"{base}/.well-known/jwks.json",
        "revocation_endpoint": f"{base}/oauth/revoke",
        "end_session_endpoint": f"{base}/oauth/logout",
        "scopes_supported": list(SCOPES),
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": ["authorization_code", "refresh_token"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": list(ID_TOKEN_ALGS),
        "token_endpoint_auth_methods_supported": [
            "client_secret_basic",
            "client_secret_post",
            "none",
        ],
        "revocation_endpoint_auth_methods_supported": [
            "client_secret_basic",
            "client_secret_post",
            "none",
        ],
        "code_challenge_methods_supported": ["S256"],
        "prompt_values_supported": ["none", "login", "consent", "select_account"],
        "acr_values_supported": ["aal1", "aal2"],
        "claims_supported": [
            "iss",
            "sub",
            "aud",
            "exp",
            "iat",
            "auth_time",
            "nonce",
            "acr",
            "amr",
            "sid",
            "at_hash",
            "email",
            "email_verified",
        ],
        "claims_parameter_supported": False,
        "request_parameter_supported": False,
        "request_uri_parameter_supported": False,
        "authorization_response_iss_parameter_supported": True,
    }


def documents(settings: Settings) -> dict[str, Callable[[], bytes]]:
    """The discovery document for the hot path (service/web/hot.py), which serves it as this
    module's route would: the bytes JSONResponse sends, with the same cache lifetime."""
    return {
        "/.well-known/openid-configuration": lambda: bytes(JSONResponse(metadata(settings)).body)
    }


async def openid_configuration(request: Request) -> Response:
    """The metadata, cacheable for five minutes like latch-configuration."""
    settings = app_state(request).settings
    return JSONResponse(metadata(settings), headers={"Cache-Control": "public, max-age=300"})


routes: list[BaseRoute] = [
    Route("/.well-known/openid-configuration", openid_configuration, methods=["GET"]),
]
