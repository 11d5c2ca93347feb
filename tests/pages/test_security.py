"""Second factors through the pages (docs/design.md §11): set up an authenticator app from the
QR code the page draws, save the recovery codes, step up, and sign in with the second step."""

from __future__ import annotations

import html
import re
from pathlib import Path
from urllib.parse import unquote

import httpx2
from starlette.testclient import TestClient

from tests.conftest import ClientFactory, FakeClock, RecordingTransport, mail_code
from tests.support.otp import (
    next_signin_mail,
    oathtool,
    secret_of,
    signin_mails,
    svg_png,
    zbarimg,
)
from tests.support.web import csrf_of, hidden, post_form, sign_in_html, start_html
from tests.web.test_security import assert_page_headers

EMAIL = "hana@example.com"


def enrol_page(client: TestClient) -> httpx2.Response:
    security = client.get("/account/security")
    assert "Set up an authenticator app" in security.text
    page = post_form(client, "/account/totp", token=csrf_of(security))
    assert page.status_code == 200, page.text
    return page


def qr_uri(page: httpx2.Response, tmp_path: Path) -> str:
    svg = re.search(r"<svg .*?</svg>", page.text, re.S)
    assert svg, "no inline QR code on the page"
    return zbarimg(svg_png(svg.group(0), tmp_path / "qr.png"))


def enrol(client: TestClient, clock: FakeClock, tmp_path: Path) -> tuple[str, list[str]]:
    page = enrol_page(client)
    secret = secret_of(qr_uri(page, tmp_path))
    done = post_form(
        client,
        "/account/totp/confirm",
        {"code": oathtool(secret, int(clock()))},
        token=csrf_of(page),
    )
    assert done.status_code == 200, done.text
    clock.advance(30)
    codes = re.findall(r"<li><code>([0-9a-z]{5}-[0-9a-z]{5})</code></li>", done.text)
    return secret, codes


def first_step_html(client: TestClient, transport: RecordingTransport) -> httpx2.Response:
    client.cookies.clear()
    before = len(signin_mails(transport, EMAIL))
    start_html(client, EMAIL, "/account")
    code = mail_code(next_signin_mail(transport, EMAIL, before))
    page = client.get("/login/code")
    return post_form(client, "/login/code", {"code": code}, token=csrf_of(page))


def test_the_setup_page_draws_a_qr_code_of_the_uri_and_the_grouped_secret(
    client: TestClient, transport: RecordingTransport, tmp_path: Path
) -> None:
    sign_in_html(client, transport, EMAIL)
    page = enrol_page(client)
    uri = qr_uri(page, tmp_path)
    assert uri.startswith("otpauth://totp/Latch:hana@example.com?secret=")
    assert uri.endswith("&issuer=Latch")
    secret = secret_of(uri)
    assert " ".join(secret[i : i + 4] for i in range(0, 32, 4)) in page.text
    link = re.search(r'href="(otpauth://[^"]+)" id="otpauth-link"', page.text)
    assert link and html.unescape(link[1]) == uri
    assert page.headers["cache-control"] == "no-store"
    assert 'autocomplete="one-time-code"' in page.text and "<script>" not in page.text


def test_confirming_shows_the_codes_once_to_save_then_the_secret_is_gone(
    client: TestClient, transport: RecordingTransport, clock: FakeClock, tmp_path: Path
) -> None:
    sign_in_html(client, transport, EMAIL)
    page = enrol_page(client)
    secret = secret_of(qr_uri(page, tmp_path))
    wrong = post_form(client, "/account/totp/confirm", {"code": "000000"}, token=csrf_of(page))
    assert wrong.status_code == 400 and "not right" in wrong.text
    assert secret_of(qr_uri(wrong, tmp_path)) == secret  # the same setup, shown again
    done = post_form(
        client,
        "/account/totp/confirm",
        {"code": oathtool(secret, int(clock()))},
        token=csrf_of(page),
    )
    codes = re.findall(r"<li><code>([0-9a-z]{5}-[0-9a-z]{5})</code></li>", done.text)
    assert len(codes) == 10
    download = re.search(r'href="data:text/plain;charset=utf-8,([^"]+)"', done.text)
    assert download and all(c in unquote(html.unescape(download[1])) for c in codes)
    assert 'type="checkbox" name="saved" value="1" required' in done.text
    # "Copy codes" waits for static/app.js (hidden without script); nothing inline for the CSP.
    assert '<button type="button" class="quiet" id="copy-codes" hidden>Copy codes</button>' in (
        done.text
    )
    assert_page_headers(done)
    for path in ("/account", "/account/security"):
        later = client.get(path).text
        assert secret not in later and codes[0] not in later
    assert "10</strong> left" in client.get("/account/security").text


def test_the_second_step_page_takes_the_app_or_a_recovery_code(
    client: TestClient, transport: RecordingTransport, clock: FakeClock, tmp_path: Path
) -> None:
    sign_in_html(client, transport, EMAIL)
    secret, codes = enrol(client, clock, tmp_path)
    first = first_step_html(client, transport)
    assert first.headers["location"] == "/login/second-factor"
    page = client.get("/login/second-factor")
    assert "authenticator code" in page.text and "Use a recovery code instead" in page.text
    done = post_form(
        client,
        "/login/second-factor",
        {"method": "totp", "code": oathtool(secret, int(clock()))},
        token=csrf_of(page),
    )
    assert done.status_code == 303 and done.headers["location"] == "/account"
    first_step_html(client, transport)
    page = client.get("/login/second-factor", params={"method": "recovery_code"})
    assert hidden(page, "method") == "recovery_code"
    done = post_form(
        client,
        "/login/second-factor",
        {"method": "recovery_code", "code": codes[1]},
        token=csrf_of(page),
    )
    assert done.status_code == 303
    assert "9</strong> left" in client.get("/account/security").text


def test_an_old_session_is_sent_to_step_up_and_comes_back(
    client: TestClient, transport: RecordingTransport, clock: FakeClock, tmp_path: Path
) -> None:
    sign_in_html(client, transport, EMAIL)
    secret, _ = enrol(client, clock, tmp_path)
    clock.advance(601)
    security = client.get("/account/security")
    sent = post_form(client, "/account/recovery-codes", token=csrf_of(security))
    assert sent.status_code == 303
    assert sent.headers["location"] == "/login/step-up?next=%2Faccount%2Fsecurity"
    page = client.get(sent.headers["location"])
    assert "Confirm it" in page.text and hidden(page, "next") == "/account/security"
    wrong = post_form(
        client,
        "/login/step-up",
        {"method": "totp", "code": "000000", "next": "/account/security"},
        token=csrf_of(page),
    )
    assert wrong.status_code == 400
    done = post_form(
        client,
        "/login/step-up",
        {"method": "totp", "code": oathtool(secret, int(clock())), "next": "/account/security"},
        token=csrf_of(page),
    )
    assert done.status_code == 303 and done.headers["location"] == "/account/security"
    again = post_form(client, "/account/recovery-codes", token=csrf_of(security))
    assert again.status_code == 200 and "Save your recovery codes" in again.text


def test_policy_all_takes_a_new_address_through_setup_before_any_session(
    make_client: ClientFactory, transport: RecordingTransport, clock: FakeClock, tmp_path: Path
) -> None:
    with make_client(REQUIRE_SECOND_FACTOR="all") as client:
        first = first_step_html(client, transport)
        assert first.headers["location"] == "/login/second-factor"
        assert "latch_session" not in client.cookies
        sent = client.get("/login/second-factor", follow_redirects=False)
        assert sent.headers["location"] == "/login/enrol"
        page = client.get("/login/enrol")
        assert (
            client.get("/account", follow_redirects=False).headers["location"].startswith("/login")
        )
        secret = secret_of(qr_uri(page, tmp_path))
        done = post_form(
            client, "/login/enrol", {"code": oathtool(secret, int(clock()))}, token=csrf_of(page)
        )
        assert done.status_code == 200 and "Save your recovery codes" in done.text
        assert 'action="/account"' in done.text  # Continue goes on to `next`
        assert client.get("/account").status_code == 200
