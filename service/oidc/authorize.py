"""GET|POST /oauth/authorize, the way back from the sign-in pages, and the consent page.

When the person must sign in, the request is stored (provider.keep) and only its random id
travels, as the sign-in's `next` (`/oauth/authorize/continue?request=…`): `next` is kept in the
sign-in flow's row and never written into the mail, so nothing of the request reaches a mail.
Coming back, the same request continues where it stopped.

The last step back to the app after a sign-in is a page that forwards by itself (a meta
refresh, with a link for when it does not): the sign-in ended with a form POST, and Chrome
applies the sign-in page's `form-action` to every redirect that follows it, which would block a
redirect to the app's origin.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

import service.oidc.clients as clients
from service import store
from service.errors import UnauthenticatedError
from service.oidc.clients import Client
from service.oidc.params import (
    AuthorizationRequest,
    AuthorizeError,
    PageError,
    check_client,
    parse_authorize,
    state_of,
)
from service.oidc.provider import Next, SessionInfo
from service.oidc.render import error_page, page
from service.oidc.state import oidc_state
from service.web import csrf
from service.web.identity import client as client_of
from service.web.identity import current_identity
from service.web.state import app_state

CONTINUE = "/oauth/authorize/continue"
MAX_PARAMS = 30


async def session_info(request: Request) -> SessionInfo | None:
    """The person's live Latch session with how it signed in, or None."""
    state = app_state(request)
    try:
        identity = await current_identity(request)
    except UnauthenticatedError:
        return None
    row = await state.database.run(store.get_session(identity.session_id), write=False)
    if row is None or row["revoked_at"] is not None:
        return None
    return SessionInfo(
        user_id=identity.user_id,
        email=identity.email,
        session_id=identity.session_id,
        aal=int(row["aal"]),
        amr=tuple(row["amr"].split()),
        auth_time=int(row["auth_time"]),
    )


async def _params(request: Request) -> dict[str, Sequence[str]]:
    if request.method == "POST":
        form = await request.form(max_files=0, max_fields=MAX_PARAMS)
        items = [(k, v) for k, v in form.multi_items() if isinstance(v, str)]
    else:
        items = request.query_params.multi_items()[: MAX_PARAMS + 1]
    params: dict[str, list[str]] = {}
    for key, value in items:
        params.setdefault(key, []).append(value)
    return dict(params)


def _unknown_request(request: Request) -> Response:
    return error_page(
        request,
        "This sign-in has ended",
        "The app's sign-in request has expired or was already completed. "
        "Go back to the app and sign in again.",
    )


async def authorize(request: Request) -> Response:
    """The authorization endpoint (OpenID Connect Core §3.1.2)."""
    params = await _params(request)
    ids = params.get("client_id") or [""]
    client = await clients.find(app_state(request).database, ids[0])
    try:
        redirect_uri = check_client(params, client)
    except PageError as e:
        return error_page(request, "This app cannot sign you in", e.description)
    assert client is not None
    provider = oidc_state(request).provider
    try:
        parsed = parse_authorize(params, client)
    except AuthorizeError as e:
        url = provider.error(redirect_uri, e.error, e.description, state_of(params))
        return RedirectResponse(url, status_code=302)
    return await proceed(request, parsed, client)


async def proceed(
    request: Request,
    parsed: AuthorizationRequest,
    client: Client,
    *,
    request_id: str | None = None,
    stored_at: int | None = None,
) -> Response:
    """Take a checked request one step on: a code, a sign-in, a consent, or an error."""
    provider = oidc_state(request).provider
    session = await session_info(request)
    decision = await provider.decide(parsed, client, session, stored_at=stored_at)
    back = request_id is not None  # from the sign-in pages: the way to the app is a page
    if decision.error is not None:
        url = provider.error(
            parsed.redirect_uri, decision.error, decision.description, parsed.state
        )
        return _to_app(request, client, url, page_first=back)
    if decision.next == Next.SIGN_IN:
        request_id = request_id or await provider.keep(parsed)
        target = f"{CONTINUE}?{urlencode({'request': request_id})}"
        settings = app_state(request).settings
        if session is None and request.cookies.get(settings.refresh_cookie) and not back:
            # Signed in, but the 15-minute access JWT has expired: /refresh renews it and
            # comes back (or goes on to the sign-in page when the session has ended).
            return RedirectResponse(f"/refresh?{urlencode({'next': target})}", status_code=303)
        query = {"next": target}
        if parsed.login_hint:
            query["email"] = parsed.login_hint
        return RedirectResponse(f"/login?{urlencode(query)}", status_code=303)
    if decision.next == Next.CONSENT:
        request_id = request_id or await provider.keep(parsed)
        return RedirectResponse(
            f"/oauth/consent?{urlencode({'request': request_id})}", status_code=303
        )
    assert session is not None
    issued = await provider.issue(parsed, session, request_id)
    if issued is None:
        return _unknown_request(request)
    return _to_app(request, client, issued, page_first=back)


def _to_app(request: Request, client: Client, url: str, *, page_first: bool) -> Response:
    if page_first:
        return page(request, "continue.html", client_name=client.name, target=url)
    return RedirectResponse(url, status_code=302)


async def _kept(request: Request, request_id: str) -> tuple[AuthorizationRequest, int, Client]:
    kept = await oidc_state(request).provider.kept(request_id)
    if kept is None:
        raise LookupError
    parsed, stored_at = kept
    client = await clients.find(app_state(request).database, parsed.client_id)
    if client is None:
        raise LookupError
    return parsed, stored_at, client


async def resume(request: Request) -> Response:
    """GET /oauth/authorize/continue?request=…: back from the sign-in pages."""
    request_id = request.query_params.get("request", "")
    try:
        parsed, stored_at, client = await _kept(request, request_id)
    except LookupError:
        return _unknown_request(request)
    return await proceed(request, parsed, client, request_id=request_id, stored_at=stored_at)


async def consent_page(request: Request) -> Response:
    """GET /oauth/consent?request=…: which app, and what it will see."""
    request_id = request.query_params.get("request", "")
    try:
        parsed, _, client = await _kept(request, request_id)
    except LookupError:
        return _unknown_request(request)
    session = await session_info(request)
    if session is None:
        return RedirectResponse(f"{CONTINUE}?{urlencode({'request': request_id})}", 303)
    return page(
        request,
        "consent.html",
        form_to=parsed.redirect_uri,
        client_name=client.name,
        email=session.email,
        scopes=parsed.scope,
        request_id=request_id,
    )


async def consent_submit(request: Request) -> Response:
    """POST /oauth/consent: allow (remembered, then a code) or deny (access_denied)."""
    form = await csrf.read_form(request)
    request_id = csrf.field(form, "request")
    try:
        parsed, stored_at, client = await _kept(request, request_id)
    except LookupError:
        return _unknown_request(request)
    provider = oidc_state(request).provider
    session = await session_info(request)
    if session is None:
        return RedirectResponse(f"{CONTINUE}?{urlencode({'request': request_id})}", 303)
    if csrf.field(form, "decision") != "allow":
        url = provider.error(
            parsed.redirect_uri, "access_denied", "the person said no", parsed.state
        )
        return RedirectResponse(url, status_code=303)
    ip, ua = client_of(request)
    await provider.consent(parsed, session, ip=ip, user_agent=ua)
    # The consent is given; the rest of the request is judged again (prompt=consent is met).
    parsed = replace(parsed, prompt=tuple(p for p in parsed.prompt if p != "consent"))
    decision = await provider.decide(parsed, client, session, stored_at=stored_at)
    if decision.error is not None or decision.next != Next.ISSUE:
        return await proceed(request, parsed, client, request_id=request_id, stored_at=stored_at)
    issued = await provider.issue(parsed, session, request_id)
    if issued is None:
        return _unknown_request(request)
    return RedirectResponse(issued, status_code=303)


routes: list[BaseRoute] = [
    Route("/oauth/authorize", authorize, methods=["GET", "POST"]),
    Route(CONTINUE, resume, methods=["GET"]),
    Route("/oauth/consent", consent_page, methods=["GET"]),
    Route("/oauth/consent", consent_submit, methods=["POST"]),
]
