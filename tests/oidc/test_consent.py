"""Consent for third-party apps, remembered per person, client and scopes, and taken back
under "Apps" on the account page (docs/design.md §13)."""

from __future__ import annotations

from collections.abc import Iterator

import httpx2
import pytest
from starlette.testclient import TestClient

from service.oidc.clients import Client
from tests.conftest import ClientFactory, RecordingTransport
from tests.support.oidc import (
    RP,
    app_target,
    auth_params,
    exchange,
    query_of,
    register,
    sign_in_through_pages,
)
from tests.support.web import csrf_of, hidden

EMAIL = "rosa@example.com"


@pytest.fixture
def browser(make_client: ClientFactory) -> Iterator[TestClient]:
    with make_client() as client:
        yield client


def to_consent(
    browser: TestClient, transport: RecordingTransport, client: Client, **extra: str
) -> httpx2.Response:
    """Authorize (signing in when needed); the consent page Latch shows."""
    answer = browser.get(
        "/oauth/authorize", params=auth_params(client, **extra), follow_redirects=False
    )
    if answer.headers.get("location", "").startswith("/login"):
        answer = sign_in_through_pages(browser, transport, answer.headers["location"], EMAIL)
    assert answer.status_code == 303, (answer.status_code, answer.text[:300])
    assert answer.headers["location"].startswith("/oauth/consent?")
    return browser.get(answer.headers["location"])


def decide(browser: TestClient, page: httpx2.Response, decision: str) -> dict[str, str]:
    answer = browser.post(
        "/oauth/consent",
        data={"csrf": csrf_of(page), "request": hidden(page, "request"), "decision": decision},
        follow_redirects=False,
    )
    assert answer.status_code == 303
    return query_of(answer.headers["location"])


def test_third_party_app_asks_once_and_is_remembered(
    browser: TestClient, transport: RecordingTransport
) -> None:
    client, _ = register(browser, name="Grafana at Example")
    page = to_consent(browser, transport, client)
    assert "Grafana at Example" in page.text and "your email address" in page.text
    # The form may end at this app's origin only (Chrome applies form-action to the redirect).
    assert "form-action http://127.0.0.1:9 'self'" in page.headers["content-security-policy"]
    assert "code" in decide(browser, page, "allow")
    again = browser.get("/oauth/authorize", params=auth_params(client), follow_redirects=False)
    assert again.status_code == 302 and "code" in query_of(again.headers["location"])


def test_asking_for_more_than_was_allowed_asks_again(
    browser: TestClient, transport: RecordingTransport
) -> None:
    client, _ = register(browser)
    decide(browser, to_consent(browser, transport, client, scope="openid"), "allow")
    page = to_consent(browser, transport, client, scope="openid email")
    assert "your email address" in page.text


def test_saying_no_sends_access_denied_with_state(
    browser: TestClient, transport: RecordingTransport
) -> None:
    client, _ = register(browser)
    page = to_consent(browser, transport, client, state="s-123")
    answer = decide(browser, page, "deny")
    assert answer == {
        "error": "access_denied",
        "error_description": "the person said no",
        "state": "s-123",
        "iss": "http://127.0.0.1:8000",
    }


def test_prompt_none_without_consent_answers_consent_required(
    browser: TestClient, transport: RecordingTransport
) -> None:
    client, _ = register(browser)
    to_consent(browser, transport, client)
    answer = browser.get(
        "/oauth/authorize", params=auth_params(client, prompt="none"), follow_redirects=False
    )
    assert query_of(answer.headers["location"])["error"] == "consent_required"


def test_first_party_app_never_asks(browser: TestClient, transport: RecordingTransport) -> None:
    client, _ = register(browser, first_party=True)
    answer = browser.get("/oauth/authorize", params=auth_params(client), follow_redirects=False)
    back = sign_in_through_pages(browser, transport, answer.headers["location"], EMAIL)
    assert "code" in query_of(app_target(back))


def test_removing_an_app_on_the_account_page_ends_its_tokens_and_consent(
    browser: TestClient, transport: RecordingTransport
) -> None:
    client, secret = register(browser, name="Wiki")
    code = decide(browser, to_consent(browser, transport, client), "allow")["code"]
    tokens = exchange(browser, client, secret, code).json()
    account = browser.get("/account")
    assert "<h2>Apps</h2>" in account.text and "Wiki" in account.text
    removed = browser.post(
        f"/account/apps/{client.id}/revoke",
        data={"csrf": csrf_of(account)},
        follow_redirects=False,
    )
    assert removed.status_code == 303
    refreshed = browser.post(
        "/oauth/token",
        data={"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]},
        auth=(client.id, secret or ""),
    )
    assert refreshed.json()["error"] == "invalid_grant"
    bearer = {"Authorization": f"Bearer {tokens['access_token']}"}
    assert browser.get("/oauth/userinfo", headers=bearer).status_code == 401
    assert "Wiki" not in browser.get("/account").text
    to_consent(browser, transport, client)  # asks again
    assert RP  # the app's address is the registered one throughout
