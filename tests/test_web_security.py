"""Web safety of the pages: CSRF and request origin, `next`, headers, escaping, no 307."""

from __future__ import annotations

import re

import httpx2
import pytest
from starlette.testclient import TestClient

from tests.conftest import BASE_URL, ClientFactory, RecordingTransport, mail_token
from tests.support.web import (
    assert_post_answer,
    csrf_of,
    hidden,
    page_token,
    post_form,
    sign_in_html,
    start_html,
)

EMAIL = "alice@example.com"
CONTROL = "control@example.com"


def _assert_nothing_mailed_but(transport: RecordingTransport, client: TestClient) -> None:
    """A start after the refused ones: its mail arrives, and it is the only one."""
    assert start_html(client, CONTROL).status_code == 303
    transport.wait_for(CONTROL)
    assert [str(m["To"]) for m in transport.messages] == [CONTROL]


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "https://evil.example"},
        {"Origin": "http://127.0.0.1:8001"},
        {"Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "same-site"},
        {"Sec-Fetch-Site": "cross-site", "Origin": BASE_URL},
    ],
)
def test_login_post_from_another_site_is_refused_and_mails_nothing(
    client: TestClient, transport: RecordingTransport, headers: dict[str, str]
) -> None:
    token = page_token(client)
    data = {"email": EMAIL, "next": "/account"}
    response = post_form(client, "/login", data, token=token, headers=headers)
    assert response.status_code == 403
    assert "did not come from this site" in response.text
    assert "latch_flow" not in client.cookies
    _assert_nothing_mailed_but(transport, client)


def test_login_post_without_or_with_a_wrong_token_is_refused_and_mails_nothing(
    client: TestClient, transport: RecordingTransport
) -> None:
    page_token(client)  # the browser has its cookie
    data = {"email": EMAIL, "next": "/account"}
    missing = client.post("/login", data=data, follow_redirects=False)
    wrong = post_form(client, "/login", data, token="0" * 64)
    assert (missing.status_code, wrong.status_code) == (403, 403)
    _assert_nothing_mailed_but(transport, client)


def test_token_from_another_browser_is_refused(
    client: TestClient, transport: RecordingTransport
) -> None:
    token = page_token(client)
    client.cookies.clear()
    page_token(client)  # a new cookie, so the old field no longer matches
    response = post_form(client, "/login", {"email": EMAIL}, token=token)
    assert response.status_code == 403


def test_token_without_its_cookie_is_refused(client: TestClient) -> None:
    token = page_token(client)
    client.cookies.clear()
    assert post_form(client, "/login", {"email": EMAIL}, token=token).status_code == 403


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
    client: TestClient, transport: RecordingTransport, path: str
) -> None:
    sign_in_html(client, transport, EMAIL)
    start_html(client, EMAIL)  # a pending flow, so code and resend have something to act on
    no_token = client.post(path, data={"code": "123456", "t": "x"}, follow_redirects=False)
    assert_post_answer(no_token)
    assert no_token.status_code == 403
    cross = post_form(client, path, {"t": "x"}, headers={"Sec-Fetch-Site": "cross-site"})
    assert cross.status_code == 403
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


HOSTILE_NEXT = [
    "//evil.com",
    "/\\evil.com",
    "https://evil.com\\@ok.example.com",
    "https:evil.com",
    "javascript:alert(1)",
    "https://ok.example.com.evil",
    "https://ok.example.comx",
    "http://ok.example.com/x",
    "https://user@ok.example.com/x",
    "/x\r\nSet-Cookie: a=b",
    "\t/x",
]


@pytest.mark.parametrize("next_url", HOSTILE_NEXT)
def test_hostile_next_lands_on_account(
    make_client: ClientFactory, transport: RecordingTransport, next_url: str
) -> None:
    with make_client(ALLOWED_REDIRECT_ORIGINS="https://ok.example.com") as client:
        page = client.get("/login", params={"next": next_url})
        assert hidden(page, "next") == "/account"
        # A forged form that posts the raw value gets no further than the page's field.
        done = sign_in_html(client, transport, EMAIL, raw_next=next_url)
        assert done.status_code == 303
        assert done.headers["location"] == "/account"


@pytest.mark.parametrize(
    "next_url", ["/x", "/x?a=1#frag", "https://ok.example.com/app", "https://OK.example.com/"]
)
def test_safe_next_is_honoured(
    make_client: ClientFactory, transport: RecordingTransport, next_url: str
) -> None:
    with make_client(ALLOWED_REDIRECT_ORIGINS="https://ok.example.com") as client:
        done = sign_in_html(client, transport, EMAIL, next_url=next_url)
        assert done.headers["location"].lower() == next_url.lower()


def _assert_page_headers(response: httpx2.Response) -> None:
    csp = response.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "style-src 'self'" in csp
    assert "unsafe-inline" not in csp and "frame-ancestors 'none'" in csp
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["referrer-policy"] == "no-referrer"
    assert response.headers["content-type"].startswith("text/html")
    text = response.text
    # Nothing inline for the CSP to block: no style attribute or element, no inline script,
    # no event-handler attribute.
    assert not re.search(r"<style|\sstyle=|<script(?![^>]*\ssrc=)|\son[a-z]+=", text)
    assert "<h1>" in text and '<html lang="en">' in text


def test_every_page_has_the_security_headers(
    client: TestClient, transport: RecordingTransport
) -> None:
    pages = [client.get("/login"), client.get("/nope"), client.get("/login/link?t=bad")]
    start_html(client, EMAIL)
    pages.append(client.get("/login/code"))
    pages.append(client.get("/login/link", params={"t": mail_token(transport.wait_for(EMAIL))}))
    pages.append(post_form(client, "/login", {"email": EMAIL}, token="0" * 64))  # 403 page
    pages.append(post_form(client, "/login/code", {"code": "1"}))  # 400 page
    sign_in_html(client, transport, EMAIL)
    pages.append(client.get("/account"))
    assert [p.status_code for p in pages] == [200, 404, 400, 200, 200, 403, 400, 200]
    for page in pages:
        _assert_page_headers(page)


def test_static_files_are_served_by_latch_and_cached(client: TestClient) -> None:
    page = client.get("/login").text
    for href in re.findall(r'(?:href|src)="(/static/[^"]+)"', page):
        asset = client.get(href)
        assert asset.status_code == 200
        assert "max-age=31536000" in asset.headers["cache-control"]
        assert asset.headers["x-content-type-options"] == "nosniff"
    assert client.get("/static/style.css").headers["content-type"].startswith("text/css")
    assert client.get("/static/nope.css").status_code == 404


def test_addresses_and_query_values_are_escaped(
    client: TestClient, transport: RecordingTransport
) -> None:
    email = "o'neil@example.com"  # the one HTML-special character an address may hold
    sign_in_html(client, transport, email)
    account = client.get("/account")
    assert "o&#39;neil@example.com" in account.text
    assert email not in account.text
    start_html(client, email)
    code_page = client.get("/login/code")
    assert "o&#39;neil@example.com" in code_page.text and email not in code_page.text
    hostile = '/x"><script>alert(1)</script>'
    login = client.get("/login", params={"next": hostile})
    assert "<script>alert" not in login.text
    assert hidden(login, "next") == hostile  # kept as a value, escaped in the markup


def test_hostile_address_is_escaped_when_the_form_comes_back(client: TestClient) -> None:
    response = start_html(client, '"><img src=x onerror=alert(1)>@example.com')
    assert response.status_code == 400
    assert "<img" not in response.text
    assert "&#34;&gt;&lt;img" in response.text


def test_every_post_answers_with_303_or_a_page(
    client: TestClient, transport: RecordingTransport
) -> None:
    # post_form asserts it on every call; here the odd cases: no form at all, bad bodies.
    for path in ("/login", "/login/code", "/login/resend", "/login/link", "/logout"):
        for content, ctype in (
            (b"", "application/x-www-form-urlencoded"),
            (b'{"email": "a@example.com"}', "application/json"),
            (b"--x\r\n", "multipart/form-data; boundary=x"),
        ):
            response = client.post(
                path, content=content, headers={"Content-Type": ctype}, follow_redirects=False
            )
            assert_post_answer(response)
            assert response.status_code in (400, 403), (path, response.status_code)
    assert_post_answer(client.post("/account", follow_redirects=False))


def test_form_value_from_a_page_is_bound_to_the_cookie(client: TestClient) -> None:
    first = csrf_of(client.get("/login"))
    assert csrf_of(client.get("/login")) == first  # the cookie is reused, not replaced
    assert "latch_csrf" in client.cookies
