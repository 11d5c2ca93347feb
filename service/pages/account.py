"""The account page (who you are, where you are signed in, your passkeys) and signing out."""

from __future__ import annotations

from datetime import UTC, datetime

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from service.device import device_name
from service.errors import ServiceError, UnauthenticatedError
from service.pages.apps import apps_of
from service.pages.apps import routes as app_routes
from service.pages.render import redirect, render
from service.signin.passkeys import suggested_name
from service.signin.sessions import Identity
from service.web import csrf
from service.web.cookies import clear_session_cookies
from service.web.identity import client, current_identity
from service.web.state import app_state

ACCOUNT_LOGIN = "/login?next=/account"
ACCOUNT_REFRESH = "/refresh?next=/account"
NOTICES = {
    "revoked": "That session has been signed out.",
    "app_revoked": "That app can no longer sign you in without asking.",
    "changed": "Your address has changed. Your old address has been told.",
    "added": "Your passkey has been added.",
    "renamed": "Your passkey has been renamed.",
    "removed": "Your passkey has been removed: it no longer signs you in.",
}


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
    """GET /account: who you are, where you are signed in, and your passkeys."""
    settings = app_state(request).settings
    try:
        identity = await current_identity(request)
    except UnauthenticatedError:
        # The access JWT lives 15 minutes; a browser still holding a refresh token is signed
        # in, so it goes through /refresh (which sends it on to sign-in if that fails).
        has_refresh = bool(request.cookies.get(settings.refresh_cookie))
        return redirect(ACCOUNT_REFRESH if has_refresh else ACCOUNT_LOGIN)
    query = request.query_params
    flag = next((name for name in ("revoked", "app_revoked", "changed") if query.get(name)), "")
    notice = NOTICES.get(flag or query.get("passkey", ""))
    return await account_view(request, identity, notice=notice)


async def account_view(
    request: Request,
    identity: Identity,
    *,
    notice: str | None = None,
    error: ServiceError | None = None,
) -> Response:
    """The account page for a signed-in person (with an error of a form that failed)."""
    state = app_state(request)
    now = int(state.clock())
    rows = [
        {
            "id": s["id"],
            "device": device_name(s["user_agent"] or "") or "Unknown device",
            "ip": s["ip"] or "unknown",
            "created": moment(s["created_at"], now),
            "last_used": moment(s["last_used_at"] or s["created_at"], now),
            "current": s["current"],
        }
        for s in await state.sessions.list(identity)
    ]
    rows.sort(key=lambda r: not r["current"])
    # The address from the database: the access token's may predate a change of address.
    email = (await state.sessions.describe(identity))["user"]["email"]
    passkeys = [
        {
            "id": p.id,
            "name": p.name,
            "created": moment(p.created_at, now),
            "last_used": moment(p.last_used_at, now) if p.last_used_at else None,
        }
        for p in await state.passkeys.list(identity)
    ]
    return render(
        request,
        "account.html",
        status=error.status if error else 200,
        email=email,
        sessions=rows,
        notice=notice,
        error=error.message if error else None,
        apps=await apps_of(state, identity),
        factors=await state.account_factors.summary(identity),
        passkey_list=passkeys,
        recent=await state.account_factors.recent_step(identity),
        suggested=suggested_name(client(request)[1]),
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
