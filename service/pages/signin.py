"""HTML pages and form posts: sign in by code or link (the account page is account.py).

Handlers parse the form, call one use case and answer with a page or a 303 redirect (never a
307, which would make the browser re-send the code and the CSRF field to the target). Every
POST passes `read_form`, which applies the origin rule and the CSRF token before anything
else happens.
"""

from __future__ import annotations

import logging
import math

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from service.errors import (
    AccountDisabledError,
    FlowDeadError,
    FlowExpiredError,
    FlowUsedError,
    InvalidCodeError,
    InvalidLinkError,
    ServiceError,
    UnauthenticatedError,
)
from service.pages import (
    account,
    account_address,
    account_delete,
    account_notice,
    brand,
    passkeys,
    second_factor,
)
from service.pages.render import CachedStatic, error_page, redirect, render
from service.settings import Settings
from service.signin.access import Authenticated
from service.signin.flows import SecondStepDue
from service.web import csrf
from service.web.cookies import (
    clear_flow_cookie,
    set_flow_cookie,
    set_session_cookies,
    set_signin_cookie,
)
from service.web.identity import client, current_identity
from service.web.security import safe_next
from service.web.state import AppState, app_state
from service.web.templates import STATIC

log = logging.getLogger("latch.web")

# A flow that can no longer take a code, and what the code page says about it.
ENDED = {
    "used": FlowUsedError,
    "expired": FlowExpiredError,
    "dead": FlowDeadError,
    "disabled": AccountDisabledError,
}


def _browser_flow(request: Request, state: AppState) -> str | None:
    return state.bindings.flow_of(request.cookies.get(state.settings.flow_cookie))


def _signed_in(auth: Authenticated | SecondStepDue, settings: Settings) -> Response:
    if isinstance(auth, SecondStepDue):
        # The first step passed: on to the second, holding only the pending sign-in's cookie.
        response = redirect("/login/second-factor")
        set_signin_cookie(response, settings, auth.signin_cookie)
    else:
        response = redirect(auth.next_url)
        set_session_cookies(response, settings, auth)
    clear_flow_cookie(response, settings)
    return response


# --- start -----------------------------------------------------------------------------------


async def home(request: Request) -> Response:
    """GET /: the account page when signed in, else the sign-in page."""
    try:
        await current_identity(request)
    except UnauthenticatedError:
        return redirect("/login")
    return redirect("/account")


async def login_page(request: Request) -> Response:
    """GET /login?next=…: the email form."""
    settings = app_state(request).settings
    next_url = safe_next(request.query_params.get("next"), settings)
    # `email` pre-fills the field (an OpenID client's login_hint, docs/design.md §13); it is
    # only shown, escaped, and the person still submits it themselves.
    email = request.query_params.get("email", "")[:254]
    return render(request, "login.html", email=email, next_url=next_url)


async def login_submit(request: Request) -> Response:
    """POST /login: start a flow, bind it to this browser, 303 to the code page."""
    state = app_state(request)
    settings, login = state.settings, state.login
    form = await csrf.read_form(request)
    email, next_url = csrf.field(form, "email"), safe_next(csrf.field(form, "next"), settings)
    ip, ua = client(request)
    try:
        started = await login.start(email=email, next_url=next_url, ip=ip, user_agent=ua)
    except ServiceError as e:
        return render(
            request,
            "login.html",
            status=e.status,
            headers=e.headers,
            error=e.message,
            email=email,
            next_url=next_url,
        )
    response = redirect("/login/code")
    set_flow_cookie(response, settings, started.flow_cookie)
    return response


# --- the code --------------------------------------------------------------------------------


async def code_view(
    request: Request, flow_id: str, *, error: ServiceError | None = None, notice: str | None = None
) -> Response:
    """The code page for a flow, with an error from the last attempt if any."""
    view = await app_state(request).code_page.view(flow_id)
    if view is None:
        return error_page(request, error or FlowExpiredError())
    ended = ENDED.get(view["state"])
    if error is None and ended is not None:
        error = ended()
    message = error.message if error else None
    if isinstance(error, InvalidCodeError) and ended is not None:
        message = ended.message  # "0 tries left" says less than why the sign-in ended
    left = view["expires_at"] - int(app_state(request).clock())
    return render(
        request,
        "code.html",
        status=error.status if error else 200,
        headers=error.headers if error else None,
        error=message,
        notice=notice,
        view=view,
        ended=ended is not None,
        minutes=max(1, math.ceil(left / 60)),
    )


def _no_flow(request: Request) -> Response:
    return error_page(request, FlowExpiredError("This sign-in has expired. Please start again."))


async def code_page(request: Request) -> Response:
    """GET /login/code: the code form of this browser's flow."""
    flow_id = _browser_flow(request, app_state(request))
    if flow_id is None:
        return redirect("/login")
    notice = "We sent a new code." if request.query_params.get("sent") else None
    return await code_view(request, flow_id, notice=notice)


async def code_submit(request: Request) -> Response:
    """POST /login/code: check the code; signed in → 303 to `next`, else the page again."""
    state = app_state(request)
    settings, login = state.settings, state.login
    form = await csrf.read_form(request)
    flow_id = _browser_flow(request, state)
    if flow_id is None:
        return _no_flow(request)
    ip, ua = client(request)
    try:
        auth = await login.verify_code(
            flow_id=flow_id, code=csrf.field(form, "code"), ip=ip, user_agent=ua
        )
    except ServiceError as e:
        return await code_view(request, flow_id, error=e)
    return _signed_in(auth, settings)


async def resend_submit(request: Request) -> Response:
    """POST /login/resend: a new code and link for this browser's flow."""
    state = app_state(request)
    settings, login = state.settings, state.login
    await csrf.read_form(request)
    flow_id = _browser_flow(request, state)
    if flow_id is None:
        return _no_flow(request)
    try:
        started = await login.resend(flow_id=flow_id)
    except ServiceError as e:
        return await code_view(request, flow_id, error=e)
    response = redirect("/login/code?sent=1")
    set_flow_cookie(response, settings, started.flow_cookie)
    return response


# --- the link --------------------------------------------------------------------------------


async def link_page(request: Request) -> Response:
    """GET /login/link?t=…: consumes nothing (mail scanners fetch links); one button to go on."""
    login = app_state(request).login
    token = request.query_params.get("t", "")
    if not token or len(token) > csrf.MAX_FIELD:
        raise InvalidLinkError()
    view = await login.peek_link(token)
    return render(request, "link.html", masked_email=view.masked_email, token=token)


async def link_submit(request: Request) -> Response:
    """POST /login/link: consume the link, open a session, 303 to `next`."""
    state = app_state(request)
    settings, login = state.settings, state.login
    form = await csrf.read_form(request)
    ip, ua = client(request)
    auth = await login.verify_link(
        token=csrf.field(form, "t"),
        browser_flow_id=_browser_flow(request, state),
        ip=ip,
        user_agent=ua,
    )
    return _signed_in(auth, settings)


routes: list[BaseRoute] = [
    *brand.routes,
    Route("/", home, methods=["GET"]),
    Route("/login", login_page, methods=["GET"]),
    Route("/login", login_submit, methods=["POST"]),
    Route("/login/code", code_page, methods=["GET"]),
    Route("/login/code", code_submit, methods=["POST"]),
    Route("/login/resend", resend_submit, methods=["POST"]),
    Route("/login/link", link_page, methods=["GET"]),
    Route("/login/link", link_submit, methods=["POST"]),
    *second_factor.routes,
    *passkeys.routes,
    *account.routes,
    *account_notice.routes,
    *account_delete.routes,
    *account_address.routes,
    Mount("/static", app=CachedStatic(StaticFiles(directory=STATIC)), name="static"),
]
