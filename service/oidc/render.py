"""The provider's pages (error, consent, the way back to the app, logout), in Latch's look.

The layout is the pages' own (the same stylesheet and brand), kept here because surfaces do not
import each other.
"""

from __future__ import annotations

import logging
from html import escape
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import HTMLResponse

from service.web import csrf
from service.web.security import content_security_policy
from service.web.state import app_state
from service.web.templates import brand_version, environment

log = logging.getLogger("latch.oidc")
HERE = Path(__file__).resolve().parent
_env = environment(HERE / "templates")


def origin_of(uri: str) -> str:
    """scheme://host[:port] of an absolute URI."""
    parts = urlsplit(uri)
    return f"{parts.scheme}://{parts.netloc}"


def page(
    request: Request,
    template: str,
    *,
    status: int = 200,
    form_to: str | None = None,
    **context: Any,
) -> HTMLResponse:
    """A page in the layout, with a CSRF field. `form_to`: the app's address a form on this
    page ends at (Chrome applies `form-action` to the redirect that follows a POST, so the
    consent and logout forms may only end at the one app they answer)."""
    settings = app_state(request).settings
    token = csrf.token_for(request, settings)
    html = _env.get_template(template).render(
        app_name=settings.brand.app_name,
        brand=brand_version(settings),
        has_logo=bool(settings.brand.logo_file),
        csrf=token.field,
        error=context.pop("error", None),
        **context,
    )
    headers = {}
    if form_to is not None:
        policy = content_security_policy(settings)
        headers["content-security-policy"] = policy.replace(
            "form-action ", f"form-action {origin_of(form_to)} ", 1
        )
    response = HTMLResponse(html, status_code=status, headers=headers)
    if token.fresh:
        csrf.set_cookie(response, settings, token)
    return response


def error_page(request: Request, heading: str, detail: str, status: int = 400) -> HTMLResponse:
    """An error that must not go back to the app (unknown app, unregistered address)."""
    try:
        return page(request, "error.html", status=status, heading=heading, detail=detail)
    except Exception as e:  # a broken template must not turn an error page into a bare 500
        log.error("oidc error page not rendered: %s", type(e).__name__)
        body = f"<!doctype html><title>Error</title><p>{escape(detail)}</p>"
        return HTMLResponse(body, status_code=status)
