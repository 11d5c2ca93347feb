"""Changing the address from the account page: ask (after a recent step), then confirm with
the code mailed to the new address, or with its link on any device."""

from __future__ import annotations

import math
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from service.errors import ServiceError, StepUpRequiredError, UnauthenticatedError
from service.pages.recent import current_email, recent_or_step_up, step_up_redirect
from service.pages.render import redirect, render
from service.signin.address import LINK_PATH
from service.web import csrf
from service.web.identity import client, current_identity
from service.web.state import app_state

EMAIL_PATH = "/account/email"
CONFIRM_PATH = "/account/email/confirm"
# Back to the account page through /refresh: the new access token carries the new address.
AFTER_CHANGE = "/refresh?" + urlencode({"next": "/account?changed=1"})


async def email_page(request: Request) -> Response:
    """GET /account/email: the new-address form."""
    identity = await recent_or_step_up(request, EMAIL_PATH)
    if isinstance(identity, Response):
        return identity
    email = await current_email(request, identity)
    return render(request, "account_email.html", email=email, new_email="")


async def email_submit(request: Request) -> Response:
    """POST /account/email: mail a code and a link to the new address, 303 to the code form."""
    state = app_state(request)
    form = await csrf.read_form(request)
    identity = await recent_or_step_up(request, EMAIL_PATH)
    if isinstance(identity, Response):
        return identity
    email, new_email = await current_email(request, identity), csrf.field(form, "email")
    ip, ua = client(request)
    try:
        await state.address.start(
            identity, current=email, new_email=new_email, ip=ip, user_agent=ua
        )
    except StepUpRequiredError:  # the step aged out while the form was open
        return step_up_redirect(EMAIL_PATH)
    except ServiceError as e:
        return render(
            request,
            "account_email.html",
            status=e.status,
            headers=e.headers,
            error=e.message,
            email=email,
            new_email=new_email,
        )
    return redirect(CONFIRM_PATH)


async def _code_page(request: Request, error: ServiceError | None = None) -> Response:
    state = app_state(request)
    try:
        identity = await current_identity(request)
    except UnauthenticatedError:
        return redirect("/login?" + urlencode({"next": CONFIRM_PATH}))
    pending = await state.address.pending(identity)
    if pending is None and error is None:
        return redirect(EMAIL_PATH)
    left = (pending.expires_at if pending else 0) - int(state.clock())
    return render(
        request,
        "account_email_code.html",
        status=error.status if error else 200,
        error=error.message if error else None,
        pending=pending,
        minutes=max(1, math.ceil(left / 60)),
    )


async def confirm_page(request: Request) -> Response:
    """GET /account/email/confirm: the code form for the person's pending change."""
    return await _code_page(request)


async def confirm_submit(request: Request) -> Response:
    """POST /account/email/confirm: the right code moves the account."""
    state = app_state(request)
    form = await csrf.read_form(request)
    try:
        identity = await current_identity(request)
    except UnauthenticatedError:
        return redirect("/login?" + urlencode({"next": CONFIRM_PATH}))
    try:
        ip, ua = client(request)
        await state.address.confirm_code(identity, csrf.field(form, "code"), ip=ip, user_agent=ua)
    except ServiceError as e:
        return await _code_page(request, e)
    return redirect(AFTER_CHANGE)


def _token(value: str) -> str:
    return value if 0 < len(value) <= csrf.MAX_FIELD else ""


async def link_page(request: Request) -> Response:
    """GET /account/email/link?t=…: one button; consumes nothing (mail scanners fetch links)."""
    token = _token(request.query_params.get("t", ""))
    pending = await app_state(request).address.peek_link(token)
    return render(request, "account_email_link.html", pending=pending, token=token)


async def link_submit(request: Request) -> Response:
    """POST /account/email/link: the link moves the account, on whichever device opened it."""
    form = await csrf.read_form(request)
    token = _token(csrf.field(form, "t"))
    try:
        ip, ua = client(request)
        moved = await app_state(request).address.confirm_link(token, ip=ip, user_agent=ua)
    except ServiceError as e:
        return render(
            request,
            "account_email_done.html",
            status=e.status,
            forms=False,
            error=e.message,
            email="",
        )
    return render(request, "account_email_done.html", forms=False, email=moved.email)


routes: list[BaseRoute] = [
    Route(EMAIL_PATH, email_page, methods=["GET"]),
    Route(EMAIL_PATH, email_submit, methods=["POST"]),
    Route(CONFIRM_PATH, confirm_page, methods=["GET"]),
    Route(CONFIRM_PATH, confirm_submit, methods=["POST"]),
    Route(LINK_PATH, link_page, methods=["GET"]),
    Route(LINK_PATH, link_submit, methods=["POST"]),
]
