"""Liveness and readiness for orchestrators: /healthz and /readyz."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from service.db import ping
from service.errors import ServiceError
from service.web.state import app_state


async def healthz(request: Request) -> Response:
    """Alive."""
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> Response:
    """Ready: the database answers and the mail queue has room."""
    state = app_state(request)
    checks = {"database": True, "mail_queue": not state.mailer.full}
    try:
        checks["database"] = await state.database.run(ping(), write=False)
    except ServiceError:
        checks["database"] = False
    ok = all(checks.values())
    return JSONResponse(
        {"status": "ok" if ok else "unavailable", "checks": checks}, status_code=200 if ok else 503
    )


routes = [
    Route("/healthz", healthz, methods=["GET", "HEAD"]),
    Route("/readyz", readyz, methods=["GET", "HEAD"]),
]
