"""Logging: one JSON line per event, with the request id; never a code, token or JWT.

Callers log ids (shortened) and masked addresses only. An event is the first word of the
message (`login.started flow=… to=a•••@example.com`), so logs and metrics name things alike.
"""

from __future__ import annotations

import contextvars
import json
import logging
import sys
import time
import traceback

request_id: contextvars.ContextVar[str] = contextvars.ContextVar("latch_request_id", default="")


def event_of(record: logging.LogRecord) -> str:
    """The event name of a record: the first word of its message when it contains a dot."""
    first = str(record.msg).split(" ", 1)[0]
    return first if "." in first and "%" not in first else ""


class JsonFormatter(logging.Formatter):
    """`{"ts", "level", "logger", "event", "msg", "request_id"}` on one line."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": event_of(record),
            "msg": record.getMessage(),
        }
        rid = request_id.get()
        if rid:
            line["request_id"] = rid
        if record.exc_info and record.exc_info[0] is not None:
            # The exception's type and where it was raised, not its message (it may quote
            # input, or a value that must not be logged).
            line["exc_type"] = record.exc_info[0].__name__
            frames = traceback.extract_tb(record.exc_info[2])[-8:]
            line["exc_where"] = [f"{f.filename}:{f.lineno} in {f.name}" for f in frames]
        return json.dumps(line, ensure_ascii=False)


def configure_logging(level: str) -> None:
    """JSON lines on stderr for Latch and uvicorn; uvicorn's access log stays off."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    handler.setLevel(level.upper())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    # Latch's access lines follow LOG_LEVEL even though event counting lifts `latch` to INFO.
    logging.getLogger("latch.access").setLevel(level.upper())
    # uvicorn's access log prints query strings, which hold link tokens: it stays off.
    logging.getLogger("uvicorn.access").disabled = True
    # What the JSON line never shows, no record needs to gather (the logging documentation's
    # "Optimization" knobs): the caller's file and line (a walk up the stack for every
    # record), the thread and process names. Every sign-in makes several records, counted for
    # the metrics even when LOG_LEVEL hides them.
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
