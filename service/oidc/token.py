"""POST /oauth/token, POST /oauth/revoke, GET|POST /oauth/userinfo: the back-channel endpoints.

Errors are RFC 6749 §5.2 JSON (`{"error", "error_description"}`), never Latch's own error shape:
these are read by OAuth libraries, not by Latch's pages. Token responses are never cached
(`Cache-Control: no-store`, RFC 6749 §5.1).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from service.errors import InvalidRequestError
from service.oidc.exchange import Credentials, TokenError, parse_credentials
from service.oidc.state import oidc_state
from service.web.bodies import check_form_encoding

NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
MAX_FIELDS = 20


def oauth_error(error: TokenError, *, basic: bool = False, bearer: bool = False) -> JSONResponse:
    """An RFC 6749 §5.2 (or RFC 6750 §3) error response."""
    headers = dict(NO_STORE)
    if error.status == 401 and basic:
        headers["WWW-Authenticate"] = 'Basic realm="latch"'
    if bearer:
        headers["WWW-Authenticate"] = f'Bearer error="{error.error}"'
    body = {"error": error.error, "error_description": error.description}
    return JSONResponse(body, status_code=error.status, headers=headers)


async def _form(request: Request) -> dict[str, str]:
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype != "application/x-www-form-urlencoded":
        raise TokenError("invalid_request", "send application/x-www-form-urlencoded")
    try:
        check_form_encoding(await request.body())
    except InvalidRequestError as e:
        raise TokenError("invalid_request", "the form is not valid UTF-8") from e
    form = await request.form(max_files=0, max_fields=MAX_FIELDS)
    values: dict[str, str] = {}
    for key, value in form.multi_items():
        # RFC 6749 §3.2: "Request and response parameters MUST NOT be included more than once."
        if key in values or not isinstance(value, str):
            raise TokenError("invalid_request", f"{key} is given more than once")
        values[key] = value
    return values


Handler = Callable[[Request, dict[str, str], Credentials], Awaitable[Response]]


async def _authenticated(request: Request, handle: Handler) -> Response:
    credentials: Credentials | None = None
    try:
        form = await _form(request)
        credentials = parse_credentials(request.headers.get("authorization", ""), form)
        return await handle(request, form, credentials)
    except TokenError as e:
        basic = (
            credentials.basic
            if credentials
            else "basic " in request.headers.get("authorization", "").lower()[:6]
        )
        return oauth_error(e, basic=basic)


async def _token(request: Request, form: dict[str, str], credentials: Credentials) -> Response:
    tokens = oidc_state(request).tokens
    client = await tokens.authenticate(credentials)
    grant_type = form.get("grant_type")
    body: dict[str, Any]
    if grant_type == "authorization_code":
        body = await tokens.exchange_code(client, form)
    elif grant_type == "refresh_token":
        body = await tokens.refresh(client, form)
    else:
        raise TokenError("unsupported_grant_type", "authorization_code or refresh_token")
    return JSONResponse(body, headers=NO_STORE)


async def token(request: Request) -> Response:
    """The token endpoint (RFC 6749 §3.2)."""
    return await _authenticated(request, _token)


async def _revoke(request: Request, form: dict[str, str], credentials: Credentials) -> Response:
    tokens = oidc_state(request).tokens
    client = await tokens.authenticate(credentials)
    await tokens.revoke(client, form.get("token") or "")
    return Response(status_code=200, headers=NO_STORE)


async def revoke(request: Request) -> Response:
    """The revocation endpoint (RFC 7009)."""
    return await _authenticated(request, _revoke)


async def userinfo(request: Request) -> Response:
    """The userinfo endpoint (OpenID Connect Core §5.3): a bearer access token in the header."""
    auth = request.headers.get("authorization", "")
    if auth[:7].lower() != "bearer ":
        error = TokenError("invalid_token", "a bearer access token is required", 401)
        return oauth_error(error, bearer=True)
    try:
        claims = await oidc_state(request).tokens.userinfo(auth[7:].strip())
    except TokenError as e:
        return oauth_error(e, bearer=True)
    return JSONResponse(claims, headers=NO_STORE)


routes: list[BaseRoute] = [
    Route("/oauth/token", token, methods=["POST"]),
    Route("/oauth/revoke", revoke, methods=["POST"]),
    Route("/oauth/userinfo", userinfo, methods=["GET", "POST"]),
]
