"""A Latch on http://localhost:8000 (passkeys need a domain name), with a test second factor
registered beside the built-in passkey one, and the calls of the passkey ceremonies."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx2
import jwt
from starlette.testclient import TestClient

from service.app import create_app
from service.db import Q, UseCase
from service.settings import Settings
from service.web.state import app_state_of
from tests.conftest import FakeClock, RecordingTransport, sign_in
from tests.support.factors import TestTotp, give_second_factors
from tests.support.wait import eventually
from tests.support.webauthn import SoftAuthenticator

ORIGIN = "http://localhost:8000"
RP_ID = "localhost"


class PasskeyRig:
    """A running Latch and helpers to drive its passkey endpoints."""

    def __init__(
        self, app: Any, totp: TestTotp, transport: RecordingTransport, base_url: str = ORIGIN
    ) -> None:
        self.app, self.totp, self.transport = app, totp, transport
        self.client = TestClient(app, base_url=base_url)

    @contextmanager
    def browser(self) -> Iterator[TestClient]:
        """Another browser (no cookies) for the block: the same client, whose cookies are put
        aside and back (a second TestClient would run the app on another event loop)."""
        kept = dict(self.client.cookies)
        self.client.cookies.clear()
        try:
            yield self.client
        finally:
            self.client.cookies.clear()
            for name, value in kept.items():
                self.client.cookies.set(name, value)

    def run(self, use_case: UseCase[Any]) -> Any:
        assert self.client.portal is not None
        return self.client.portal.call(app_state_of(self.client).database.run, use_case)

    def now(self) -> int:
        return int(app_state_of(self.client).clock())

    def sign_in_by_mail(self, email: str, client: TestClient | None = None) -> dict[str, Any]:
        return sign_in(client or self.client, self.transport, email)

    def enrol_totp(self, email: str) -> str:
        """Give the user the test TOTP factor: its secret here, a confirmed row in
        totp_factors (what `second_factors` is recomputed from; the test factor, registered
        under the same method, replaces the built-in one's checks)."""
        user_id: str = self.run(give_second_factors(email, "totp", self.now()))
        self.run(confirmed_totp_row(user_id, self.now()))
        self.totp.enrol(user_id)
        return user_id

    def factor_notices(self, kind: str = "added") -> int:
        """How many "a second factor was added|removed" notices were mailed so far."""
        subject = f"second factor was {kind}"
        return sum(subject in str(m["Subject"]) for m in self.transport.messages)

    def add_passkey(
        self, auth: SoftAuthenticator, client: TestClient | None = None, name: str = ""
    ) -> httpx2.Response:
        """Register `auth` for the signed-in browser."""
        c = client or self.client
        options = c.post("/api/passkeys/register/options", json={})
        assert options.status_code == 200, options.text
        credential = auth.create(options.json()["publicKey"], origin=ORIGIN)
        before = self.factor_notices()
        added = c.post("/api/passkeys/register", json={"credential": credential, "name": name})
        if added.status_code == 201:
            # The notice is mailed in the background: wait for it, so that the next sign-in
            # mail's place among the person's messages is known.
            eventually(lambda: self.factor_notices() > before, "the factor_added notice")
        return added

    def login_options(self, client: TestClient) -> dict[str, Any]:
        response = client.post("/api/passkeys/login/options", json={})
        assert response.status_code == 200, response.text
        options: dict[str, Any] = response.json()["publicKey"]
        return options

    def login(self, client: TestClient, credential: dict[str, Any]) -> httpx2.Response:
        return client.post("/api/passkeys/login", json={"credential": credential})

    def passkey_login(
        self, auth: SoftAuthenticator, client: TestClient, **kw: Any
    ) -> httpx2.Response:
        """Options, then the authenticator's answer, then the login call."""
        return self.login(client, auth.get(self.login_options(client), origin=ORIGIN, **kw))


def confirmed_totp_row(user_id: str, now: int) -> UseCase[None]:
    """A confirmed authenticator app for the user (its secret unused: the test factor checks)."""
    yield Q(
        "INSERT INTO totp_factors (user_id, sealed_secret, created_at, confirmed_at, last_step)"
        " VALUES (:u, 'unused', :now, :now, -1)",
        {"u": user_id, "now": now},
    )


def factors_of(user_id: str) -> UseCase[str]:
    """The user's `second_factors` column."""
    rows = yield Q("SELECT second_factors FROM users WHERE id = :id", {"id": user_id})
    return str(rows[0]["second_factors"])


def claims_of(client: TestClient) -> dict[str, Any]:
    """The (unverified) claims of the browser's access JWT."""
    token = client.cookies.get("latch_session")
    assert token
    claims: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
    return claims


@contextmanager
def passkey_rig(
    settings: Settings, clock: FakeClock, transport: RecordingTransport, base_url: str = ORIGIN
) -> Iterator[PasskeyRig]:
    """A PasskeyRig whose app runs (lifespan) for the block."""
    totp = TestTotp()
    app = create_app(settings, mail_transport=transport, clock=clock, second_factors=[totp])
    rig = PasskeyRig(app, totp, transport, base_url)
    with rig.client:
        yield rig
