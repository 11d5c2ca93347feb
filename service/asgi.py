"""`app` for ASGI servers: settings from the environment (and `.env`), then the app."""

from __future__ import annotations

from service.app import create_app
from service.logs import configure_logging
from service.settings import load_settings, read_environment

settings = load_settings(read_environment())
configure_logging(settings.runtime.log_level)
app = create_app(settings)
