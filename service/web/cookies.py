"""The cookies Latch sets: HttpOnly, SameSite=Lax, Path=/, Secure and prefixed under https."""

from __future__ import annotations

import re
from email.utils import formatdate

from starlette.responses import Response

from service.settings import Settings
from service.signin.access import Authenticated
from service.signin.opening import SIGNIN_TTL

# What a cookie value may be written as without quoting: what Latch's values are made of
# (JWTs and URL-safe base64 tokens).
_PLAIN = re.compile(r"[A-Za-z0-9._-]*")
_NAME = re.compile(r"[A-Za-z0-9_-]+")


def _set(
    response: Response,
    settings: Settings,
    name: str,
    value: str,
    max_age: int,
    *,
    shared: bool = False,
) -> None:
    domain = settings.sessions.cookie_domain or None if shared else None
    if _written(response, settings, name, value, max_age, domain):
        return
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        path="/",
        httponly=True,
        samesite="lax",
        secure=settings.cookie_secure,
        domain=domain,
    )


def _written(
    response: Response,
    settings: Settings,
    name: str,
    value: str,
    max_age: int,
    domain: str | None,
    *,
    expire: bool = False,
) -> bool:
    """Append the Set-Cookie header Starlette's set_cookie (or delete_cookie, `expire`) would
    write, without building a SimpleCookie (~30 us each, three or four on every sign-in):
    http.cookies puts the attributes in alphabetical order. False, with nothing written, for
    anything unusual: the caller then goes through Starlette."""
    if not (_PLAIN.fullmatch(value) and _NAME.fullmatch(name) and _PLAIN.fullmatch(domain or "")):
        return False
    parts = [f'{name}=""' if expire else f"{name}={value}"]
    if domain:
        parts.append(f"Domain={domain}")
    if expire:
        parts.append(f"expires={formatdate(usegmt=True)}")
    parts += ["HttpOnly", f"Max-Age={max_age}", "Path=/", "SameSite=lax"]
    if settings.cookie_secure:
        parts.append("Secure")
    response.raw_headers.append((b"set-cookie", "; ".join(parts).encode("latin-1")))
    return True


def set_session_cookies(response: Response, settings: Settings, auth: Authenticated) -> None:
    """The access JWT and the refresh token. The access cookie lives as long as the session
    can, although its JWT expires sooner, so a service can tell "expired, go to /refresh" from
    "never signed in"."""
    _set(
        response,
        settings,
        settings.session_cookie,
        auth.access_token,
        settings.sessions.max_ttl,
        shared=True,
    )
    _set(response, settings, settings.refresh_cookie, auth.refresh_token, settings.sessions.max_ttl)


def set_access_cookie(response: Response, settings: Settings, access_token: str) -> None:
    """A new access JWT for the same session (after a step-up); the refresh token is kept."""
    _set(
        response,
        settings,
        settings.session_cookie,
        access_token,
        settings.sessions.max_ttl,
        shared=True,
    )


def clear_session_cookies(response: Response, settings: Settings) -> None:
    """Remove the session cookies (logout)."""
    response.delete_cookie(
        settings.session_cookie,
        path="/",
        secure=settings.cookie_secure,
        httponly=True,
        samesite="lax",
        domain=settings.sessions.cookie_domain or None,
    )
    response.delete_cookie(
        settings.refresh_cookie,
        path="/",
        secure=settings.cookie_secure,
        httponly=True,
        samesite="lax",
    )


def set_flow_cookie(response: Response, settings: Settings, value: str) -> None:
    """Bind a started flow's code form to this browser for the code's lifetime."""
    _set(response, settings, settings.flow_cookie, value, settings.signin.code_ttl)


def clear_flow_cookie(response: Response, settings: Settings) -> None:
    """Forget the flow (after sign-in)."""
    if _written(response, settings, settings.flow_cookie, "", 0, None, expire=True):
        return
    response.delete_cookie(
        settings.flow_cookie, path="/", secure=settings.cookie_secure, httponly=True, samesite="lax"
    )


def signin_cookie_name(settings: Settings) -> str:
    """Name of the cookie naming a pending sign-in (host-only, prefixed under https)."""
    return settings.cookie_name("latch_signin")


def set_signin_cookie(response: Response, settings: Settings, value: str) -> None:
    """Bind a pending sign-in (first step passed, docs/design.md §11) to this browser. It
    grants nothing by itself: only the second step reads it."""
    _set(response, settings, signin_cookie_name(settings), value, SIGNIN_TTL)


def clear_signin_cookie(response: Response, settings: Settings) -> None:
    """Forget the pending sign-in (completed, or ended)."""
    response.delete_cookie(
        signin_cookie_name(settings),
        path="/",
        secure=settings.cookie_secure,
        httponly=True,
        samesite="lax",
    )
