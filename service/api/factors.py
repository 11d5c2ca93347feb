"""JSON for second factors (docs/design.md §11): the account's factors, step-up, and enrolment
as the second step of a sign-in under REQUIRE_SECOND_FACTOR=all.

Changing factors needs a recent step: without one these answer 403 `step_up_required` with the
`methods` POST /api/step-up takes (`passkey`, `totp`; none: sign in again). The TOTP secret
appears only in the answer to POST /api/factors/totp, recovery codes only in the answer that
issues them.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from service.api.common import json_error, read_json, text_field
from service.api.passkeys import credential_field
from service.errors import FlowDeadError, FlowUsedError, ForbiddenOriginError, SigninExpiredError
from service.signin.totp import Enrolment
from service.web.cookies import (
    clear_flow_cookie,
    clear_signin_cookie,
    set_access_cookie,
    set_session_cookies,
    signin_cookie_name,
)
from service.web.identity import client, current_identity
from service.web.security import origin_allowed
from service.web.state import app_state


def _enrolment(enrolment: Enrolment) -> dict[str, Any]:
    return {
        "secret": enrolment.secret,
        "otpauth_uri": enrolment.otpauth_uri,
        "qr_svg": enrolment.qr_svg,
    }


async def factors_get(request: Request) -> Response:
    """GET /api/factors: what the person has, and whether a step is recent enough."""
    state = app_state(request)
    identity = await current_identity(request)
    factors = state.account_factors
    summary = await factors.summary(identity)
    return JSONResponse(
        {
            "totp": {"enrolled": summary.totp_enrolled, "created_at": summary.totp_created_at},
            "passkeys": [p.to_json() for p in await state.passkeys.list(identity)],
            "recovery_codes": {"left": summary.recovery_left},
            "step_up": {
                "recent": await factors.recent_step(identity),
                "methods": list(await factors.step_up_methods(identity.user_id)),
            },
        }
    )


async def totp_begin(request: Request) -> Response:
    """POST /api/factors/totp -> {"secret", "otpauth_uri", "qr_svg"} (pending 10 minutes)."""
    state = app_state(request)
    await read_json(request, state.settings)
    identity = await current_identity(request)
    return JSONResponse(_enrolment(await state.account_factors.begin_totp(identity)))


async def totp_confirm(request: Request) -> Response:
    """POST /api/factors/totp/confirm {"code"} -> {"recovery_codes"} on a first factor, or {}."""
    state = app_state(request)
    body = await read_json(request, state.settings)
    # Who asks comes before what they sent: a caller without a session gets the 401 and its
    # challenge, whatever its body (RFC 9110 §15.5.2).
    identity = await current_identity(request)
    code = text_field(body, "code") or ""
    ip, ua = client(request)
    confirmed = await state.account_factors.confirm_totp(identity, code, ip=ip, user_agent=ua)
    codes = confirmed.recovery_codes
    return JSONResponse({"recovery_codes": codes} if codes else {})


async def totp_delete(request: Request) -> Response:
    """DELETE /api/factors/totp -> 204."""
    state = app_state(request)
    if not origin_allowed(request.headers.get("origin"), state.settings):
        raise ForbiddenOriginError()
    identity = await current_identity(request)
    ip, ua = client(request)
    await state.account_factors.remove_totp(identity, ip=ip, user_agent=ua)
    return Response(status_code=204)


async def recovery_regenerate(request: Request) -> Response:
    """POST /api/factors/recovery-codes -> {"recovery_codes"}: ten new, the old ones void."""
    state = app_state(request)
    await read_json(request, state.settings)
    identity = await current_identity(request)
    ip, ua = client(request)
    codes = await state.account_factors.regenerate_recovery_codes(identity, ip=ip, user_agent=ua)
    return JSONResponse({"recovery_codes": codes})


async def step_up(request: Request) -> Response:
    """POST /api/step-up {"method", "code"} (or {"method": "passkey", "credential"}, the answer
    to POST /api/passkeys/step-up/options) -> 200 {"aal", "auth_time"} + a new access cookie."""
    state = app_state(request)
    body = await read_json(request, state.settings)
    identity = await current_identity(request)  # before the body, as totp_confirm
    method = text_field(body, "method") or ""
    if "credential" in body:
        answer = json.dumps(credential_field(body))
    else:
        answer = text_field(body, "code") or ""
    ip, ua = client(request)
    token = await state.account_factors.step_up(identity, method, answer, ip=ip, user_agent=ua)
    stepped = state.sessions.verify_token(token)
    response = JSONResponse({"aal": int(stepped.aal), "auth_time": state.account_factors.now()})
    set_access_cookie(response, state.settings, token)
    return response


async def enrol_begin(request: Request) -> Response:
    """POST /api/second-factor/enrol (latch_signin cookie) -> as POST /api/factors/totp."""
    state = app_state(request)
    await read_json(request, state.settings)
    cookie = request.cookies.get(signin_cookie_name(state.settings))
    return JSONResponse(_enrolment(await state.enrolment.begin(cookie)))


async def enrol_confirm(request: Request) -> Response:
    """POST /api/second-factor/enrol/confirm {"code"} -> 200 {"user", "session",
    "recovery_codes"} + session cookies: the sign-in is complete."""
    state = app_state(request)
    settings = state.settings
    body = await read_json(request, settings)
    code = text_field(body, "code") or ""
    ip, ua = client(request)
    try:
        done = await state.enrolment.confirm(
            cookie=request.cookies.get(signin_cookie_name(settings)),
            code=code,
            ip=ip,
            user_agent=ua,
        )
    except (FlowDeadError, FlowUsedError, SigninExpiredError) as e:
        ended = json_error(e)
        clear_signin_cookie(ended, settings)
        return ended
    auth = done.auth
    response = JSONResponse(
        {
            "user": {"id": auth.user_id, "email": auth.email},
            "session": {"id": auth.session_id, "expires_at": auth.session_expires_at},
            "recovery_codes": done.recovery_codes,
        }
    )
    set_session_cookies(response, settings, auth)
    clear_signin_cookie(response, settings)
    clear_flow_cookie(response, settings)
    return response


routes = [
    Route("/api/factors", factors_get, methods=["GET"]),
    Route("/api/factors/totp", totp_begin, methods=["POST"]),
    Route("/api/factors/totp", totp_delete, methods=["DELETE"]),
    Route("/api/factors/totp/confirm", totp_confirm, methods=["POST"]),
    Route("/api/factors/recovery-codes", recovery_regenerate, methods=["POST"]),
    Route("/api/step-up", step_up, methods=["POST"]),
    Route("/api/second-factor/enrol", enrol_begin, methods=["POST"]),
    Route("/api/second-factor/enrol/confirm", enrol_confirm, methods=["POST"]),
]
