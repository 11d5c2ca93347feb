"""Shared fixtures: settings in a temp dir, an injected clock, a recording mail transport,
and a TestClient whose lifespan runs (so migrations, mail senders and shutdown are real)."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from service import crypto
from service.app import create_app
from service.settings import Settings, load_settings
from tests.support.postgres import PostgresCluster

ROOT = Path(__file__).resolve().parent.parent
BASE_URL = "http://127.0.0.1:8000"

# Tests that are not about limits run without the mail/IP limits; attack tests turn them on.
TEST_ENV = {
    "PUBLIC_URL": BASE_URL,
    "EMAIL_TEMPLATES_DIR": str(ROOT / "email_templates"),
    "LIMIT_MAIL_INTERVAL": "0",
    "LIMIT_MAIL_PER_WINDOW": "0",
    "LIMIT_MAIL_PER_DAY": "0",
    "LIMIT_MAIL_GLOBAL": "0",
    "LIMIT_STARTS_PER_IP": "0",
    "PURGE_INTERVAL": "0",
    "SHUTDOWN_GRACE": "5",
}


class FakeClock:
    """A clock the test moves by hand (never sleep to expire something)."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class RecordingTransport:
    """Keeps every message sent; for unit tests (integration tests use a real SMTP server)."""

    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []
        # The SMTP envelope of each message: (sender, recipients).
        self.envelopes: list[tuple[str, tuple[str, ...]]] = []
        self._cond = threading.Condition()

    async def send(self, message: EmailMessage, *, sender: str, recipients: Sequence[str]) -> None:
        with self._cond:
            self.messages.append(message)
            self.envelopes.append((sender, tuple(recipients)))
            self._cond.notify_all()

    def messages_to(self, to: str) -> list[EmailMessage]:
        """Every message to `to` so far."""
        with self._cond:
            return [m for m in self.messages if str(m["To"]).lower() == to.lower()]

    def wait_for(self, to: str, timeout: float = 5.0, *, index: int = 0) -> EmailMessage:
        """The index-th message to `to`, waiting for it to arrive."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                mine = [m for m in self.messages if str(m["To"]).lower() == to.lower()]
                if len(mine) > index:
                    return mine[index]
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no mail #{index} to {to} within {timeout}s")
                self._cond.wait(left)


class Codes:
    """A code generator for `create_app(new_code=...)`: every code differs from the one before
    (random codes collide once in 10**6, which would let an "old code stops working" check
    pass for the wrong reason or be skipped)."""

    def __init__(self) -> None:
        self.made: list[str] = []

    def __call__(self) -> str:
        self.made.append(f"{(271828 + 314159 * len(self.made)) % 10**6:06d}")
        return self.made[-1]


def text_of(message: EmailMessage) -> str:
    """The text/plain part."""
    part = message.get_body(("plain",))
    assert isinstance(part, EmailMessage)
    return str(part.get_content())


def mail_code(message: EmailMessage) -> str:
    """The 6-digit code in a sign-in mail."""
    match = re.search(r"\b(\d{3}) ?(\d{3})\b", text_of(message))
    assert match, "no code in mail"
    return match.group(1) + match.group(2)


def mail_link(message: EmailMessage) -> str:
    """The magic link in a sign-in mail."""
    match = re.search(r"(https?://\S+/login/link\?t=[\w.\-]+)", text_of(message))
    assert match, "no link in mail"
    return match.group(1)


def mail_token(message: EmailMessage) -> str:
    """The token of the magic link."""
    return mail_link(message).split("?t=", 1)[1]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def transport() -> RecordingTransport:
    return RecordingTransport()


@pytest.fixture
def make_settings(tmp_path: Path) -> Callable[..., Settings]:
    """Settings on a fresh DATA_DIR in tmp_path; keyword overrides are env names."""

    def make(**env: str) -> Settings:
        return load_settings({"DATA_DIR": str(tmp_path / "data"), **TEST_ENV, **env})

    return make


ClientFactory = Callable[..., AbstractContextManager[TestClient]]
SettingsFactory = Callable[..., Settings]


@pytest.fixture
def make_client(
    make_settings: Callable[..., Settings], clock: FakeClock, transport: RecordingTransport
) -> ClientFactory:
    """`with make_client(LIMIT_X="1") as client:` — a running app with those settings."""

    @contextmanager
    def make(
        settings: Settings | None = None,
        *,
        database_url: str | None = None,
        new_code: Callable[[], str] = crypto.new_code,
        **env: str,
    ) -> Iterator[TestClient]:
        if database_url is not None:
            env["DATABASE_URL"] = database_url
        app = create_app(
            settings or make_settings(**env),
            mail_transport=transport,
            clock=clock,
            new_code=new_code,
        )
        with TestClient(app, base_url=BASE_URL) as client:
            yield client

    return make


@pytest.fixture
def client(make_client: ClientFactory) -> Iterator[TestClient]:
    with make_client() as c:
        yield c


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PostgresCluster]:
    """One PostgreSQL cluster for the whole run; each test takes a fresh database in it.

    Missing server binaries fail the tests that ask for it: they are never skipped.
    """
    with PostgresCluster() as cluster:
        yield cluster


@pytest.fixture(
    params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)],
)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh empty database on each backend: `make_client(database_url=database_url)`."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'latch-test.db'}"
    cluster: PostgresCluster = request.getfixturevalue("pg_cluster")
    return cluster.create_database()


def start(client: TestClient, email: str, **extra: Any) -> dict[str, Any]:
    """POST /api/start and return the JSON body (asserting 202)."""
    response = client.post("/api/start", json={"email": email, **extra})
    assert response.status_code == 202, response.text
    body: dict[str, Any] = response.json()
    return body


def sign_in(client: TestClient, transport: RecordingTransport, email: str) -> dict[str, Any]:
    """A complete code sign-in through the JSON API; returns the verify body."""
    before = len([m for m in transport.messages if str(m["To"]).lower() == email.lower()])
    flow = start(client, email)
    code = mail_code(transport.wait_for(email, index=before))
    response = client.post("/api/verify", json={"flow_id": flow["flow_id"], "code": code})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body
