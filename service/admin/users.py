"""/admin/api/users…: list and search, create, disable, enable, delete; sessions and factors."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from service.admin.auth import admin_call
from service.admin.params import cursor, limit, query, read_body
from service.db import Row
from service.errors import InvalidRequestError
from service.store import Actor
from service.web.state import app_state


def user_json(row: Row) -> dict[str, Any]:
    """A user as the admin API shows one."""
    return {
        "id": row["id"],
        "email": row["email"],
        "created_at": row["created_at"],
        "last_login_at": row["last_login_at"],
        "disabled": row["disabled"],
    }


def _user_id(request: Request) -> str:
    user_id: str = request.path_params["user_id"]
    return user_id


@admin_call
async def list_users(request: Request, actor: Actor) -> Response:
    """GET /admin/api/users?email=&cursor=&limit= -> {"users", "next_cursor"}."""
    operator = app_state(request).operator
    email = query(request, "email")
    rows, next_cursor = await operator.list_users(
        email=email, cursor=cursor(request), limit=limit(request)
    )
    await operator.note_read(actor, "users", email_filter=email is not None)
    return JSONResponse({"users": [user_json(r) for r in rows], "next_cursor": next_cursor})


@admin_call
async def create_user(request: Request, actor: Actor) -> Response:
    """POST /admin/api/users {"email"} -> 201 (or 200 when the user exists) with the user."""
    body = await read_body(request)
    email = body.get("email")
    if not isinstance(email, str) or not email:
        raise InvalidRequestError("`email` is required.", field="email")
    row, created = await app_state(request).operator.create_user(email, actor)
    return JSONResponse(user_json(row), status_code=201 if created else 200)


@admin_call
async def get_user(request: Request, actor: Actor) -> Response:
    """GET /admin/api/users/{id} -> the user."""
    operator = app_state(request).operator
    row = await operator.user(_user_id(request))
    await operator.note_read(actor, "user", user_id=row["id"])
    return JSONResponse(user_json(row))


@admin_call
async def disable_user(request: Request, actor: Actor) -> Response:
    """POST /admin/api/users/{id}/disable -> the user; every session ends, sign-ins refused."""
    row = await app_state(request).operator.set_disabled(_user_id(request), True, actor)
    return JSONResponse(user_json(row))


@admin_call
async def enable_user(request: Request, actor: Actor) -> Response:
    """POST /admin/api/users/{id}/enable -> the user; they may sign in again."""
    row = await app_state(request).operator.set_disabled(_user_id(request), False, actor)
    return JSONResponse(user_json(row))


@admin_call
async def delete_user(request: Request, actor: Actor) -> Response:
    """DELETE /admin/api/users/{id} -> 204."""
    await app_state(request).operator.delete_user(_user_id(request), actor)
    return Response(status_code=204)


@admin_call
async def list_sessions(request: Request, actor: Actor) -> Response:
    """GET /admin/api/users/{id}/sessions -> {"sessions"}."""
    operator = app_state(request).operator
    rows = await operator.sessions(_user_id(request))
    await operator.note_read(actor, "sessions", user_id=_user_id(request))
    return JSONResponse({"sessions": rows})


@admin_call
async def revoke_sessions(request: Request, actor: Actor) -> Response:
    """DELETE /admin/api/users/{id}/sessions -> {"revoked": [session ids]}."""
    ended = await app_state(request).operator.revoke_sessions(_user_id(request), actor)
    return JSONResponse({"revoked": ended})


@admin_call
async def reset_factors(request: Request, actor: Actor) -> Response:
    """DELETE /admin/api/users/{id}/factors -> {"removed": [methods]}."""
    removed = await app_state(request).operator.reset_factors(_user_id(request), actor)
    return JSONResponse({"removed": removed})
