"""Every refused use case becomes a public error here, and only here.

The store answers with typed verdicts (enums); this module is the one map from them to the
`ServiceError` family, exhaustive by construction (`assert_never`), so a new verdict that nobody
maps is a type error and not a silent 404.
"""

from __future__ import annotations

from typing import assert_never

from service import store
from service.errors import (
    AccountDisabledError,
    CodesLockedError,
    FlowDeadError,
    FlowExpiredError,
    FlowUsedError,
    InvalidCodeError,
    InvalidLinkError,
    NotFoundError,
    RateLimitedError,
    ServiceError,
    SigninExpiredError,
)

Verdict = store.Verdict


def flow_refusal(outcome: store.Outcome) -> ServiceError:
    """The public error for a refused flow use case (start, resend, verify, link)."""
    match outcome.state:
        case Verdict.WRONG:
            return InvalidCodeError(outcome.tries_left)
        case Verdict.USED:
            return FlowUsedError()
        case Verdict.EXPIRED:
            return FlowExpiredError()
        case Verdict.DEAD:
            return FlowDeadError()
        case Verdict.MAIL_FAILED:
            return FlowExpiredError(
                "We could not deliver the email with this code. Ask for a new one."
            )
        case Verdict.CODES_LOCKED:
            return CodesLockedError(outcome.retry_after)
        case Verdict.RATE_LIMITED:
            return RateLimitedError(outcome.retry_after)
        case Verdict.INVALID:
            return InvalidLinkError()
        case Verdict.DISABLED:
            return AccountDisabledError()
        case Verdict.NOT_FOUND | Verdict.OK | Verdict.PENDING:
            # OK and PENDING are not refusals; a caller that maps them has lost its flow.
            return NotFoundError("This sign-in has ended. Please start again.")
        case _:
            assert_never(outcome.state)


def step_refusal(state: store.StepState) -> ServiceError:
    """The public error for a pending sign-in that cannot take an answer."""
    match state:
        case store.StepState.USED:
            return FlowUsedError("This sign-in has already been completed.")
        case store.StepState.DEAD:
            return FlowDeadError("Too many wrong answers. Please start again.")
        case store.StepState.EXPIRED | store.StepState.NOT_FOUND | store.StepState.PENDING:
            return SigninExpiredError()
        case _:
            assert_never(state)
