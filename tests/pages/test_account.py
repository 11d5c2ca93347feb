"""The account page: sessions listed and revoked, sign-out here or everywhere, and an expired
access cookie sent through refresh."""

from __future__ import annotations

from starlette.testclient import TestClient

from tests.conftest import (
    RecordingTransport,
    sign_in,
)
from tests.support.web import (
    csrf_of,
    other_browser,
    post_form,
    sign_in_html,
)

EMAIL = "alice@example.com"
IPHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15"
    " (KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1"
)


def test_account_with_an_expired_access_cookie_goes_through_refresh(
    client: TestClient, transport: RecordingTransport
) -> None:
    sign_in_html(client, transport, EMAIL)
    del client.cookies["latch_session"]  # as the browser holds it after the JWT's 15 minutes
    response = client.get("/account", follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == "/refresh?next=/account"


def _phone_then_here(
    client: TestClient, transport: RecordingTransport, user_agent: str | None = None
) -> dict[str, str]:
    """Sign in on a phone (another browser, through the JSON API), then here through the pages;
    the phone's cookies."""
    with other_browser(client, user_agent):
        sign_in(client, transport, EMAIL)
        phone_cookies = dict(client.cookies)
    sign_in_html(client, transport, EMAIL)
    return phone_cookies


def _phone_session_status(client: TestClient, phone_cookies: dict[str, str]) -> int:
    """What GET /api/session answers the phone now."""
    with other_browser(client):
        client.cookies.update(phone_cookies)
        return client.get("/api/session").status_code


def test_account_lists_sessions_and_revokes_another_one(
    client: TestClient, transport: RecordingTransport
) -> None:
    phone_cookies = _phone_then_here(client, transport, IPHONE)
    account = client.get("/account")
    assert account.text.count('<li class="session') == 2
    assert account.text.count('/revoke"') == 1  # only the other session has a button
    assert "Safari on iPhone" in account.text  # the phone's user agent, in words
    assert "Unknown device" in account.text  # and this one (UA "testclient"), current, first
    assert account.text.index("This device") < account.text.index("Safari on iPhone")
    revoke_path = account.text.split('action="', 2)[1].split('"', 1)[0]
    assert revoke_path.startswith("/account/sessions/")
    done = post_form(client, revoke_path, token=csrf_of(account))
    assert done.status_code == 303 and done.headers["location"] == "/account?revoked=1"
    assert client.get("/account").text.count('<li class="session') == 1
    assert _phone_session_status(client, phone_cookies) == 401


def test_sign_out_everywhere_ends_every_session(
    client: TestClient, transport: RecordingTransport
) -> None:
    phone_cookies = _phone_then_here(client, transport)
    out = post_form(client, "/logout", {"all": "1"})
    assert out.status_code == 303
    assert "latch_session" not in client.cookies
    assert _phone_session_status(client, phone_cookies) == 401


def test_sign_out_keeps_the_other_sessions(
    client: TestClient, transport: RecordingTransport
) -> None:
    phone_cookies = _phone_then_here(client, transport)
    assert post_form(client, "/logout", {"all": "0"}).status_code == 303
    assert _phone_session_status(client, phone_cookies) == 200


def test_revoke_when_signed_out_goes_to_login(client: TestClient) -> None:
    response = post_form(client, "/account/sessions/abc/revoke")
    assert response.status_code == 303
    assert response.headers["location"] == "/login?next=/account"
