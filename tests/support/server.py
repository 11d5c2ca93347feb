"""An ASGI app served by a real uvicorn on a loopback port, in a thread of the test process
(so the test can pass a recording mail transport or count requests, and still speak real HTTP)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Self

import httpx
import uvicorn
from starlette.types import ASGIApp, Receive, Scope, Send

from service.app import create_app
from service.settings import Settings, load_settings
from tests.conftest import TEST_ENV, FakeClock, RecordingTransport, mail_code

from .net import HOST, free_port
from .running import Running
from .wait import eventually


class ThreadedServer(Running):
    """`with ThreadedServer(app) as server:` — uvicorn serving `app` at `server.url`."""

    def __init__(self, app: ASGIApp, port: int | None = None) -> None:
        self.port = port or free_port()
        self.url = f"http://{HOST}:{self.port}"
        config = uvicorn.Config(
            app,
            host=HOST,
            port=self.port,
            access_log=False,
            log_config=None,
            lifespan="on",
            ws="none",
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="uvicorn-test", daemon=True)

    def start(self) -> Self:
        self.thread.start()

        def started() -> bool:
            if not self.thread.is_alive():
                raise RuntimeError("uvicorn exited before it started")
            return bool(self.server.started)

        eventually(started, "uvicorn to start", 20)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(30)


class RequestCounter:
    """Wraps an ASGI app and counts the HTTP requests per path."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.counts: dict[str, int] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            self.counts[scope["path"]] = self.counts.get(scope["path"], 0) + 1
        await self.app(scope, receive, send)


@dataclass
class Latch:
    """A running Latch (uvicorn in a thread) with what a test needs to drive it."""

    url: str
    settings: Settings
    transport: RecordingTransport
    clock: FakeClock
    counter: RequestCounter

    @contextmanager
    def sign_in(self, email: str) -> Iterator[httpx.Client]:
        """A client holding the cookies of a fresh code sign-in."""
        with httpx.Client(base_url=self.url, timeout=10) as client:
            before = len([m for m in self.transport.messages if str(m["To"]) == email])
            flow = client.post("/api/start", json={"email": email})
            assert flow.status_code == 202, flow.text
            code = mail_code(self.transport.wait_for(email, index=before))
            body = {"flow_id": flow.json()["flow_id"], "code": code}
            done = client.post("/api/verify", json=body)
            assert done.status_code == 200, done.text
            yield client


@contextmanager
def running_latch(data_dir: Path, **env: str) -> Iterator[Latch]:
    """Latch on a loopback port, PUBLIC_URL set to it, DATA_DIR in `data_dir`."""
    port = free_port()
    url = f"http://{HOST}:{port}"
    settings = load_settings({**TEST_ENV, "DATA_DIR": str(data_dir), "PUBLIC_URL": url, **env})
    transport, clock = RecordingTransport(), FakeClock()
    counter = RequestCounter(create_app(settings, mail_transport=transport, clock=clock))
    with ThreadedServer(counter, port):
        yield Latch(url, settings, transport, clock, counter)
