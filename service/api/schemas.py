"""The named schemas of /openapi.json: every request body and every answer, as Latch sends them.

Each has a name a generated client can turn into a type (openapi-python-client, openapi-typescript,
hey-api): no inline object where a client must build or read one.

No schema may share its name with one of its own properties: openapi-python-client's `from_dict`
keeps the object being built in a local named after the schema (`error` for `Error`), and a
property of that name overwrites it, so the output fails `mypy --strict`. Hence `LatchError`
(whose property is `error`), `SecondStepDue` (whose property is `next_step`) and
`NewRecoveryCodes` (whose property is `recovery_codes`).
"""

from __future__ import annotations

from typing import Any

from service.errors import ErrorCode

STR = {"type": "string"}
INT = {"type": "integer"}
BOOL = {"type": "boolean"}


def ref(name: str) -> dict[str, str]:
    """A reference to one of SCHEMAS."""
    return {"$ref": f"#/components/schemas/{name}"}


def _object(required: list[str], **properties: Any) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "object", "properties": properties}
    if required:
        schema["required"] = required
    return schema


SCHEMAS: dict[str, Any] = {
    # --- requests -------------------------------------------------------------------------
    "StartRequest": _object(
        ["email"],
        email={"type": "string", "maxLength": 320},
        next={"type": "string", "description": "Where to go once signed in (a safe URL)."},
    ),
    "ResendRequest": _object(
        [], flow_id={"type": "string", "description": "Else the latch_flow cookie."}
    ),
    "VerifyRequest": _object(
        ["code"], code=STR, flow_id={"type": "string", "description": "Else the latch_flow cookie."}
    ),
    "LinkRequest": _object(["token"], token=STR),
    "SecondFactorRequest": _object(["method", "code"], method=STR, code=STR),
    "LogoutRequest": _object(
        [], all={"type": "boolean", "description": "Revoke every session of the person."}
    ),
    "CodeRequest": _object(["code"], code={"type": "string", "description": "From the app."}),
    "StepUpRequest": _object(
        ["method"],
        method={
            "type": "string",
            "description": "One of the `methods` of step_up_required or GET /api/factors:"
            " `passkey`, `totp`.",
        },
        code={"type": "string", "description": "The app's code (method `totp`)."},
        credential=ref("WebAuthnCredential"),
    ),
    "PasskeyRegisterRequest": _object(
        ["credential"],
        credential=ref("WebAuthnCredential"),
        name={"type": "string", "description": "Else the name suggested from the device."},
    ),
    "PasskeyLoginRequest": _object(
        ["credential"],
        credential=ref("WebAuthnCredential"),
        next={"type": "string", "description": "Where to go once signed in (a safe URL)."},
    ),
    "PasskeyRenameRequest": _object(["name"], name={"type": "string", "maxLength": 2000}),
    "WebAuthnCredential": {
        "type": "object",
        "description": "A PublicKeyCredential in WebAuthn's JSON form (the browser's "
        "`credential.toJSON()`: base64url for bytes).",
        "required": ["id", "response"],
        "properties": {"id": STR, "rawId": STR, "type": STR, "response": {"type": "object"}},
        "additionalProperties": True,
    },
    # --- answers --------------------------------------------------------------------------
    "DeleteAccountRequest": _object(["confirm"], confirm=STR),
    "LatchError": _object(
        ["error"],
        error=_object(
            ["code", "message"],
            code={"type": "string", "enum": [str(c) for c in ErrorCode]},
            message=STR,
            tries_left=INT,
            retry_after=INT,
            field=STR,
            methods={
                "type": "array",
                "items": STR,
                "description": "step_up_required: what POST /api/step-up takes (none: sign in"
                " again).",
            },
        ),
    ),
    "Started": _object(
        ["flow_id", "expires_in", "resend_after"], flow_id=STR, expires_in=INT, resend_after=INT
    ),
    "User": _object(["id", "email"], id=STR, email=STR),
    "SessionRef": _object(["id", "expires_at"], id=STR, expires_at=INT),
    "SignedIn": _object(["user", "session"], user=ref("User"), session=ref("SessionRef")),
    "SecondStepDue": _object(
        ["next_step", "methods"],
        next_step={
            "type": "string",
            "enum": ["second_factor", "enrol_second_factor"],
            "description": "enrol_second_factor: REQUIRE_SECOND_FACTOR=all and no factor yet"
            " (methods is empty); POST /api/second-factor/enrol finishes.",
        },
        methods={"type": "array", "items": STR},
    ),
    # --- second factors (docs/design.md §11) ----------------------------------------------
    "TotpEnrolment": _object(
        ["secret", "otpauth_uri", "qr_svg"],
        secret={"type": "string", "description": "Base32; shown once, pending 10 minutes."},
        otpauth_uri=STR,
        qr_svg={"type": "string", "description": "The otpauth URI as an inline SVG QR code."},
    ),
    "NewRecoveryCodes": _object(
        ["recovery_codes"],
        recovery_codes={"type": "array", "items": STR, "description": "Shown once."},
    ),
    "TotpConfirmed": _object(
        [],
        recovery_codes={
            "type": "array",
            "items": STR,
            "description": "Only when the app is the first factor; shown once.",
        },
    ),
    "TotpStatus": _object(
        ["enrolled", "created_at"], enrolled=BOOL, created_at={"type": ["integer", "null"]}
    ),
    "RecoveryCodesLeft": _object(["left"], left=INT),
    "StepUpStatus": _object(
        ["recent", "methods"], recent=BOOL, methods={"type": "array", "items": STR}
    ),
    "Factors": _object(
        ["totp", "passkeys", "recovery_codes", "step_up"],
        totp=ref("TotpStatus"),
        passkeys={"type": "array", "items": ref("Passkey")},
        recovery_codes=ref("RecoveryCodesLeft"),
        step_up=ref("StepUpStatus"),
    ),
    "SteppedUp": _object(["aal", "auth_time"], aal=INT, auth_time=INT),
    "EnrolledSignedIn": _object(
        ["user", "session", "recovery_codes"],
        user=ref("User"),
        session=ref("SessionRef"),
        recovery_codes={"type": "array", "items": STR, "description": "Shown once."},
    ),
    "Session": _object(
        ["id", "created_at", "last_used_at", "expires_at", "ip", "user_agent", "device", "current"],
        id=STR,
        created_at=INT,
        last_used_at=INT,
        expires_at=INT,
        ip=STR,
        user_agent=STR,
        device=STR,
        current=BOOL,
    ),
    "SessionList": _object(["sessions"], sessions={"type": "array", "items": ref("Session")}),
    "PasskeyCreationOptions": _object(
        ["publicKey", "suggested_name"],
        publicKey={
            "type": "object",
            "description": "PublicKeyCredentialCreationOptionsJSON, for "
            "`PublicKeyCredential.parseCreationOptionsFromJSON`",
        },
        suggested_name=STR,
    ),
    "PasskeyRequestOptions": _object(
        ["publicKey"],
        publicKey={
            "type": "object",
            "description": "PublicKeyCredentialRequestOptionsJSON, for "
            "`PublicKeyCredential.parseRequestOptionsFromJSON`",
        },
    ),
    "Passkey": _object(
        ["id", "name", "created_at", "last_used_at"],
        id=STR,
        name=STR,
        created_at=INT,
        last_used_at={"type": ["integer", "null"]},
    ),
    "PasskeyList": _object(["passkeys"], passkeys={"type": "array", "items": ref("Passkey")}),
    "PasskeyAdded": _object(
        ["id", "name", "created_at", "last_used_at"],
        id=STR,
        name=STR,
        created_at=INT,
        last_used_at={"type": ["integer", "null"]},
        recovery_codes={
            "type": "array",
            "items": STR,
            "description": "Shown once, only when this passkey is the person's first factor.",
        },
    ),
    "Jwk": {
        "type": "object",
        "required": ["kty"],
        "properties": {
            name: STR for name in ("kty", "kid", "alg", "use", "crv", "x", "y", "n", "e")
        },
    },
    "Jwks": _object(["keys"], keys={"type": "array", "items": ref("Jwk")}),
    "CookieNames": _object(["session", "refresh"], session=STR, refresh=STR),
    "LatchConfiguration": _object(
        [
            "issuer",
            "audience",
            "jwks_uri",
            "cookie_names",
            "refresh_url",
            "login_url",
            "auth_check_url",
            "algorithms",
            "token_type",
            "access_token_ttl",
        ],
        issuer=STR,
        audience=STR,
        jwks_uri=STR,
        cookie_names=ref("CookieNames"),
        refresh_url=STR,
        login_url=STR,
        auth_check_url=STR,
        algorithms={"type": "array", "items": STR},
        token_type=STR,
        access_token_ttl=INT,
    ),
    # Everything Latch holds about a person (service/store/account.py); the lists' rows are
    # described loosely: the export is for people to read, not for clients to build on.
    "AccountExport": _object(
        ["format", "version", "account", "sessions"],
        format=STR,
        version=INT,
        account=_object(
            ["id", "email", "created_at"],
            id=STR,
            email=STR,
            created_at=INT,
            last_login_at={"type": ["integer", "null"]},
            second_factors={"type": "array", "items": STR},
        ),
        sessions={"type": "array", "items": {"type": "object"}},
        pending_sign_ins={"type": "array", "items": {"type": "object"}},
        known_devices={"type": "array", "items": {"type": "object"}},
        new_device_notices={"type": "array", "items": {"type": "object"}},
        address_changes={"type": "array", "items": {"type": "object"}},
        factors={
            "type": "array",
            "items": _object(
                ["method", "name", "created_at"],
                method=STR,
                name=STR,
                created_at=INT,
                confirmed_at={"type": ["integer", "null"]},
            ),
        },
        recovery_codes={"type": "array", "items": {"type": "object"}},
        passkeys={
            "type": "array",
            "items": _object(
                ["name", "created_at"],
                name=STR,
                created_at=INT,
                last_used_at={"type": ["integer", "null"]},
            ),
        },
        app_consents={"type": "array", "items": {"type": "object"}},
        app_sign_ins={"type": "array", "items": {"type": "object"}},
        sign_in_attempts={"type": "array", "items": {"type": "object"}},
        wrong_codes={"type": ["object", "null"]},
    ),
    "Health": _object(["status"], status=STR),
    "ReadinessChecks": _object(["database", "mail_queue"], database=BOOL, mail_queue=BOOL),
    "Readiness": _object(
        ["status", "checks"],
        status={"type": "string", "enum": ["ok", "unavailable"]},
        checks=ref("ReadinessChecks"),
    ),
}
