"""Attacks through the address, the User-Agent and the metrics: one group per finding, each test
named after the attack.

1. An address that is not what it seems (RFC 2047 encoded-words, quoted/commented/bracketed
   second addresses, UUCP and percent routing, source routes, punycode, NUL, overflow chars).
2. Plus-addressing spellings each getting their own allowance of mails.
3. Text an attacker writes (the User-Agent) reaching the victim's sign-in mail.
4. /metrics and the code page telling who has an account (ALLOW_SIGNUP=false).
"""

from __future__ import annotations

import asyncio
import logging
import re
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from email.message import EmailMessage
from typing import Any

import pytest
from starlette.testclient import TestClient

from service import store
from service.addresses import parse_email
from service.app import create_app
from service.delivery.mail import MailJob, Renderer
from service.delivery.transports import SmtpTransport
from service.errors import InvalidRequestError
from service.settings import Settings
from service.web.state import app_state_of
from tests.conftest import (
    BASE_URL,
    ClientFactory,
    FakeClock,
    RecordingTransport,
    SettingsFactory,
    start,
    text_of,
)
from tests.support.smtp import SmtpSink, html_part
from tests.support.web import other_browser, start_html

BOSS = "boss@example.com"
ATTACK = "=?iso-8859-1?q?attacker=40evil.example=2c?=boss@example.com"

# Every one of these must be refused: each either smuggles a second recipient past some parser,
# routes the mail elsewhere on some MTA, or is a string that two parsers read differently.
SMUGGLED = [
    # "Splitting the email atom" (PortSwigger 2024): RFC 2047 encoded-words, q and b, charsets.
    ATTACK,
    "=?utf-8?q?attacker=40evil.example=3e=00?=boss@example.com",
    "=?utf-7?q?attacker&AEA-evil.example&ACw-?=boss@example.com",
    "=?x?b?YXR0YWNrZXJAZXZpbC5leGFtcGxlLA==?=boss@example.com",
    "boss=?utf-8?b?QGV2aWwuZXhhbXBsZQ==?=@example.com",
    "=?iso-8859-1?q?boss?=@example.com",
    # UUCP bang paths and the percent hack: routed to evil.example by some MTAs.
    "evil.example!attacker@example.com",
    "attacker%evil.example@example.com",
    # Source routes.
    "@evil.example,@example.com:boss@example.com",
    "@evil.example:boss@example.com",
    # Auth.js / next-auth advisory: a second address by quotes, commas, comments, brackets.
    '"attacker@evil.example",boss@example.com',
    "attacker@evil.example,boss@example.com",
    "boss@example.com;attacker@evil.example",
    "boss@example.com (attacker@evil.example)",
    "(attacker@evil.example)boss@example.com",
    "boss(attacker@evil.example)@example.com",
    "attacker@evil.example <boss@example.com>",
    "<attacker@evil.example>boss@example.com",
    "boss@example.com<attacker@evil.example>",
    # nodemailer advisory: a quoted local part holding an @ read as another domain.
    '"attacker@evil.example x"@example.com',
    '"attacker@evil.example"@example.com',
    'attacker@evil.example"@example.com',
    # Punycode oddities: invalid A-labels, labels that decode to markup, a disallowed symbol.
    "boss@xn--0049.com",
    "boss@xn--svg/-9x6.com",
    "boss@xn--ls8h.com",
    "boss@xn--example-.com",
    # NUL bytes and unicode "overflow" characters (U+0140 = 0x100 + '@', U+012C = 0x100 + ',').
    "boss@example.com\x00@evil.example",
    "attacker@evil.example\x00boss@example.com",
    "attacker\u0140evil.example@example.com",
    "attacker\u0140evil.example\u012cboss@example.com",
    "attacker\uff20evil.example@example.com",
    # Shell and template metacharacters no sign-in address needs.
    "boss`id`@example.com",
    "boss|id@example.com",
    "{boss}@example.com",
    "boss$IFS@example.com",
    # Longer than the 64 octets a local part may have.
    "a" * 65 + "@example.com",
]


def _wait(condition: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


@contextmanager
def _running(
    settings: Settings, transport: Any = None, peer: str = "testclient"
) -> Iterator[TestClient]:
    app = create_app(settings, mail_transport=transport)
    with TestClient(app, base_url=BASE_URL, client=(peer, 40000)) as client:
        yield client


def _smtp(make_settings: SettingsFactory, port: int, **env: str) -> Settings:
    return make_settings(SMTP_HOST="127.0.0.1", SMTP_PORT=str(port), SMTP_TLS="none", **env)


# --- 1. an address that is not what it seems ----------------------------------------------------


@pytest.mark.parametrize("raw", SMUGGLED)
def test_smuggled_second_address_is_refused_by_the_address_grammar(raw: str) -> None:
    with pytest.raises(InvalidRequestError) as refused:
        parse_email(raw)
    assert refused.value.extra == {"field": "email"}


@pytest.mark.parametrize("raw", SMUGGLED)
def test_smuggled_second_address_is_refused_at_start_with_nothing_sent(
    make_client: ClientFactory, transport: RecordingTransport, raw: str
) -> None:
    with make_client(ALLOWED_EMAIL_DOMAINS="example.com") as client:
        response = client.post("/api/start", json={"email": raw})
        assert response.status_code == 400, response.text
        assert response.json()["error"]["code"] == "invalid_request"
        assert response.json()["error"]["field"] == "email"
    assert transport.messages == []


def test_plain_addresses_still_pass_the_strict_grammar() -> None:
    for raw, address in [
        ("Boss@Example.com", "Boss@example.com"),
        ("o'brien@example.com", "o'brien@example.com"),
        ("first.last+news@example.com", "first.last+news@example.com"),
        ("a_b-c@sub.example.co.uk", "a_b-c@sub.example.co.uk"),
        ("x@münchen.de", "x@xn--mnchen-3ya.de"),
        ("a" * 64 + "@example.com", "a" * 64 + "@example.com"),
    ]:
        assert parse_email(raw)[0] == address


def test_encoded_word_address_reaches_nobody_over_real_smtp_and_a_sign_in_reaches_only_its_address(
    make_settings: SettingsFactory,
) -> None:
    with (
        SmtpSink() as sink,
        _running(_smtp(make_settings, sink.port, ALLOWED_EMAIL_DOMAINS="example.com")) as client,
    ):
        refused = client.post("/api/start", json={"email": ATTACK})
        assert refused.status_code == 400, refused.text
        assert refused.json()["error"]["code"] == "invalid_request"
        start(client, BOSS)
        message = sink.wait_for(BOSS)
        _wait(lambda: app_state_of(client).mailer.depth == 0, "the mail queue to empty")
    # Exactly one mail, and what the SMTP server saw (the RCPT TO envelope) is the address.
    assert [d.rcpt_tos for d in sink.deliveries] == [(BOSS,)]
    assert sink.deliveries[0].mail_from == "login@localhost"
    assert [a.addr_spec for a in message["To"].addresses] == [BOSS]


def test_smtp_envelope_is_the_given_recipient_never_the_parsed_to_header(
    make_settings: SettingsFactory,
) -> None:
    """Even a To header that parses into two addresses sends to the given recipient only."""
    message = EmailMessage()
    message["From"] = "login@localhost"
    message["To"] = ATTACK  # the header parser makes attacker@evil.example, boss@example.com
    message["Subject"] = "Sign in"
    message.set_content("code 123 456\n")
    with SmtpSink() as sink:
        settings = _smtp(make_settings, sink.port)

        async def send() -> None:
            transport = SmtpTransport(settings)
            try:
                await transport.send(message, sender="login@localhost", recipients=[BOSS])
            finally:
                await transport.aclose()
                await asyncio.sleep(0.2)

        asyncio.run(send())
    assert [d.rcpt_tos for d in sink.deliveries] == [(BOSS,)]


def test_renderer_refuses_a_recipient_the_to_header_would_split(
    make_settings: SettingsFactory,
) -> None:
    """Defence in depth: an address that slipped past parse_email never becomes a To header."""
    job = MailJob(
        flow_id="f" * 32,
        seq=1,
        to=ATTACK,
        code="123456",
        link=f"{BASE_URL}/l",
        expires_at=int(time.time()) + 600,
        ip="",
        user_agent="",
    )
    with pytest.raises(ValueError, match="addr_spec"):
        Renderer(make_settings()).render(job)


# --- 2. plus-addressing: one inbox, one allowance of mails --------------------------------------


def test_plus_tag_spellings_share_the_per_address_mail_limit(
    make_client: ClientFactory, transport: RecordingTransport
) -> None:
    with make_client(LIMIT_MAIL_PER_WINDOW="2", LIMIT_MAIL_WINDOW="900") as client:
        assert client.post("/api/start", json={"email": "user+a@example.com"}).status_code == 202
        assert client.post("/api/start", json={"email": "user+b@example.com"}).status_code == 202
        for spelling in ("user+c@example.com", "USER@example.com", "user+a+b@example.com"):
            response = client.post("/api/start", json={"email": spelling})
            assert response.status_code == 429, spelling
            assert response.json()["error"]["code"] == "rate_limited"
        # Another inbox is not affected; Gmail's dots and googlemail.com are one inbox too.
        assert client.post("/api/start", json={"email": "other@example.com"}).status_code == 202
        assert client.post("/api/start", json={"email": "j.doe@gmail.com"}).status_code == 202
        assert client.post("/api/start", json={"email": "jdoe+x@gmail.com"}).status_code == 202
        assert (
            client.post("/api/start", json={"email": "J.D.o.e@googlemail.com"}).status_code == 429
        )
    # The accounts themselves stay separate spellings: the mail went to what was typed.
    assert [str(m["To"]) for m in transport.messages[:2]] == [
        "user+a@example.com",
        "user+b@example.com",
    ]


def test_plus_tag_spellings_share_the_mail_interval(make_client: ClientFactory) -> None:
    with make_client(LIMIT_MAIL_INTERVAL="30") as client:
        assert client.post("/api/start", json={"email": "user+a@example.com"}).status_code == 202
        response = client.post("/api/start", json={"email": "user+b@example.com"})
        assert response.status_code == 429
        assert int(response.headers["retry-after"]) > 0


# --- 3. text an attacker writes reaching the victim's mail --------------------------------------

REAL_AGENTS = [
    (
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/126.0.0.0 Safari/537.36",
        "Chrome on Windows",
    ),
    (
        "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
        "Firefox on Linux",
    ),
    (
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 "
        "(KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1",
        "Safari on iPhone",
    ),
    (
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like "
        "Gecko) Version/17.5 Safari/605.1.15",
        "Safari on macOS",
    ),
    (
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/126.0.0.0 Safari/537.36 Edg/126.0.2592.87",
        "Edge on Windows",
    ),
    (
        "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/126.0.6478.71 Mobile Safari/537.36",
        "Chrome on Android",
    ),
    (
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, "
        "like Gecko) CriOS/126.0.6478.54 Mobile/15E148 Safari/604.1",
        "Chrome on iPhone",
    ),
]
HOSTILE_AGENTS = [
    "Urgent: call +1 555 0100 or see evil.example/reset",
    "https://evil.example/phish?account=suspended",
    "Your account is locked. Reply with your password",
    "+44 20 7946 0958",
    "x" * 100_000,
    "Evil\x00\x07\x1b[31mRED\x1b[0m\u202egnp.exe",
    "<script>alert(1)</script>",
    "",
]


def _vocabulary() -> set[str]:
    from service import device  # imported here: the module is part of the fix

    browsers = {name for _, name in device._BROWSERS}
    systems = {name for _, name in device._SYSTEMS}
    return (
        {f"{b} on {s}" for b in browsers for s in systems}
        | browsers
        | systems
        | {device.UNRECOGNISED}
    )


@pytest.mark.parametrize(("agent", "expected"), REAL_AGENTS)
def test_real_browsers_are_named_in_words(agent: str, expected: str) -> None:
    from service.device import describe_device

    assert describe_device(agent) == expected


@pytest.mark.parametrize("agent", HOSTILE_AGENTS)
def test_user_agent_text_is_never_echoed_only_known_names(agent: str) -> None:
    from service.device import describe_device

    described = describe_device(agent)
    assert described == "an unrecognised device"
    # A hostile string that also names a browser still yields only Latch's own words.
    mixed = describe_device("Call +1 555 0100 now Firefox/1 (Windows) " + agent)
    assert mixed == "Firefox on Windows" and mixed in _vocabulary()


def test_user_agent_text_of_the_attacker_never_reaches_the_victims_sign_in_mail(
    make_client: ClientFactory, transport: RecordingTransport
) -> None:
    hostile = "Urgent: call +1 555 0100 or see evil.example/reset"
    with make_client() as client:
        response = client.post("/api/start", json={"email": BOSS}, headers={"user-agent": hostile})
        assert response.status_code == 202
        message = transport.wait_for(BOSS)
    text = text_of(message)
    html = html_part(message)
    for body in (text, html):
        assert "555" not in body and "evil.example" not in body and "Urgent" not in body
        assert "an unrecognised device" in body


# --- 4. who has an account: /metrics and the code page -----------------------------------------


def _counters(text: str) -> dict[str, float]:
    return {
        m.group(1): float(m.group(2))
        for m in re.finditer(r'^latch_events_total\{event="([^"]+)"\} (\S+)$', text, re.M)
    }


def test_metrics_are_not_served_to_the_public(
    make_settings: SettingsFactory, caplog: pytest.LogCaptureFixture
) -> None:
    def metrics(peer: str, headers: dict[str, str] | None = None, **env: str) -> Any:
        with _running(make_settings(**env), RecordingTransport(), peer=peer) as client:
            return client.get("/metrics", headers=headers or {})

    with caplog.at_level(logging.INFO, logger="latch.metrics"):
        public = metrics("203.0.113.7")
    assert public.status_code == 404
    assert public.json()["error"]["code"] == "not_found"
    assert "latch_events_total" not in public.text
    assert "metrics.refused ip=203.0.113.7" in caplog.text
    assert metrics("127.0.0.1").status_code == 200
    assert metrics("::1").status_code == 200
    # A forged X-Forwarded-For from an untrusted peer is not believed...
    assert metrics("203.0.113.7", {"x-forwarded-for": "127.0.0.1"}).status_code == 404
    # ...and behind a trusted proxy, the client is the one the proxy names, not the proxy.
    forwarded = {"x-forwarded-for": "203.0.113.7"}
    assert metrics("127.0.0.1", forwarded, TRUSTED_PROXIES="127.0.0.1").status_code == 404
    # The operator lets their Prometheus in.
    assert metrics("10.0.5.9", METRICS_ALLOW="10.0.5.0/24").status_code == 200
    assert metrics("10.0.6.9", METRICS_ALLOW="10.0.5.0/24").status_code == 404


def _add_user(client: TestClient, email: str) -> None:
    address, key = parse_email(email)
    database = app_state_of(client).database
    assert client.portal is not None
    client.portal.call(database.run, store.add_user("u" + key[:8], address, key, 0))


def test_metrics_count_a_suppressed_mail_exactly_like_a_sent_one(
    make_settings: SettingsFactory,
    transport: RecordingTransport,
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings = make_settings(ALLOW_SIGNUP="false")
    with (
        caplog.at_level(logging.INFO),
        _running(settings, transport, peer="127.0.0.1") as client,
    ):
        _add_user(client, BOSS)
        before = _counters(client.get("/metrics").text)
        start(client, BOSS)
        _wait(
            lambda: _counters(client.get("/metrics").text).get("mail.sent", 0) >= 1,
            "the known address's mail to be counted",
        )
        known = _counters(client.get("/metrics").text)
        start(client, "stranger@example.com")
        # The stranger's mail is withheld; it must be counted as sent all the same.
        _wait(
            lambda: _counters(client.get("/metrics").text).get("mail.sent", 0) >= 2,
            "the unknown address's mail to be counted like a sent one",
        )
        unknown = _counters(client.get("/metrics").text)
    assert len(transport.messages) == 1  # one mail really went out
    assert {k: known[k] - before[k] for k in known} == {k: unknown[k] - known[k] for k in unknown}
    assert set(known) == set(unknown) == set(before)
    assert not any("suppress" in name for name in unknown)
    # The mail log lines at INFO read alike too (the difference is a DEBUG line).
    mail = [r.getMessage() for r in caplog.records if r.name == "latch.mail"]
    assert [line.split()[0] for line in mail] == ["mail.sent", "mail.sent"]


class _Slow(RecordingTransport):
    """A mail server that is slow today: holds every mail until released."""

    def __init__(self) -> None:
        super().__init__()
        self.released = threading.Event()

    async def send(
        self, message: EmailMessage, *, sender: str = "", recipients: Sequence[str] = ()
    ) -> None:
        await asyncio.to_thread(self.released.wait)
        await super().send(message, sender=sender, recipients=recipients)


def _page_shape(html: str, email: str) -> str:
    """The page with what legitimately differs (the address, the CSRF token) blanked out."""
    html = html.replace(email, "ADDRESS")
    return re.sub(r'name="csrf" value="[^"]*"', 'name="csrf" value=""', html)


def test_code_page_reads_the_same_for_a_suppressed_mail_and_a_slow_real_one(
    make_settings: SettingsFactory, clock: FakeClock
) -> None:
    slow = _Slow()
    stranger = "stranger@example.com"
    app = create_app(make_settings(ALLOW_SIGNUP="false"), mail_transport=slow, clock=clock)
    with TestClient(app, base_url=BASE_URL) as client:
        try:
            _add_user(client, BOSS)
            with other_browser(client):
                assert start_html(client, BOSS).status_code == 303
                known = client.get("/login/code").text  # the real mail is still being sent
            with other_browser(client):
                assert start_html(client, stranger).status_code == 303
                # The known address's mail is still held; the stranger's is withheld at once.
                _wait(
                    lambda: app_state_of(client).mailer.depth == 1,
                    "the stranger's mail to be withheld",
                )
                unknown = client.get("/login/code").text
            assert slow.messages == []
            assert _page_shape(known, BOSS) == _page_shape(unknown, stranger)
        finally:
            # Released before the app stops: its shutdown waits for the held sender thread.
            slow.released.set()
        assert slow.wait_for(BOSS)
