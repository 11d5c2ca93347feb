"""The first step over JSON: POST /api/start, /api/resend, /api/verify and /api/link."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from service.api.common import read_json, signed_in, text_field
from service.errors import InvalidRequestError
from service.settings import Settings
from service.signin.flows import Started
from service.web.cookies import set_flow_cookie
from service.web.identity import client
from service.web.security import safe_next
from service.web.state import AppState, app_state


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


def _browser_flow(request: Request, state: AppState) -> str | None:
    return state.bindings.flow_of(request.cookies.get(state.settings.flow_cookie))


def _flow_id(request: Request, body: dict[str, Any], state: AppState) -> str:
    flow_id = text_field(body, "flow_id", required=False)
    if flow_id is None:
        flow_id = _browser_flow(request, state)
    if not flow_id:
        raise InvalidRequestError(
            "`flow_id` is required (or the latch_flow cookie).", field="flow_id"
        )
    return flow_id


async def start(request: Request) -> Response:
    """POST /api/start {"email", "next"?} -> 202."""
    state = app_state(request)
    settings = state.settings
    body = await read_json(request, settings)
    email = text_field(body, "email") or ""
    next_url = safe_next(body.get("next"), settings)
    ip, ua = client(request)
    started = await state.login.start(email=email, next_url=next_url, ip=ip, user_agent=ua)
    return _started(started, settings)


async def resend(request: Request) -> Response:
    """POST /api/resend {"flow_id"?} -> 202."""
    state = app_state(request)
    body = await read_json(request, state.settings)
    started = await state.login.resend(flow_id=_flow_id(request, body, state))
    return _started(started, state.settings)


async def verify(request: Request) -> Response:
    """POST /api/verify {"code", "flow_id"?} -> 200 + cookies."""
    state = app_state(request)
    body = await read_json(request, state.settings)
    code = text_field(body, "code") or ""
    ip, ua = client(request)
    auth = await state.login.verify_code(
        flow_id=_flow_id(request, body, state), code=code, ip=ip, user_agent=ua
    )
    return signed_in(auth, state.settings)


async def link(request: Request) -> Response:
    """POST /api/link {"token"} -> 200 + cookies."""
    state = app_state(request)
    body = await read_json(request, state.settings)
    token = text_field(body, "token") or ""
    ip, ua = client(request)
    auth = await state.login.verify_link(
        token=token, browser_flow_id=_browser_flow(request, state), ip=ip, user_agent=ua
    )
    return signed_in(auth, state.settings)


# /api/verify first: the route of every sign-in's last request.
routes = [
    Route("/api/verify", verify, methods=["POST"]),
    Route("/api/start", start, methods=["POST"]),
    Route("/api/resend", resend, methods=["POST"]),
    Route("/api/link", link, methods=["POST"]),
]
