"""The admin API's part of /openapi.json (merged in by create_app: surfaces never import each
other, so the JSON API's document receives this part rather than importing it).

Written in the JSON API's conventions (service/api/openapi.py, schemas.py): an operationId on
every operation, every body and answer a named schema (none named after one of its own
properties), errors as the shared `LatchError` schema, and `WWW-Authenticate` required on every
401. The admin key is a security scheme of its own (`adminKey`): no cookie and no access JWT
opens this API.
"""

from __future__ import annotations

from typing import Any

from service.errors import CHALLENGE
from service.store import WEBHOOK_EVENTS, Event

_STR = {"type": "string"}
_INT = {"type": "integer"}
_NULL_INT = {"type": ["integer", "null"]}
_NULL_STR = {"type": ["string", "null"]}
_SECURITY: list[dict[str, list[str]]] = [{"adminKey": []}]
_NAMES = {
    400: "Bad request",
    401: "No, a wrong or a revoked admin key",
    404: "No such user or webhook",
    413: "Body too large",
    415: "Not JSON",
    503: "Unavailable",
}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*statuses: int) -> dict[str, Any]:
    """Every admin call can be refused its key (401) or find the database busy (503)."""
    out: dict[str, Any] = {}
    for status in (401, 503, *statuses):
        response = _json(_ref("LatchError"), _NAMES[status])
        if status == 401:
            response["headers"] = {
                "WWW-Authenticate": {
                    "schema": _STR,
                    "required": True,
                    "description": f'`{CHALLENGE}`, with `error="invalid_token"` when a key '
                    "was sent and refused (RFC 6750)",
                }
            }
        if status == 503:
            response["headers"] = {"Retry-After": {"schema": _INT, "required": True}}
        out[str(status)] = response
    return out


def _obj(required: list[str], **properties: Any) -> dict[str, Any]:
    return {"type": "object", "required": required, "properties": properties}


def _page(items: str, schema: str) -> dict[str, Any]:
    return _obj(
        [items, "next_cursor"],
        **{items: {"type": "array", "items": _ref(schema)}},
        next_cursor=_NULL_STR,
    )


def _param(name: str, where: str = "query", description: str = "") -> dict[str, Any]:
    return {
        "name": name,
        "in": where,
        "required": where == "path",
        "schema": _STR,
        "description": description,
    }


_CURSOR = [
    _param("cursor", description="next_cursor of the page before"),
    {
        "name": "limit",
        "in": "query",
        "required": False,
        "schema": {"type": "integer", "minimum": 1, "maximum": 200, "default": 50},
    },
]
_USER_ID = [_param("user_id", "path")]
_WEBHOOK_ID = [_param("webhook_id", "path")]
_WEBHOOK_EVENTS = {"type": "string", "enum": [str(e) for e in WEBHOOK_EVENTS]}
_WEBHOOK = {
    "id": _STR,
    "url": _STR,
    "created_at": _INT,
    "events": {"type": "array", "items": _WEBHOOK_EVENTS},
}

SCHEMAS: dict[str, Any] = {
    # --- requests -------------------------------------------------------------------------
    "CreateUserRequest": _obj(["email"], email={"type": "string", "maxLength": 320}),
    "CreateWebhookRequest": _obj(
        ["url", "events"],
        url=_STR,
        events={"type": "array", "minItems": 1, "items": _WEBHOOK_EVENTS},
    ),
    # --- answers --------------------------------------------------------------------------
    "AdminUser": _obj(
        ["id", "email", "created_at", "last_login_at", "disabled"],
        id=_STR,
        email=_STR,
        created_at=_INT,
        last_login_at=_NULL_INT,
        disabled={"type": "boolean"},
    ),
    "AdminUserPage": _page("users", "AdminUser"),
    "AdminSession": _obj(
        ["id", "created_at", "last_used_at", "expires_at", "ip", "user_agent", "aal"],
        id=_STR,
        created_at=_INT,
        last_used_at=_INT,
        expires_at=_INT,
        ip=_STR,
        user_agent=_STR,
        aal=_INT,
    ),
    "AdminSessionList": _obj(
        ["sessions"], sessions={"type": "array", "items": _ref("AdminSession")}
    ),
    "RevokedSessions": _obj(["revoked"], revoked={"type": "array", "items": _STR}),
    "RemovedFactors": _obj(["removed"], removed={"type": "array", "items": _STR}),
    "AuditEvent": _obj(
        ["id", "at", "event", "user_id", "actor", "ip", "user_agent", "details"],
        id=_STR,
        at=_INT,
        event={"type": "string", "enum": [str(e) for e in Event]},
        user_id=_NULL_STR,
        actor=_STR,
        ip=_STR,
        user_agent=_STR,
        details={"type": "object"},
    ),
    "AuditEventPage": _page("events", "AuditEvent"),
    "Webhook": _obj(["id", "url", "events", "created_at"], **_WEBHOOK),
    # The endpoint as created, with its signing secret (shown this once).
    "NewWebhook": _obj(["id", "url", "events", "created_at", "secret"], **_WEBHOOK, secret=_STR),
    "WebhookList": _obj(["webhooks"], webhooks={"type": "array", "items": _ref("Webhook")}),
    "WebhookAttempt": _obj(
        ["attempt", "at", "status", "error"],
        attempt=_INT,
        at=_INT,
        status=_NULL_INT,
        error=_NULL_STR,
    ),
    "WebhookDelivery": _obj(
        [
            "id",
            "endpoint_id",
            "event",
            "created_at",
            "attempts",
            "next_at",
            "status",
            "delivered_at",
            "attempt_log",
        ],
        id=_STR,
        endpoint_id=_STR,
        event=_STR,
        created_at=_INT,
        attempts=_INT,
        next_at=_INT,
        status={"type": "string", "enum": ["pending", "delivered", "failed", "cancelled"]},
        delivered_at=_NULL_INT,
        attempt_log={"type": "array", "items": _ref("WebhookAttempt")},
    ),
    "WebhookDeliveryPage": _page("deliveries", "WebhookDelivery"),
}


def _op(operation_id: str, summary: str, responses: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "operationId": operation_id,
        "summary": summary,
        "tags": ["admin"],
        "security": _SECURITY,
        "responses": responses,
        **extra,
    }


def _body(name: str) -> dict[str, Any]:
    return {"required": True, "content": {"application/json": {"schema": _ref(name)}}}


user = _json(_ref("AdminUser"), "The user")

PATHS: dict[str, Any] = {
    "/admin/api/users": {
        "get": _op(
            "listUsers",
            "List or search users (cursor pagination, id order)",
            {"200": _json(_ref("AdminUserPage"), "A page of users"), **_errors(400)},
            parameters=[_param("email", description="part of the address"), *_CURSOR],
        ),
        "post": _op(
            "createUser",
            "Create a user (200 when the address has one already)",
            {"201": user, "200": user, **_errors(400, 413, 415)},
            requestBody=_body("CreateUserRequest"),
        ),
    },
    "/admin/api/users/{user_id}": {
        "get": _op("getUser", "One user", {"200": user, **_errors(404)}, parameters=_USER_ID),
        "delete": _op(
            "deleteUser",
            "Delete a user as their own deletion does (the audit log keeps their address-free"
            " events)",
            {"204": {"description": "Deleted"}, **_errors(404)},
            parameters=_USER_ID,
        ),
    },
    "/admin/api/users/{user_id}/disable": {
        "post": _op(
            "disableUser",
            "Disable a user: every session ends, sign-in and refresh are refused",
            {"200": user, **_errors(404)},
            parameters=_USER_ID,
        ),
    },
    "/admin/api/users/{user_id}/enable": {
        "post": _op(
            "enableUser",
            "Enable a user again",
            {"200": user, **_errors(404)},
            parameters=_USER_ID,
        ),
    },
    "/admin/api/users/{user_id}/sessions": {
        "get": _op(
            "listUserSessions",
            "A user's live sessions",
            {"200": _json(_ref("AdminSessionList"), "Sessions"), **_errors(404)},
            parameters=_USER_ID,
        ),
        "delete": _op(
            "revokeUserSessions",
            "Revoke every session of a user",
            {"200": _json(_ref("RevokedSessions"), "The sessions revoked"), **_errors(404)},
            parameters=_USER_ID,
        ),
    },
    "/admin/api/users/{user_id}/factors": {
        "delete": _op(
            "resetUserFactors",
            "Remove every second factor of a user (and their recovery codes)",
            {"200": _json(_ref("RemovedFactors"), "The methods removed"), **_errors(404)},
            parameters=_USER_ID,
        ),
    },
    "/admin/api/audit": {
        "get": _op(
            "listAuditEvents",
            "Audit events, newest first (cursor pagination)",
            {"200": _json(_ref("AuditEventPage"), "A page of events"), **_errors(400)},
            parameters=[_param("user_id"), _param("event"), *_CURSOR],
        ),
    },
    "/admin/api/webhooks": {
        "get": _op(
            "listWebhooks",
            "Webhook endpoints",
            {"200": _json(_ref("WebhookList"), "Endpoints"), **_errors()},
        ),
        "post": _op(
            "createWebhook",
            "Add an endpoint; its signing secret (whsec_…) is shown this once",
            {
                "201": _json(_ref("NewWebhook"), "The endpoint and its secret"),
                **_errors(400, 413, 415),
            },
            requestBody=_body("CreateWebhookRequest"),
        ),
    },
    "/admin/api/webhooks/{webhook_id}": {
        "get": _op(
            "getWebhook",
            "One endpoint",
            {"200": _json(_ref("Webhook"), "The endpoint"), **_errors(404)},
            parameters=_WEBHOOK_ID,
        ),
        "delete": _op(
            "deleteWebhook",
            "Remove an endpoint (its pending messages are cancelled)",
            {"204": {"description": "Removed"}, **_errors(404)},
            parameters=_WEBHOOK_ID,
        ),
    },
    "/admin/api/webhooks/{webhook_id}/deliveries": {
        "get": _op(
            "listWebhookDeliveries",
            "An endpoint's messages and their attempts, newest first",
            {"200": _json(_ref("WebhookDeliveryPage"), "A page"), **_errors(400, 404)},
            parameters=[*_WEBHOOK_ID, *_CURSOR],
        ),
    },
}

SECURITY_SCHEMES = {
    "adminKey": {
        "type": "http",
        "scheme": "bearer",
        "description": "An admin key: python -m service admin-keys create NAME",
    },
}


def part() -> dict[str, Any]:
    """What the admin API adds to the OpenAPI document."""
    return {"paths": PATHS, "schemas": SCHEMAS, "securitySchemes": SECURITY_SCHEMES}
