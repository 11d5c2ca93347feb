"""The admin API's part of /openapi.json (merged in by create_app: surfaces never import each
other, so the JSON API's document receives this part rather than importing it)."""

from __future__ import annotations

from typing import Any

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
    415: "Not JSON",
    503: "Unavailable",
}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*statuses: int) -> dict[str, Any]:
    return {str(s): _json(_ref("Error"), _NAMES[s]) for s in (401, 503, *statuses)}


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

SCHEMAS: dict[str, Any] = {
    "AdminUser": _obj(
        ["id", "email", "created_at", "last_login_at", "disabled"],
        id=_STR,
        email=_STR,
        created_at=_INT,
        last_login_at=_NULL_INT,
        disabled={"type": "boolean"},
    ),
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
    "Webhook": _obj(
        ["id", "url", "events", "created_at"],
        id=_STR,
        url=_STR,
        created_at=_INT,
        events={
            "type": "array",
            "items": {"type": "string", "enum": [str(e) for e in WEBHOOK_EVENTS]},
        },
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
        attempt_log={
            "type": "array",
            "items": _obj(
                ["attempt", "at", "status", "error"],
                attempt=_INT,
                at=_INT,
                status=_NULL_INT,
                error=_NULL_STR,
            ),
        },
    ),
}


def _op(summary: str, responses: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "summary": summary,
        "tags": ["admin"],
        "security": _SECURITY,
        "responses": responses,
        **extra,
    }


def _body(schema: dict[str, Any]) -> dict[str, Any]:
    return {"required": True, "content": {"application/json": {"schema": schema}}}


user = _json(_ref("AdminUser"), "The user")
webhook_events = {
    "type": "array",
    "minItems": 1,
    "items": {"type": "string", "enum": [str(e) for e in WEBHOOK_EVENTS]},
}

PATHS: dict[str, Any] = {
    "/admin/api/users": {
        "get": _op(
            "List or search users (cursor pagination, id order)",
            {"200": _json(_page("users", "AdminUser"), "A page of users"), **_errors(400)},
            parameters=[_param("email", description="part of the address"), *_CURSOR],
        ),
        "post": _op(
            "Create a user (200 when the address has one already)",
            {"201": user, "200": user, **_errors(400, 415)},
            requestBody=_body(_obj(["email"], email=_STR)),
        ),
    },
    "/admin/api/users/{user_id}": {
        "get": _op("One user", {"200": user, **_errors(404)}, parameters=_USER_ID),
        "delete": _op(
            "Delete a user (the audit log keeps their address-free events)",
            {"204": {"description": "Deleted"}, **_errors(404)},
            parameters=_USER_ID,
        ),
    },
    "/admin/api/users/{user_id}/disable": {
        "post": _op(
            "Disable a user: every session ends, sign-in and refresh are refused",
            {"200": user, **_errors(404)},
            parameters=_USER_ID,
        ),
    },
    "/admin/api/users/{user_id}/enable": {
        "post": _op("Enable a user again", {"200": user, **_errors(404)}, parameters=_USER_ID),
    },
    "/admin/api/users/{user_id}/sessions": {
        "get": _op(
            "A user's live sessions",
            {
                "200": _json(
                    _obj(["sessions"], sessions={"type": "array", "items": _ref("AdminSession")}),
                    "Sessions",
                ),
                **_errors(404),
            },
            parameters=_USER_ID,
        ),
        "delete": _op(
            "Revoke every session of a user",
            {
                "200": _json(
                    _obj(["revoked"], revoked={"type": "array", "items": _STR}),
                    "The sessions revoked",
                ),
                **_errors(404),
            },
            parameters=_USER_ID,
        ),
    },
    "/admin/api/users/{user_id}/factors": {
        "delete": _op(
            "Remove every second factor of a user",
            {
                "200": _json(
                    _obj(["removed"], removed={"type": "array", "items": _STR}),
                    "The methods removed",
                ),
                **_errors(404),
            },
            parameters=_USER_ID,
        ),
    },
    "/admin/api/audit": {
        "get": _op(
            "Audit events, newest first (cursor pagination)",
            {"200": _json(_page("events", "AuditEvent"), "A page of events"), **_errors(400)},
            parameters=[_param("user_id"), _param("event"), *_CURSOR],
        ),
    },
    "/admin/api/webhooks": {
        "get": _op(
            "Webhook endpoints",
            {
                "200": _json(
                    _obj(["webhooks"], webhooks={"type": "array", "items": _ref("Webhook")}),
                    "Endpoints",
                ),
                **_errors(),
            },
        ),
        "post": _op(
            "Add an endpoint; its signing secret (whsec_…) is shown this once",
            {
                "201": _json(
                    {"allOf": [_ref("Webhook"), _obj(["secret"], secret=_STR)]},
                    "The endpoint and its secret",
                ),
                **_errors(400, 415),
            },
            requestBody=_body(_obj(["url", "events"], url=_STR, events=webhook_events)),
        ),
    },
    "/admin/api/webhooks/{webhook_id}": {
        "get": _op(
            "One endpoint",
            {"200": _json(_ref("Webhook"), "The endpoint"), **_errors(404)},
            parameters=_WEBHOOK_ID,
        ),
        "delete": _op(
            "Remove an endpoint (its pending messages are cancelled)",
            {"204": {"description": "Removed"}, **_errors(404)},
            parameters=_WEBHOOK_ID,
        ),
    },
    "/admin/api/webhooks/{webhook_id}/deliveries": {
        "get": _op(
            "An endpoint's messages and their attempts, newest first",
            {"200": _json(_page("deliveries", "WebhookDelivery"), "A page"), **_errors(400, 404)},
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
