"""The second step over JSON (docs/design.md §11): POST /api/second-factor."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from service.api.common import json_error, read_json, signed_in, text_field
from service.errors import FlowDeadError, FlowUsedError, SigninExpiredError
from service.web.cookies import clear_signin_cookie, signin_cookie_name
from service.web.identity import client
from service.web.state import app_state


async def second_factor(request: Request) -> Response:
    """POST /api/second-factor {"method", "code"} -> 200 as verify (latch_signin cookie)."""
    state = app_state(request)
    settings = state.settings
    body = await read_json(request, settings)
    method = text_field(body, "method") or ""
    answer = text_field(body, "code") or ""
    ip, ua = client(request)
    try:
        auth = await state.steps.answer(
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
    response = signed_in(auth, settings)
    clear_signin_cookie(response, settings)
    return response


routes = [
    Route("/api/second-factor", second_factor, methods=["POST"]),
]
