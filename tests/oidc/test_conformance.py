"""Each check of the authorization and token endpoints, one test each (docs/design.md §13):
what must be an error page, what goes back to the app as an error, and what the token endpoint
refuses, in RFC 6749's JSON."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from starlette.testclient import TestClient

from service.oidc.clients import Client
from tests.conftest import BASE_URL, ClientFactory, FakeClock, RecordingTransport
from tests.support.oidc import (
    RP,
    app_target,
    auth_params,
    exchange,
    pkce,
    query_of,
    register,
    sign_in_through_pages,
)

EMAIL = "petra@example.com"


@pytest.fixture
def browser(make_client: ClientFactory) -> Iterator[TestClient]:
    with make_client() as client:
        yield client


def authorize(browser: TestClient, params: dict[str, str]) -> dict[str, str]:
    """The app's answer to an authorization request from a signed-in browser."""
    answer = browser.get("/oauth/authorize", params=params, follow_redirects=False)
    assert answer.status_code == 302, (answer.status_code, answer.text[:300])
    assert answer.headers["location"].startswith(RP + "?")
    return query_of(answer.headers["location"])


def code_for(browser: TestClient, transport: RecordingTransport, params: dict[str, str]) -> str:
    """A code for `params`, signing in through the pages when there is no session yet."""
    answer = browser.get("/oauth/authorize", params=params, follow_redirects=False)
    if answer.status_code == 303:
        answer = sign_in_through_pages(browser, transport, answer.headers["location"], EMAIL)
    return query_of(app_target(answer))["code"]


def signed_in(browser: TestClient, transport: RecordingTransport, client: Client) -> str:
    """Sign in through an authorization request; returns the code."""
    return code_for(browser, transport, auth_params(client))


# --- errors shown on Latch's page, never sent to an unchecked address -------------------------


def test_unknown_client_gets_an_error_page_not_a_redirect(browser: TestClient) -> None:
    client, _ = register(browser, first_party=True)
    params = {**auth_params(client), "client_id": "f" * 32}
    answer = browser.get("/oauth/authorize", params=params, follow_redirects=False)
    assert answer.status_code == 400
    assert "location" not in answer.headers
    assert "not registered" in answer.text


def test_provider_pages_name_the_same_asset_urls_as_the_sign_in_pages(browser: TestClient) -> None:
    # One cache-busting version per file for both surfaces: a brand or stylesheet change
    # reaches the consent and error pages exactly when it reaches /login.
    client, _ = register(browser, first_party=True)
    params = {**auth_params(client), "client_id": "f" * 32}
    provider = browser.get("/oauth/authorize", params=params, follow_redirects=False).text
    login = browser.get("/login").text
    assets = re.compile(r'href="(/static/[^"]+)"')
    assert assets.findall(provider)
    assert set(assets.findall(provider)) <= set(assets.findall(login))


@pytest.mark.parametrize(
    "uri", [RP + "/", RP + "?x=1", "http://127.0.0.1:9/callbac", "https://evil.example.com/cb"]
)
def test_unregistered_redirect_uri_gets_an_error_page(browser: TestClient, uri: str) -> None:
    client, _ = register(browser, first_party=True)
    params = {**auth_params(client), "redirect_uri": uri}
    answer = browser.get("/oauth/authorize", params=params, follow_redirects=False)
    assert answer.status_code == 400
    assert "location" not in answer.headers


def test_redirect_uri_given_twice_gets_an_error_page(browser: TestClient) -> None:
    client, _ = register(browser, first_party=True)
    query = "&".join(f"{k}={v}" for k, v in auth_params(client).items() if k != "scope")
    answer = browser.get(
        f"/oauth/authorize?{query}&scope=openid&redirect_uri=https://evil.example.com/",
        follow_redirects=False,
    )
    assert answer.status_code == 400


# --- errors for the app, at its redirect URI, with state and iss -------------------------------


def test_response_type_other_than_code_is_refused_with_state_and_iss(
    browser: TestClient,
) -> None:
    client, _ = register(browser, first_party=True)
    params = auth_params(client, response_type="token")
    answer = authorize(browser, params)
    assert answer["error"] == "unsupported_response_type"
    assert answer["state"] == params["state"]
    assert answer["iss"] == BASE_URL


def test_scope_without_openid_is_refused(browser: TestClient) -> None:
    client, _ = register(browser, first_party=True)
    assert authorize(browser, auth_params(client, scope="email"))["error"] == "invalid_scope"


def test_public_client_without_pkce_is_refused(browser: TestClient) -> None:
    client, _ = register(browser, first_party=True, public=True)
    answer = authorize(browser, auth_params(client))
    assert answer["error"] == "invalid_request"
    assert "PKCE" in answer["error_description"]


def test_plain_pkce_is_refused(browser: TestClient) -> None:
    client, _ = register(browser, first_party=True, public=True)
    verifier, _ = pkce()
    for method in ({"code_challenge_method": "plain"}, {}):
        params = {**auth_params(client), "code_challenge": verifier[:43], **method}
        assert authorize(browser, params)["error"] == "invalid_request"


def test_prompt_none_without_a_session_answers_login_required(browser: TestClient) -> None:
    client, _ = register(browser, first_party=True)
    params = auth_params(client, prompt="none")
    answer = authorize(browser, params)
    assert answer["error"] == "login_required"
    assert answer["state"] == params["state"]


# --- single sign-on and its limits -------------------------------------------------------------


def test_max_age_zero_forces_a_new_sign_in(
    browser: TestClient, transport: RecordingTransport, clock: FakeClock
) -> None:
    client, _ = register(browser, first_party=True)
    signed_in(browser, transport, client)
    clock.advance(5)
    again = browser.get(
        "/oauth/authorize", params=auth_params(client, max_age="0"), follow_redirects=False
    )
    assert again.status_code == 303 and again.headers["location"].startswith("/login?")
    back = sign_in_through_pages(browser, transport, again.headers["location"], EMAIL)
    assert "code" in query_of(app_target(back))


def test_prompt_login_forces_a_new_sign_in(
    browser: TestClient, transport: RecordingTransport
) -> None:
    client, _ = register(browser, first_party=True)
    signed_in(browser, transport, client)
    again = browser.get(
        "/oauth/authorize", params=auth_params(client, prompt="login"), follow_redirects=False
    )
    assert again.status_code == 303 and again.headers["location"].startswith("/login?")


def test_login_hint_prefills_the_address(browser: TestClient) -> None:
    client, _ = register(browser, first_party=True)
    params = auth_params(client, login_hint="hint@example.com")
    answer = browser.get("/oauth/authorize", params=params, follow_redirects=True)
    assert 'value="hint@example.com"' in answer.text


# --- the token endpoint ------------------------------------------------------------------------


def test_code_used_twice_is_refused_and_revokes_the_first_exchange(
    browser: TestClient, transport: RecordingTransport
) -> None:
    client, secret = register(browser, first_party=True)
    code = signed_in(browser, transport, client)
    first = exchange(browser, client, secret, code).json()
    second = exchange(browser, client, secret, code)
    assert second.status_code == 400
    assert second.json()["error"] == "invalid_grant"
    bearer = {"Authorization": f"Bearer {first['access_token']}"}
    assert browser.get("/oauth/userinfo", headers=bearer).status_code == 401
    refreshed = browser.post(
        "/oauth/token",
        data={"grant_type": "refresh_token", "refresh_token": first["refresh_token"]},
        auth=(client.id, secret or ""),
    )
    assert refreshed.json()["error"] == "invalid_grant"


def test_expired_code_is_refused(
    browser: TestClient, transport: RecordingTransport, clock: FakeClock
) -> None:
    client, secret = register(browser, first_party=True)
    code = signed_in(browser, transport, client)
    clock.advance(61)
    answer = exchange(browser, client, secret, code)
    assert answer.status_code == 400 and answer.json()["error"] == "invalid_grant"


def test_wrong_client_secret_is_refused_as_invalid_client(
    browser: TestClient, transport: RecordingTransport
) -> None:
    client, secret = register(browser, first_party=True)
    code = signed_in(browser, transport, client)
    answer = exchange(browser, client, "not-the-secret", code)
    assert answer.status_code == 401
    assert answer.json()["error"] == "invalid_client"
    assert answer.headers["www-authenticate"].startswith("Basic")
    # The code was not spent by the failed attempt.
    assert exchange(browser, client, secret, code).status_code == 200


def test_client_secret_post_works(browser: TestClient, transport: RecordingTransport) -> None:
    client, secret = register(browser, first_party=True)
    code = signed_in(browser, transport, client)
    answer = browser.post(
        "/oauth/token",
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": RP,
            "client_id": client.id,
            "client_secret": secret or "",
        },
    )
    assert answer.status_code == 200, answer.text


def test_another_clients_code_is_refused(
    browser: TestClient, transport: RecordingTransport
) -> None:
    client, _ = register(browser, first_party=True)
    other, other_secret = register(browser, first_party=True, name="Other")
    code = signed_in(browser, transport, client)
    assert exchange(browser, other, other_secret, code).json()["error"] == "invalid_grant"


def test_wrong_redirect_uri_at_the_token_endpoint_is_refused(
    browser: TestClient, transport: RecordingTransport
) -> None:
    client, secret = register(browser, first_party=True, redirect_uris=[RP, RP + "2"])
    code = signed_in(browser, transport, client)
    answer = exchange(browser, client, secret, code, redirect_uri=RP + "2")
    assert answer.json()["error"] == "invalid_grant"


def test_wrong_or_missing_pkce_verifier_is_refused(
    browser: TestClient, transport: RecordingTransport
) -> None:
    client, _ = register(browser, first_party=True, public=True)
    _, challenge = pkce()
    for sent in ({"code_verifier": pkce()[0]}, {}):
        code = code_for(browser, transport, auth_params(client, challenge))
        refused = exchange(browser, client, None, code, **sent)
        assert refused.json()["error"] == "invalid_grant", refused.text


def test_verifier_for_a_code_issued_without_challenge_is_refused(
    browser: TestClient, transport: RecordingTransport
) -> None:
    client, secret = register(browser, first_party=True)
    code = signed_in(browser, transport, client)
    answer = exchange(browser, client, secret, code, code_verifier=pkce()[0])
    assert answer.json()["error"] == "invalid_grant"


def test_token_endpoint_errors_are_rfc6749_json(browser: TestClient) -> None:
    client, secret = register(browser, first_party=True)
    auth = (client.id, secret or "")
    wrong_grant = browser.post("/oauth/token", data={"grant_type": "password"}, auth=auth)
    assert wrong_grant.status_code == 400
    assert wrong_grant.json()["error"] == "unsupported_grant_type"
    as_json = browser.post("/oauth/token", json={"grant_type": "authorization_code"}, auth=auth)
    assert as_json.status_code == 400
    assert set(as_json.json()) == {"error", "error_description"}
    nobody = browser.post("/oauth/token", data={"grant_type": "authorization_code"})
    assert nobody.status_code == 401 and nobody.json()["error"] == "invalid_client"


@pytest.mark.parametrize("token", ["c\u00f6de", "\u2603" * 43])
def test_a_code_or_token_that_cannot_be_ours_is_a_4xx_not_a_500(
    browser: TestClient, token: str
) -> None:
    # Non-ASCII once crashed the token hash (a 500), reachable with a public client's id.
    client, secret = register(browser, first_party=True)
    auth = (client.id, secret or "")
    body = {"grant_type": "authorization_code", "code": token, "redirect_uri": RP}
    code = browser.post("/oauth/token", data=body, auth=auth)
    assert code.status_code == 400 and code.json()["error"] == "invalid_grant"
    body = {"grant_type": "refresh_token", "refresh_token": token}
    refresh = browser.post("/oauth/token", data=body, auth=auth)
    assert refresh.status_code == 400 and refresh.json()["error"] == "invalid_grant"
    # RFC 7009 §2.2: an invalid token is no error for revocation.
    assert browser.post("/oauth/revoke", data={"token": token}, auth=auth).status_code == 200


def test_refresh_token_rotates_and_a_replayed_one_revokes_the_grant(
    browser: TestClient, transport: RecordingTransport
) -> None:
    client, secret = register(browser, first_party=True)
    first = exchange(browser, client, secret, signed_in(browser, transport, client)).json()
    auth = (client.id, secret or "")

    def refresh(token: str) -> dict[str, str]:
        data = {"grant_type": "refresh_token", "refresh_token": token}
        answer: dict[str, str] = browser.post("/oauth/token", data=data, auth=auth).json()
        return answer

    second = refresh(first["refresh_token"])
    assert second["refresh_token"] != first["refresh_token"]
    assert refresh(first["refresh_token"])["error"] == "invalid_grant"  # replayed: theft
    assert refresh(second["refresh_token"])["error"] == "invalid_grant"  # the grant is gone


def test_revocation_ends_the_grant(browser: TestClient, transport: RecordingTransport) -> None:
    client, secret = register(browser, first_party=True)
    tokens = exchange(browser, client, secret, signed_in(browser, transport, client)).json()
    auth = (client.id, secret or "")
    answer = browser.post("/oauth/revoke", data={"token": tokens["refresh_token"]}, auth=auth)
    assert answer.status_code == 200
    bearer = {"Authorization": f"Bearer {tokens['access_token']}"}
    assert browser.get("/oauth/userinfo", headers=bearer).status_code == 401
    unknown = browser.post("/oauth/revoke", data={"token": "nothing-of-ours"}, auth=auth)
    assert unknown.status_code == 200


def test_signing_out_of_latch_ends_the_apps_tokens(
    browser: TestClient, transport: RecordingTransport
) -> None:
    client, secret = register(browser, first_party=True)
    tokens = exchange(browser, client, secret, signed_in(browser, transport, client)).json()
    assert browser.post("/api/logout", json={}).status_code == 204
    bearer = {"Authorization": f"Bearer {tokens['access_token']}"}
    assert browser.get("/oauth/userinfo", headers=bearer).status_code == 401
