"""Web safety of the pages: `next`, security headers, static files, escaping, no 307."""

from __future__ import annotations

import re

import httpx2
import pytest
from starlette.testclient import TestClient

from tests.conftest import ClientFactory, RecordingTransport, mail_token
from tests.support.web import (
    assert_post_answer,
    hidden,
    post_form,
    sign_in_html,
    start_html,
)

EMAIL = "alice@example.com"

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


def assert_page_headers(response: httpx2.Response) -> None:
    """A page's security headers, and nothing inline for its CSP to block (also used by the
    page tests of pages reached only after a sign-in and setup)."""
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
        assert_page_headers(page)


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
