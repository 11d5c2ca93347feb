"""/admin/api/audit and /admin/api/webhooks…: the audit log; webhook endpoints and deliveries."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from service.admin.auth import admin_call
from service.admin.params import cursor, limit, query, read_body
from service.db import Row
from service.store import Actor
from service.web.state import app_state


def _webhook_id(request: Request) -> str:
    webhook_id: str = request.path_params["webhook_id"]
    return webhook_id


def webhook_json(row: Row) -> dict[str, Any]:
    """An endpoint as the admin API shows one (never its secret)."""
    return {k: row[k] for k in ("id", "url", "events", "created_at")}


@admin_call
async def list_audit(request: Request, actor: Actor) -> Response:
    """GET /admin/api/audit?user_id=&event=&cursor=&limit= -> {"events", "next_cursor"},
    newest first."""
    operator = app_state(request).operator
    rows, next_cursor = await operator.audit(
        user_id=query(request, "user_id"),
        event=query(request, "event"),
        cursor=cursor(request),
        limit=limit(request),
    )
    await operator.note_read(actor, "audit")
    return JSONResponse({"events": rows, "next_cursor": next_cursor})


@admin_call
async def create_webhook(request: Request, actor: Actor) -> Response:
    """POST /admin/api/webhooks {"url", "events"} -> 201 {"id", "secret", …}; the secret is
    shown this once."""
    body = await read_body(request)
    row, secret = await app_state(request).operator.create_webhook(
        body.get("url"), body.get("events"), actor
    )
    return JSONResponse({**webhook_json(row), "secret": secret}, status_code=201)


@admin_call
async def list_webhooks(request: Request, actor: Actor) -> Response:
    """GET /admin/api/webhooks -> {"webhooks"}."""
    operator = app_state(request).operator
    rows = await operator.webhooks()
    await operator.note_read(actor, "webhooks")
    return JSONResponse({"webhooks": [webhook_json(r) for r in rows]})


@admin_call
async def get_webhook(request: Request, actor: Actor) -> Response:
    """GET /admin/api/webhooks/{id} -> the endpoint."""
    operator = app_state(request).operator
    row = await operator.webhook(_webhook_id(request))
    await operator.note_read(actor, "webhook", webhook_id=row["id"])
    return JSONResponse(webhook_json(row))


@admin_call
async def delete_webhook(request: Request, actor: Actor) -> Response:
    """DELETE /admin/api/webhooks/{id} -> 204; what it was not sent yet is cancelled."""
    await app_state(request).operator.delete_webhook(_webhook_id(request), actor)
    return Response(status_code=204)


@admin_call
async def list_deliveries(request: Request, actor: Actor) -> Response:
    """GET /admin/api/webhooks/{id}/deliveries?cursor=&limit= -> {"deliveries", "next_cursor"}:
    each message with its status and every attempt."""
    operator = app_state(request).operator
    rows, next_cursor = await operator.deliveries(
        _webhook_id(request), cursor=cursor(request), limit=limit(request)
    )
    await operator.note_read(actor, "deliveries", webhook_id=_webhook_id(request))
    return JSONResponse({"deliveries": rows, "next_cursor": next_cursor})
