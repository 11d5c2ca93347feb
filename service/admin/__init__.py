"""The admin API under /admin/api/ (docs/design.md §14): users, their sessions and factors, the
audit log and webhooks, behind admin keys; errors in the JSON API's shape."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from service.admin import hooks, users
from service.errors import ServiceError
from service.web.surface import Surface


async def render_error(request: Request, error: ServiceError) -> Response:
    """Errors as the JSON API writes them: {"error": {"code", "message", …}}."""
    return JSONResponse(error.to_json(), status_code=error.status, headers=error.headers)


surface = Surface("admin", render_error, json=True)
PREFIX = "/admin/api"

routes = [
    Route(f"{PREFIX}/users", users.list_users, methods=["GET"]),
    Route(f"{PREFIX}/users", users.create_user, methods=["POST"]),
    Route(f"{PREFIX}/users/{{user_id}}", users.get_user, methods=["GET"]),
    Route(f"{PREFIX}/users/{{user_id}}", users.delete_user, methods=["DELETE"]),
    Route(f"{PREFIX}/users/{{user_id}}/disable", users.disable_user, methods=["POST"]),
    Route(f"{PREFIX}/users/{{user_id}}/enable", users.enable_user, methods=["POST"]),
    Route(f"{PREFIX}/users/{{user_id}}/sessions", users.list_sessions, methods=["GET"]),
    Route(f"{PREFIX}/users/{{user_id}}/sessions", users.revoke_sessions, methods=["DELETE"]),
    Route(f"{PREFIX}/users/{{user_id}}/factors", users.reset_factors, methods=["DELETE"]),
    Route(f"{PREFIX}/audit", hooks.list_audit, methods=["GET"]),
    Route(f"{PREFIX}/webhooks", hooks.list_webhooks, methods=["GET"]),
    Route(f"{PREFIX}/webhooks", hooks.create_webhook, methods=["POST"]),
    Route(f"{PREFIX}/webhooks/{{webhook_id}}", hooks.get_webhook, methods=["GET"]),
    Route(f"{PREFIX}/webhooks/{{webhook_id}}", hooks.delete_webhook, methods=["DELETE"]),
    Route(f"{PREFIX}/webhooks/{{webhook_id}}/deliveries", hooks.list_deliveries, methods=["GET"]),
]
