"""What the account's action pages share: the recent-step gate and the address now."""

from __future__ import annotations

from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import Response

from service.errors import StepUpRequiredError, UnauthenticatedError
from service.pages.render import redirect
from service.signin.sessions import Identity
from service.web.identity import current_identity
from service.web.state import app_state


def step_up_redirect(back: str) -> Response:
    """303 to /login/step-up (the authenticator app's code, or a fresh emailed code), which
    comes back to `back`."""
    return redirect("/login/step-up?" + urlencode({"next": back}))


async def recent_or_step_up(request: Request, back: str) -> Identity | Response:
    """The person, if this session passed a step within STEP_UP_TTL (docs/design.md §11, the
    same check as changing second factors); else a 303 through step-up, or through sign-in
    when there is no session, that returns to `back`."""
    try:
        identity = await current_identity(request)
    except UnauthenticatedError:
        return redirect("/login?" + urlencode({"next": back}))
    try:
        await app_state(request).account_factors.require_recent_step(identity)
    except StepUpRequiredError:
        return step_up_redirect(back)
    return identity


async def current_email(request: Request, identity: Identity) -> str:
    """The account's address now: the access token's may predate a change of address."""
    described = await app_state(request).sessions.describe(identity)
    email: str = described["user"]["email"]
    return email
