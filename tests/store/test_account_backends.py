"""The account-security use cases on both backends (SQLite and PostgreSQL): known devices and
notices, the notice's link, a change of address, the export and the deletion (with a passkey)."""

from __future__ import annotations

import re

from starlette.testclient import TestClient

from service.db import Q, UseCase
from service.web.state import app_state_of
from tests.api.test_account import a_passkey, factor_and_app
from tests.conftest import (
    ClientFactory,
    FakeClock,
    RecordingTransport,
    mail_code,
    sign_in,
    text_of,
)
from tests.support.db import run_on
from tests.support.wait import eventually
from tests.support.web import csrf_of, other_browser, post_form

ADA, NEW = "ada@example.com", "ada.byron@example.com"
PHONE = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) Version/17.0 Safari/604.1"


def count_rows(user_id: str) -> UseCase[int]:
    total = 0
    for table in (
        "sessions",
        "known_devices",
        "device_notices",
        "address_changes",
        "totp_factors",
        "recovery_codes",
        "oauth_grants",
        "oauth_consents",
        "passkeys",
        "webauthn_challenges",
        "users",
    ):
        column = "id" if table == "users" else "user_id"
        rows = yield Q(f"SELECT COUNT(*) AS n FROM {table} WHERE {column} = :u", {"u": user_id})
        total += int(rows[0]["n"])
    return total


def settle(client: TestClient) -> None:
    eventually(lambda: app_state_of(client).mailer.depth == 0, "the mail queue to empty")


def test_notice_change_export_and_delete_on_each_backend(
    make_client: ClientFactory, transport: RecordingTransport, clock: FakeClock, database_url: str
) -> None:
    with make_client(database_url=database_url) as client:
        user_id = sign_in(client, transport, ADA)["user"]["id"]
        with other_browser(client, PHONE):
            sign_in(client, transport, ADA)
            settle(client)
            notice = transport.messages[-1]
            match = re.search(r"not-me\?t=(\S+)", text_of(notice))
            assert match
            page = client.get("/account/not-me", params={"t": match.group(1)})
            form = {"t": match.group(1), "all": "0"}
            assert (
                post_form(client, "/account/not-me", form, token=csrf_of(page)).status_code == 200
            )
            assert client.get("/api/session").status_code == 401
        page = client.get("/account/email")
        assert (
            post_form(client, "/account/email", {"email": NEW}, token=csrf_of(page)).status_code
            == 303
        )
        code = mail_code(transport.wait_for(NEW))
        page = client.get("/account/email/confirm")
        done = post_form(client, "/account/email/confirm", {"code": code}, token=csrf_of(page))
        assert done.status_code == 303
        assert client.get("/api/session").json()["user"]["email"] == NEW
        factor_and_app(client, transport, clock)
        a_passkey(client)
        export = client.get("/api/account/export").json()
        assert export["account"]["email"] == NEW and len(export["address_changes"]) == 1
        assert [f["name"] for f in export["factors"]] == ["an authenticator app"]
        assert len(export["recovery_codes"]) == 10 and len(export["app_sign_ins"]) == 1
        assert [p["name"] for p in export["passkeys"]] == ["Work laptop"]
        assert run_on(database_url, count_rows(user_id)) > 0
        assert client.request("DELETE", "/api/account", json={"confirm": NEW}).status_code == 204
        assert run_on(database_url, count_rows(user_id)) == 0
