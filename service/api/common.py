"""What every JSON route shares: the error format, reading a body, and the signed-in answer."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from service.errors import (
    ForbiddenOriginError,
    InvalidRequestError,
    ServiceError,
    UnsupportedMediaTypeError,
)
from service.settings import Settings
from service.signin.access import Authenticated
from service.signin.flows import SecondStepDue
from service.web.bodies import parse_json
from service.web.cookies import (
    clear_flow_cookie,
    set_session_cookies,
    set_signin_cookie,
)
from service.web.security import origin_allowed

MAX_FIELD = 2000


def json_error(error: ServiceError) -> JSONResponse:
    """An error in the JSON API's format."""
    return JSONResponse(error.to_json(), status_code=error.status, headers=error.headers)


async def read_json(request: Request, settings: Settings) -> dict[str, Any]:
    """The JSON object body of an API call, after the content-type and origin checks."""
    if not origin_allowed(request.headers.get("origin"), settings):
        raise ForbiddenOriginError()
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype != "application/json":
        # A POST with no body at all (refresh, logout) needs no Content-Type: what a JSON-only
        # rule guards against is a cross-site form, which always sends one; a bodiless
        # cross-origin fetch is refused by its Origin above (and carries no SameSite=Lax cookie).
        if ctype or await request.body():
            raise UnsupportedMediaTypeError()
        return {}
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


def signed_in(auth: Authenticated | SecondStepDue, settings: Settings) -> Response:
    """200 {"user", "session"} with the session cookies, or the second step that is due."""
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
    step = "second_factor" if due.methods else "enrol_second_factor"  # no methods: policy all
    response = JSONResponse({"next_step": step, "methods": list(due.methods)})
    set_signin_cookie(response, settings, due.signin_cookie)
    clear_flow_cookie(response, settings)
    return response
