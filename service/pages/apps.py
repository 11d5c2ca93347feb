"""The "Apps" part of the account page: the OpenID clients a person has let in or is signed in
to (docs/design.md §13), and taking that back (the consent is forgotten and every token the
app holds for the person stops working: refresh at once, access tokens at userinfo)."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from service.errors import UnauthenticatedError
from service.pages.render import redirect
from service.signin.sessions import Identity
from service.store import Actor, oauth
from service.web import csrf
from service.web.identity import client, current_identity
from service.web.state import AppState, app_state


async def apps_of(state: AppState, identity: Identity) -> list[dict[str, Any]]:
    """What the account page lists under "Apps"."""
    rows = await state.database.run(oauth.list_apps(identity.user_id), write=False)
    return [
        {
            "id": row["id"],
            "name": row["name"],
            "email": "email" in (row["consented"] or "").split() or bool(row["first_party"]),
            "signed_in": int(row["grants"]) > 0,
        }
        for row in rows
    ]


async def revoke_app_submit(request: Request) -> Response:
    """POST /account/apps/{client_id}/revoke: forget the consent, end the app's tokens."""
    state = app_state(request)
    await csrf.read_form(request)
    try:
        identity = await current_identity(request)
    except UnauthenticatedError:
        return redirect("/login?next=/account")
    client_id = request.path_params["client_id"][:64]
    ip, ua = client(request)
    actor = Actor("user", ip, ua)
    await state.database.run(
        oauth.revoke_app(identity.user_id, client_id, int(state.clock()), actor=actor)
    )
    return redirect("/account?app_revoked=1")


routes: list[BaseRoute] = [
    Route("/account/apps/{client_id}/revoke", revoke_app_submit, methods=["POST"]),
]
