"""Every SQL statement, as use cases: flows, pending sign-ins, limits, users, mail status,
sessions, purge.

Each function returns a use case (see db.py) that a backend runs as ONE transaction, in as few
round trips as SQL allows (`RETURNING`, upserts). Use cases return results instead of raising,
so that what must be kept (a counted attempt) is committed. Callers use `store.<use case>`;
the submodules only keep each concept in a file of its own.
"""

from __future__ import annotations

from service.store.flows import (
    FlowState,
    NewFlow,
    Outcome,
    Verdict,
    flow_state,
    get_flow,
    open_flow,
    peek_link,
    resend_flow,
    verify_code,
    verify_link,
)
from service.store.limits import mail_limit_wait
from service.store.mail import (
    claim_mail,
    fail_mail,
    mark_mail,
)
from service.store.purge import BATCH, purge
from service.store.sessions import (
    NewSession,
    NewStep,
    Rotation,
    RotationState,
    SignIn,
    get_session,
    list_sessions,
    revoke_session,
    revoke_user_sessions,
    rotate_refresh,
    session_owner,
)
from service.store.signins import (
    Attempt,
    PendingStep,
    StepState,
    complete_step,
    count_attempt,
    get_step,
)
from service.store.users import (
    add_user,
    find_user,
)

__all__ = [
    "Attempt",
    "FlowState",
    "NewFlow",
    "NewSession",
    "NewStep",
    "Outcome",
    "Verdict",
    "PendingStep",
    "Rotation",
    "RotationState",
    "SignIn",
    "StepState",
    "add_user",
    "claim_mail",
    "complete_step",
    "count_attempt",
    "fail_mail",
    "find_user",
    "flow_state",
    "get_flow",
    "get_session",
    "get_step",
    "list_sessions",
    "mail_limit_wait",
    "mark_mail",
    "open_flow",
    "peek_link",
    "BATCH",
    "purge",
    "resend_flow",
    "revoke_session",
    "revoke_user_sessions",
    "rotate_refresh",
    "session_owner",
    "verify_code",
    "verify_link",
]
