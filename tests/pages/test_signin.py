"""The HTML sign-in: email form, code page, resend, mail status, account page, sign-out."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Sequence
from email.message import EmailMessage

from starlette.testclient import TestClient

from service.app import create_app
from service.delivery.transports import PermanentMailError
from service.settings import Settings
from tests.conftest import (
    BASE_URL,
    ClientFactory,
    Codes,
    FakeClock,
    RecordingTransport,
    mail_code,
    mail_link,
)
from tests.support.wait import eventually
from tests.support.web import (
    code_of_html_start,
    csrf_of,
    post_form,
    sign_in_html,
    start_html,
    wrong_code,
)

EMAIL = "alice@example.com"
IPHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15"
    " (KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1"
)


def test_sign_in_through_the_forms_then_sign_out(
    client: TestClient, transport: RecordingTransport
) -> None:
    page = client.get("/login")
    assert page.status_code == 200
    assert 'type="email"' in page.text and '<label for="email">' in page.text
    started = post_form(client, "/login", {"email": EMAIL, "next": "/account"}, token=csrf_of(page))
    assert started.status_code == 303
    assert started.headers["location"] == "/login/code"
    code_page = client.get("/login/code")
    assert EMAIL in code_page.text
    assert 'autocomplete="one-time-code"' in code_page.text
    assert 'inputmode="numeric"' in code_page.text
    code = mail_code(transport.wait_for(EMAIL))
    done = post_form(client, "/login/code", {"code": code}, token=csrf_of(code_page))
    assert done.status_code == 303
    assert done.headers["location"] == "/account"
    account = client.get("/account")
    assert account.status_code == 200
    assert EMAIL in account.text
    assert "This device" in account.text
    out = post_form(client, "/logout", {"all": "0"}, token=csrf_of(account))
    assert out.status_code == 303 and out.headers["location"] == "/login"
    again = client.get("/account", follow_redirects=False)
    assert again.status_code == 303
    assert again.headers["location"] == "/login?next=/account"


def test_sign_in_clears_the_flow_cookie(client: TestClient, transport: RecordingTransport) -> None:
    done = sign_in_html(client, transport, EMAIL)
    assert done.status_code == 303
    assert "latch_flow" not in client.cookies
    assert client.get("/auth/check").status_code == 200


def test_home_sends_to_login_or_account(client: TestClient, transport: RecordingTransport) -> None:
    assert client.get("/", follow_redirects=False).headers["location"] == "/login"
    sign_in_html(client, transport, EMAIL)
    assert client.get("/", follow_redirects=False).headers["location"] == "/account"


def test_code_page_without_a_flow_goes_back_to_login(client: TestClient) -> None:
    response = client.get("/login/code", follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"] == "/login"


def test_code_post_without_a_flow_explains_and_offers_a_new_start(client: TestClient) -> None:
    response = post_form(client, "/login/code", {"code": "123456"})
    assert response.status_code == 410
    assert 'href="/login"' in response.text


def test_wrong_code_shows_the_page_again_with_tries_left(
    client: TestClient, transport: RecordingTransport
) -> None:
    code = code_of_html_start(client, transport, EMAIL)
    wrong = wrong_code(code)
    response = post_form(client, "/login/code", {"code": wrong})
    assert response.status_code == 400
    assert "4 tries left" in response.text
    assert 'aria-invalid="true"' in response.text
    assert 'role="alert"' in response.text
    assert 'name="code"' in response.text  # the form is still there
    assert post_form(client, "/login/code", {"code": code}).status_code == 303


def test_code_that_is_not_six_digits_is_a_400_page(
    client: TestClient, transport: RecordingTransport
) -> None:
    start_html(client, EMAIL)
    response = post_form(client, "/login/code", {"code": "12ab"})
    assert response.status_code == 400
    assert "6-digit code" in response.text


def test_fifth_wrong_code_ends_the_flow_then_410(
    client: TestClient, transport: RecordingTransport
) -> None:
    code = code_of_html_start(client, transport, EMAIL)
    wrong = wrong_code(code)
    answers = [post_form(client, "/login/code", {"code": wrong}) for _ in range(5)]
    assert [a.status_code for a in answers] == [400] * 5
    assert "Too many wrong codes" in answers[-1].text and 'name="code"' not in answers[-1].text
    dead = post_form(client, "/login/code", {"code": code})
    assert dead.status_code == 410
    assert 'name="code"' not in dead.text and 'href="/login"' in dead.text
    assert client.get("/login/code").status_code == 410


def test_used_flow_code_page_says_so(client: TestClient, transport: RecordingTransport) -> None:
    code = code_of_html_start(client, transport, EMAIL)
    cookie = client.cookies["latch_flow"]
    post_form(client, "/login/code", {"code": code})
    client.cookies.set("latch_flow", cookie)  # a second tab still holding the flow
    again = post_form(client, "/login/code", {"code": code})
    assert again.status_code == 409


def test_expired_code_is_a_410_page(
    client: TestClient, transport: RecordingTransport, clock: FakeClock
) -> None:
    code = code_of_html_start(client, transport, EMAIL)
    clock.advance(601)
    response = post_form(client, "/login/code", {"code": code})
    assert response.status_code == 410
    assert "expired" in response.text


def test_codes_locked_keeps_retry_after(
    make_client: ClientFactory, transport: RecordingTransport
) -> None:
    with make_client(LIMIT_ADDRESS_FAILURES="2") as client:
        code = code_of_html_start(client, transport, EMAIL)
        wrong = wrong_code(code)
        answers = [post_form(client, "/login/code", {"code": wrong}) for _ in range(3)]
        locked = answers[-1]
        assert locked.status_code == 429
        assert int(locked.headers["retry-after"]) > 0
        assert "link" in locked.text


def test_mail_limit_re_renders_the_form_with_429_and_retry_after(
    make_client: ClientFactory, transport: RecordingTransport
) -> None:
    with make_client(LIMIT_MAIL_INTERVAL="30") as client:
        assert start_html(client, EMAIL).status_code == 303
        second = start_html(client, EMAIL)
        assert second.status_code == 429
        assert 0 < int(second.headers["retry-after"]) <= 30
        assert 'name="email"' in second.text and EMAIL in second.text


def test_invalid_address_re_renders_the_form_with_400(client: TestClient) -> None:
    response = start_html(client, "not an address")
    assert response.status_code == 400
    assert 'role="alert"' in response.text and 'aria-invalid="true"' in response.text
    assert not client.cookies.get("latch_flow")


def test_resend_mails_a_new_code_and_the_old_one_stops_working(
    make_client: ClientFactory, transport: RecordingTransport
) -> None:
    with make_client(new_code=Codes()) as client:
        start_html(client, EMAIL)
        first = mail_code(transport.wait_for(EMAIL))
        resent = post_form(client, "/login/resend")
        assert resent.status_code == 303 and resent.headers["location"] == "/login/code?sent=1"
        second = mail_code(transport.wait_for(EMAIL, index=1))
        assert "We sent a new code" in client.get(resent.headers["location"]).text
        assert first != second  # Codes makes them differ: the refusal below is the behaviour
        refused = post_form(client, "/login/code", {"code": first})
        assert refused.status_code == 400 and "That code is not right." in refused.text
        assert post_form(client, "/login/code", {"code": second}).status_code == 303


def test_resend_too_soon_is_a_429_code_page(
    make_client: ClientFactory, transport: RecordingTransport
) -> None:
    with make_client(LIMIT_MAIL_INTERVAL="30") as client:
        start_html(client, EMAIL)
        response = post_form(client, "/login/resend")
        assert response.status_code == 429
        assert "retry-after" in response.headers
        assert 'name="code"' in response.text


def test_the_next_of_the_flow_is_where_sign_in_lands(
    client: TestClient, transport: RecordingTransport
) -> None:
    done = sign_in_html(client, transport, EMAIL, next_url="/x?y=1")
    assert done.headers["location"] == "/x?y=1"


class _FailFirst(RecordingTransport):
    """Refuses the first message for good (a 5xx), delivers the rest."""

    def __init__(self) -> None:
        super().__init__()
        self.refused = 0

    async def send(self, message: EmailMessage, *, sender: str, recipients: Sequence[str]) -> None:
        if not self.refused:
            self.refused += 1
            raise PermanentMailError("550 no such mailbox")
        await super().send(message, sender=sender, recipients=recipients)


class _Held(RecordingTransport):
    """Holds every message until the test releases them (a mail stuck in a queue)."""

    def __init__(self) -> None:
        super().__init__()
        self.released = threading.Event()

    async def send(self, message: EmailMessage, *, sender: str, recipients: Sequence[str]) -> None:
        await asyncio.to_thread(self.released.wait)
        await super().send(message, sender=sender, recipients=recipients)


def _app_client(settings: Settings, transport: RecordingTransport, clock: FakeClock) -> TestClient:
    return TestClient(
        create_app(settings, mail_transport=transport, clock=clock), base_url=BASE_URL
    )


def test_failed_mail_says_so_and_resend_recovers(
    make_settings: Callable[..., Settings], clock: FakeClock
) -> None:
    failing = _FailFirst()
    with _app_client(make_settings(), failing, clock) as client:
        start_html(client, EMAIL)
        # The failure is recorded by a background sender: wait for it (not for time to pass).
        eventually(
            lambda: "could not send" in client.get("/login/code").text,
            "the code page to say the mail could not be sent",
        )
        page = client.get("/login/code")
        assert "could not send" in page.text
        assert 'action="/login/resend"' in page.text
        assert post_form(client, "/login/resend").status_code == 303
        code = mail_code(failing.wait_for(EMAIL))
        assert post_form(client, "/login/code", {"code": code}).status_code == 303


def test_mail_queued_too_long_is_shown_as_not_delivered(
    make_settings: Callable[..., Settings], clock: FakeClock
) -> None:
    held = _Held()
    try:
        with _app_client(make_settings(), held, clock) as client:
            start_html(client, EMAIL)
            assert "are on their way" in client.get("/login/code").text
            clock.advance(121)
            page = client.get("/login/code")
            assert "may not have arrived" in page.text
            assert 'action="/login/resend"' in page.text
            held.released.set()
            assert mail_code(held.wait_for(EMAIL))
    finally:
        held.released.set()


def test_mail_link_points_at_the_link_page(
    client: TestClient, transport: RecordingTransport
) -> None:
    start_html(client, EMAIL)
    assert mail_link(transport.wait_for(EMAIL)).startswith(BASE_URL + "/login/link?t=")
