"""Web safety of the pages: CSRF and request origin, `next`, headers, escaping, no 307."""

from __future__ import annotations

import logging
from collections.abc import Callable

import pytest
from starlette.testclient import TestClient

from tests.conftest import BASE_URL, ClientFactory, RecordingTransport
from tests.support.web import (
    assert_post_answer,
    csrf_of,
    page_token,
    post_form,
    sign_in_html,
    start_html,
)

EMAIL = "alice@example.com"
CONTROL = "control@example.com"


@pytest.fixture
def refusals(caplog: pytest.LogCaptureFixture) -> Callable[[], list[str]]:
    """The reasons service/web/csrf.py logged for the forms it refused, so far."""
    caplog.set_level(logging.DEBUG, logger="latch.csrf")
    return lambda: [
        r.getMessage().removeprefix("form refused: ")
        for r in caplog.records
        if r.name == "latch.csrf" and r.getMessage().startswith("form refused: ")
    ]


def _assert_nothing_mailed_but(transport: RecordingTransport, client: TestClient) -> None:
    """A start after the refused ones: its mail arrives, and it is the only one."""
    assert start_html(client, CONTROL).status_code == 303
    transport.wait_for(CONTROL)
    assert [str(m["To"]) for m in transport.messages] == [CONTROL]


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        ({"Origin": "https://evil.example"}, "foreign Origin"),
        ({"Origin": "http://127.0.0.1:8001"}, "foreign Origin"),
        ({"Sec-Fetch-Site": "cross-site"}, "Sec-Fetch-Site=cross-site"),
        ({"Sec-Fetch-Site": "same-site"}, "Sec-Fetch-Site=same-site"),
        ({"Sec-Fetch-Site": "cross-site", "Origin": BASE_URL}, "Sec-Fetch-Site=cross-site"),
    ],
)
def test_login_post_from_another_site_is_refused_and_mails_nothing(
    client: TestClient,
    transport: RecordingTransport,
    refusals: Callable[[], list[str]],
    headers: dict[str, str],
    reason: str,
) -> None:
    token = page_token(client)
    data = {"email": EMAIL, "next": "/account"}
    response = post_form(client, "/login", data, token=token, headers=headers)
    assert response.status_code == 403
    assert refusals() == [reason]  # refused for where it came from, though its token is good
    assert "did not come from this site" in response.text
    assert "latch_flow" not in client.cookies
    _assert_nothing_mailed_but(transport, client)


def test_login_post_without_or_with_a_wrong_token_is_refused_and_mails_nothing(
    client: TestClient, transport: RecordingTransport, refusals: Callable[[], list[str]]
) -> None:
    page_token(client)  # the browser has its cookie
    data = {"email": EMAIL, "next": "/account"}
    missing = client.post("/login", data=data, follow_redirects=False)
    wrong = post_form(client, "/login", data, token="0" * 64)
    assert (missing.status_code, wrong.status_code) == (403, 403)
    assert refusals() == ["CSRF cookie or field missing", "CSRF field does not match"]
    _assert_nothing_mailed_but(transport, client)


def test_token_from_another_browser_is_refused(
    client: TestClient, transport: RecordingTransport, refusals: Callable[[], list[str]]
) -> None:
    token = page_token(client)
    client.cookies.clear()
    page_token(client)  # a new cookie, so the old field no longer matches
    response = post_form(client, "/login", {"email": EMAIL}, token=token)
    assert response.status_code == 403
    assert refusals() == ["CSRF field does not match"]


def test_token_without_its_cookie_is_refused(
    client: TestClient, refusals: Callable[[], list[str]]
) -> None:
    token = page_token(client)
    client.cookies.clear()
    assert post_form(client, "/login", {"email": EMAIL}, token=token).status_code == 403
    assert refusals() == ["CSRF cookie or field missing"]


def test_same_origin_post_with_origin_null_is_accepted(
    client: TestClient, transport: RecordingTransport
) -> None:
    # What a real browser sends on a same-origin form post under Referrer-Policy: no-referrer.
    headers = {"Origin": "null", "Sec-Fetch-Site": "same-origin"}
    response = post_form(client, "/login", {"email": EMAIL}, headers=headers)
    assert response.status_code == 303
    assert transport.wait_for(EMAIL)


def test_own_origin_without_fetch_metadata_is_accepted(client: TestClient) -> None:
    response = post_form(client, "/login", {"email": EMAIL}, headers={"Origin": BASE_URL})
    assert response.status_code == 303


@pytest.mark.parametrize(
    "path", ["/login/code", "/login/resend", "/login/link", "/logout", "/account/sessions/x/revoke"]
)
def test_every_form_post_needs_the_token_and_the_origin(
    client: TestClient,
    transport: RecordingTransport,
    refusals: Callable[[], list[str]],
    path: str,
) -> None:
    sign_in_html(client, transport, EMAIL)
    start_html(client, EMAIL)  # a pending flow, so code and resend have something to act on
    assert refusals() == []
    no_token = client.post(path, data={"code": "123456", "t": "x"}, follow_redirects=False)
    assert_post_answer(no_token)
    assert no_token.status_code == 403
    cross = post_form(client, path, {"t": "x"}, headers={"Sec-Fetch-Site": "cross-site"})
    assert cross.status_code == 403
    assert refusals() == ["CSRF cookie or field missing", "Sec-Fetch-Site=cross-site"]
    assert client.get("/account").status_code == 200  # still signed in: nothing happened


def test_forms_work_under_https_with_a_host_prefixed_csrf_cookie(
    make_client: ClientFactory, transport: RecordingTransport
) -> None:
    with make_client(PUBLIC_URL="https://localhost:8443") as client:
        client.base_url = "https://localhost:8443"
        page = client.get("/login")
        cookie = next(
            c for c in page.headers.get_list("set-cookie") if c.startswith("__Host-latch_csrf=")
        )
        assert "HttpOnly" in cookie and "Secure" in cookie and "Path=/" in cookie
        assert "samesite=lax" in cookie.lower() and "domain" not in cookie.lower()
        headers = {"Origin": "null", "Sec-Fetch-Site": "same-origin"}
        done = sign_in_html(client, transport, EMAIL)
        assert done.status_code == 303 and done.headers["location"] == "/account"
        assert post_form(client, "/logout", headers=headers).status_code == 303
        foreign = {"Origin": "http://localhost:8443"}  # same host, other scheme: other origin
        assert post_form(client, "/login", {"email": EMAIL}, headers=foreign).status_code == 403


def test_form_value_from_a_page_is_bound_to_the_cookie(client: TestClient) -> None:
    first = csrf_of(client.get("/login"))
    assert csrf_of(client.get("/login")) == first  # the cookie is reused, not replaced
    assert "latch_csrf" in client.cookies
