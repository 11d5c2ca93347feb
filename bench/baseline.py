"""The yardstick: a bare Starlette app with one JSON endpoint, served exactly like Latch."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route


async def hello(request: Request) -> Response:
    """GET /: a small JSON body, about the size of Latch's cheapest answers."""
    return JSONResponse({"status": "ok"})


app = Starlette(routes=[Route("/", hello, methods=["GET"])])
