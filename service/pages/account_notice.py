"""The "This wasn't me" link of a new-device notice (docs/design.md §14): its GET shows the
sign-in it is about and changes nothing (mail scanners fetch links); its POST signs that
session out, or every session, once."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from service.errors import InvalidLinkError
from service.pages.render import render
from service.signin.notices import NOT_ME_PATH
from service.web import csrf
from service.web.identity import client
from service.web.state import app_state


def _token(value: str) -> str:
    if not value or len(value) > csrf.MAX_FIELD:
        raise InvalidLinkError()
    return value


async def not_me_page(request: Request) -> Response:
    """GET /account/not-me?t=…: what signed in, and the two buttons. Consumes nothing."""
    token = _token(request.query_params.get("t", ""))
    view = await app_state(request).device_notices.peek(token)
    return render(request, "not_me.html", view=view, token=token)


async def not_me_submit(request: Request) -> Response:
    """POST /account/not-me: spend the link, sign out that session (`all=1`: every one)."""
    form = await csrf.read_form(request)
    everywhere = csrf.field(form, "all") == "1"
    ip, ua = client(request)
    ended = await app_state(request).device_notices.use(
        _token(csrf.field(form, "t")), everywhere=everywhere, ip=ip, user_agent=ua
    )
    return render(request, "not_me_done.html", forms=False, everywhere=everywhere, ended=ended)


routes: list[BaseRoute] = [
    Route(NOT_ME_PATH, not_me_page, methods=["GET"]),
    Route(NOT_ME_PATH, not_me_submit, methods=["POST"]),
]
