"""GET|POST /oauth/logout: RP-initiated logout (OpenID Connect RP-Initiated Logout 1.0).

An app may end the person's Latch session without asking when it proves it is acting for that
session: an ID token we issued (`id_token_hint`) naming the current session. Otherwise the
person confirms on a page, so that a link on another site cannot sign them out. The app gets
its browser back only at a post-logout URI it registered, matched exactly; with no valid one
the person stays on Latch's "signed out" page.
"""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

import service.oidc.clients as clients
import service.oidc.jwts as jwts
from service.errors import UnauthenticatedError
from service.oidc.render import error_page, page
from service.oidc.state import oidc_state
from service.web import csrf
from service.web.cookies import clear_session_cookies
from service.web.identity import current_identity
from service.web.state import app_state


class _Refused(Exception):
    pass


async def _target(request: Request, params: Mapping[str, str]) -> tuple[str, str | None, str]:
    """(client id, where to send the browser afterwards, client name), else _Refused."""
    settings = app_state(request).settings
    hint_sid = ""
    hint_client = ""
    hint = params.get("id_token_hint", "")
    if hint:
        try:
            claims = jwts.read_id_token_hint(
                oidc_state(request).tokens.keyring, hint, issuer=settings.public_url
            )
        except jwts.JwtError as e:
            raise _Refused("The app sent a sign-out request Latch cannot read.") from e
        hint_client, hint_sid = str(claims["aud"]), str(claims.get("sid", ""))
    client_id = params.get("client_id", "") or hint_client
    if hint_client and client_id != hint_client:
        raise _Refused("The app's sign-out request does not agree with itself.")
    uri = params.get("post_logout_redirect_uri", "")
    client = await clients.find(app_state(request).database, client_id) if client_id else None
    if uri and (client is None or uri not in client.post_logout_redirect_uris):
        raise _Refused("The app asked to return to an address it has not registered.")
    target = None
    if uri:
        state = params.get("state", "")
        query = urlencode({"state": state}) if state else ""
        target = f"{uri}{'&' if '?' in uri else '?'}{query}" if query else uri
    request.state.hint_sid = hint_sid
    return client_id, target, client.name if client else ""


def _done(request: Request, target: str | None, heading: str) -> Response:
    if target is not None:
        return RedirectResponse(target, status_code=303)
    return page(request, "signed_out.html", heading=heading)


async def logout(request: Request) -> Response:
    """The end-session endpoint."""
    confirming = False
    if request.method == "POST":
        form = await request.form(max_files=0, max_fields=20)
        params = {k: v for k, v in form.items() if isinstance(v, str)}
        confirming = "decision" in params
        if confirming:
            csrf.check_origin(request.headers, app_state(request).settings)
            csrf.check_token(
                request.cookies.get(app_state(request).settings.csrf_cookie),
                params.get("csrf", ""),
                app_state(request).settings,
            )
    else:
        params = dict(request.query_params)
    try:
        client_id, target, name = await _target(request, params)
    except _Refused as e:
        return error_page(request, "This sign-out did not work", str(e))
    try:
        identity = await current_identity(request)
    except UnauthenticatedError:
        return _done(request, target, "You are signed out")
    if confirming and params.get("decision") != "logout":
        return _done(request, target, "You are still signed in")
    if not confirming and request.state.hint_sid != identity.session_id:
        return page(
            request,
            "logout.html",
            form_to=target,
            client_name=name,
            client_id=client_id,
            email=identity.email,
            redirect_uri=params.get("post_logout_redirect_uri", ""),
            state=params.get("state", ""),
        )
    await app_state(request).sessions.logout(identity, everywhere=False)
    response = _done(request, target, "You are signed out")
    clear_session_cookies(response, app_state(request).settings)
    return response


routes: list[BaseRoute] = [Route("/oauth/logout", logout, methods=["GET", "POST"])]
