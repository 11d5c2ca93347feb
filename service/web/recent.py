"""The one guard in front of the account's dangerous actions (change of address, deletion):
the session's last step must have passed recently.

This is a stand-in for the real step-up (docs/design.md §11: `/login/step-up`, asking for the
strongest factor the person has), built on another branch. Everything that needs a recent step
goes through `recent_identity` and nothing else, so the merge swaps this one function.
"""

from __future__ import annotations

import logging

from starlette.requests import HTTPConnection

from service import store
from service.errors import StepUpRequiredError, UnauthenticatedError
from service.signin.sessions import Identity
from service.web.identity import current_identity
from service.web.state import app_state

log = logging.getLogger("latch.web")

# §11's STEP_UP_TTL: how long after its last step a session may still change who it is.
STEP_UP_TTL = 600


async def recent_identity(connection: HTTPConnection) -> Identity:
    """The signed-in person, if this session's last step passed within STEP_UP_TTL; else
    StepUpRequiredError (UnauthenticatedError when not signed in at all).

    `auth_time` is read from the session row, not the access token: the row is what a
    refresh keeps, and it cannot be replayed from an older token.
    """
    state = app_state(connection)
    identity = await current_identity(connection)
    row = await state.database.run(store.get_session(identity.session_id), write=False)
    if row is None:
        raise UnauthenticatedError()
    if int(state.clock()) - int(row["auth_time"]) > STEP_UP_TTL:
        log.info("step_up.required session=%s", identity.session_id[:8])
        raise StepUpRequiredError()
    return identity
