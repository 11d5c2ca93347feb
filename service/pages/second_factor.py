"""The second step of a sign-in in the browser (docs/design.md §11): /login/second-factor.

The browser arrives here by a 303 from the code or link with only a `latch_signin` cookie; the
page asks for the method's answer and, when it is right, sets the session cookies and goes on to
`next`. A pending sign-in that is over (expired, completed, too many wrong answers) gets the
error page, and its cookie is dropped.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from service.errors import (
    FlowDeadError,
    FlowUsedError,
    InvalidCodeError,
    ServiceError,
    SigninExpiredError,
)
from service.pages.render import error_page, redirect, render
from service.store import PendingStep
from service.web import csrf
from service.web.cookies import (
    clear_signin_cookie,
    set_session_cookies,
    signin_cookie_name,
)
from service.web.identity import client
from service.web.state import app_state

RECOVERY_CODE = "recovery_code"
PASSKEY = "passkey"


@dataclass(frozen=True)
class Prompt:
    """What the page says for one method."""

    title: str
    lead: str
    label: str
    link: str  # the "use … instead" link to it
    inputmode: str = "numeric"


PROMPTS = {
    "totp": Prompt(
        "Enter your authenticator code",
        "Open your authenticator app and enter the 6-digit code it shows for this account.",
        "6-digit code",
        "Use your authenticator app instead",
    ),
    PASSKEY: Prompt(
        "Use your passkey",
        "Confirm it is you with the passkey you added to this account: your device asks for "
        "your fingerprint, face, PIN or security key.",
        "Passkey",
        "Use a passkey instead",
    ),
    RECOVERY_CODE: Prompt(
        "Enter a recovery code",
        "Enter one of the recovery codes you saved. Each one works once.",
        "Recovery code",
        "Use a recovery code instead",
        inputmode="text",
    ),
}


def prompt_for(method: str) -> Prompt:
    """The words for a method; a method without its own says which one it is."""
    return PROMPTS.get(method) or Prompt(
        "One more step",
        f"Your account asks for a second step: enter the code of your {method} factor.",
        "Code",
        f"Use your {method} factor instead",
    )


def _chosen(step: PendingStep, asked: str | None) -> str:
    """The method the page asks for: the one asked for if the user has it, else the first
    that is not a recovery code (those are the fallback)."""
    if asked in step.methods:
        return str(asked)
    usual = [m for m in step.methods if m != RECOVERY_CODE]
    return usual[0] if usual else step.methods[0]


async def _page(
    request: Request, step: PendingStep, method: str, error: ServiceError | None = None
) -> Response:
    left = step.expires_at - int(app_state(request).clock())
    tries_left = error.tries_left if isinstance(error, InvalidCodeError) else None
    others = [
        {"method": m, "link": prompt_for(m).link}
        for m in step.methods
        # Recovery codes are the fallback of every method; a passkey and a code stand in for
        # each other (a device without WebAuthn can still use the code, and the other way).
        if m != method and (RECOVERY_CODE in (m, method) or PASSKEY in (m, method))
    ]
    return render(
        request,
        "second_factor.html",
        status=error.status if error else 200,
        error=error.message if error else None,
        method=method,
        prompt=prompt_for(method),
        others=others,
        tries_left=tries_left,
        minutes=max(1, math.ceil(left / 60)),
    )


def _ended(request: Request, error: ServiceError) -> Response:
    response = error_page(request, error)
    clear_signin_cookie(response, app_state(request).settings)
    return response


async def second_factor_page(request: Request) -> Response:
    """GET /login/second-factor?method=…: the form for the pending sign-in's next step."""
    state = app_state(request)
    try:
        step = await state.steps.pending(request.cookies.get(signin_cookie_name(state.settings)))
    except (FlowDeadError, FlowUsedError, SigninExpiredError) as e:
        return _ended(request, e)
    if not step.methods:  # REQUIRE_SECOND_FACTOR=all and no factor yet: set one up first
        return redirect("/login/enrol")
    return await _page(request, step, _chosen(step, request.query_params.get("method")))


async def second_factor_submit(request: Request) -> Response:
    """POST /login/second-factor: right → session cookies and 303 to `next`; else the page."""
    state = app_state(request)
    settings = state.settings
    form = await csrf.read_form(request)
    cookie = request.cookies.get(signin_cookie_name(settings))
    method = csrf.field(form, "method")
    ip, ua = client(request)
    try:
        auth = await state.steps.answer(
            cookie=cookie,
            method=method,
            answer=csrf.field(form, "code"),
            ip=ip,
            user_agent=ua,
        )
    except (FlowDeadError, FlowUsedError, SigninExpiredError) as e:
        return _ended(request, e)
    except ServiceError as e:
        try:
            step = await state.steps.pending(cookie)
        except (FlowDeadError, FlowUsedError, SigninExpiredError) as ended:
            # The fifth wrong answer: say why the sign-in ended, not "0 tries left".
            return _ended(request, ended)
        return await _page(request, step, _chosen(step, method), e)
    response = redirect(auth.next_url)
    set_session_cookies(response, settings, auth)
    clear_signin_cookie(response, settings)
    return response


routes: list[BaseRoute] = [
    Route("/login/second-factor", second_factor_page, methods=["GET"]),
    Route("/login/second-factor", second_factor_submit, methods=["POST"]),
]
