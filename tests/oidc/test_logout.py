"""RP-initiated logout (docs/design.md §13): an ID token naming the current session ends it
at once; otherwise the person confirms; the browser returns only to a registered address."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from starlette.testclient import TestClient

from service.oidc.clients import Client
from tests.conftest import ClientFactory, RecordingTransport
from tests.support.oidc import (
    app_target,
    auth_params,
    exchange,
    query_of,
    register,
    sign_in_through_pages,
)
from tests.support.web import csrf_of

EMAIL = "sami@example.com"
AFTER = "http://127.0.0.1:9/signed-out"


@pytest.fixture
def browser(make_client: ClientFactory) -> Iterator[TestClient]:
    with make_client() as client:
        yield client


def id_token(browser: TestClient, transport: RecordingTransport) -> tuple[Client, str]:
    """A signed-in browser, and an ID token of its session for a first-party app."""
    client, secret = register(browser, first_party=True, post_logout_redirect_uris=[AFTER])
    answer = browser.get("/oauth/authorize", params=auth_params(client), follow_redirects=False)
    back = sign_in_through_pages(browser, transport, answer.headers["location"], EMAIL)
    code = query_of(app_target(back))["code"]
    token: str = exchange(browser, client, secret, code).json()["id_token"]
    return client, token


def signed_in(browser: TestClient) -> bool:
    return browser.get("/api/session").status_code == 200


def test_hint_of_the_current_session_ends_it_and_returns_with_state(
    browser: TestClient, transport: RecordingTransport
) -> None:
    client, hint = id_token(browser, transport)
    params = {"id_token_hint": hint, "post_logout_redirect_uri": AFTER, "state": "bye"}
    answer = browser.get("/oauth/logout", params=params, follow_redirects=False)
    assert answer.status_code == 303
    assert answer.headers["location"] == f"{AFTER}?state=bye"
    assert not signed_in(browser)
    del client


def test_without_a_hint_the_person_confirms(
    browser: TestClient, transport: RecordingTransport
) -> None:
    client, _ = id_token(browser, transport)
    params = {"client_id": client.id, "post_logout_redirect_uri": AFTER}
    page = browser.get("/oauth/logout", params=params, follow_redirects=False)
    assert page.status_code == 200 and "Sign out" in page.text
    assert signed_in(browser)  # a link on another site cannot sign anyone out
    done = browser.post(
        "/oauth/logout",
        data={**params, "csrf": csrf_of(page), "state": "", "decision": "logout"},
        follow_redirects=False,
    )
    assert done.status_code == 303 and done.headers["location"] == AFTER
    assert not signed_in(browser)


def test_unregistered_post_logout_address_gets_an_error_page(
    browser: TestClient, transport: RecordingTransport
) -> None:
    _, hint = id_token(browser, transport)
    params = {"id_token_hint": hint, "post_logout_redirect_uri": "https://evil.example.com/"}
    answer = browser.get("/oauth/logout", params=params, follow_redirects=False)
    assert answer.status_code == 400 and "location" not in answer.headers
    assert signed_in(browser)


def test_a_forged_hint_is_refused(browser: TestClient, transport: RecordingTransport) -> None:
    _, hint = id_token(browser, transport)
    head, body, signature = hint.split(".")
    forged = f"{head}.{body}.{signature[::-1]}"
    answer = browser.get("/oauth/logout", params={"id_token_hint": forged})
    assert answer.status_code == 400
    assert signed_in(browser)
