"""Request bodies as untrusted bytes: the one JSON parser of the API and the form check.

Both refuse, with InvalidRequestError (400), what would otherwise surface deep inside a handler
as a 500: nesting deep enough to exhaust the recursion of `json.loads`, and text that is not
valid Unicode (a lone surrogate cannot be encoded to UTF-8, so the database driver, a log line
or a mail header fails on it long after the parse).
"""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import unquote_to_bytes

from service.errors import InvalidRequestError

# No Latch body nests more than two levels; 32 leaves room for what clients add, far below the
# ~1000 frames at which the C decoder gives up with RecursionError.
MAX_DEPTH = 32
# A JSON string, escapes included; DOTALL so a raw newline inside one (invalid JSON, refused by
# the parser later) cannot end the match early.
_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_OPENERS = frozenset(b"[{")
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")


def json_depth_exceeds(raw: bytes, limit: int = MAX_DEPTH) -> bool:
    """True when the brackets of `raw` (outside strings) nest deeper than `limit`.

    Linear and without recursion: it must hold for the input that breaks the recursive parser.
    Brackets inside an unterminated string are counted, which only refuses what the parser
    would refuse anyway.
    """
    brackets = _STRING.sub(b"", raw).translate(None, delete=_NOT_BRACKETS)
    if brackets.count(b"[") + brackets.count(b"{") <= limit:
        return False  # the common case: too few openers to nest too deep
    depth = 0
    for byte in brackets:
        depth += 1 if byte in _OPENERS else -1
        if depth > limit:
            return True
    return False


def _constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def parse_json(raw: bytes) -> Any:
    """Strict JSON from a request body: UTF-8 only, nesting bounded, no lone surrogates, no
    NaN/Infinity. InvalidRequestError for anything else."""
    try:
        # Strict UTF-8 here: `json.loads(bytes)` decodes with "surrogatepass", which lets the
        # bytes ED A0 80 through as a lone surrogate.
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise InvalidRequestError("The body is not valid UTF-8.") from e
    if json_depth_exceeds(raw):
        raise InvalidRequestError("The body is nested too deeply.")
    try:
        value = json.loads(text, parse_constant=_constant)
    except (ValueError, RecursionError) as e:
        raise InvalidRequestError("The body is not valid JSON.") from e
    if not _valid_unicode(value):
        # `"\ud800"` is a valid JSON escape for a character that cannot exist in UTF-8.
        raise InvalidRequestError("The body holds text that is not valid Unicode.")
    return value


def _valid_unicode(value: Any) -> bool:
    stack = [value]
    while stack:  # iterative: nesting is bounded already, but no recursion is cheaper to trust
        item = stack.pop()
        if isinstance(item, str):
            if not _encodes(item):
                return False
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return True


def _encodes(text: str) -> bool:
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def check_form_encoding(raw: bytes) -> None:
    """An urlencoded form must decode to valid UTF-8, field names and values alike.

    Starlette decodes with errors="replace", so bad bytes would silently become U+FFFD and reach
    the handler as different text from what was sent: refused instead.
    """
    for pair in raw.split(b"&"):
        for piece in pair.split(b"=", 1):
            try:
                unquote_to_bytes(piece.replace(b"+", b" ")).decode("utf-8")
            except UnicodeDecodeError as e:
                raise InvalidRequestError("The form is not valid UTF-8.") from e
