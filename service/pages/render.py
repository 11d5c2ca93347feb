"""Page rendering shared by the HTML endpoints: the layout, error pages, 303 redirects,
static files with content-hashed URLs."""

from __future__ import annotations

import logging
from html import escape
from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.staticfiles import StaticFiles
from starlette.types import Message, Receive, Scope, Send

from service.errors import ErrorCode, ServiceError
from service.settings import Settings
from service.web import csrf
from service.web.state import app_state
from service.web.surface import Surface
from service.web.templates import brand_version, environment

log = logging.getLogger("latch.web")

HERE = Path(__file__).resolve().parent
HEADINGS = {
    ErrorCode.INVALID_LINK: "This link does not work",
    ErrorCode.FLOW_EXPIRED: "This sign-in has expired",
    ErrorCode.FLOW_USED: "This has already been used",
    ErrorCode.FLOW_DEAD: "Too many wrong codes",
    ErrorCode.SIGNIN_EXPIRED: "This sign-in has expired",
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
    ErrorCode.SIGNIN_EXPIRED: "For your safety, the second step must follow the first within "
    "five minutes. Start again to get a new code.",
    ErrorCode.CSRF: "The page was open for a long time, or the form came from another site.",
    ErrorCode.NOT_FOUND: "There is nothing at this address.",
}


_env = environment(HERE / "templates")


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
    settings: Settings = app_state(request).settings
    token = csrf.token_for(request, settings) if forms else None
    context.setdefault("error", None)
    context.setdefault("notice", None)
    html = _env.get_template(template).render(
        app_name=settings.brand.app_name,
        brand=brand_version(settings),
        has_logo=bool(settings.brand.logo_file),
        allow_signup=settings.signin.allow_signup,
        passkeys=settings.passkeys_enabled,
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
        settings: Settings = app_state(request).settings
        detail = DETAILS.get(error.code, "")
        return render(
            request,
            "error.html",
            status=error.status,
            headers=error.headers,
            forms=False,
            heading=HEADINGS.get(error.code, "Something went wrong"),
            error=error.message,
            detail=detail.format(minutes=max(1, settings.signin.code_ttl // 60)),
            found=error.code != ErrorCode.NOT_FOUND,
        )
    except Exception as e:  # a broken template must not turn an error page into a bare 500
        log.error("error page not rendered: %s", type(e).__name__)
        body = f"<!doctype html><title>Error</title><p>{escape(error.message)}</p>"
        return HTMLResponse(body, status_code=error.status, headers=error.headers)


async def render_error(request: Request, error: ServiceError) -> Response:
    """How the HTML surface answers any error raised while it handles a request."""
    return error_page(request, error)


surface = Surface("pages", render_error, json=False)


def redirect(url: str) -> RedirectResponse:
    """303 See Other: the browser follows with a GET and re-sends no form."""
    return RedirectResponse(url, status_code=303)


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
