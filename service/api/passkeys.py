"""Passkeys over JSON (docs/design.md §12), so a single-page app can do what the pages do:
options for the browser's `navigator.credentials`, and the answers it gives back.

The `publicKey` objects are WebAuthn's JSON forms (base64url for bytes): in a browser that has
them, `PublicKeyCredential.parseCreationOptionsFromJSON` / `parseRequestOptionsFromJSON` read
them and a credential's `toJSON()` is what the answer endpoints take.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.convertors import Convertor, register_url_convertor
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from service.api.common import json_error, read_json, signed_in, text_field
from service.errors import (
    FlowDeadError,
    FlowUsedError,
    ForbiddenOriginError,
    InvalidRequestError,
    SigninExpiredError,
)
from service.signin.flows import SecondStepDue
from service.signin.passkeys import suggested_name
from service.web.cookies import clear_signin_cookie, signin_cookie_name
from service.web.identity import client, current_identity
from service.web.security import origin_allowed, safe_next
from service.web.state import app_state

MAX_CREDENTIAL = 8192  # characters of JSON: real credentials are well under 2,000


class PasskeyIdConvertor(Convertor[str]):
    """A passkey id (128 random bits in hex), so /api/passkeys/{id} never claims the
    ceremonies' own paths (/api/passkeys/login), whose 405s must list only their methods."""

    regex = "[0-9a-f]{32}"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("passkey_id", PasskeyIdConvertor())


def credential_field(body: dict[str, Any]) -> dict[str, Any]:
    """The `credential` object of a body, bounded in size."""
    credential = body.get("credential")
    if not isinstance(credential, dict) or len(json.dumps(credential)) > MAX_CREDENTIAL:
        raise InvalidRequestError("`credential` must be a WebAuthn credential.", field="credential")
    return credential


async def register_options(request: Request) -> Response:
    """POST /api/passkeys/register/options -> {"publicKey", "suggested_name"} (recent step)."""
    state = app_state(request)
    await read_json(request, state.settings)
    identity = await current_identity(request)
    ip, ua = client(request)
    options = await state.passkeys.registration_options(identity, ip)
    return JSONResponse({"publicKey": options, "suggested_name": suggested_name(ua)})


async def register(request: Request) -> Response:
    """POST /api/passkeys/register {"credential", "name"?} -> 201 the passkey."""
    state = app_state(request)
    body = await read_json(request, state.settings)
    identity = await current_identity(request)
    credential = credential_field(body)
    name = text_field(body, "name", required=False) or ""
    _, ua = client(request)
    added = await state.passkeys.register(identity, credential, name, ua)
    body = added.passkey.to_json()
    if added.recovery_codes:
        body["recovery_codes"] = added.recovery_codes  # the person's first factor: shown once
    return JSONResponse(body, status_code=201)


async def login_options(request: Request) -> Response:
    """POST /api/passkeys/login/options -> {"publicKey"}: for a first step (no allowed
    credentials: the browser offers its discoverable ones), or, with a `latch_signin` cookie,
    for that pending sign-in's second step."""
    state = app_state(request)
    await read_json(request, state.settings)
    cookie = request.cookies.get(signin_cookie_name(state.settings))
    ip, _ = client(request)
    return JSONResponse({"publicKey": await state.passkeys.login_options(cookie, ip)})


async def login(request: Request) -> Response:
    """POST /api/passkeys/login {"credential", "next"?} -> 200 as verify."""
    state = app_state(request)
    settings = state.settings
    body = await read_json(request, settings)
    credential = credential_field(body)
    ip, ua = client(request)
    try:
        auth = await state.passkeys.login(
            credential,
            next_url=safe_next(body.get("next"), settings),
            signin_cookie=request.cookies.get(signin_cookie_name(settings)),
            ip=ip,
            user_agent=ua,
        )
    except (FlowDeadError, FlowUsedError, SigninExpiredError) as e:
        ended = json_error(e)  # the pending sign-in is over: its cookie goes too
        clear_signin_cookie(ended, settings)
        return ended
    response = signed_in(auth, settings)
    if not isinstance(auth, SecondStepDue):
        # A second step that passed ends its pending sign-in (a first step had none).
        clear_signin_cookie(response, settings)
    return response


async def step_up_options(request: Request) -> Response:
    """POST /api/passkeys/step-up/options -> {"publicKey"}: the signed-in person's passkeys,
    for a step-up answered at POST /api/step-up {"method": "passkey", "credential"}."""
    state = app_state(request)
    await read_json(request, state.settings)
    identity = await current_identity(request)
    ip, _ = client(request)
    return JSONResponse({"publicKey": await state.passkeys.step_up_options(identity, ip)})


async def passkeys_list(request: Request) -> Response:
    """GET /api/passkeys -> {"passkeys": [...]}."""
    state = app_state(request)
    identity = await current_identity(request)
    found = await state.passkeys.list(identity)
    return JSONResponse({"passkeys": [p.to_json() for p in found]})


async def passkey_rename(request: Request) -> Response:
    """PATCH /api/passkeys/{id} {"name"} -> 204."""
    state = app_state(request)
    body = await read_json(request, state.settings)
    identity = await current_identity(request)
    name = text_field(body, "name") or ""
    await state.passkeys.rename(identity, request.path_params["passkey_id"], name)
    return Response(status_code=204)


async def passkey_delete(request: Request) -> Response:
    """DELETE /api/passkeys/{id} -> 204; 404 for an unknown passkey or someone else's."""
    state = app_state(request)
    if not origin_allowed(request.headers.get("origin"), state.settings):
        raise ForbiddenOriginError()
    identity = await current_identity(request)
    await state.passkeys.remove(identity, request.path_params["passkey_id"])
    return Response(status_code=204)


routes = [
    Route("/api/passkeys/login/options", login_options, methods=["POST"]),
    Route("/api/passkeys/login", login, methods=["POST"]),
    Route("/api/passkeys/register/options", register_options, methods=["POST"]),
    Route("/api/passkeys/step-up/options", step_up_options, methods=["POST"]),
    Route("/api/passkeys/register", register, methods=["POST"]),
    Route("/api/passkeys", passkeys_list, methods=["GET"]),
    Route("/api/passkeys/{passkey_id:passkey_id}", passkey_rename, methods=["PATCH"]),
    Route("/api/passkeys/{passkey_id:passkey_id}", passkey_delete, methods=["DELETE"]),
]
