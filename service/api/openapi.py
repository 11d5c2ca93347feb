"""GET /openapi.json: the JSON API described as OpenAPI 3.1 (kept beside the code it describes)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from service.errors import ErrorCode

_STR = {"type": "string"}
_INT = {"type": "integer"}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*statuses: int) -> dict[str, Any]:
    names = {
        400: "Bad request",
        401: "Not signed in",
        403: "Forbidden origin",
        404: "Not found",
        409: "Already used",
        410: "Expired or dead",
        413: "Body too large",
        415: "Not JSON",
        429: "Rate limited",
        503: "Unavailable",
    }
    out: dict[str, Any] = {}
    for status in statuses:
        response = _json(_ref("Error"), names[status])
        if status in (429, 503):
            response["headers"] = {"Retry-After": {"schema": _INT, "required": True}}
        out[str(status)] = response
    return out


def _body(schema: dict[str, Any], required: bool = True) -> dict[str, Any]:
    return {"required": required, "content": {"application/json": {"schema": schema}}}


_POST_ERRORS = (400, 403, 413, 415, 503)

SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": {
                "type": "object",
                "required": ["code", "message"],
                "properties": {
                    "code": {"type": "string", "enum": [str(c) for c in ErrorCode]},
                    "message": _STR,
                    "tries_left": _INT,
                    "retry_after": _INT,
                    "field": _STR,
                },
            }
        },
    },
    "Started": {
        "type": "object",
        "required": ["flow_id", "expires_in", "resend_after"],
        "properties": {"flow_id": _STR, "expires_in": _INT, "resend_after": _INT},
    },
    "SignedIn": {
        "type": "object",
        "required": ["user", "session"],
        "properties": {
            "user": {
                "type": "object",
                "required": ["id", "email"],
                "properties": {"id": _STR, "email": _STR},
            },
            "session": {
                "type": "object",
                "required": ["id", "expires_at"],
                "properties": {"id": _STR, "expires_at": _INT},
            },
        },
    },
    "NextStep": {
        "type": "object",
        "required": ["next_step", "methods"],
        "properties": {
            "next_step": {"type": "string", "enum": ["second_factor"]},
            "methods": {"type": "array", "items": _STR},
        },
    },
    "Session": {
        "type": "object",
        "required": [
            "id",
            "created_at",
            "last_used_at",
            "expires_at",
            "ip",
            "user_agent",
            "current",
        ],
        "properties": {
            "id": _STR,
            "created_at": _INT,
            "last_used_at": _INT,
            "expires_at": _INT,
            "ip": _STR,
            "user_agent": _STR,
            "device": _STR,
            "current": {"type": "boolean"},
        },
    },
}


def _op(
    summary: str, responses: dict[str, Any], body: dict[str, Any] | None = None, **extra: Any
) -> dict[str, Any]:
    op: dict[str, Any] = {"summary": summary, "responses": responses, **extra}
    if body is not None:
        op["requestBody"] = body
    return op


def build_spec(public_url: str, parts: Iterable[Mapping[str, Any]] = ()) -> dict[str, Any]:
    """The OpenAPI document for a Latch at `public_url`, with the `parts` (paths, schemas,
    security schemes) of the other JSON surfaces (the admin API)."""
    email_body = {
        "type": "object",
        "required": ["email"],
        "properties": {"email": {"type": "string", "maxLength": 320}, "next": {"type": "string"}},
    }
    flow_body = {"type": "object", "properties": {"flow_id": _STR}}
    verify_body = {
        "type": "object",
        "required": ["code"],
        "properties": {"code": _STR, "flow_id": _STR},
    }
    signed_in = _json(_ref("SignedIn"), "Signed in; session cookies set")
    # The first step passed and the user has a second factor: no session yet, only the
    # latch_signin cookie; POST /api/second-factor finishes (docs/design.md §11).
    first_step = _json(
        {"oneOf": [_ref("SignedIn"), _ref("NextStep")]},
        "Signed in (session cookies set), or a second step is due (latch_signin cookie set)",
    )
    second_body = {
        "type": "object",
        "required": ["method", "code"],
        "properties": {"method": _STR, "code": _STR},
    }
    started = _json(_ref("Started"), "Mail queued; latch_flow cookie set")
    paths: dict[str, Any] = {
        "/api/start": {
            "post": _op(
                "Start a sign-in: mail a code and a link",
                {"202": started, **_errors(*_POST_ERRORS, 429)},
                _body(email_body),
            )
        },
        "/api/resend": {
            "post": _op(
                "A new code and link on the same flow",
                {"202": started, **_errors(*_POST_ERRORS, 404, 409, 410, 429)},
                _body(flow_body, required=False),
            )
        },
        "/api/verify": {
            "post": _op(
                "Exchange a code for a session (or for the second step)",
                {"200": first_step, **_errors(*_POST_ERRORS, 404, 409, 410, 429)},
                _body(verify_body),
            )
        },
        "/api/link": {
            "post": _op(
                "Exchange a magic-link token for a session (or for the second step)",
                {"200": first_step, **_errors(*_POST_ERRORS, 404, 409, 410)},
                _body({"type": "object", "required": ["token"], "properties": {"token": _STR}}),
            )
        },
        "/api/second-factor": {
            "post": _op(
                "Answer the second step of a sign-in (latch_signin cookie); a session as verify",
                {"200": signed_in, **_errors(*_POST_ERRORS, 409, 410)},
                _body(second_body),
            )
        },
        "/api/refresh": {
            "post": _op(
                "Rotate the refresh token; new cookies",
                {"200": signed_in, **_errors(401, 403, 413, 415, 503)},
            )
        },
        "/api/logout": {
            "post": _op(
                'Revoke this session (or all with {"all": true})',
                {
                    "204": {"description": "Signed out; cookies cleared"},
                    **_errors(400, 401, 403, 413, 415, 503),
                },
                _body(
                    {"type": "object", "properties": {"all": {"type": "boolean"}}}, required=False
                ),
            )
        },
        "/api/session": {
            "get": _op(
                "Who is signed in",
                {"200": signed_in | {"description": "The session"}, **_errors(401, 503)},
            )
        },
        "/api/sessions": {
            "get": _op(
                "The person's live sessions",
                {
                    "200": _json(
                        {
                            "type": "object",
                            "required": ["sessions"],
                            "properties": {"sessions": {"type": "array", "items": _ref("Session")}},
                        },
                        "Sessions",
                    ),
                    **_errors(401, 503),
                },
            )
        },
        "/api/sessions/{session_id}": {
            "delete": _op(
                "Revoke one of the person's sessions",
                {"204": {"description": "Revoked"}, **_errors(401, 403, 404, 503)},
                parameters=[{"name": "session_id", "in": "path", "required": True, "schema": _STR}],
            )
        },
        "/auth/check": {
            "get": _op(
                "Forward auth: 200 with X-Latch-* headers, or 401",
                {
                    "200": {
                        "description": "Valid session",
                        "headers": {
                            name: {"schema": _STR}
                            for name in (
                                "X-Latch-User",
                                "X-Latch-Email",
                                "X-Latch-Session",
                                "X-Latch-AAL",
                            )
                        },
                    },
                    **_errors(401, 503),
                },
            )
        },
        "/.well-known/jwks.json": {
            "get": _op(
                "Public signing keys (RFC 7517)",
                {
                    "200": _json(
                        {
                            "type": "object",
                            "required": ["keys"],
                            "properties": {"keys": {"type": "array", "items": {"type": "object"}}},
                        },
                        "JWKS",
                    )
                },
            )
        },
        "/.well-known/latch-configuration": {
            "get": _op(
                "Issuer, audience, cookie names",
                {"200": _json({"type": "object"}, "Configuration")},
            )
        },
        "/healthz": {"get": _op("Alive", {"200": _json({"type": "object"}, "Alive")})},
        "/readyz": {
            "get": _op(
                "Ready",
                {
                    "200": _json({"type": "object"}, "Ready"),
                    "503": _json({"type": "object"}, "Not ready"),
                },
            )
        },
    }
    components: dict[str, Any] = {"schemas": dict(SCHEMAS)}
    for part in parts:
        paths.update(part.get("paths", {}))
        components["schemas"].update(part.get("schemas", {}))
        if "securitySchemes" in part:
            components.setdefault("securitySchemes", {}).update(part["securitySchemes"])
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Latch",
            "version": "1",
            "description": "Passwordless sign-in: a mailed code or link, a JWT in a cookie.",
        },
        "servers": [{"url": public_url}],
        "paths": paths,
        "components": components,
    }
