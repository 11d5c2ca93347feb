"""The person's account over JSON (service/api/account.py): the export holds everything and
no secret; deletion needs a recent step and the typed address, and leaves nothing behind."""

from __future__ import annotations

import re
import sqlite3
import uuid
from pathlib import Path
from typing import Any

from starlette.testclient import TestClient

from service import store
from service.web.state import app_state_of
from tests.api.test_factors import code_now, enrol, first_step
from tests.conftest import (
    ClientFactory,
    FakeClock,
    RecordingTransport,
    mail_code,
    mail_token,
    sign_in,
    text_of,
)
from tests.oidc.test_consent import decide, to_consent
from tests.support.oidc import exchange, register
from tests.support.wait import eventually
from tests.support.web import other_browser

EMAIL = "ada@example.com"
PHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15"
    " (KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1"
)


def db_file(client: TestClient) -> Path:
    url = app_state_of(client).settings.storage.resolved_database_url
    return Path(url.removeprefix("sqlite:///"))


def rows(client: TestClient, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    """Read the database file as another process would."""
    with sqlite3.connect(db_file(client)) as conn:
        return conn.execute(sql, params).fetchall()


def stored_hashes(client: TestClient) -> list[str]:
    """Every hash Latch stored: codes, links, refresh tokens, notice links."""
    found: list[str] = []
    for table, columns in (
        ("login_flows", ("code_hash", "link_hash")),
        ("sessions", ("refresh_hash", "prev_refresh_hash")),
        ("device_notices", ("link_hash",)),
        ("address_changes", ("code_hash", "link_hash")),
        ("totp_factors", ("sealed_secret",)),
        ("recovery_codes", ("code_hash",)),
        ("oauth_clients", ("secret_hash",)),
        ("oauth_grants", ("code_hash", "refresh_hash", "prev_refresh_hash")),
    ):
        for row in rows(client, f"SELECT {', '.join(columns)} FROM {table}"):
            found += [value for value in row if value]
    return found


def settle(client: TestClient) -> None:
    eventually(lambda: app_state_of(client).mailer.depth == 0, "the mail queue to empty")


def two_devices(client: TestClient, transport: RecordingTransport) -> list[str]:
    """Sign in here and on a phone (whose sign-in gets a notice), refresh here once; every
    secret that passed: codes, link tokens, cookies, the notice's link."""
    sign_in(client, transport, EMAIL)
    with other_browser(client, PHONE):
        sign_in(client, transport, EMAIL)
        phone = [client.cookies["latch_session"], client.cookies["latch_refresh"]]
    assert client.post("/api/refresh").status_code == 200
    settle(client)
    secrets = [*phone, client.cookies["latch_session"], client.cookies["latch_refresh"]]
    for message in transport.messages:
        text = text_of(message)
        if "/login/link?t=" in text:
            secrets += [mail_code(message), mail_token(message)]
        secrets += re.findall(r"not-me\?t=(\S+)", text)
    assert len(secrets) >= 9
    return secrets


def factor_and_app(
    client: TestClient, transport: RecordingTransport, clock: FakeClock
) -> list[str]:
    """Set up an authenticator app (with recovery codes) and let a third-party OpenID app in
    (consent, code, tokens); every secret that passed."""
    totp_secret, codes = enrol(client, clock)
    assert len(codes) == 10
    app, app_secret = register(client, name="Wiki")
    assert app_secret
    code = decide(client, to_consent(client, transport, app), "allow")["code"]
    tokens = exchange(client, app, app_secret, code).json()
    return [
        totp_secret,
        *codes,
        app_secret,
        code,
        tokens["access_token"],
        tokens["refresh_token"],
        tokens["id_token"],
    ]


def a_passkey(client: TestClient) -> list[str]:
    """A passkey and an unanswered registration challenge of the signed-in person, stored as
    the passkey use cases store them (this app runs on 127.0.0.1, where passkeys are off);
    the credential id and public key, which the export leaves out."""
    user_id = client.get("/api/session").json()["user"]["id"]
    now = int(app_state_of(client).clock())
    passkey = store.NewPasskey(
        id=uuid.uuid4().hex,
        credential_id="cred-" + uuid.uuid4().hex,
        public_key="pk-" + uuid.uuid4().hex,
        sign_count=0,
        transports=("internal",),
        backup_eligible=True,
        backed_up=True,
        name="Work laptop",
    )
    run = app_state_of(client).database.run
    assert client.portal is not None
    assert client.portal.call(run, store.add_passkey(user_id, passkey, now))
    challenge = store.add_challenge(
        uuid.uuid4().hex,
        "register",
        user_id=user_id,
        signin_id=None,
        ip="127.0.0.1",
        max_per_ip=0,
        now=now,
        ttl=300,
    )
    assert client.portal.call(run, challenge)
    return [passkey.credential_id, passkey.public_key]


def test_export_holds_the_account_and_no_secret_or_hash(
    client: TestClient, transport: RecordingTransport, clock: FakeClock
) -> None:
    secrets = two_devices(client, transport)
    secrets += factor_and_app(client, transport, clock)
    secrets += a_passkey(client)
    hashes = stored_hashes(client)
    assert len(hashes) >= 5 + 1 + 10 + 1 + 2
    response = client.get("/api/account/export")
    assert response.status_code == 200
    assert response.headers["content-disposition"].startswith("attachment;")
    assert response.headers["cache-control"] == "no-store"
    data = response.json()
    assert data["account"]["email"] == EMAIL
    assert len(data["sessions"]) == 2
    assert {s["device"] for s in data["sessions"]} == {"", "Safari on iPhone"}
    assert len(data["known_devices"]) == 2 and len(data["new_device_notices"]) == 1
    assert len(data["sign_in_attempts"]) == 2
    # The factors by name and date, the apps by what was allowed and when.
    [factor] = data["factors"]
    assert factor["method"] == "totp" and factor["name"] == "an authenticator app"
    assert factor["created_at"] and factor["confirmed_at"]
    assert len(data["recovery_codes"]) == 10
    assert set(data["recovery_codes"][0]) == {"created_at", "used_at"}
    # Passkeys by name and dates only.
    [passkey] = data["passkeys"]
    assert passkey["name"] == "Work laptop" and passkey["created_at"]
    assert set(passkey) == {"name", "created_at", "last_used_at"}
    assert data["account"]["second_factors"] == ["totp", "passkey", "recovery_code"]
    [consent] = data["app_consents"]
    assert consent["app"] == "Wiki" and consent["scope"] == "openid email"
    [grant] = data["app_sign_ins"]
    assert grant["app"] == "Wiki" and grant["code_used_at"] and grant["revoked_at"] is None
    text = response.text
    secrets.append(app_state_of(client).settings.secret_key.hex())
    for secret in [*secrets, *hashes]:
        assert secret not in text
        # Nor a large piece of one (a signature, a hash prefix).
        assert secret[-20:] not in text
    assert "hash" not in text


def test_export_needs_a_sign_in(client: TestClient) -> None:
    assert client.get("/api/account/export").status_code == 401


def test_delete_needs_a_recent_step(
    client: TestClient, transport: RecordingTransport, clock: FakeClock
) -> None:
    sign_in(client, transport, EMAIL)
    clock.advance(11 * 60)
    response = client.request("DELETE", "/api/account", json={"confirm": EMAIL})
    assert response.status_code == 403
    # No second factor: no method to step up with, so a new sign-in is the step.
    assert response.json()["error"]["code"] == "step_up_required"
    assert response.json()["error"]["methods"] == []
    assert client.get("/api/session").status_code == 200
    page = client.get("/account/delete", follow_redirects=False)
    assert page.status_code == 303
    assert page.headers["location"] == "/login/step-up?next=%2Faccount%2Fdelete"


def test_with_an_authenticator_app_a_step_up_on_the_same_session_allows_deletion(
    client: TestClient, transport: RecordingTransport, clock: FakeClock
) -> None:
    sign_in(client, transport, EMAIL)
    secret, _ = enrol(client, clock)
    session_id = client.get("/api/session").json()["session"]["id"]
    clock.advance(11 * 60)
    refused = client.request("DELETE", "/api/account", json={"confirm": EMAIL})
    assert refused.status_code == 403
    assert refused.json()["error"]["methods"] == ["totp"]
    stepped = client.post("/api/step-up", json={"method": "totp", "code": code_now(secret, clock)})
    assert stepped.status_code == 200, stepped.text
    # The same session, raised in place: no new sign-in was needed.
    assert client.get("/api/session").json()["session"]["id"] == session_id
    assert client.request("DELETE", "/api/account", json={"confirm": EMAIL}).status_code == 204


def test_delete_needs_the_typed_address(client: TestClient, transport: RecordingTransport) -> None:
    sign_in(client, transport, EMAIL)
    for body in ({"confirm": "bob@example.com"}, {}):
        response = client.request("DELETE", "/api/account", json=body)
        assert response.status_code == 400
    assert client.get("/api/session").status_code == 200


def test_a_sign_in_completed_by_enrolment_records_its_device(
    make_client: ClientFactory, transport: RecordingTransport, clock: FakeClock
) -> None:
    with make_client(REQUIRE_SECOND_FACTOR="all") as client:
        assert first_step(client, transport, EMAIL).json()["next_step"] == "enrol_second_factor"
        secret = client.post("/api/second-factor/enrol", json={}).json()["secret"]
        done = client.post(
            "/api/second-factor/enrol/confirm", json={"code": code_now(secret, clock)}
        )
        assert done.status_code == 200, done.text
        user_id = client.get("/api/session").json()["user"]["id"]
        # Where it signed in is known, so a later sign-in elsewhere gets its notice.
        assert len(rows(client, "SELECT * FROM known_devices WHERE user_id = ?", user_id)) == 1


# Tables that hold nothing of a person: the schema's versions and the registered apps.
NOT_PERSONAL = {"schema_version", "oauth_clients"}
# The audit log keeps the person's events, naming them by id only (docs/design.md §14).
KEPT = {"audit_events"}


def test_delete_removes_every_row_of_the_person_and_ends_every_session(
    client: TestClient, transport: RecordingTransport, clock: FakeClock
) -> None:
    two_devices(client, transport)
    factor_and_app(client, transport, clock)
    a_passkey(client)
    user_id = client.get("/api/session").json()["user"]["id"]
    refresh, access = client.cookies["latch_refresh"], client.cookies["latch_session"]
    tables = [
        name
        for (name,) in rows(client, "SELECT name FROM sqlite_master WHERE type = 'table'")
        if not name.startswith("sqlite_")
    ]
    # The person's rows reach every table but the two that are not theirs.
    assert {t for t in tables if rows(client, f"SELECT 1 FROM {t}")} >= {
        "users",
        "sessions",
        "totp_factors",
        "recovery_codes",
        "oauth_grants",
        "oauth_consents",
        "known_devices",
        "device_notices",
        "passkeys",
        "webauthn_challenges",
    }
    response = client.request("DELETE", "/api/account", json={"confirm": " ADA@example.com "})
    assert response.status_code == 204
    # Every table, including any a later migration adds, is empty but those; the audit log
    # keeps its events without the address.
    for table in tables:
        if table not in NOT_PERSONAL | KEPT:
            assert rows(client, f"SELECT * FROM {table}") == [], table
    events = rows(client, "SELECT * FROM audit_events")
    assert events and "ada@" not in repr(events).lower()
    # The browser's cookies are cleared; the tokens it held are refused everywhere.
    assert client.get("/auth/check").status_code == 401
    bearer = {"authorization": f"Bearer {access}"}
    assert client.get("/auth/check", headers=bearer).status_code == 401
    client.cookies.set("latch_refresh", refresh)
    assert client.post("/api/refresh").status_code == 401
    # The address can start over, as a new person.
    again = sign_in(client, transport, EMAIL)
    assert again["user"]["id"] != user_id
