"""Leaving: the page that deletes the account, after a recent step and the typed address."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from service.errors import InvalidRequestError, StepUpRequiredError
from service.pages.recent import current_email, recent_or_step_up, step_up_redirect
from service.pages.render import render
from service.web import csrf
from service.web.cookies import clear_session_cookies
from service.web.identity import client
from service.web.state import app_state

DELETE_PATH = "/account/delete"


async def delete_page(request: Request) -> Response:
    """GET /account/delete: what goes, and the field to type the address into."""
    identity = await recent_or_step_up(request, DELETE_PATH)
    if isinstance(identity, Response):
        return identity
    return render(request, "account_delete.html", email=await current_email(request, identity))


async def delete_submit(request: Request) -> Response:
    """POST /account/delete: delete at once, clear the cookies, say it is done."""
    state = app_state(request)
    form = await csrf.read_form(request)
    identity = await recent_or_step_up(request, DELETE_PATH)
    if isinstance(identity, Response):
        return identity
    email = await current_email(request, identity)
    try:
        ip, ua = client(request)
        await state.account.delete(
            identity, confirm=csrf.field(form, "confirm"), email=email, ip=ip, user_agent=ua
        )
    except StepUpRequiredError:  # the step aged out while the form was open
        return step_up_redirect(DELETE_PATH)
    except InvalidRequestError as e:
        return render(request, "account_delete.html", status=e.status, error=e.message, email=email)
    response = render(request, "account_deleted.html", forms=False)
    clear_session_cookies(response, state.settings)
    return response


routes: list[BaseRoute] = [
    Route(DELETE_PATH, delete_page, methods=["GET"]),
    Route(DELETE_PATH, delete_submit, methods=["POST"]),
]
