"""Running the sign-in use cases without HTTP: the app's own collaborators, no request made.

`create_app` builds every collaborator and its lifespan connects the database (a real SQLite
file), applies the migrations and starts the mail sender; the use cases are then called on the
app's typed state (service/web/state.py) exactly as a handler would call them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from email.message import EmailMessage
from typing import TypeVar

from service import crypto
from service.app import create_app
from service.settings import Settings
from service.signin.access import Authenticated
from service.web.state import AppState
from tests.conftest import FakeClock, RecordingTransport
from tests.support.wait import eventually_async

T = TypeVar("T")

# What the use cases are told about the caller (a handler takes them from the request).
CALLER = {"ip": "203.0.113.7", "user_agent": "use-case test"}


def run_use_cases(
    settings: Settings,
    transport: RecordingTransport,
    clock: FakeClock,
    scenario: Callable[[AppState], Awaitable[T]],
    *,
    new_code: Callable[[], str] = crypto.new_code,
) -> T:
    """Run `scenario` on the state of a started app (lifespan run, no server, no request)."""

    async def main() -> T:
        app = create_app(settings, mail_transport=transport, clock=clock, new_code=new_code)
        async with app.router.lifespan_context(app):
            state: AppState = app.state.latch
            return await scenario(state)

    return asyncio.run(main())


async def mail_to(transport: RecordingTransport, to: str, index: int = 0) -> EmailMessage:
    """The index-th mail to `to`, waited for without blocking the loop its sender runs on."""

    def arrived() -> EmailMessage | None:
        mine = [m for m in transport.messages if str(m["To"]).lower() == to.lower()]
        return mine[index] if len(mine) > index else None

    return await eventually_async(arrived, f"mail #{index} to {to}")


def authenticated(result: object) -> Authenticated:
    """The sign-in a verify use case completed (no second step is due without a factor)."""
    assert isinstance(result, Authenticated), result
    return result
