"""Logging set-up: one line per event; never a code, token or JWT (callers log ids and masks)."""

from __future__ import annotations

import logging
import sys


def configure_logging(level: str) -> None:
    """Plain, timestamped lines on stderr."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # uvicorn's access log prints query strings, which hold link tokens: it stays off.
    logging.getLogger("uvicorn.access").disabled = True
