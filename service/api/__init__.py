"""JSON endpoints, forward auth (/auth/check), /.well-known/*, health."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from service.device import device_name
from service.errors import (
    FlowDeadError,
    FlowUsedError,
    ForbiddenOriginError,
    InvalidRequestError,
    NotFoundError,
    ServiceError,
    SigninExpiredError,
    UnsupportedMediaTypeError,
)
from service.settings import Settings
from service.signin.flows import Authenticated, Login, SecondStepDue, Started
from service.signin.refresh import RefreshRefusedError, refresh
from service.signin.steps import answer_second_step
from service.web.bodies import parse_json
from service.web.cookies import (
    clear_flow_cookie,
    clear_session_cookies,
    clear_signin_cookie,
    set_flow_cookie,
    set_session_cookies,
    set_signin_cookie,
    signin_cookie_name,
)
from service.web.identity import client, current_identity
from service.web.security import origin_allowed, safe_next
from service.web.state import app_state
from service.web.surface import Surface

MAX_FIELD = 2000


def json_error(error: ServiceError) -> JSONResponse:
    """An error in the JSON API's format."""
    return JSONResponse(error.to_json(), status_code=error.status, headers=error.headers)


async def render_error(request: Request, error: ServiceError) -> Response:
    """How the JSON surface answers any error raised while it handles a request."""
    return json_error(error)


surface = Surface("api", render_error, json=True)


async def read_json(request: Request, settings: Settings) -> dict[str, Any]:
    """The JSON object body of an API call, after the content-type and origin checks."""
    if not origin_allowed(request.headers.get("origin"), settings):
        raise ForbiddenOriginError()
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype != "application/json":
        raise UnsupportedMediaTypeError()
    raw = await request.body()
    if not raw.strip():
        return {}
    body = parse_json(raw)  # bounded nesting, valid Unicode only: hostile input is a 400
    if not isinstance(body, dict):
        raise InvalidRequestError("The body must be a JSON object.")
    return body


def text_field(body: dict[str, Any], name: str, *, required: bool = True) -> str | None:
    """A string field, bounded in length."""
    value = body.get(name)
    if value is None:
        if required:
            raise InvalidRequestError(f"`{name}` is required.", field=name)
        return None
    if not isinstance(value, str) or len(value) > MAX_FIELD:
        raise InvalidRequestError(f"`{name}` must be a string.", field=name)
    return value


def _started(started: Started, settings: Settings) -> Response:
    response = JSONResponse(
        {
            "flow_id": started.flow_id,
            "expires_in": started.expires_in,
            "resend_after": started.resend_after,
        },
        status_code=202,
    )
    set_flow_cookie(response, settings, started.flow_cookie)
    return response


def _signed_in(auth: Authenticated | SecondStepDue, settings: Settings) -> Response:
    if isinstance(auth, SecondStepDue):
        return _second_step_due(auth, settings)
    response = JSONResponse(
        {
            "user": {"id": auth.user_id, "email": auth.email},
            "session": {"id": auth.session_id, "expires_at": auth.session_expires_at},
        }
    )
    set_session_cookies(response, settings, auth)
    clear_flow_cookie(response, settings)
    return response


def _second_step_due(due: SecondStepDue, settings: Settings) -> Response:
    """200 {"next_step", "methods"}: the first step passed; no session cookie, only the
    pending sign-in's (the flow is consumed, so its cookie goes)."""
    response = JSONResponse({"next_step": "second_factor", "methods": list(due.methods)})
    set_signin_cookie(response, settings, due.signin_cookie)
    clear_flow_cookie(response, settings)
    return response


def _flow_id(request: Request, body: dict[str, Any], login: Login, settings: Settings) -> str:
    flow_id = text_field(body, "flow_id", required=False)
    if flow_id is None:
        flow_id = login.flow_from_cookie(request.cookies.get(settings.flow_cookie))
    if not flow_id:
        raise InvalidRequestError(
            "`flow_id` is required (or the latch_flow cookie).", field="flow_id"
        )
    return flow_id


async def start(request: Request) -> Response:
    """POST /api/start {"email", "next"?} -> 202."""
    state = app_state(request)
    settings, login = state.settings, state.login
    body = await read_json(request, settings)
    email = text_field(body, "email") or ""
    next_url = safe_next(body.get("next"), settings)
    ip, ua = client(request)
    started = await login.start(email=email, next_url=next_url, ip=ip, user_agent=ua)
    return _started(started, settings)


async def resend(request: Request) -> Response:
    """POST /api/resend {"flow_id"?} -> 202."""
    state = app_state(request)
    settings, login = state.settings, state.login
    body = await read_json(request, settings)
    return _started(await login.resend(flow_id=_flow_id(request, body, login, settings)), settings)


async def verify(request: Request) -> Response:
    """POST /api/verify {"code", "flow_id"?} -> 200 + cookies."""
    state = app_state(request)
    settings, login = state.settings, state.login
    body = await read_json(request, settings)
    code = text_field(body, "code") or ""
    ip, ua = client(request)
    auth = await login.verify_code(
        flow_id=_flow_id(request, body, login, settings), code=code, ip=ip, user_agent=ua
    )
    return _signed_in(auth, settings)


async def link(request: Request) -> Response:
    """POST /api/link {"token"} -> 200 + cookies."""
    state = app_state(request)
    settings, login = state.settings, state.login
    body = await read_json(request, settings)
    token = text_field(body, "token") or ""
    ip, ua = client(request)
    auth = await login.verify_link(
        token=token,
        browser_flow_id=login.flow_from_cookie(request.cookies.get(settings.flow_cookie)),
        ip=ip,
        user_agent=ua,
    )
    return _signed_in(auth, settings)


async def second_factor(request: Request) -> Response:
    """POST /api/second-factor {"method", "code"} -> 200 as verify (latch_signin cookie)."""
    state = app_state(request)
    settings = state.settings
    body = await read_json(request, settings)
    method = text_field(body, "method") or ""
    answer = text_field(body, "code") or ""
    ip, ua = client(request)
    try:
        auth = await answer_second_step(
            state.login,
            state.factors,
            cookie=request.cookies.get(signin_cookie_name(settings)),
            method=method,
            answer=answer,
            ip=ip,
            user_agent=ua,
        )
    except (FlowDeadError, FlowUsedError, SigninExpiredError) as e:
        ended = json_error(e)  # the pending sign-in is over: its cookie goes too
        clear_signin_cookie(ended, settings)
        return ended
    response = _signed_in(auth, settings)
    clear_signin_cookie(response, settings)
    return response


async def logout(request: Request) -> Response:
    """POST /api/logout {"all"?} -> 204, cookies cleared."""
    state = app_state(request)
    settings, sessions = state.settings, state.sessions
    body = await read_json(request, settings)
    everywhere = body.get("all", False)
    if not isinstance(everywhere, bool):
        raise InvalidRequestError("`all` must be true or false.", field="all")
    identity = await current_identity(request)
    ip, ua = client(request)
    await sessions.logout(identity, everywhere=everywhere, ip=ip, user_agent=ua)
    response = Response(status_code=204)
    clear_session_cookies(response, settings)
    return response


async def session(request: Request) -> Response:
    """GET /api/session -> 200 {"user", "session"} or 401."""
    sessions = app_state(request).sessions
    return JSONResponse(await sessions.describe(await current_identity(request)))


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


async def _rotate(request: Request) -> Authenticated:
    """Refresh with this browser's refresh cookie; a detected theft drops the cached session."""
    state = app_state(request)
    settings, login, sessions = state.settings, state.login, state.sessions
    try:
        ip, ua = client(request)
        return await refresh(
            login, request.cookies.get(settings.refresh_cookie), ip=ip, user_agent=ua
        )
    except RefreshRefusedError as e:
        if e.revoked:
            sessions.forget(e.revoked)
        raise


async def refresh_api(request: Request) -> Response:
    """POST /api/refresh -> 200 as verify, cookies rotated; 401 with cookies cleared."""
    settings = app_state(request).settings
    await read_json(request, settings)
    try:
        auth = await _rotate(request)
    except RefreshRefusedError as e:
        response = json_error(e)
        clear_session_cookies(response, settings)
        return response
    return _signed_in(auth, settings)


async def refresh_page(request: Request) -> Response:
    """GET /refresh?next=URL: where services bounce browsers whose access JWT has expired.

    Rotates and goes back to `next` (when safe); without a good refresh token, on to sign-in.
    """
    settings = app_state(request).settings
    next_url = safe_next(request.query_params.get("next"), settings)
    try:
        auth = await _rotate(request)
    except RefreshRefusedError:
        response = RedirectResponse("/login?" + urlencode({"next": next_url}), status_code=303)
        clear_session_cookies(response, settings)
        return response
    response = RedirectResponse(next_url, status_code=303)
    set_session_cookies(response, settings, auth)
    return response


async def sessions_list(request: Request) -> Response:
    """GET /api/sessions: the person's live sessions, the current one marked."""
    sessions = app_state(request).sessions
    rows = await sessions.list(await current_identity(request))
    for row in rows:
        row["device"] = device_name(row["user_agent"] or "") or "Unknown device"
    return JSONResponse({"sessions": rows})


async def session_delete(request: Request) -> Response:
    """DELETE /api/sessions/{id} -> 204; 404 for an unknown session or someone else's."""
    state = app_state(request)
    settings, sessions = state.settings, state.sessions
    if not origin_allowed(request.headers.get("origin"), settings):
        raise ForbiddenOriginError()
    identity = await current_identity(request)
    ip, ua = client(request)
    if not await sessions.revoke(identity, request.path_params["session_id"], ip=ip, user_agent=ua):
        raise NotFoundError("No such session.")
    return Response(status_code=204)


async def configuration(request: Request) -> Response:
    """GET /.well-known/latch-configuration: what a verifier needs to know (cacheable)."""
    settings = app_state(request).settings
    keys = app_state(request).keyring.jwks()["keys"]
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
        # A verifier refuses tokens that claim to live longer (Verifier(max_lifetime=...)).
        "access_token_ttl": settings.sessions.access_ttl,
    }
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
    from service.api.openapi import build_spec

    state = app_state(request)
    spec = build_spec(state.settings.public_url, parts=state.openapi_parts)
    return JSONResponse(spec, headers={"Cache-Control": "public, max-age=300"})


async def healthz(request: Request) -> Response:
    """Alive."""
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> Response:
    """Ready: the database answers and the mail queue has room."""
    from service.db import ping

    state = app_state(request)
    checks = {"database": True, "mail_queue": not state.mailer.full}
    try:
        checks["database"] = await state.database.run(ping(), write=False)
    except ServiceError:
        checks["database"] = False
    ok = all(checks.values())
    return JSONResponse(
        {"status": "ok" if ok else "unavailable", "checks": checks}, status_code=200 if ok else 503
    )


# The router tries routes in order: the hot paths (every request of every protected service
# passes /auth/check) come first.
routes = [
    Route("/auth/check", auth_check, methods=["GET", "HEAD"]),
    Route("/.well-known/jwks.json", jwks, methods=["GET"]),
    Route("/api/verify", verify, methods=["POST"]),
    Route("/api/start", start, methods=["POST"]),
    Route("/api/refresh", refresh_api, methods=["POST"]),
    Route("/refresh", refresh_page, methods=["GET"]),
    Route("/api/resend", resend, methods=["POST"]),
    Route("/api/link", link, methods=["POST"]),
    Route("/api/second-factor", second_factor, methods=["POST"]),
    Route("/api/logout", logout, methods=["POST"]),
    Route("/api/session", session, methods=["GET"]),
    Route("/.well-known/latch-configuration", configuration, methods=["GET"]),
    Route("/api/sessions", sessions_list, methods=["GET"]),
    Route("/api/sessions/{session_id}", session_delete, methods=["DELETE"]),
    Route("/openapi.json", openapi, methods=["GET"]),
    Route("/healthz", healthz, methods=["GET", "HEAD"]),
    Route("/readyz", readyz, methods=["GET", "HEAD"]),
]
