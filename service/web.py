"""HTML pages and form posts: sign in by code or link, the account page, sign out.

Handlers parse the form, call one use case and answer with a page or a 303 redirect (never a
307, which would make the browser re-send the code and the CSRF field to the target). Every
POST passes `read_form`, which applies the origin rule and the CSRF token before anything
else happens.
"""

from __future__ import annotations

import hashlib
import logging
import math
from datetime import UTC, datetime
from html import escape
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import Message, Receive, Scope, Send

from service import brand, csrf
from service.api import current_identity
from service.cookies import (
    clear_flow_cookie,
    clear_session_cookies,
    set_flow_cookie,
    set_session_cookies,
)
from service.display import describe_device
from service.errors import (
    ErrorCode,
    FlowDeadError,
    FlowExpiredError,
    FlowUsedError,
    InvalidCodeError,
    InvalidLinkError,
    ServiceError,
    UnauthenticatedError,
)
from service.flows import Authenticated, Login
from service.security import client_ip, safe_next
from service.sessions import Sessions
from service.settings import Settings

log = logging.getLogger("latch.web")
HERE = Path(__file__).resolve().parent
STATIC = HERE / "static"
ACCOUNT_LOGIN = "/login?next=/account"
ACCOUNT_REFRESH = "/refresh?next=/account"
# A flow that can no longer take a code, and what the code page says about it.
ENDED = {"used": FlowUsedError, "expired": FlowExpiredError, "dead": FlowDeadError}
HEADINGS = {
    ErrorCode.INVALID_LINK: "This link does not work",
    ErrorCode.FLOW_EXPIRED: "This sign-in has expired",
    ErrorCode.FLOW_USED: "This has already been used",
    ErrorCode.FLOW_DEAD: "Too many wrong codes",
    ErrorCode.CSRF: "Please try again",
    ErrorCode.NOT_FOUND: "Page not found",
    ErrorCode.RATE_LIMITED: "Please wait",
}
# What a person can do about it, under the message of the error page.
DETAILS = {
    ErrorCode.INVALID_LINK: "Links can break when they are copied or wrapped by a mail program. "
    "Start again to get a fresh code and link: it takes a few seconds.",
    ErrorCode.FLOW_EXPIRED: "For your safety, codes and links work for {minutes} minutes and "
    "only once. Start again to get a new one.",
    ErrorCode.FLOW_USED: "Each code and link works only once. If you just used it, you are "
    "signed in on that device. Otherwise, start again.",
    ErrorCode.FLOW_DEAD: "To protect your account, this sign-in stopped after too many wrong "
    "codes. Start again to get a new code.",
    ErrorCode.CSRF: "The page was open for a long time, or the form came from another site.",
    ErrorCode.NOT_FOUND: "There is nothing at this address.",
}


def _asset_versions() -> dict[str, str]:
    # Static files are cached for a year, so each URL carries a hash of the file's content.
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest()[:12]
        for p in STATIC.iterdir()
        if p.is_file()
    }


_VERSIONS = _asset_versions()
_env = Environment(
    loader=FileSystemLoader(HERE / "templates"),
    autoescape=True,
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
_env.globals["static"] = lambda name: f"/static/{name}?v={_VERSIONS.get(name, '0')}"


def render(
    request: Request,
    template: str,
    *,
    status: int = 200,
    headers: dict[str, str] | None = None,
    forms: bool = True,
    **context: Any,
) -> HTMLResponse:
    """A page in the layout; pages with forms get the CSRF field (and cookie when new)."""
    settings: Settings = request.app.state.settings
    token = csrf.token_for(request, settings) if forms else None
    context.setdefault("error", None)
    context.setdefault("notice", None)
    html = _env.get_template(template).render(
        app_name=settings.app_name,
        brand=brand.brand_version(settings),
        has_logo=bool(settings.logo_file),
        allow_signup=settings.allow_signup,
        csrf=token.field if token else "",
        **context,
    )
    response = HTMLResponse(html, status_code=status, headers=headers)
    if token is not None and token.fresh:
        csrf.set_cookie(response, settings, token)
    return response


def error_page(request: Request, error: ServiceError) -> Response:
    """An error in the format of an HTML endpoint."""
    try:
        settings: Settings = request.app.state.settings
        detail = DETAILS.get(error.code, "")
        return render(
            request,
            "error.html",
            status=error.status,
            headers=error.headers,
            forms=False,
            heading=HEADINGS.get(error.code, "Something went wrong"),
            error=error.message,
            detail=detail.format(minutes=max(1, settings.code_ttl // 60)),
            found=error.code != ErrorCode.NOT_FOUND,
        )
    except Exception as e:  # a broken template must not turn an error page into a bare 500
        log.error("error page not rendered: %s", type(e).__name__)
        body = f"<!doctype html><title>Error</title><p>{escape(error.message)}</p>"
        return HTMLResponse(body, status_code=error.status, headers=error.headers)


def redirect(url: str) -> RedirectResponse:
    """303 See Other: the browser follows with a GET and re-sends no form."""
    return RedirectResponse(url, status_code=303)


def _state(request: Request) -> tuple[Settings, Login, Sessions]:
    app = request.app.state
    return app.settings, app.login, app.sessions


def _client(request: Request, settings: Settings) -> tuple[str, str]:
    return client_ip(request.scope, settings.trusted_proxies), request.headers.get(
        "user-agent", ""
    )[:300]


def _browser_flow(request: Request, settings: Settings, login: Login) -> str | None:
    return login.flow_from_cookie(request.cookies.get(settings.flow_cookie))


def _signed_in(auth: Authenticated, settings: Settings) -> Response:
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
    settings = request.app.state.settings
    next_url = safe_next(request.query_params.get("next"), settings)
    return render(request, "login.html", email="", next_url=next_url)


async def login_submit(request: Request) -> Response:
    """POST /login: start a flow, bind it to this browser, 303 to the code page."""
    settings, login, _ = _state(request)
    form = await csrf.read_form(request)
    email, next_url = csrf.field(form, "email"), safe_next(csrf.field(form, "next"), settings)
    ip, ua = _client(request, settings)
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
    _, login, _ = _state(request)
    view = await login.flow_view(flow_id)
    if view is None:
        return error_page(request, error or FlowExpiredError())
    ended = ENDED.get(view["state"])
    if error is None and ended is not None:
        error = ended()
    message = error.message if error else None
    if isinstance(error, InvalidCodeError) and ended is not None:
        message = ended.message  # "0 tries left" says less than why the sign-in ended
    left = view["expires_at"] - int(request.app.state.clock())
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
    settings, login, _ = _state(request)
    flow_id = _browser_flow(request, settings, login)
    if flow_id is None:
        return redirect("/login")
    notice = "We sent a new code." if request.query_params.get("sent") else None
    return await code_view(request, flow_id, notice=notice)


async def code_submit(request: Request) -> Response:
    """POST /login/code: check the code; signed in → 303 to `next`, else the page again."""
    settings, login, _ = _state(request)
    form = await csrf.read_form(request)
    flow_id = _browser_flow(request, settings, login)
    if flow_id is None:
        return _no_flow(request)
    ip, ua = _client(request, settings)
    try:
        auth = await login.verify_code(
            flow_id=flow_id, code=csrf.field(form, "code"), ip=ip, user_agent=ua
        )
    except ServiceError as e:
        return await code_view(request, flow_id, error=e)
    return _signed_in(auth, settings)


async def resend_submit(request: Request) -> Response:
    """POST /login/resend: a new code and link for this browser's flow."""
    settings, login, _ = _state(request)
    await csrf.read_form(request)
    flow_id = _browser_flow(request, settings, login)
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
    _, login, _ = _state(request)
    token = request.query_params.get("t", "")
    if not token or len(token) > csrf.MAX_FIELD:
        raise InvalidLinkError()
    view = await login.peek_link(token)
    return render(request, "link.html", masked_email=view.masked_email, token=token)


async def link_submit(request: Request) -> Response:
    """POST /login/link: consume the link, open a session, 303 to `next`."""
    settings, login, _ = _state(request)
    form = await csrf.read_form(request)
    ip, ua = _client(request, settings)
    auth = await login.verify_link(
        token=csrf.field(form, "t"),
        browser_flow_id=_browser_flow(request, settings, login),
        ip=ip,
        user_agent=ua,
    )
    return _signed_in(auth, settings)


# --- the account -----------------------------------------------------------------------------


def _ago(then: int, now: int) -> str:
    seconds = max(0, now - then)
    for size, unit in ((86400, "day"), (3600, "hour"), (60, "minute")):
        if seconds >= size:
            n = seconds // size
            return f"{n} {unit}{'' if n == 1 else 's'} ago"
    return "just now"


def _moment(then: int, now: int) -> dict[str, str]:
    stamp = datetime.fromtimestamp(then, UTC)
    return {
        "iso": stamp.isoformat(),
        "utc": stamp.strftime("%Y-%m-%d %H:%M UTC"),
        "ago": _ago(then, now),
    }


async def account_page(request: Request) -> Response:
    """GET /account: who you are and where you are signed in."""
    settings, _, sessions = _state(request)
    try:
        identity = await current_identity(request)
    except UnauthenticatedError:
        # The access JWT lives 15 minutes; a browser still holding a refresh token is signed
        # in, so it goes through /refresh (which sends it on to sign-in if that fails).
        has_refresh = bool(request.cookies.get(settings.refresh_cookie))
        return redirect(ACCOUNT_REFRESH if has_refresh else ACCOUNT_LOGIN)
    now = int(request.app.state.clock())
    rows = [
        {
            "id": s["id"],
            "device": describe_device(s["user_agent"] or "") or "Unknown device",
            "ip": s["ip"] or "unknown",
            "created": _moment(s["created_at"], now),
            "last_used": _moment(s["last_used_at"] or s["created_at"], now),
            "current": s["current"],
        }
        for s in await sessions.list(identity)
    ]
    rows.sort(key=lambda r: not r["current"])
    notice = "That session has been signed out." if request.query_params.get("revoked") else None
    return render(request, "account.html", email=identity.email, sessions=rows, notice=notice)


async def revoke_submit(request: Request) -> Response:
    """POST /account/sessions/{id}/revoke: sign one of your sessions out."""
    _, _, sessions = _state(request)
    await csrf.read_form(request)
    try:
        identity = await current_identity(request)
    except UnauthenticatedError:
        return redirect(ACCOUNT_LOGIN)
    await sessions.revoke(identity, request.path_params["session_id"])
    return redirect("/account?revoked=1")


async def logout_submit(request: Request) -> Response:
    """POST /logout (`all=1` for every session): revoke, clear the cookies, 303 to /login."""
    settings, _, sessions = _state(request)
    form = await csrf.read_form(request)
    everywhere = csrf.field(form, "all") in ("1", "on", "true")
    try:
        identity = await current_identity(request)
    except UnauthenticatedError:
        identity = None  # already signed out: clearing the cookies is all that is left
    if identity is not None:
        await sessions.logout(identity, everywhere=everywhere)
    response = redirect("/login")
    clear_session_cookies(response, settings)
    return response


class CachedStatic:
    """Static files with a year-long cache (their URLs carry a content hash)."""

    def __init__(self, app: StaticFiles) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_cached(message: Message) -> None:
            if message["type"] == "http.response.start" and message["status"] in (200, 304):
                message["headers"] = [
                    *message.get("headers", []),
                    (b"cache-control", b"public, max-age=31536000, immutable"),
                ]
            await send(message)

        await self.app(scope, receive, send_cached)


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
    Route("/account", account_page, methods=["GET"]),
    Route("/account/sessions/{session_id}/revoke", revoke_submit, methods=["POST"]),
    Route("/logout", logout_submit, methods=["POST"]),
    Mount("/static", app=CachedStatic(StaticFiles(directory=STATIC)), name="static"),
]
