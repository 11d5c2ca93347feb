"""Every SQL statement, as use cases: flows, pending sign-ins, limits, users, mail status,
sessions, passkeys, purge.

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
from service.store.passkeys import (
    PASSKEY,
    NewPasskey,
    PasskeyUse,
    UseVerdict,
    add_challenge,
    add_passkey,
    challenge_purpose,
    find_passkey,
    list_passkeys,
    passkey_signin,
    remove_passkey,
    rename_passkey,
    take_challenge,
    use_passkey,
)
from service.store.sessions import (
    NewSession,
    NewStep,
    Rotation,
    RotationState,
    SignIn,
    get_session,
    list_sessions,
    purge,
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
    "PASSKEY",
    "Attempt",
    "FlowState",
    "NewFlow",
    "NewPasskey",
    "NewSession",
    "NewStep",
    "Outcome",
    "Verdict",
    "PasskeyUse",
    "PendingStep",
    "Rotation",
    "RotationState",
    "SignIn",
    "StepState",
    "UseVerdict",
    "add_challenge",
    "add_passkey",
    "add_user",
    "challenge_purpose",
    "claim_mail",
    "complete_step",
    "count_attempt",
    "fail_mail",
    "find_passkey",
    "find_user",
    "flow_state",
    "get_flow",
    "get_session",
    "get_step",
    "list_passkeys",
    "list_sessions",
    "mail_limit_wait",
    "mark_mail",
    "open_flow",
    "passkey_signin",
    "peek_link",
    "purge",
    "remove_passkey",
    "rename_passkey",
    "resend_flow",
    "revoke_session",
    "revoke_user_sessions",
    "rotate_refresh",
    "session_owner",
    "take_challenge",
    "use_passkey",
    "verify_code",
    "verify_link",
]
