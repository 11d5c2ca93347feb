"""Passkeys in the pages (docs/design.md §12): sign in with one on /login, add, rename and
remove them on /account. static/passkeys.js runs the browser's side of the ceremonies and
posts the answer here as a form field, so these handlers answer as the code form does: a 303
on success, the page with its error otherwise.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from service.errors import (
    InvalidRequestError,
    ServiceError,
    StepUpRequiredError,
    UnauthenticatedError,
)
from service.pages.account import ACCOUNT_LOGIN, account_view
from service.pages.recent import step_up_redirect
from service.pages.render import redirect, render
from service.pages.security import codes_page
from service.signin.flows import SecondStepDue
from service.web import csrf
from service.web.cookies import (
    clear_signin_cookie,
    set_session_cookies,
    set_signin_cookie,
    signin_cookie_name,
)
from service.web.identity import client, current_identity
from service.web.security import safe_next
from service.web.state import app_state

NO_CREDENTIAL = "This needs a browser that supports passkeys, with JavaScript on."
BACK = "/account#passkeys"


def credential_of(raw: str) -> dict[str, Any]:
    """The credential a form carries (WebAuthn's JSON form), else a clear 400."""
    try:
        credential = json.loads(raw) if raw else None
    except ValueError:
        credential = None
    if not isinstance(credential, dict):
        raise InvalidRequestError(NO_CREDENTIAL, field="credential")
    return credential


async def login_submit(request: Request) -> Response:
    """POST /login/passkey: sign in with the passkey the browser answered with."""
    state = app_state(request)
    settings = state.settings
    form = await csrf.read_form(request)
    next_url = safe_next(csrf.field(form, "next"), settings)
    ip, ua = client(request)
    try:
        auth = await state.passkeys.login(
            credential_of(csrf.field(form, "credential")),
            next_url=next_url,
            signin_cookie=request.cookies.get(signin_cookie_name(settings)),
            ip=ip,
            user_agent=ua,
        )
    except ServiceError as e:
        return render(
            request,
            "login.html",
            status=e.status,
            headers=e.headers,
            error=e.message,
            email="",
            next_url=next_url,
        )
    if isinstance(auth, SecondStepDue):
        # No UV, and another factor to pass: on to the second step, as after a code.
        response = redirect("/login/second-factor")
        set_signin_cookie(response, settings, auth.signin_cookie)
        return response
    response = redirect(auth.next_url)
    set_session_cookies(response, settings, auth)
    clear_signin_cookie(response, settings)
    return response


async def add_submit(request: Request) -> Response:
    """POST /account/passkeys: store the passkey the browser just made, under its name."""
    state = app_state(request)
    form = await csrf.read_form(request)
    try:
        identity = await current_identity(request)
    except UnauthenticatedError:
        return redirect(ACCOUNT_LOGIN)
    _, ua = client(request)
    try:
        credential = credential_of(csrf.field(form, "credential"))
        added = await state.passkeys.register(identity, credential, csrf.field(form, "name"), ua)
    except StepUpRequiredError:
        # The step went stale between showing the form and answering it.
        return step_up_redirect(BACK)
    except ServiceError as e:
        return await account_view(request, identity, error=e)
    if added.recovery_codes:
        # The person's first factor: their way back in should they lose it, shown once.
        return codes_page(request, added.recovery_codes, "/account?passkey=added#passkeys")
    return redirect("/account?passkey=added#passkeys")


async def rename_submit(request: Request) -> Response:
    """POST /account/passkeys/{id}/rename."""
    state = app_state(request)
    form = await csrf.read_form(request)
    try:
        identity = await current_identity(request)
    except UnauthenticatedError:
        return redirect(ACCOUNT_LOGIN)
    await state.passkeys.rename(
        identity, request.path_params["passkey_id"], csrf.field(form, "name")
    )
    return redirect("/account?passkey=renamed#passkeys")


async def remove_submit(request: Request) -> Response:
    """POST /account/passkeys/{id}/remove (needs a recent step): it stops signing anyone in
    at once."""
    state = app_state(request)
    await csrf.read_form(request)
    try:
        identity = await current_identity(request)
    except UnauthenticatedError:
        return redirect(ACCOUNT_LOGIN)
    try:
        await state.passkeys.remove(identity, request.path_params["passkey_id"])
    except StepUpRequiredError:
        return step_up_redirect(BACK)
    return redirect("/account?passkey=removed#passkeys")


routes: list[BaseRoute] = [
    Route("/login/passkey", login_submit, methods=["POST"]),
    Route("/account/passkeys", add_submit, methods=["POST"]),
    Route("/account/passkeys/{passkey_id}/rename", rename_submit, methods=["POST"]),
    Route("/account/passkeys/{passkey_id}/remove", remove_submit, methods=["POST"]),
]
