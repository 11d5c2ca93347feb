"""The provider's pages (error, consent, the way back to the app, logout), in Latch's look.

The layout is the pages' own (the same stylesheet and brand), kept here because surfaces do not
import each other.
"""

from __future__ import annotations

import hashlib
import logging
from html import escape
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from jinja2 import Environment, FileSystemLoader, StrictUndefined
from starlette.requests import Request
from starlette.responses import HTMLResponse

from service.settings import Settings
from service.web import csrf
from service.web.security import content_security_policy
from service.web.state import app_state

log = logging.getLogger("latch.oidc")
HERE = Path(__file__).resolve().parent
# The stylesheet and icon the pages serve under /static, with their content-hashed URLs.
STATIC = HERE.parent / "pages" / "static"


def _versions() -> dict[str, str]:
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest()[:12]
        for p in STATIC.iterdir()
        if p.is_file()
    }


_VERSIONS = _versions()
_env = Environment(
    loader=FileSystemLoader(HERE / "templates"),
    autoescape=True,
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
_env.globals["static"] = lambda name: f"/static/{name}?v={_VERSIONS.get(name, '0')}"


def origin_of(uri: str) -> str:
    """scheme://host[:port] of an absolute URI."""
    parts = urlsplit(uri)
    return f"{parts.scheme}://{parts.netloc}"


def _brand(settings: Settings) -> str:
    logo = settings.brand.logo_file
    seed = f"{settings.brand.accent_color}|{logo}|{Path(logo).stat().st_mtime if logo else 0}"
    return hashlib.sha256(seed.encode()).hexdigest()[:12]


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
        brand=_brand(settings),
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
