"""`app` for ASGI servers: the only place that reads the environment (and `.env`)."""

from __future__ import annotations

import os
from pathlib import Path

from service.app import create_app
from service.logs import configure_logging
from service.settings import load_settings, read_env_file


def environment() -> dict[str, str]:
    """`.env` (if present in the working directory), overridden by the real environment."""
    return {**read_env_file(Path(".env")), **os.environ}


settings = load_settings(environment())
configure_logging(settings.log_level)
app = create_app(settings)
