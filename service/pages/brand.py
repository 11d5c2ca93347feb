"""Branding without forking: the accent stylesheet, the logo, and a preview of the sign-in mail.

Nothing here is inline in a page: the accent colour reaches the pages as a tiny generated
stylesheet (`style-src 'self'` holds), the logo as an image served by Latch itself.
"""

from __future__ import annotations

import time
from pathlib import Path

import anyio
from starlette.requests import Request
from starlette.responses import FileResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Route

from service.delivery.mail import MailJob, Renderer
from service.errors import NotFoundError
from service.settings import LOGO_TYPES, Settings
from service.web.state import app_state
from service.web.templates import brand_css

# The preview is a mail, not a page: its styles are inline by necessity (mail clients drop
# <style>), so it gets its own policy. No script, no form, no framing, images only from Latch,
# and a sandbox that gives it an opaque origin: it can touch nothing of Latch's.
PREVIEW_CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src 'self'; form-action 'none'; "
    "frame-ancestors 'none'; base-uri 'none'; sandbox allow-popups allow-popups-to-escape-sandbox"
)
# A logo is an image, even when someone opens /logo directly: an SVG holding a script must not
# run it under Latch's origin.
LOGO_CSP = "default-src 'none'; style-src 'unsafe-inline'; sandbox"
SAMPLE_CODE = "123456"  # a sample: never a real code
SAMPLE_USER_AGENT = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/140.0 Safari/537.36"


async def brand_stylesheet(request: Request) -> Response:
    """GET /static/brand.css: the accent colour (validated as #rgb/#rrggbb at start-up)."""
    settings: Settings = app_state(request).settings
    return Response(
        brand_css(settings.brand.accent_color),
        media_type="text/css",
        headers={"cache-control": "public, max-age=31536000, immutable"},
    )


async def logo(request: Request) -> Response:
    """GET /logo: LOGO_FILE with its image content type; 404 when none is set."""
    settings: Settings = app_state(request).settings
    if not settings.brand.logo_file:
        raise NotFoundError()
    path = Path(settings.brand.logo_file)
    if not await anyio.Path(path).is_file():  # removed since start-up: a 404, not a 500
        raise NotFoundError()
    return FileResponse(
        path,
        media_type=LOGO_TYPES[path.suffix.lower()],
        headers={
            # Mail clients fetch the logo long after the mail was sent: a day's cache, no
            # immutable URL (the URL in a sent mail cannot change).
            "cache-control": "public, max-age=86400",
            "content-security-policy": LOGO_CSP,
        },
    )


def sample_job(settings: Settings, now: float | None = None) -> MailJob:
    """A sign-in mail job with sample values: no real code, a link that reads as invalid."""
    return MailJob(
        flow_id="preview",
        seq=0,
        to="alice@example.com",
        code=SAMPLE_CODE,
        link=f"{settings.public_url}/login/link?t=sample-link-for-preview",
        expires_at=int(now if now is not None else time.time()) + settings.signin.code_ttl,
        ip="203.0.113.7",
        user_agent=SAMPLE_USER_AGENT,
    )


async def mail_preview(request: Request) -> Response:
    """GET /dev/mail/preview (`?part=text` for the plain text): development only, else 404."""
    settings: Settings = app_state(request).settings
    if not settings.development:
        raise NotFoundError()
    message = Renderer(settings).render(sample_job(settings, app_state(request).clock()))
    part = "plain" if request.query_params.get("part") == "text" else "html"
    body = message.get_body((part,))
    content = body.get_content() if body is not None else ""
    headers = {"content-security-policy": PREVIEW_CSP}
    if part == "plain":
        return PlainTextResponse(content, headers=headers)
    return Response(content, media_type="text/html", headers=headers)


routes: list[BaseRoute] = [
    # Before web.py's /static mount, which would otherwise answer 404 for this path.
    Route("/static/brand.css", brand_stylesheet, methods=["GET"]),
    Route("/logo", logo, methods=["GET"]),
    Route("/dev/mail/preview", mail_preview, methods=["GET"]),
]
