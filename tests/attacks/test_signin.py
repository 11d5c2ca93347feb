"""The attack suite: one test per attack of docs/design.md §1.2, §4 and §5, named after the attack.

Every test also runs under `no_secret_in_logs`, which fails it if any code, link token or JWT
reached a log line while it ran.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from starlette.testclient import TestClient

from service.app import create_app
from service.web.security import safe_next
from service.web.state import app_state_of
from tests.conftest import (
    BASE_URL,
    ClientFactory,
    FakeClock,
    RecordingTransport,
    SettingsFactory,
    mail_code,
    mail_link,
    mail_token,
    start,
    text_of,
)

VICTIM = "victim@example.com"
JWT_RE = re.compile(r"eyJ[\w-]{5,}\.[\w-]{5,}\.[\w-]{5,}")


@pytest.fixture(autouse=True)
def no_secret_in_logs(
    caplog: pytest.LogCaptureFixture, transport: RecordingTransport
) -> Iterator[None]:
    with caplog.at_level(logging.DEBUG):
        yield
    text = caplog.text
    for message in transport.messages:
        assert mail_code(message) not in text, "a code reached the log"
        assert mail_token(message) not in text, "a link token reached the log"
    assert not JWT_RE.search(text), "a JWT reached the log"


def _wrong(code: str) -> str:
    return "000000" if code != "000000" else "111111"


@contextmanager
def _client_from(
    make_settings: SettingsFactory,
    transport: RecordingTransport,
    clock: FakeClock,
    peer: str,
    **env: str,
) -> Iterator[TestClient]:
    app = create_app(make_settings(**env), mail_transport=transport, clock=clock)
    with TestClient(app, base_url=BASE_URL, client=(peer, 40000)) as client:
        yield client


def test_brute_force_sixth_code_is_refused_even_when_right(
    client: TestClient, transport: RecordingTransport
) -> None:
    flow = start(client, VICTIM)
    code = mail_code(transport.wait_for(VICTIM))
    for _ in range(5):
        client.post("/api/verify", json={"flow_id": flow["flow_id"], "code": _wrong(code)})
    response = client.post("/api/verify", json={"flow_id": flow["flow_id"], "code": code})
    assert response.status_code == 410 and response.json()["error"]["code"] == "flow_dead"


def test_hundred_failures_lock_codes_across_flows_and_rotating_ips_not_reset_by_new_code(
    make_settings: SettingsFactory, transport: RecordingTransport, clock: FakeClock
) -> None:
    with _client_from(
        make_settings, transport, clock, "10.0.0.1", TRUSTED_PROXIES="10.0.0.1"
    ) as client:
        failures = sent = 0
        while failures < 100:
            flow = start(client, VICTIM)
            sent += 1
            code = mail_code(transport.wait_for(VICTIM, index=sent - 1))
            for attempt in range(5):
                if failures == 100:
                    break
                if attempt == 2:
                    # A resend (a new code) must not reset the per-address count.
                    r = client.post("/api/resend", json={"flow_id": flow["flow_id"]})
                    assert r.status_code == 202, r.text
                    sent += 1
                    code = mail_code(transport.wait_for(VICTIM, index=sent - 1))
                ip = f"203.0.113.{failures % 250}"
                r = client.post(
                    "/api/verify",
                    headers={"X-Forwarded-For": ip},
                    json={"flow_id": flow["flow_id"], "code": _wrong(code)},
                )
                assert r.status_code == 400, r.text
                failures += 1
        fresh = start(client, VICTIM)
        message = transport.wait_for(VICTIM, index=sent)
        r = client.post(
            "/api/verify",
            headers={"X-Forwarded-For": "198.51.100.7"},
            json={"flow_id": fresh["flow_id"], "code": mail_code(message)},
        )
        assert r.status_code == 429
        assert r.json()["error"]["code"] == "codes_locked"
        assert 86000 < int(r.headers["Retry-After"]) <= 86400
        # The owner is not locked out: the magic link still works, and resets the counter.
        r = client.post("/api/link", json={"token": mail_token(message)})
        assert r.status_code == 200, r.text


def test_link_still_works_while_codes_are_locked(
    make_client: ClientFactory, transport: RecordingTransport
) -> None:
    with make_client(LIMIT_ADDRESS_FAILURES="3") as client:
        flow = start(client, VICTIM)
        message = transport.wait_for(VICTIM)
        for _ in range(3):
            client.post(
                "/api/verify", json={"flow_id": flow["flow_id"], "code": _wrong(mail_code(message))}
            )
        locked = client.post(
            "/api/verify", json={"flow_id": flow["flow_id"], "code": mail_code(message)}
        )
        assert locked.status_code == 429
        assert client.post("/api/link", json={"token": mail_token(message)}).status_code == 200


def test_mail_throttle_second_mail_within_30s_is_refused_and_not_sent(
    make_client: ClientFactory, transport: RecordingTransport, clock: FakeClock
) -> None:
    with make_client(LIMIT_MAIL_INTERVAL="30") as client:
        start(client, VICTIM)
        transport.wait_for(VICTIM)
        clock.advance(10)
        second = client.post("/api/start", json={"email": VICTIM})
        assert second.status_code == 429
        assert second.json()["error"]["code"] == "rate_limited"
        # Retry-After present and right: 30 s interval, 10 s already passed.
        assert second.headers["Retry-After"] == "20"
        assert second.json()["error"]["retry_after"] == 20
        clock.advance(20)
        assert client.post("/api/start", json={"email": VICTIM}).status_code == 202
        transport.wait_for(VICTIM, index=1)
        assert len(transport.messages) == 2


def test_mail_window_limit_counts_resends_too(
    make_client: ClientFactory, transport: RecordingTransport, clock: FakeClock
) -> None:
    with make_client(LIMIT_MAIL_PER_WINDOW="3") as client:
        flow = start(client, VICTIM)
        assert client.post("/api/resend", json={"flow_id": flow["flow_id"]}).status_code == 202
        assert client.post("/api/resend", json={"flow_id": flow["flow_id"]}).status_code == 202
        refused = client.post("/api/resend", json={"flow_id": flow["flow_id"]})
        assert refused.status_code == 429
        assert 0 < int(refused.headers["Retry-After"]) <= 901


def test_ip_limit_refuses_the_31st_start_from_one_ip(
    make_client: ClientFactory, transport: RecordingTransport
) -> None:
    with make_client(LIMIT_STARTS_PER_IP="30") as client:
        for i in range(30):
            start(client, f"user{i}@example.com")
        refused = client.post("/api/start", json={"email": "user30@example.com"})
        assert refused.status_code == 429 and "Retry-After" in refused.headers


def test_global_mail_cap_stops_a_botnet_mail_bomb(
    make_client: ClientFactory, transport: RecordingTransport, clock: FakeClock
) -> None:
    with make_client(LIMIT_MAIL_GLOBAL="5") as client:
        for i in range(5):
            start(client, f"user{i}@example.com")
        refused = client.post("/api/start", json={"email": "other@example.com"})
        assert refused.status_code == 429
        clock.advance(61)
        assert client.post("/api/start", json={"email": "other@example.com"}).status_code == 202


@pytest.mark.parametrize("allow_signup", ["true", "false"])
def test_enumeration_known_and_unknown_addresses_answer_alike(
    make_client: ClientFactory, transport: RecordingTransport, allow_signup: str
) -> None:
    from service import crypto, store

    with make_client(ALLOW_SIGNUP=allow_signup) as client:
        db = app_state_of(client).database
        client.portal.call(  # type: ignore[union-attr]
            db.run, store.add_user(crypto.new_id(), "known@example.com", "known@example.com", 0)
        )
        known = client.post("/api/start", json={"email": "known@example.com"})
        unknown = client.post("/api/start", json={"email": "unknown@example.com"})
        assert known.status_code == unknown.status_code == 202
        assert sorted(known.headers.keys()) == sorted(unknown.headers.keys())
        assert known.json().keys() == unknown.json().keys()
        assert known.json()["expires_in"] == unknown.json()["expires_in"]
        assert len(known.content) == len(unknown.content)


def test_domain_allowlist_refuses_other_domains(
    make_client: ClientFactory, transport: RecordingTransport
) -> None:
    with make_client(ALLOWED_EMAIL_DOMAINS="example.com") as client:
        refused = client.post("/api/start", json={"email": "mallory@evil.example"})
        assert refused.status_code == 400
        assert "not allowed" in refused.json()["error"]["message"]
        assert client.post("/api/start", json={"email": "ok@EXAMPLE.com"}).status_code == 202


def test_cross_site_origin_is_refused_on_the_api(
    client: TestClient, transport: RecordingTransport
) -> None:
    for origin in ("https://evil.example", "null", "http://127.0.0.1:8000.evil.example"):
        r = client.post("/api/start", json={"email": VICTIM}, headers={"Origin": origin})
        assert r.status_code == 403
    assert transport.messages == []


def test_cors_allows_credentials_only_for_allowed_origins(
    make_client: ClientFactory, transport: RecordingTransport
) -> None:
    with make_client(ALLOWED_ORIGINS="https://app.example.com") as client:
        ok = client.options(
            "/api/start",
            headers={
                "Origin": "https://app.example.com",
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "content-type",
            },
        )
        assert ok.headers["access-control-allow-origin"] == "https://app.example.com"
        assert ok.headers["access-control-allow-credentials"] == "true"
        bad = client.options(
            "/api/start",
            headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
        )
        assert "access-control-allow-origin" not in bad.headers
        r = client.post(
            "/api/start", json={"email": VICTIM}, headers={"Origin": "https://app.example.com"}
        )
        assert r.status_code == 202
        assert r.headers["access-control-allow-origin"] == "https://app.example.com"


@pytest.mark.parametrize(
    "target",
    [
        "//evil.example",
        "/\\evil.example",
        "https://evil.com\\@ok.example.com",
        "https:evil",
        "javascript:alert(1)",
        "https://ok.example.com.evil",
        "https://ok.example.comx",
        "http://ok.example.com/",
        "https://user@ok.example.com/",
        "/x\r\nSet-Cookie: a=b",
        "\t/x",
        "https://ok.example.com:8443/",
    ],
)
def test_open_redirects_fall_back_to_account(make_settings: SettingsFactory, target: str) -> None:
    settings = make_settings(ALLOWED_REDIRECT_ORIGINS="https://ok.example.com")
    assert safe_next(target, settings) == "/account"


def test_allowed_redirects_are_rebuilt_from_their_parts(make_settings: SettingsFactory) -> None:
    settings = make_settings(ALLOWED_REDIRECT_ORIGINS="https://ok.example.com")
    assert safe_next("/x?y=1#z", settings) == "/x?y=1#z"
    assert safe_next("https://OK.example.com/p?q=1", settings) == "https://ok.example.com/p?q=1"


def test_host_evil_is_refused_and_forwarded_host_never_reaches_a_mailed_link(
    client: TestClient, transport: RecordingTransport
) -> None:
    r = client.post("/api/start", json={"email": VICTIM}, headers={"Host": "evil.example"})
    assert r.status_code == 400
    assert transport.messages == []
    r = client.post(
        "/api/start",
        json={"email": VICTIM},
        headers={"X-Forwarded-Host": "evil.example", "Forwarded": "host=evil.example"},
    )
    assert r.status_code == 202
    link = mail_link(transport.wait_for(VICTIM))
    assert link.startswith(BASE_URL + "/login/link?t=")
    assert "evil" not in text_of(transport.messages[0])


def test_health_and_forward_auth_answer_any_host(client: TestClient) -> None:
    assert client.get("/healthz", headers={"Host": "latch.internal"}).status_code == 200
    assert client.get("/auth/check", headers={"Host": "latch.internal"}).status_code == 401


def test_html_in_an_address_is_escaped_in_the_mail(
    client: TestClient, transport: RecordingTransport
) -> None:
    # The apostrophe is the one HTML-special character the strict address grammar admits.
    address = "o'neil@example.com"
    start(client, address)
    message = transport.wait_for(address)
    html = message.get_body(("html",))
    assert html is not None
    content = html.get_content()
    assert "o'neil@" not in content
    assert "o&#39;neil@example.com" in content


def test_mail_headers_never_carry_crlf(client: TestClient, transport: RecordingTransport) -> None:
    r = client.post("/api/start", json={"email": "a@example.com\r\nBcc: x@evil.example"})
    assert r.status_code == 400
    start(client, VICTIM)
    message = transport.wait_for(VICTIM)
    for name, value in message.items():
        assert "\r" not in value and "\n" not in value, name


def test_oversized_body_is_refused_with_413(client: TestClient) -> None:
    r = client.post(
        "/api/start",
        content=b"{" + b" " * 17000 + b"}",
        headers={"content-type": "application/json"},
    )
    assert r.status_code == 413


def test_security_headers_on_api_answers(client: TestClient) -> None:
    r = client.get("/api/session")
    csp = r.headers["content-security-policy"]
    assert "unsafe-inline" not in csp and "frame-ancestors 'none'" in csp
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["referrer-policy"] == "no-referrer"
    assert r.headers["cache-control"] == "no-store"
    assert "strict-transport-security" not in r.headers  # plain http in development


def test_hsts_under_https(make_client: ClientFactory) -> None:
    with make_client(PUBLIC_URL="https://localhost:8443") as client:
        r = client.get("https://localhost:8443/healthz")
        assert r.headers["strict-transport-security"].startswith("max-age=")


def test_development_sends_other_host_names_to_public_url_without_the_query(
    client: TestClient,
) -> None:
    r = client.get(
        "/login/link?t=SECRET", headers={"Host": "localhost:8000"}, follow_redirects=False
    )
    assert r.status_code == 302
    assert r.headers["location"] == BASE_URL + "/login/link"  # the query (a token) is dropped
    r = client.post("/api/start", json={"email": VICTIM}, headers={"Host": "localhost:8000"})
    assert r.status_code == 400  # only reads are redirected
