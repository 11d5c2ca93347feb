"""GET /openapi.json: the JSON API described as OpenAPI 3.1 (kept beside the code it describes).

The document is what clients are generated from, so it says everything a request needs: each
body and its media type (or that there is none), the cookies that are credentials (as
`securitySchemes`, with the names this Latch uses), an `operationId` per operation, and the
headers HTTP requires of an answer (`WWW-Authenticate` on every 401, `Retry-After` on 429/503).
tests/api/test_openapi_clients.py generates three clients from it and signs in with one.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from service.api.schemas import INT, SCHEMAS, STR, ref
from service.errors import CHALLENGE
from service.settings import Settings
from service.web.cookies import signin_cookie_name

_ERRORS = {
    400: "Bad request",
    401: "Not signed in",
    403: "Forbidden origin, or step_up_required (with the `methods` /api/step-up takes)",
    404: "Not found",
    409: "Already used",
    410: "Expired or dead",
    413: "Body too large",
    415: "A body that is not JSON",
    429: "Rate limited",
    503: "Unavailable",
}
_POST_ERRORS = (400, 403, 413, 415, 503)

# Security requirements (each list: any one of its entries suffices; `{}` means none needed).
Security = list[dict[str, list[str]]]
NONE: Security = []
SIGNED_IN: Security = [{"sessionCookie": []}, {"bearerToken": []}]
FLOW: Security = [{}, {"flowCookie": []}]  # the flow id in the body, or the latch_flow cookie


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*statuses: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for status in statuses:
        response = _json(ref("LatchError"), _ERRORS[status])
        if status in (429, 503):
            response["headers"] = {"Retry-After": {"schema": INT, "required": True}}
        if status == 401:
            response["headers"] = {
                "WWW-Authenticate": {
                    "schema": STR,
                    "required": True,
                    "description": f'`{CHALLENGE}`, with `error="invalid_token"` when a '
                    "Bearer token was refused (RFC 6750)",
                }
            }
        out[str(status)] = response
    return out


def _body(name: str, required: bool = True) -> dict[str, Any]:
    return {"required": required, "content": {"application/json": {"schema": ref(name)}}}


def _op(
    operation_id: str,
    summary: str,
    responses: dict[str, Any],
    *,
    security: Security,
    body: dict[str, Any] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    op: dict[str, Any] = {
        "operationId": operation_id,
        "summary": summary,
        "security": security,
        "responses": responses,
        **extra,
    }
    if body is not None:
        op["requestBody"] = body
    return op


def _security_schemes(settings: Settings) -> dict[str, Any]:
    def cookie(name: str, description: str) -> dict[str, Any]:
        return {"type": "apiKey", "in": "cookie", "name": name, "description": description}

    return {
        "sessionCookie": cookie(
            settings.session_cookie, "The access JWT, set by verify, link and refresh"
        ),
        "bearerToken": {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "JWT",
            "description": "The same access JWT, for clients that keep no cookies",
        },
        "refreshCookie": cookie(settings.refresh_cookie, "The refresh token (rotated on use)"),
        "flowCookie": cookie(settings.flow_cookie, "This browser's sign-in flow, set by start"),
        "signinCookie": cookie(signin_cookie_name(settings), "A sign-in whose second step is due"),
    }


def _paths() -> dict[str, Any]:
    signed_in = _json(ref("SignedIn"), "Signed in; session cookies set")
    # The first step passed and the user has a second factor: no session yet, only the
    # latch_signin cookie; POST /api/second-factor finishes (docs/design.md §11).
    first_step = _json(
        {"oneOf": [ref("SignedIn"), ref("SecondStepDue")]},
        "Signed in (session cookies set), or a second step is due (latch_signin cookie set)",
    )
    started = _json(ref("Started"), "Mail queued; latch_flow cookie set")
    x_latch = ("X-Latch-User", "X-Latch-Email", "X-Latch-Session", "X-Latch-AAL")
    return {
        "/api/start": {
            "post": _op(
                "startSignin",
                "Start a sign-in: mail a code and a link",
                {"202": started, **_errors(*_POST_ERRORS, 429)},
                security=NONE,
                body=_body("StartRequest"),
            )
        },
        "/api/resend": {
            "post": _op(
                "resendCode",
                "A new code and link on the same flow",
                {"202": started, **_errors(*_POST_ERRORS, 404, 409, 410, 429)},
                security=FLOW,
                body=_body("ResendRequest", required=False),
            )
        },
        "/api/verify": {
            "post": _op(
                "verifyCode",
                "Exchange a code for a session (or for the second step)",
                {"200": first_step, **_errors(*_POST_ERRORS, 404, 409, 410, 429)},
                security=FLOW,
                body=_body("VerifyRequest"),
            )
        },
        "/api/link": {
            "post": _op(
                "verifyLink",
                "Exchange a magic-link token for a session (or for the second step)",
                {"200": first_step, **_errors(*_POST_ERRORS, 404, 409, 410)},
                security=FLOW,
                body=_body("LinkRequest"),
            )
        },
        "/api/second-factor": {
            "post": _op(
                "answerSecondFactor",
                "Answer the second step of a sign-in; a session as verify",
                # 429: authenticator codes are refused while the address is locked (§1.2).
                {"200": signed_in, **_errors(*_POST_ERRORS, 409, 410, 429)},
                security=[{"signinCookie": []}],
                body=_body("SecondFactorRequest"),
            )
        },
        **_factor_paths(),
        **_passkey_paths(first_step),
        "/api/refresh": {
            # No body: the refresh cookie is the whole request (an empty JSON object is also
            # accepted). Clients send none, so none is described.
            "post": _op(
                "refreshSession",
                "Rotate the refresh token; new cookies",
                {"200": signed_in, **_errors(400, 401, 403, 413, 415, 503)},
                security=[{"refreshCookie": []}],
            )
        },
        "/api/logout": {
            "post": _op(
                "logout",
                'Revoke this session (or all with {"all": true}); the body is optional',
                {
                    "204": {"description": "Signed out; cookies cleared"},
                    **_errors(400, 401, 403, 413, 415, 503),
                },
                security=SIGNED_IN,
                body=_body("LogoutRequest", required=False),
            )
        },
        "/api/session": {
            "get": _op(
                "getSession",
                "Who is signed in",
                {"200": _json(ref("SignedIn"), "The session"), **_errors(401, 503)},
                security=SIGNED_IN,
            )
        },
        "/api/sessions": {
            "get": _op(
                "listSessions",
                "The person's live sessions",
                {"200": _json(ref("SessionList"), "Sessions"), **_errors(401, 503)},
                security=SIGNED_IN,
            )
        },
        "/api/sessions/{session_id}": {
            "delete": _op(
                "revokeSession",
                "Revoke one of the person's sessions",
                {"204": {"description": "Revoked"}, **_errors(401, 403, 404, 503)},
                security=SIGNED_IN,
                parameters=[{"name": "session_id", "in": "path", "required": True, "schema": STR}],
            )
        },
        "/api/account/export": {
            "get": _op(
                "exportAccount",
                "Everything Latch holds about the person, as a JSON download; no secret",
                {"200": _json(ref("AccountExport"), "The export"), **_errors(401, 503)},
                security=SIGNED_IN,
            )
        },
        "/api/account": {
            "delete": _op(
                "deleteAccount",
                "Delete the account now (needs the typed address and a step within STEP_UP_TTL,"
                " else 403 step_up_required)",
                {
                    "204": {"description": "Deleted; every session ended; cookies cleared"},
                    **_errors(*_POST_ERRORS, 401),
                },
                security=SIGNED_IN,
                body=_body("DeleteAccountRequest"),
            )
        },
        "/auth/check": {
            "get": _op(
                "checkAuth",
                "Forward auth: 200 with X-Latch-* headers, or 401",
                {
                    "200": {
                        "description": "Valid session",
                        "headers": {name: {"schema": STR, "required": True} for name in x_latch},
                    },
                    **_errors(401, 503),
                },
                security=SIGNED_IN,
            )
        },
        "/.well-known/jwks.json": {
            "get": _op(
                "getJwks",
                "Public signing keys (RFC 7517)",
                {"200": _json(ref("Jwks"), "JWKS")},
                security=NONE,
            )
        },
        "/.well-known/latch-configuration": {
            "get": _op(
                "getConfiguration",
                "Issuer, audience, cookie names",
                {"200": _json(ref("LatchConfiguration"), "Configuration")},
                security=NONE,
            )
        },
        "/healthz": {
            "get": _op("getHealth", "Alive", {"200": _json(ref("Health"), "Alive")}, security=NONE)
        },
        "/readyz": {
            "get": _op(
                "getReadiness",
                "Ready",
                {
                    "200": _json(ref("Readiness"), "Ready"),
                    "503": _json(ref("Readiness"), "Not ready"),
                },
                security=NONE,
            )
        },
    }


def _factor_paths() -> dict[str, Any]:
    """Second factors, step-up, and enrolment as a sign-in's second step (docs/design.md §11).

    Changing factors needs a step passed within STEP_UP_TTL, else 403 step_up_required. The
    POSTs that only begin something take no body (an empty JSON object is also accepted)."""
    enrolment = _json(ref("TotpEnrolment"), "A new secret, shown once; pending for 10 minutes")
    changed = (400, 401, 403, 413, 415, 503)
    signin: Security = [{"signinCookie": []}]
    return {
        "/api/factors": {
            "get": _op(
                "getFactors",
                "The person's second factors, and whether a step is recent enough",
                {"200": _json(ref("Factors"), "Factors"), **_errors(401, 503)},
                security=SIGNED_IN,
            )
        },
        "/api/factors/totp": {
            "post": _op(
                "beginTotp",
                "Begin setting up an authenticator app (needs a recent step)",
                {"200": enrolment, **_errors(*changed)},
                security=SIGNED_IN,
            ),
            "delete": _op(
                "removeTotp",
                "Remove the authenticator app (needs a recent step)",
                {"204": {"description": "Removed"}, **_errors(401, 403, 503)},
                security=SIGNED_IN,
            ),
        },
        "/api/factors/totp/confirm": {
            "post": _op(
                "confirmTotp",
                "Turn the authenticator app on with its first code (needs a recent step)",
                {"200": _json(ref("TotpConfirmed"), "Turned on"), **_errors(*changed)},
                security=SIGNED_IN,
                body=_body("CodeRequest"),
            )
        },
        "/api/factors/recovery-codes": {
            "post": _op(
                "regenerateRecoveryCodes",
                "Ten new recovery codes; the old ones stop working (needs a recent step)",
                {"200": _json(ref("NewRecoveryCodes"), "Shown once"), **_errors(*changed)},
                security=SIGNED_IN,
            )
        },
        "/api/step-up": {
            "post": _op(
                "stepUp",
                "Pass a step on this session (the app's code, or a passkey's answer to"
                " passkeyStepUpOptions); a new access cookie (auth_time now)",
                {
                    "200": _json(ref("SteppedUp"), "Stepped up; access cookie set"),
                    **_errors(*changed, 429),
                },
                security=SIGNED_IN,
                body=_body("StepUpRequest"),
            )
        },
        "/api/second-factor/enrol": {
            "post": _op(
                "beginEnrolment",
                "REQUIRE_SECOND_FACTOR=all: begin setting up an authenticator app to finish a"
                " sign-in",
                {"200": enrolment, **_errors(*_POST_ERRORS, 409, 410)},
                security=signin,
            )
        },
        "/api/second-factor/enrol/confirm": {
            "post": _op(
                "confirmEnrolment",
                "Turn the app on with its first code and finish the sign-in",
                {
                    "200": _json(
                        ref("EnrolledSignedIn"),
                        "Signed in; session cookies set; recovery codes shown once",
                    ),
                    **_errors(*_POST_ERRORS, 409, 410),
                },
                security=signin,
                body=_body("CodeRequest"),
            )
        },
    }


def _passkey_paths(first_step: dict[str, Any]) -> dict[str, Any]:
    """Passkeys (docs/design.md §12): options for `navigator.credentials`, and its answers."""
    path = [{"name": "passkey_id", "in": "path", "required": True, "schema": STR}]
    return {
        "/api/passkeys/login/options": {
            "post": _op(
                "passkeyLoginOptions",
                "Request options: discoverable credentials, or (latch_signin cookie) the "
                "pending sign-in's own",
                {
                    "200": _json(ref("PasskeyRequestOptions"), "Options"),
                    **_errors(*_POST_ERRORS, 404, 409, 410, 429),
                },
                security=[{}, {"signinCookie": []}],
            )
        },
        "/api/passkeys/login": {
            "post": _op(
                "passkeyLogin",
                "Sign in with a passkey (a first step, or the pending sign-in's second)",
                {"200": first_step, **_errors(*_POST_ERRORS, 404, 409, 410)},
                security=[{}, {"signinCookie": []}],
                body=_body("PasskeyLoginRequest"),
            )
        },
        "/api/passkeys/step-up/options": {
            "post": _op(
                "passkeyStepUpOptions",
                "Request options for confirming it's you with one of your passkeys; the answer"
                ' goes to POST /api/step-up {"method": "passkey", "credential"}',
                {
                    "200": _json(ref("PasskeyRequestOptions"), "Options"),
                    **_errors(*_POST_ERRORS, 401, 404, 429),
                },
                security=SIGNED_IN,
            )
        },
        "/api/passkeys/register/options": {
            "post": _op(
                "passkeyRegistrationOptions",
                "Creation options for adding a passkey (needs a recent step)",
                {
                    "200": _json(ref("PasskeyCreationOptions"), "Options"),
                    **_errors(*_POST_ERRORS, 401, 404, 429),
                },
                security=SIGNED_IN,
            )
        },
        "/api/passkeys/register": {
            "post": _op(
                "registerPasskey",
                "Add a passkey (needs a recent step; recovery codes when it is the first factor)",
                {
                    "201": _json(ref("PasskeyAdded"), "Added"),
                    **_errors(*_POST_ERRORS, 401, 404),
                },
                security=SIGNED_IN,
                body=_body("PasskeyRegisterRequest"),
            )
        },
        "/api/passkeys": {
            "get": _op(
                "listPasskeys",
                "The person's passkeys",
                {"200": _json(ref("PasskeyList"), "Passkeys"), **_errors(401, 503)},
                security=SIGNED_IN,
            )
        },
        "/api/passkeys/{passkey_id}": {
            "patch": _op(
                "renamePasskey",
                "Rename one of the person's passkeys",
                {"204": {"description": "Renamed"}, **_errors(*_POST_ERRORS, 401, 404)},
                security=SIGNED_IN,
                body=_body("PasskeyRenameRequest"),
                parameters=path,
            ),
            "delete": _op(
                "removePasskey",
                "Remove one of the person's passkeys (needs a recent step; it stops at once)",
                {"204": {"description": "Removed"}, **_errors(401, 403, 404, 503)},
                security=SIGNED_IN,
                parameters=path,
            ),
        },
    }


def build_spec(settings: Settings, parts: Iterable[Mapping[str, Any]] = ()) -> dict[str, Any]:
    """The OpenAPI document for this Latch (its URL and cookie names), with the `parts` (paths,
    schemas, security schemes) of the other JSON surfaces (the admin API), which may not import
    this module."""
    paths = _paths()
    components: dict[str, Any] = {
        "schemas": dict(SCHEMAS),
        "securitySchemes": _security_schemes(settings),
    }
    for part in parts:
        paths.update(part.get("paths", {}))
        components["schemas"].update(part.get("schemas", {}))
        components["securitySchemes"].update(part.get("securitySchemes", {}))
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Latch",
            "version": "1",
            "description": "Passwordless sign-in: a mailed code or link, a JWT in a cookie.",
        },
        "servers": [{"url": settings.public_url}],
        "paths": paths,
        "components": components,
    }
