"""The account page (who you are, where you are signed in) and signing out."""

from __future__ import annotations

from datetime import UTC, datetime

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from service.device import device_name
from service.errors import UnauthenticatedError
from service.pages.apps import apps_of
from service.pages.apps import routes as app_routes
from service.pages.render import redirect, render
from service.web import csrf
from service.web.cookies import clear_session_cookies
from service.web.identity import client, current_identity
from service.web.state import app_state

ACCOUNT_LOGIN = "/login?next=/account"
ACCOUNT_REFRESH = "/refresh?next=/account"


def _ago(then: int, now: int) -> str:
    seconds = max(0, now - then)
    for size, unit in ((86400, "day"), (3600, "hour"), (60, "minute")):
        if seconds >= size:
            n = seconds // size
            return f"{n} {unit}{'' if n == 1 else 's'} ago"
    return "just now"


def moment(then: int, now: int) -> dict[str, str]:
    stamp = datetime.fromtimestamp(then, UTC)
    return {
        "iso": stamp.isoformat(),
        "utc": stamp.strftime("%Y-%m-%d %H:%M UTC"),
        "ago": _ago(then, now),
    }


async def account_page(request: Request) -> Response:
    """GET /account: who you are and where you are signed in."""
    state = app_state(request)
    settings, sessions = state.settings, state.sessions
    try:
        identity = await current_identity(request)
    except UnauthenticatedError:
        # The access JWT lives 15 minutes; a browser still holding a refresh token is signed
        # in, so it goes through /refresh (which sends it on to sign-in if that fails).
        has_refresh = bool(request.cookies.get(settings.refresh_cookie))
        return redirect(ACCOUNT_REFRESH if has_refresh else ACCOUNT_LOGIN)
    now = int(app_state(request).clock())
    rows = [
        {
            "id": s["id"],
            "device": device_name(s["user_agent"] or "") or "Unknown device",
            "ip": s["ip"] or "unknown",
            "created": moment(s["created_at"], now),
            "last_used": moment(s["last_used_at"] or s["created_at"], now),
            "current": s["current"],
        }
        for s in await sessions.list(identity)
    ]
    rows.sort(key=lambda r: not r["current"])
    notice = "That session has been signed out." if request.query_params.get("revoked") else None
    if request.query_params.get("app_revoked"):
        notice = "That app can no longer sign you in without asking."
    if request.query_params.get("changed"):
        notice = "Your address has changed. Your old address has been told."
    # The address from the database: the access token's may predate a change of address.
    email = (await sessions.describe(identity))["user"]["email"]
    apps = await apps_of(state, identity)
    factors = await state.account_factors.summary(identity)
    return render(
        request,
        "account.html",
        email=email,
        sessions=rows,
        notice=notice,
        apps=apps,
        factors=factors,
    )


async def revoke_submit(request: Request) -> Response:
    """POST /account/sessions/{id}/revoke: sign one of your sessions out."""
    sessions = app_state(request).sessions
    await csrf.read_form(request)
    try:
        identity = await current_identity(request)
    except UnauthenticatedError:
        return redirect(ACCOUNT_LOGIN)
    ip, ua = client(request)
    await sessions.revoke(identity, request.path_params["session_id"], ip=ip, user_agent=ua)
    return redirect("/account?revoked=1")


async def logout_submit(request: Request) -> Response:
    """POST /logout (`all=1` for every session): revoke, clear the cookies, 303 to /login."""
    state = app_state(request)
    settings, sessions = state.settings, state.sessions
    form = await csrf.read_form(request)
    everywhere = csrf.field(form, "all") in ("1", "on", "true")
    try:
        identity = await current_identity(request)
    except UnauthenticatedError:
        identity = None  # already signed out: clearing the cookies is all that is left
    if identity is not None:
        ip, ua = client(request)
        await sessions.logout(identity, everywhere=everywhere, ip=ip, user_agent=ua)
    response = redirect("/login")
    clear_session_cookies(response, settings)
    return response


routes: list[BaseRoute] = [
    *app_routes,
    Route("/account", account_page, methods=["GET"]),
    Route("/account/sessions/{session_id}/revoke", revoke_submit, methods=["POST"]),
    Route("/logout", logout_submit, methods=["POST"]),
]
