"""CSRF for HTML forms: a signed double-submit token plus the request-origin rule (design.md §5).

The cookie holds a random value; the form carries an HMAC of it under the CSRF subkey. A page
on another site can neither read the cookie (HttpOnly, and cross-origin reads are blocked) nor
compute the field without the key, and a cookie planted from a sibling host (cookie tossing)
is useless without the matching HMAC. The origin rule stops cross-site posts in browsers that
say where a request comes from; the token covers the ones that do not.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import logging
import re
import secrets
from dataclasses import dataclass

from starlette.datastructures import FormData, Headers
from starlette.requests import Request
from starlette.responses import Response

from service.crypto import Keys
from service.errors import CsrfError
from service.settings import Settings
from service.web.bodies import check_form_encoding
from service.web.state import app_state

log = logging.getLogger("latch.csrf")
FIELD = "csrf"
MAX_FIELD = 2000
MAX_FIELDS = 20
_COOKIE_VALUE = re.compile(r"[A-Za-z0-9_-]{43}")


@dataclass(frozen=True, kw_only=True)
class Token:
    """The cookie value, the matching form field, and whether the cookie must be set."""

    cookie: str
    field: str
    fresh: bool


@functools.lru_cache(maxsize=4)
def _csrf_key(secret_key: bytes) -> bytes:
    # Derived once per secret, not on every form rendered or posted.
    return Keys.from_secret(secret_key).csrf


def form_value(cookie: str, settings: Settings) -> str:
    """The hidden-field value that matches a cookie value."""
    key = _csrf_key(settings.secret_key)
    return hmac.new(key, cookie.encode("ascii"), hashlib.sha256).hexdigest()


def token_for(request: Request, settings: Settings) -> Token:
    """The browser's token, or a new one when it has none (or a malformed one)."""
    cookie = request.cookies.get(settings.csrf_cookie)
    if cookie and _COOKIE_VALUE.fullmatch(cookie):
        return Token(cookie=cookie, field=form_value(cookie, settings), fresh=False)
    cookie = secrets.token_urlsafe(32)
    return Token(cookie=cookie, field=form_value(cookie, settings), fresh=True)


def set_cookie(response: Response, settings: Settings, token: Token) -> None:
    """Give the browser its token (a browser-session cookie, HttpOnly, SameSite=Lax)."""
    response.set_cookie(
        settings.csrf_cookie,
        token.cookie,
        path="/",
        httponly=True,
        samesite="lax",
        secure=settings.cookie_secure,
    )


def check_origin(headers: Headers, settings: Settings) -> None:
    """The request must come from Latch's own pages, as far as the browser tells.

    `Origin: null` is not a refusal: under `Referrer-Policy: no-referrer` browsers send it on
    same-origin form posts, so it says nothing and the token decides.
    """
    site = headers.get("sec-fetch-site")
    if site is not None:
        if site.strip().lower() != "same-origin":
            log.debug("form refused: Sec-Fetch-Site=%s", site[:20])
            raise CsrfError()
        return
    origin = headers.get("origin")
    if origin is not None and origin != "null" and origin.strip().lower() != settings.origin:
        log.debug("form refused: foreign Origin")
        raise CsrfError()


def check_token(cookie: str | None, field: str, settings: Settings) -> None:
    """The form field must be the HMAC of the cookie value (constant-time compare)."""
    if not cookie or not _COOKIE_VALUE.fullmatch(cookie) or not field:
        log.debug("form refused: CSRF cookie or field missing")
        raise CsrfError()
    expected = form_value(cookie, settings).encode("ascii")
    if not hmac.compare_digest(expected, field.encode("utf-8")):
        log.debug("form refused: CSRF field does not match")
        raise CsrfError()


def field(form: FormData, name: str) -> str:
    """A text field of a form ('' when absent, a file, or too long to be genuine)."""
    value = form.get(name)
    return value if isinstance(value, str) and len(value) <= MAX_FIELD else ""


async def read_form(request: Request) -> FormData:
    """The form of a POST from Latch's own pages, else CsrfError: the origin rule is checked
    before the body is read, then the token."""
    settings: Settings = app_state(request).settings
    check_origin(request.headers, settings)
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype == "application/x-www-form-urlencoded":
        # Read first (Starlette keeps the body for `form()`): bad UTF-8 is refused, not replaced.
        check_form_encoding(await request.body())
    form = await request.form(max_files=0, max_fields=MAX_FIELDS)
    check_token(request.cookies.get(settings.csrf_cookie), field(form, FIELD), settings)
    return form
