"""Second factors in the browser (docs/design.md §11): the two-step sign-in settings of the
account, setting up an authenticator app, recovery codes, step-up, and enrolment as the
second step of a sign-in under REQUIRE_SECOND_FACTOR=all.

Every change of factors needs a recent step; without one the browser is sent to
/login/step-up, which comes back here. The authenticator's secret is on the setup page only
(a POST answer, `Cache-Control: no-store`), recovery codes on the page that issues them only.
"""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from service.errors import (
    FlowDeadError,
    FlowUsedError,
    InvalidCodeError,
    InvalidPasskeyError,
    InvalidRequestError,
    ServiceError,
    SigninExpiredError,
    StepUpRequiredError,
    UnauthenticatedError,
)
from service.pages.account import ACCOUNT_LOGIN, moment
from service.pages.render import error_page, redirect, render
from service.signin.factors import ENROL_TTL
from service.signin.sessions import Identity
from service.signin.totp import Enrolment
from service.web import csrf
from service.web.cookies import (
    clear_signin_cookie,
    set_access_cookie,
    set_session_cookies,
    signin_cookie_name,
)
from service.web.identity import client, current_identity
from service.web.security import safe_next
from service.web.state import app_state

SECURITY = "/account/security"


def _step_up(next_url: str = SECURITY) -> Response:
    return redirect("/login/step-up?" + urlencode({"next": next_url}))


async def _identity(request: Request) -> Identity | None:
    try:
        return await current_identity(request)
    except UnauthenticatedError:
        return None


def _enrol_page(
    request: Request,
    enrolment_: Enrolment,
    *,
    action: str,
    cancel: str,
    error: ServiceError | None = None,
    during_signin: bool = False,
) -> Response:
    return render(
        request,
        "totp_enrol.html",
        status=error.status if error else 200,
        error=error.message if error else None,
        qr_svg=enrolment_.qr_svg,
        secret_grouped=enrolment_.grouped,
        otpauth_uri=enrolment_.otpauth_uri,
        action=action,
        cancel=cancel,
        during_signin=during_signin,
    )


def codes_page(request: Request, codes: list[str], next_url: str) -> Response:
    """The recovery codes, shown once, with a download and a "Continue" to `next_url`."""
    name = app_state(request).settings.brand.app_name
    download = f"{name} recovery codes\n\n" + "\n".join(codes) + "\n\nEach code works once.\n"
    # "Continue" is a GET form (it only asks that the box be ticked), and a GET form drops its
    # action's query: the query of `next` travels as hidden fields instead.
    parts = urlsplit(next_url)
    return render(
        request,
        "recovery_codes.html",
        codes=codes,
        download=download,
        next_url=urlunsplit((parts.scheme, parts.netloc, parts.path, "", "")),
        next_query=parse_qsl(parts.query),
    )


async def security_page(request: Request) -> Response:
    """GET /account/security: the person's second factors."""
    state = app_state(request)
    identity = await _identity(request)
    if identity is None:
        return redirect("/login?next=/account/security")
    summary = await state.account_factors.summary(identity)
    now = state.account_factors.now()
    notice = {"added": "Your authenticator app is on.", "removed": "It has been removed."}.get(
        request.query_params.get("done", "")
    )
    return render(
        request,
        "security.html",
        summary=summary,
        totp_since=moment(summary.totp_created_at or now, now),
        notice=notice,
    )


async def totp_begin(request: Request) -> Response:
    """POST /account/totp: a new secret, its QR code and the form for the first code."""
    state = app_state(request)
    await csrf.read_form(request)
    identity = await _identity(request)
    if identity is None:
        return redirect(ACCOUNT_LOGIN)
    try:
        enrolment_ = await state.account_factors.begin_totp(identity)
    except StepUpRequiredError:
        return _step_up()
    return _enrol_page(request, enrolment_, action="/account/totp/confirm", cancel=SECURITY)


async def totp_confirm(request: Request) -> Response:
    """POST /account/totp/confirm: the first code turns the app on (recovery codes, once)."""
    state = app_state(request)
    form = await csrf.read_form(request)
    identity = await _identity(request)
    if identity is None:
        return redirect(ACCOUNT_LOGIN)
    factors = state.account_factors
    try:
        ip, ua = client(request)
        confirmed = await factors.confirm_totp(
            identity, csrf.field(form, "code"), ip=ip, user_agent=ua
        )
    except StepUpRequiredError:
        return _step_up()
    except InvalidRequestError as e:
        pending = await factors.totp.pending(
            identity.user_id, identity.email, factors.now() - ENROL_TTL
        )
        if pending is None:
            return redirect(SECURITY)
        return _enrol_page(
            request, pending, action="/account/totp/confirm", cancel=SECURITY, error=e
        )
    if confirmed.recovery_codes:
        return codes_page(request, confirmed.recovery_codes, SECURITY + "?done=added")
    return redirect(SECURITY + "?done=added")


async def totp_remove(request: Request) -> Response:
    """POST /account/totp/remove."""
    state = app_state(request)
    await csrf.read_form(request)
    identity = await _identity(request)
    if identity is None:
        return redirect(ACCOUNT_LOGIN)
    try:
        ip, ua = client(request)
        await state.account_factors.remove_totp(identity, ip=ip, user_agent=ua)
    except StepUpRequiredError:
        return _step_up()
    return redirect(SECURITY + "?done=removed")


async def recovery_regenerate(request: Request) -> Response:
    """POST /account/recovery-codes: ten new codes, shown once."""
    state = app_state(request)
    await csrf.read_form(request)
    identity = await _identity(request)
    if identity is None:
        return redirect(ACCOUNT_LOGIN)
    try:
        ip, ua = client(request)
        codes = await state.account_factors.regenerate_recovery_codes(
            identity, ip=ip, user_agent=ua
        )
    except StepUpRequiredError:
        return _step_up()
    return codes_page(request, codes, SECURITY)


async def step_up_page(
    request: Request, error: ServiceError | None = None, next_url: str | None = None
) -> Response:
    """GET /login/step-up?next=…: "Use your passkey" (static/passkeys.js) and the app's code,
    whichever the person has, or a fresh emailed code."""
    state = app_state(request)
    if next_url is None:  # a POST's answer keeps the form's `next`
        next_url = safe_next(request.query_params.get("next"), state.settings)
    identity = await _identity(request)
    if identity is None:
        return redirect("/login?" + urlencode({"next": next_url}))
    methods = await state.account_factors.step_up_methods(identity.user_id)
    return render(
        request,
        "step_up.html",
        status=error.status if error else 200,
        error=error.message if error else None,
        passkey="passkey" in methods,
        totp="totp" in methods,
        next_url=next_url,
    )


async def step_up_submit(request: Request) -> Response:
    """POST /login/step-up: a right code (or passkey answer, posted as `code` by
    static/passkeys.js) → a new access cookie and 303 to `next`."""
    state = app_state(request)
    form = await csrf.read_form(request)
    next_url = safe_next(csrf.field(form, "next"), state.settings)
    identity = await _identity(request)
    if identity is None:
        return redirect("/login?" + urlencode({"next": next_url}))
    try:
        ip, ua = client(request)
        token = await state.account_factors.step_up(
            identity, csrf.field(form, "method"), csrf.field(form, "code"), ip=ip, user_agent=ua
        )
    except (InvalidCodeError, InvalidPasskeyError, InvalidRequestError) as e:
        return await step_up_page(request, e, next_url)
    response = redirect(next_url)
    set_access_cookie(response, state.settings, token)
    return response


# --- enrolment as the second step of a sign-in (REQUIRE_SECOND_FACTOR=all) ------------------


def _ended(request: Request, error: ServiceError) -> Response:
    response = error_page(request, error)
    clear_signin_cookie(response, app_state(request).settings)
    return response


async def enrol_page(request: Request) -> Response:
    """GET /login/enrol: set up an authenticator app to finish signing in."""
    state = app_state(request)
    cookie = request.cookies.get(signin_cookie_name(state.settings))
    try:
        enrolment_ = await state.enrolment.begin(cookie)
    except (FlowDeadError, FlowUsedError, SigninExpiredError) as e:
        return _ended(request, e)
    except InvalidRequestError:
        return redirect("/login/second-factor")
    return _enrol_page(
        request, enrolment_, action="/login/enrol", cancel="/login", during_signin=True
    )


async def enrol_submit(request: Request) -> Response:
    """POST /login/enrol: the first code confirms the app and completes the sign-in."""
    state = app_state(request)
    settings, factors = state.settings, state.account_factors
    form = await csrf.read_form(request)
    cookie = request.cookies.get(signin_cookie_name(settings))
    ip, ua = client(request)
    try:
        done = await state.enrolment.confirm(
            cookie=cookie, code=csrf.field(form, "code"), ip=ip, user_agent=ua
        )
    except (FlowDeadError, FlowUsedError, SigninExpiredError) as e:
        return _ended(request, e)
    except ServiceError as e:
        try:
            step = await state.steps.pending(cookie)
        except (FlowDeadError, FlowUsedError, SigninExpiredError) as ended:
            return _ended(request, ended)
        pending = await factors.totp.pending(step.user_id, step.email, factors.now() - ENROL_TTL)
        if pending is None:
            return redirect("/login/enrol")
        return _enrol_page(
            request, pending, action="/login/enrol", cancel="/login", error=e, during_signin=True
        )
    auth = done.auth
    if done.recovery_codes:
        response = codes_page(request, done.recovery_codes, auth.next_url)
    else:
        response = redirect(auth.next_url)
    set_session_cookies(response, settings, auth)
    clear_signin_cookie(response, settings)
    return response


routes: list[BaseRoute] = [
    Route(SECURITY, security_page, methods=["GET"]),
    Route("/account/totp", totp_begin, methods=["POST"]),
    Route("/account/totp/confirm", totp_confirm, methods=["POST"]),
    Route("/account/totp/remove", totp_remove, methods=["POST"]),
    Route("/account/recovery-codes", recovery_regenerate, methods=["POST"]),
    Route("/login/step-up", step_up_page, methods=["GET"]),
    Route("/login/step-up", step_up_submit, methods=["POST"]),
    Route("/login/enrol", enrol_page, methods=["GET"]),
    Route("/login/enrol", enrol_submit, methods=["POST"]),
]
