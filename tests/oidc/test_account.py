"""The OpenID provider and the person's account (docs/design.md §13, §14): an app sees a
changed address at once, and an account's deletion ends what its apps hold."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from starlette.testclient import TestClient

from tests.conftest import ClientFactory, RecordingTransport, mail_code
from tests.oidc.test_flow import first_code, id_claims
from tests.pages.test_account_address import ask, confirm
from tests.support.oidc import exchange, register

EMAIL, NEW = "olga@example.com", "olga.new@example.com"


@pytest.fixture
def browser(make_client: ClientFactory, database_url: str) -> Iterator[TestClient]:
    # On SQLite and on PostgreSQL: the address is read by a join on both.
    with make_client(database_url=database_url) as client:
        yield client


def refresh(browser: TestClient, client_id: str, secret: str, token: str) -> dict[str, str]:
    answer = browser.post(
        "/oauth/token",
        data={"grant_type": "refresh_token", "refresh_token": token},
        auth=(client_id, secret),
    )
    assert answer.status_code == 200, answer.text
    body: dict[str, str] = answer.json()
    return body


def test_after_a_change_of_address_userinfo_and_new_id_tokens_report_the_new_one(
    browser: TestClient, transport: RecordingTransport
) -> None:
    client, secret = register(browser, first_party=True)
    assert secret
    _, answer = first_code(browser, transport, client)
    tokens = exchange(browser, client, secret, answer["code"]).json()
    assert id_claims(browser, tokens["id_token"], client)["email"] == EMAIL
    assert ask(browser, NEW).status_code == 303
    assert confirm(browser, mail_code(transport.wait_for(NEW))).status_code == 303
    # The access token issued before the change: userinfo reads the address now.
    bearer = {"Authorization": f"Bearer {tokens['access_token']}"}
    info = browser.get("/oauth/userinfo", headers=bearer).json()
    assert info["email"] == NEW
    # The next ID token (a refresh) says the new address, for the same subject.
    again = refresh(browser, client.id, secret, tokens["refresh_token"])
    claims = id_claims(browser, again["id_token"], client)
    assert claims["email"] == NEW and claims["sub"] == info["sub"]


def test_deleting_the_account_ends_its_apps_tokens(
    browser: TestClient, transport: RecordingTransport
) -> None:
    client, secret = register(browser, first_party=True)
    assert secret
    _, answer = first_code(browser, transport, client)
    tokens = exchange(browser, client, secret, answer["code"]).json()
    assert browser.request("DELETE", "/api/account", json={"confirm": EMAIL}).status_code == 204
    bearer = {"Authorization": f"Bearer {tokens['access_token']}"}
    assert browser.get("/oauth/userinfo", headers=bearer).status_code == 401
    refused = browser.post(
        "/oauth/token",
        data={"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]},
        auth=(client.id, secret),
    )
    assert refused.json()["error"] == "invalid_grant"
