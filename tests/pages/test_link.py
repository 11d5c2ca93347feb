"""The magic link in a browser: GET shows, only POST consumes; failures explain themselves."""

from __future__ import annotations

import logging
import time

import httpx2
import pytest
from itsdangerous import TimestampSigner, URLSafeTimedSerializer
from starlette.testclient import TestClient

from service.crypto import Keys
from service.web.state import app_state_of
from tests.conftest import ClientFactory, FakeClock, RecordingTransport, mail_token, start
from tests.support.web import csrf_of, other_browser, post_form, start_html

EMAIL = "alice@example.com"
INVALID = "This sign-in link is not valid"


def _link_page(client: TestClient, token: str) -> httpx2.Response:
    return client.get("/login/link", params={"t": token})


def _follow_link(client: TestClient, token: str) -> httpx2.Response:
    """What a click does: GET the page, press its one button."""
    page = client.get("/login/link", params={"t": token})
    assert page.status_code == 200, page.text
    return post_form(client, "/login/link", {"t": token}, token=csrf_of(page))


def test_link_page_shows_the_masked_address_and_consumes_nothing(
    client: TestClient, transport: RecordingTransport
) -> None:
    start_html(client, EMAIL)
    token = mail_token(transport.wait_for(EMAIL))
    with other_browser(client):
        for _ in range(2):  # a mail scanner, then the person
            page = client.get("/login/link", params={"t": token})
            assert page.status_code == 200
            assert "Continue signing in as" in page.text
            assert "a•••@example.com" in page.text
            assert EMAIL not in page.text
            assert page.headers["referrer-policy"] == "no-referrer"
        done = post_form(client, "/login/link", {"t": token}, token=csrf_of(page))
        assert done.status_code == 303
        assert done.headers["location"] == "/account"
        assert EMAIL in client.get("/account").text


def test_link_works_in_a_browser_that_never_saw_the_flow(
    client: TestClient, transport: RecordingTransport
) -> None:
    start(client, EMAIL, next="/welcome")
    token = mail_token(transport.wait_for(EMAIL))
    with other_browser(client):
        done = _follow_link(client, token)
        assert done.status_code == 303 and done.headers["location"] == "/welcome"
        assert client.get("/auth/check").status_code == 200


def test_second_post_of_a_link_is_refused(
    client: TestClient, transport: RecordingTransport
) -> None:
    start_html(client, EMAIL)
    token = mail_token(transport.wait_for(EMAIL))
    with other_browser(client):
        page = _link_page(client, token)
        first = post_form(client, "/login/link", {"t": token}, token=csrf_of(page))
        assert first.status_code == 303
        again = post_form(client, "/login/link", {"t": token}, token=csrf_of(page))
        assert again.status_code == 409
        assert "already been used" in again.text and 'href="/login"' in again.text
        shown = _link_page(client, token)
        assert shown.status_code == 409 and "already been used" in shown.text


def test_tampered_truncated_and_foreign_tokens_all_read_invalid_link(
    client: TestClient, transport: RecordingTransport, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="latch.flows")
    start_html(client, EMAIL)
    token = mail_token(transport.wait_for(EMAIL))
    login = app_state_of(client).login
    # Not the last character: of a 43-character base64 signature its low 2 bits are padding,
    # so changing only them (B -> A) would leave the signature valid.
    flipped = token[:-2] + ("A" if token[-2] != "A" else "B") + token[-1]
    unknown_flow = login.links.dumps("0" * 32, "x" * 43)  # genuine signature, no such flow
    # Each forgery with the reason it is refused for: the signature (with its timestamp) does
    # not check out. A form field over the length limit is refused before it is even read.
    forgeries = [
        (flipped, ["BadTimeSignature"] * 2),
        (token[:-6], ["BadTimeSignature"] * 2),
        (token[: len(token) // 2], ["BadSignature"] * 2),
        ("garbage", ["BadSignature"] * 2),
        ("a.b.c", ["BadTimeSignature"] * 2),
        ("x" * 3000, ["BadSignature"]),
    ]
    for i, (bad, expected) in enumerate(forgeries):
        caplog.clear()
        page = _link_page(client, bad)
        assert page.status_code == 400, i
        assert INVALID in page.text and 'href="/login"' in page.text
        posted = post_form(client, "/login/link", {"t": bad})
        assert posted.status_code == 400 and INVALID in posted.text
        # Refused by the signature check (the reason is logged for operators only), on GET
        # and on POST alike: not by a lookup that a forged token should never reach.
        reasons = [r.getMessage() for r in caplog.records if r.name == "latch.flows"]
        assert reasons == [f"link refused: {e}" for e in expected], (i, reasons)
    assert _link_page(client, unknown_flow).status_code == 400
    assert INVALID in _link_page(client, unknown_flow).text
    assert client.get("/login/link").status_code == 400
    assert _follow_link(client, token).status_code == 303  # the real one still works


def test_link_of_an_expired_flow_explains_and_offers_a_new_start(
    client: TestClient, transport: RecordingTransport, clock: FakeClock
) -> None:
    start_html(client, EMAIL)
    token = mail_token(transport.wait_for(EMAIL))
    clock.advance(601)  # past CODE_TTL: the flow row is expired
    page = _link_page(client, token)
    assert page.status_code == 410
    assert "expired" in page.text and 'href="/login"' in page.text
    posted = post_form(client, "/login/link", {"t": token})
    assert posted.status_code == 410


def test_link_token_older_than_code_ttl_is_expired_by_its_own_timestamp(
    client: TestClient, transport: RecordingTransport
) -> None:
    start_html(client, EMAIL)
    token = mail_token(transport.wait_for(EMAIL))
    state = app_state_of(client)
    flow_id, secret = state.login.links.loads(token, max_age=600)

    class Earlier(TimestampSigner):
        def get_timestamp(self) -> int:
            return int(time.time()) - 601

    # The same flow and secret, signed with the same key 601 s ago: only the age is wrong,
    # and itsdangerous checks it against the real clock (the flow row itself is still fresh).
    old = URLSafeTimedSerializer(
        Keys.from_secret(state.settings.secret_key).signing, salt="latch.link", signer=Earlier
    )
    stale = old.dumps([flow_id, secret])
    page = _link_page(client, stale)
    assert page.status_code == 410
    assert "expired" in page.text
    assert _follow_link(client, token).status_code == 303


def test_same_browser_setting_refuses_other_browsers_and_accepts_the_asking_one(
    make_client: ClientFactory, transport: RecordingTransport
) -> None:
    with make_client(LINK_SAME_BROWSER="true") as client:
        start_html(client, EMAIL)
        token = mail_token(transport.wait_for(EMAIL))
        with other_browser(client):
            refused = _follow_link(client, token)
            assert refused.status_code == 400
            assert "browser where you asked" in refused.text
        done = _follow_link(client, token)
        assert done.status_code == 303 and done.headers["location"] == "/account"
