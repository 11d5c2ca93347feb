"""What the account's action pages share: the recent-sign-in gate and the address now."""

from __future__ import annotations

from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import Response

from service.errors import StepUpRequiredError, UnauthenticatedError
from service.pages.render import redirect
from service.signin.sessions import Identity
from service.web.recent import recent_identity
from service.web.state import app_state


async def recent_or_sign_in(request: Request, back: str) -> Identity | Response:
    """The person, if their sign-in is recent enough for `back`; else a 303 through sign-in
    that returns to `back` (web/recent.py: the stand-in for the step-up page)."""
    try:
        return await recent_identity(request)
    except (StepUpRequiredError, UnauthenticatedError):
        return redirect("/login?" + urlencode({"next": back}))


async def current_email(request: Request, identity: Identity) -> str:
    """The account's address now: the access token's may predate a change of address."""
    described = await app_state(request).sessions.describe(identity)
    email: str = described["user"]["email"]
    return email
