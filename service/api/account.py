"""The person's account over JSON: export their data, delete the account."""

from __future__ import annotations

import json
import time

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from service.api.common import read_json, text_field
from service.web.cookies import clear_session_cookies
from service.web.identity import client, current_identity
from service.web.state import app_state


async def export_account(request: Request) -> Response:
    """GET /api/account/export -> 200, a JSON file of everything Latch holds about you."""
    state = app_state(request)
    data = await state.account.export(await current_identity(request))
    day = time.strftime("%Y-%m-%d", time.gmtime(state.clock()))
    return Response(
        json.dumps(data, indent=2, ensure_ascii=False) + "\n",
        media_type="application/json",
        headers={
            # A download (the account page's button) that no cache keeps: it is personal data.
            "Content-Disposition": f'attachment; filename="latch-account-{day}.json"',
            "Cache-Control": "no-store",
        },
    )


async def delete_account(request: Request) -> Response:
    """DELETE /api/account {"confirm": "<your address>"} -> 204, cookies cleared; 403
    step_up_required (with the `methods` POST /api/step-up takes) without a recent step."""
    state = app_state(request)
    body = await read_json(request, state.settings)
    identity = await current_identity(request)  # before the body, as api/factors.py
    confirm = text_field(body, "confirm") or ""
    ip, ua = client(request)
    await state.account.delete(
        identity, confirm=confirm, email=await _email_of(request), ip=ip, user_agent=ua
    )
    response = Response(status_code=204)
    clear_session_cookies(response, state.settings)
    return response


async def _email_of(request: Request) -> str:
    """The account's address now (the access token's may predate a change of address)."""
    state = app_state(request)
    described = await state.sessions.describe(await current_identity(request))
    email: str = described["user"]["email"]
    return email


routes = [
    Route("/api/account/export", export_account, methods=["GET"]),
    Route("/api/account", delete_account, methods=["DELETE"]),
]
