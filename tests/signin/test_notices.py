"""New-device notices (service/signin/notices.py, service/store/devices.py): who gets one and
when, through the JSON sign-in of a running app."""

from __future__ import annotations

import re
from email.message import EmailMessage

import pytest
from starlette.testclient import TestClient

from service.signin.notices import network_of
from service.web.state import AppState, app_state_of
from tests.conftest import (
    FakeClock,
    RecordingTransport,
    SettingsFactory,
    mail_code,
    sign_in,
    text_of,
)
from tests.support.usecases import authenticated, run_use_cases
from tests.support.wait import eventually, eventually_async
from tests.support.web import other_browser

EMAIL = "ada@example.com"
FIREFOX = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"
IPHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15"
    " (KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1"
)
NOTICE_SUBJECT = "New sign-in to"


def notices(transport: RecordingTransport, to: str = EMAIL) -> list[EmailMessage]:
    """The new-device notices sent to `to` so far."""
    return [
        m
        for m in transport.messages
        if str(m["To"]) == to and str(m["Subject"]).startswith(NOTICE_SUBJECT)
    ]


def sign_in_as(client: TestClient, transport: RecordingTransport, agent: str) -> None:
    """A whole sign-in from a browser with this User-Agent and none of this one's cookies."""
    with other_browser(client, agent):
        sign_in(client, transport, EMAIL)


def settle(client: TestClient, transport: RecordingTransport) -> None:
    """Wait until every queued mail has been handed to the transport (the notice is queued
    before verify answers, so after this no notice of earlier sign-ins can still arrive)."""
    eventually(lambda: app_state_of(client).mailer.depth == 0, "the mail queue to empty")


def test_a_first_sign_in_gets_no_notice(client: TestClient, transport: RecordingTransport) -> None:
    sign_in_as(client, transport, FIREFOX)
    settle(client, transport)
    assert notices(transport) == []


def test_a_new_device_gets_one_notice_naming_it_and_the_same_device_again_none(
    client: TestClient, transport: RecordingTransport
) -> None:
    sign_in_as(client, transport, FIREFOX)
    sign_in_as(client, transport, IPHONE)
    settle(client, transport)
    [notice] = notices(transport)
    text = text_of(notice)
    assert "Safari on iPhone" in text
    assert re.search(r"/account/not-me\?t=\S+", text)
    sign_in_as(client, transport, IPHONE)
    sign_in_as(client, transport, FIREFOX)
    settle(client, transport)
    assert len(notices(transport)) == 1


def test_a_device_gets_at_most_one_notice_a_day_and_another_after_ninety_days_away(
    client: TestClient, transport: RecordingTransport, clock: FakeClock
) -> None:
    sign_in_as(client, transport, FIREFOX)
    sign_in_as(client, transport, IPHONE)
    settle(client, transport)
    assert len(notices(transport)) == 1
    # Both pairs were last seen more than 90 days ago: each is new again.
    clock.advance(91 * 86400)
    sign_in_as(client, transport, FIREFOX)
    sign_in_as(client, transport, IPHONE)
    settle(client, transport)
    assert len(notices(transport)) == 3


def test_one_device_on_new_networks_gets_one_notice_a_day(
    make_settings: SettingsFactory, transport: RecordingTransport, clock: FakeClock
) -> None:
    async def scenario(state: AppState) -> list[int]:
        async def sign_in_from(ip: str, agent: str) -> None:
            before = len([m for m in transport.messages if "Sign in to" in str(m["Subject"])])
            started = await state.login.start(email=EMAIL, next_url="/", ip=ip, user_agent=agent)
            message = await eventually_async(
                lambda: [m for m in transport.messages if "Sign in to" in str(m["Subject"])][
                    before:
                ],
                "the sign-in mail",
            )
            code = mail_code(message[0])
            authenticated(
                await state.login.verify_code(
                    flow_id=started.flow_id, code=code, ip=ip, user_agent=agent
                )
            )
            await eventually_async(lambda: state.mailer.depth == 0, "the queue to empty")

        counts = []
        await sign_in_from("198.51.100.1", FIREFOX)
        for ip in ("203.0.113.1", "192.0.2.1", "203.0.113.99"):
            await sign_in_from(ip, IPHONE)  # a phone moving between networks
            counts.append(len(notices(transport)))
        clock.advance(86400 + 1)
        await sign_in_from("100.64.0.1", IPHONE)
        counts.append(len(notices(transport)))
        return counts

    # One on the first new network; none for the others that day (203.0.113.99 shares the
    # first one's /24 anyway); the next day, a new network notifies again.
    assert run_use_cases(make_settings(), transport, clock, scenario) == [1, 1, 1, 2]


def test_the_notice_never_quotes_the_user_agents_own_words(
    client: TestClient, transport: RecordingTransport
) -> None:
    sign_in_as(client, transport, FIREFOX)
    sign_in_as(client, transport, "Urgent: call +1 555 0100 now Firefox/1 Windows")
    settle(client, transport)
    [notice] = notices(transport)
    assert "Firefox on Windows" in text_of(notice)
    # The subject and every text part, decoded (not the raw message: its Message-ID and MIME
    # boundary are random digits, which held "555" now and then).
    parts = [p.get_content() for p in notice.walk() if p.get_content_maintype() == "text"]
    assert parts and all("555" not in part for part in [str(notice["Subject"]), *parts])


@pytest.mark.parametrize(
    ("ip", "network"),
    [
        ("203.0.113.77", "203.0.113.0/24"),
        ("2001:db8:1234:5678::1", "2001:db8:1234::/48"),
        ("testclient", "testclient"),
    ],
)
def test_networks_are_ipv4_slash_24_and_ipv6_slash_48(ip: str, network: str) -> None:
    assert network_of(ip) == network
