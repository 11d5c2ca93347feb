"""Sessions over JSON: refresh (and the /refresh bounce for browsers), logout, the current
session, and the person's list of sessions with revocation."""

from __future__ import annotations

from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from service.api.common import json_error, read_json, signed_in
from service.device import device_name
from service.errors import ForbiddenOriginError, InvalidRequestError, NotFoundError
from service.signin.access import Authenticated
from service.signin.refresh import RefreshRefusedError
from service.web.cookies import clear_session_cookies, set_session_cookies
from service.web.identity import client, current_identity
from service.web.security import origin_allowed, safe_next
from service.web.state import app_state


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


async def _rotate(request: Request) -> Authenticated:
    """Refresh with this browser's refresh cookie; a detected theft drops the cached session."""
    state = app_state(request)
    ip, ua = client(request)
    try:
        return await state.refresher.refresh(
            request.cookies.get(state.settings.refresh_cookie), ip=ip, user_agent=ua
        )
    except RefreshRefusedError as e:
        if e.revoked:
            state.sessions.forget(e.revoked)
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
    return signed_in(auth, settings)


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


# The refreshes first: every access JWT that expires comes back through one of them.
routes = [
    Route("/api/refresh", refresh_api, methods=["POST"]),
    Route("/refresh", refresh_page, methods=["GET"]),
    Route("/api/logout", logout, methods=["POST"]),
    Route("/api/session", session, methods=["GET"]),
    Route("/api/sessions", sessions_list, methods=["GET"]),
    Route("/api/sessions/{session_id}", session_delete, methods=["DELETE"]),
]
