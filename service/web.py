"""HTML pages and form posts."""

from __future__ import annotations

from html import escape

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import BaseRoute

from service.errors import ServiceError


def error_page(request: Request, error: ServiceError) -> Response:
    """An error in the format of an HTML endpoint."""
    body = (
        "<!doctype html><html lang=en><meta charset=utf-8><title>Latch</title>"
        f"<main><h1>Sorry</h1><p>{escape(error.message)}</p>"
        "<p><a href=/login>Start again</a></p></main>"
    )
    return HTMLResponse(body, status_code=error.status, headers=error.headers)


routes: list[BaseRoute] = []
