"""Errors with a stable code, an HTTP status and a public message; the cause is never shown."""

from __future__ import annotations

from enum import StrEnum
from typing import Any


class ErrorCode(StrEnum):
    INVALID_REQUEST = "invalid_request"
    INVALID_CODE = "invalid_code"
    INVALID_LINK = "invalid_link"
    INVALID_PASSKEY = "invalid_passkey"
    UNAUTHENTICATED = "unauthenticated"
    FORBIDDEN_ORIGIN = "forbidden_origin"
    ACCOUNT_DISABLED = "account_disabled"
    CSRF = "csrf"
    STEP_UP_REQUIRED = "step_up_required"
    NOT_FOUND = "not_found"
    METHOD_NOT_ALLOWED = "method_not_allowed"
    FLOW_USED = "flow_used"
    FLOW_EXPIRED = "flow_expired"
    FLOW_DEAD = "flow_dead"
    SIGNIN_EXPIRED = "signin_expired"
    ADDRESS_TAKEN = "address_taken"
    TOO_LARGE = "too_large"
    REQUEST_TIMEOUT = "request_timeout"
    UNSUPPORTED_MEDIA_TYPE = "unsupported_media_type"
    RATE_LIMITED = "rate_limited"
    CODES_LOCKED = "codes_locked"
    UNAVAILABLE = "unavailable"
    INTERNAL = "internal"


class ServiceError(Exception):
    """A failure the client is told about: `code`, `status` and `message` are public."""

    code: ErrorCode = ErrorCode.INTERNAL
    status: int = 500
    message: str = "Something went wrong on our side."

    def __init__(self, message: str | None = None, **extra: Any) -> None:
        self.message = message or type(self).message
        self.extra: dict[str, Any] = extra
        super().__init__(self.message)

    @property
    def headers(self) -> dict[str, str]:
        """Extra response headers (e.g. Retry-After)."""
        return {}

    def to_json(self) -> dict[str, Any]:
        """The body of a JSON error response."""
        return {"error": {"code": str(self.code), "message": self.message, **self.extra}}


class InvalidRequestError(ServiceError):
    code = ErrorCode.INVALID_REQUEST
    status = 400
    message = "The request is not valid."


class InvalidCodeError(ServiceError):
    code = ErrorCode.INVALID_CODE
    status = 400
    message = "That code is not right."

    def __init__(self, tries_left: int | None) -> None:
        self.tries_left = tries_left
        if tries_left is None:  # no count to tell (a step-up: the address's lock bounds it)
            super().__init__()
            return
        noun = "try" if tries_left == 1 else "tries"
        super().__init__(
            f"That code is not right. {tries_left} {noun} left.", tries_left=tries_left
        )


class InvalidLinkError(ServiceError):
    code = ErrorCode.INVALID_LINK
    status = 400
    message = "This sign-in link is not valid. Please start again."


# RFC 9110 §11.6.1: a 401 must name a scheme that would succeed. The API takes the access JWT
# from the session cookie or as an RFC 6750 Bearer token; HTTP has no registered scheme for a
# cookie, so Bearer (the one that works from any client) is the challenge for both.
CHALLENGE = 'Bearer realm="latch"'


class UnauthenticatedError(ServiceError):
    code = ErrorCode.UNAUTHENTICATED
    status = 401
    message = "You are not signed in."
    # RFC 6750 §3.1's error code, set only when the refused credential was a Bearer token (a
    # request that sent none gets the bare challenge, as §3.1 asks).
    bearer_error: str | None = None

    @property
    def headers(self) -> dict[str, str]:
        if self.bearer_error is None:
            return {"WWW-Authenticate": CHALLENGE}
        return {"WWW-Authenticate": f'{CHALLENGE}, error="{self.bearer_error}"'}


class ForbiddenOriginError(ServiceError):
    code = ErrorCode.FORBIDDEN_ORIGIN
    status = 403
    message = "Requests from this origin are not allowed."


class AccountDisabledError(ServiceError):
    """The sign-in was right, but an operator has disabled the account (docs/design.md §14).

    Said plainly: only someone who could read the account's mail gets this far."""

    code = ErrorCode.ACCOUNT_DISABLED
    status = 403
    message = "This account has been disabled. Contact the service's administrator."


class CsrfError(ServiceError):
    code = ErrorCode.CSRF
    status = 403
    message = "This form has expired or did not come from this site. Please try again."


class StepUpRequiredError(ServiceError):
    """A sensitive account action (§11: factor changes, passkeys included; §14: change of
    address, deletion) without a step passed within STEP_UP_TTL. `methods` are what
    /api/step-up takes for this person; none: sign in again (an emailed code)."""

    code = ErrorCode.STEP_UP_REQUIRED
    status = 403
    message = "Confirm it's you first: this needs a recent sign-in step."

    def __init__(self, methods: tuple[str, ...] = ()) -> None:
        super().__init__(methods=list(methods))
        self.methods = methods


class NotFoundError(ServiceError):
    code = ErrorCode.NOT_FOUND
    status = 404
    message = "Not found."


class MethodNotAllowedError(ServiceError):
    code = ErrorCode.METHOD_NOT_ALLOWED
    status = 405
    message = "Method not allowed."

    def __init__(self, allow: str) -> None:
        super().__init__()
        self.allow = allow

    @property
    def headers(self) -> dict[str, str]:
        # RFC 9110 §15.5.6: a 405 must list the methods the resource does support.
        return {"Allow": self.allow}


class FlowUsedError(ServiceError):
    code = ErrorCode.FLOW_USED
    status = 409
    message = "This code or link has already been used. Please start again."


class FlowExpiredError(ServiceError):
    code = ErrorCode.FLOW_EXPIRED
    status = 410
    message = "This code or link has expired. Please start again."


class FlowDeadError(ServiceError):
    code = ErrorCode.FLOW_DEAD
    status = 410
    message = "Too many wrong codes. Please start again."


class SigninExpiredError(ServiceError):
    """No pending sign-in for this browser: no or a forged `latch_signin` cookie, or its five
    minutes are over. (One that was completed or had too many wrong answers says so.)"""

    code = ErrorCode.SIGNIN_EXPIRED
    status = 410
    message = "This sign-in has expired. Please start again."


class AddressTakenError(ServiceError):
    """A confirmed new address already belongs to another account. Said only to whoever holds
    the code or link mailed to that address, who could learn as much by signing in with it."""

    code = ErrorCode.ADDRESS_TAKEN
    status = 409
    message = "This address already has an account of its own, so yours cannot move to it."


class TooLargeError(ServiceError):
    code = ErrorCode.TOO_LARGE
    status = 413
    message = "The request body is too large."


class InvalidPasskeyError(ServiceError):
    """A passkey answer that was refused: whatever the cause (unknown or removed credential,
    another origin or RP id, a used or unknown challenge, a bad signature, a sign count that
    went back) the caller is told the same, and the log says which."""

    code = ErrorCode.INVALID_PASSKEY
    status = 400
    message = "This passkey was not accepted. Please try again."


class UnsupportedMediaTypeError(ServiceError):
    code = ErrorCode.UNSUPPORTED_MEDIA_TYPE
    status = 415
    message = "Send JSON with Content-Type: application/json."


class _RetryAfterError(ServiceError):
    def __init__(self, retry_after: int, message: str | None = None) -> None:
        self.retry_after = max(1, int(retry_after))
        super().__init__(message, retry_after=self.retry_after)

    @property
    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)}


class RateLimitedError(_RetryAfterError):
    code = ErrorCode.RATE_LIMITED
    status = 429
    message = "Too many requests. Please wait a little and try again."


class CodesLockedError(_RetryAfterError):
    code = ErrorCode.CODES_LOCKED
    status = 429
    message = (
        "Too many wrong codes for this address. Typed codes are paused; "
        "the link in your latest email still works."
    )


class UnavailableError(_RetryAfterError):
    code = ErrorCode.UNAVAILABLE
    status = 503
    message = "The service is busy. Please try again in a moment."

    def __init__(self, retry_after: int = 5, message: str | None = None) -> None:
        super().__init__(retry_after, message)


class ConfigError(Exception):
    """Settings that are unsafe or incomplete: Latch refuses to start and says what to set."""
