"""Reading an admin call's input: the JSON body, a bounded query parameter, a page size."""

from __future__ import annotations

import re
from typing import Any

from starlette.requests import Request

from service.errors import InvalidRequestError, UnsupportedMediaTypeError
from service.web.bodies import parse_json

MAX_PARAM = 320
DEFAULT_PAGE = 50
_CURSOR = re.compile(r"[A-Za-z0-9_.-]{1,100}")


async def read_body(request: Request) -> dict[str, Any]:
    """The JSON object body (Content-Type: application/json)."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype != "application/json":
        raise UnsupportedMediaTypeError()
    body = parse_json(await request.body())
    if not isinstance(body, dict):
        raise InvalidRequestError("The body must be a JSON object.")
    return body


def query(request: Request, name: str) -> str | None:
    """A query parameter, bounded in length (None when absent or empty)."""
    value = request.query_params.get(name)
    if value is not None and len(value) > MAX_PARAM:
        raise InvalidRequestError(f"`{name}` is too long.", field=name)
    return value or None


def cursor(request: Request) -> str | None:
    """The `cursor` parameter: the `next_cursor` of the page before (opaque to clients)."""
    value = query(request, "cursor")
    if value is not None and not _CURSOR.fullmatch(value):
        raise InvalidRequestError("`cursor` is not one this API gave out.", field="cursor")
    return value


def limit(request: Request) -> int:
    """The page size `limit` (1-200, default 50)."""
    raw = query(request, "limit")
    if raw is None:
        return DEFAULT_PAGE
    if not raw.isdigit() or not 1 <= int(raw) <= 200:
        raise InvalidRequestError("`limit` must be a whole number from 1 to 200.", field="limit")
    return int(raw)
