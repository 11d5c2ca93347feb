"""Changing the address from the account page (service/pages/account_address.py,
service/signin/address.py, service/store/address_changes.py), through the forms of a running
app with a recording mail transport."""

from __future__ import annotations

import re
from email.message import EmailMessage

import httpx2
from starlette.testclient import TestClient

from tests.conftest import (
    ClientFactory,
    Codes,
    FakeClock,
    RecordingTransport,
    mail_code,
    mail_token,
    sign_in,
    text_of,
)
from tests.support.web import csrf_of, other_browser, post_form, sign_in_html, wrong_code

ADA, NEW, BOB = "ada@example.com", "ada.lovelace@example.com", "bob@example.com"


def ask(client: TestClient, new_email: str) -> httpx2.Response:
    """The new-address form, filled and sent."""
    page = client.get("/account/email")
    assert page.status_code == 200, page.text
    return post_form(client, "/account/email", {"email": new_email}, token=csrf_of(page))


def confirm(client: TestClient, code: str) -> httpx2.Response:
    page = client.get("/account/email/confirm")
    return post_form(client, "/account/email/confirm", {"code": code}, token=csrf_of(page))


def change_link(message: EmailMessage) -> str:
    match = re.search(r"/account/email/link\?t=(\S+)", text_of(message))
    assert match, text_of(message)
    return match.group(1)


def mails_to(transport: RecordingTransport, to: str) -> list[EmailMessage]:
    return [m for m in transport.messages if str(m["To"]) == to]


def test_the_code_moves_the_account_keeping_its_sessions_and_tells_the_old_address(
    client: TestClient, transport: RecordingTransport
) -> None:
    with other_browser(client):
        sign_in(client, transport, ADA)
        phone = dict(client.cookies)
    sign_in_html(client, transport, ADA)
    user_id = client.get("/api/session").json()["user"]["id"]
    asked = ask(client, NEW)
    assert asked.status_code == 303 and asked.headers["location"] == "/account/email/confirm"
    message = transport.wait_for(NEW)
    assert str(message["Subject"]).startswith("Confirm your new address")
    assert "a•••@example.com" in client.get("/account/email/confirm").text
    done = confirm(client, mail_code(message))
    assert done.status_code == 303
    assert done.headers["location"] == "/refresh?next=%2Faccount%3Fchanged%3D1"
    account = client.get(done.headers["location"])
    assert NEW in account.text and "Your address has changed" in account.text
    # The old address is told, with the new one masked.
    notice = transport.wait_for(ADA, index=2)
    assert str(notice["Subject"]).startswith("The address of your")
    assert "a•••@example.com" in text_of(notice) and NEW not in text_of(notice)
    # Sessions continue: the phone is still signed in, now as the new address.
    with other_browser(client):
        client.cookies.update(phone)
        assert client.get("/api/session").json()["user"] == {"id": user_id, "email": NEW}
        # The new address signs in to the same account; the old one starts a new person.
        assert sign_in(client, transport, NEW)["user"]["id"] == user_id
        assert sign_in(client, transport, ADA)["user"]["id"] != user_id


def test_changing_the_address_needs_a_recent_step(
    client: TestClient, transport: RecordingTransport, clock: FakeClock
) -> None:
    sign_in_html(client, transport, ADA)
    token = csrf_of(client.get("/account"))
    clock.advance(11 * 60)
    page = client.get("/account/email", follow_redirects=False)
    assert page.status_code == 303
    assert page.headers["location"] == "/login/step-up?next=%2Faccount%2Femail"
    posted = post_form(client, "/account/email", {"email": NEW}, token=token)
    assert posted.status_code == 303
    assert posted.headers["location"] == "/login/step-up?next=%2Faccount%2Femail"
    assert mails_to(transport, NEW) == []
    # Without a second factor, step-up is a fresh emailed code: the page says so.
    step_up = client.get(page.headers["location"])
    assert 'href="/login?next=/account/email"' in step_up.text
    # A new sign-in is recent again.
    sign_in_html(client, transport, ADA)
    assert ask(client, NEW).status_code == 303


def test_a_taken_address_is_mailed_like_any_other_and_refused_only_to_the_code_holder(
    client: TestClient, transport: RecordingTransport
) -> None:
    with other_browser(client):
        bob_id = sign_in(client, transport, BOB)["user"]["id"]
    sign_in_html(client, transport, ADA)
    free, taken = ask(client, NEW), ask(client, BOB)
    assert (free.status_code, free.headers["location"]) == (
        taken.status_code,
        taken.headers["location"],
    )
    message = transport.wait_for(BOB, index=1)
    refused = confirm(client, mail_code(message))
    assert refused.status_code == 409
    assert "already has an account" in refused.text
    assert client.get("/api/session").json()["user"]["email"] == ADA
    with other_browser(client):
        assert sign_in(client, transport, BOB)["user"]["id"] == bob_id


def test_the_link_works_on_any_device_its_get_changes_nothing_and_it_works_once(
    client: TestClient, transport: RecordingTransport
) -> None:
    sign_in_html(client, transport, ADA)
    ask(client, NEW)
    token = change_link(transport.wait_for(NEW))
    with other_browser(client):
        for _ in range(2):
            page = client.get("/account/email/link", params={"t": token})
            assert page.status_code == 200 and "a•••@example.com" in page.text
        assert mails_to(transport, ADA)[-1]["Subject"].startswith("Sign in")
        form = {"t": token}
        done = post_form(client, "/account/email/link", form, token=csrf_of(page))
        assert done.status_code == 200 and NEW in done.text
        again = post_form(client, "/account/email/link", form, token=csrf_of(page))
        assert again.status_code == 409
    assert client.get("/api/session").json()["user"]["email"] == NEW


def test_a_sign_in_link_cannot_confirm_a_change_nor_a_change_link_sign_in(
    client: TestClient, transport: RecordingTransport
) -> None:
    sign_in_html(client, transport, ADA)
    ask(client, NEW)
    change_token = change_link(transport.wait_for(NEW))
    sign_in_token = mail_token(transport.wait_for(ADA))
    assert client.get("/account/email/link", params={"t": sign_in_token}).status_code == 400
    assert client.post("/api/link", json={"token": change_token}).status_code == 400


def test_five_wrong_codes_end_the_change(
    make_client: ClientFactory, transport: RecordingTransport
) -> None:
    codes = Codes()
    with make_client(new_code=codes) as client:
        sign_in_html(client, transport, ADA)
        ask(client, NEW)
        code = mail_code(transport.wait_for(NEW))
        for left in (4, 3, 2, 1):
            assert f"{left} tr" in confirm(client, wrong_code(code)).text
        assert confirm(client, wrong_code(code)).status_code == 400
        # The right code comes too late: the change is over.
        assert confirm(client, code).status_code == 410
        assert client.get("/api/session").json()["user"]["email"] == ADA


def test_a_change_counts_in_the_new_addresses_mail_limits(
    make_client: ClientFactory, transport: RecordingTransport
) -> None:
    with make_client(LIMIT_MAIL_INTERVAL="60") as client:
        sign_in_html(client, transport, ADA)
        assert ask(client, NEW).status_code == 303
        again = ask(client, NEW)
        assert again.status_code == 429 and "retry-after" in again.headers
        with other_browser(client):
            assert client.post("/api/start", json={"email": NEW}).status_code == 429


def test_the_new_address_must_be_one_plain_address_and_not_the_current_one(
    client: TestClient, transport: RecordingTransport
) -> None:
    sign_in_html(client, transport, ADA)
    for bad in ("ADA@example.com", "not an address", "a@b.com, c@d.com"):
        assert ask(client, bad).status_code == 400
    assert len(transport.messages) == 1
