"""Refresh tokens: rotation, the grace for two tabs, reuse detection, expiry; revocation."""

from __future__ import annotations

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import httpx2
from starlette.testclient import TestClient

from tests.conftest import ClientFactory, FakeClock, RecordingTransport, SettingsFactory, sign_in
from tests.support.server import running_latch

EMAIL = "erin@example.com"
DAY = 86400


class Tokens:
    """One browser's pair of cookies, sent explicitly (so a test can play several tabs)."""

    def __init__(self, access: str, refresh: str) -> None:
        self.access, self.refresh = access, refresh


def signed_in(client: TestClient, transport: RecordingTransport, email: str = EMAIL) -> Tokens:
    client.cookies.clear()
    sign_in(client, transport, email)
    tokens = Tokens(client.cookies["latch_session"], client.cookies["latch_refresh"])
    client.cookies.clear()
    return tokens


def refresh(client: TestClient, refresh_token: str) -> httpx2.Response:
    client.cookies.clear()
    response = client.post(
        "/api/refresh",
        json={},
        headers={b"Cookie": f"latch_refresh={refresh_token}".encode()},  # any octets
    )
    client.cookies.clear()
    return response


def pair(response: httpx2.Response) -> Tokens:
    assert response.status_code == 200, response.text
    return Tokens(response.cookies["latch_session"], response.cookies["latch_refresh"])


def check(client: TestClient, access: str) -> int:
    client.cookies.clear()
    return client.get("/auth/check", headers={"Cookie": f"latch_session={access}"}).status_code


def cleared(response: httpx2.Response) -> bool:
    cookies = response.headers.get_list("set-cookie")
    return all(
        any(c.startswith(f"{name}=") and "Max-Age=0" in c for c in cookies)
        for name in ("latch_session", "latch_refresh")
    )


# --- rotation ----------------------------------------------------------------------------------


def test_refresh_rotates_the_token_and_issues_a_working_jwt(
    client: TestClient, transport: RecordingTransport
) -> None:
    first = signed_in(client, transport)
    response = refresh(client, first.refresh)
    second = pair(response)
    assert response.json()["user"]["email"] == EMAIL
    assert second.refresh != first.refresh and second.access != first.access
    assert check(client, second.access) == 200
    assert pair(refresh(client, second.refresh)).refresh != second.refresh


def test_previous_token_after_the_grace_revokes_the_session(
    client: TestClient, transport: RecordingTransport, clock: FakeClock
) -> None:
    first = signed_in(client, transport)
    second = pair(refresh(client, first.refresh))
    assert check(client, second.access) == 200
    clock.advance(31)
    stolen = refresh(client, first.refresh)
    assert stolen.status_code == 401 and cleared(stolen)
    # The whole session is gone: its current refresh token and its live JWT too.
    assert refresh(client, second.refresh).status_code == 401
    assert check(client, second.access) == 401


def test_an_older_token_revokes_the_session_even_within_the_grace(
    client: TestClient, transport: RecordingTransport
) -> None:
    first = signed_in(client, transport)
    second = pair(refresh(client, first.refresh))
    third = pair(refresh(client, second.refresh))
    assert refresh(client, first.refresh).status_code == 401
    assert check(client, third.access) == 401
    assert refresh(client, third.refresh).status_code == 401


def test_unknown_token_is_refused_without_touching_sessions(
    client: TestClient, transport: RecordingTransport
) -> None:
    mine = signed_in(client, transport)
    for junk in ("x" * 43, "ünïcode-token-that-is-long-enough", "", "a" * 500):
        assert refresh(client, junk).status_code == 401
    assert check(client, mine.access) == 200
    assert refresh(client, mine.refresh).status_code == 200


def test_two_tabs_refreshing_with_the_same_token_both_succeed(
    client: TestClient, transport: RecordingTransport, clock: FakeClock
) -> None:
    first = signed_in(client, transport)
    tab_a = pair(refresh(client, first.refresh))
    clock.advance(20)
    tab_b = pair(refresh(client, first.refresh))
    assert check(client, tab_a.access) == 200 and check(client, tab_b.access) == 200
    # Both tabs hold a refresh token that still works after the grace is long over.
    clock.advance(3600)
    next_a = pair(refresh(client, tab_a.refresh))
    clock.advance(5)
    next_b = pair(refresh(client, tab_b.refresh))
    assert check(client, next_a.access) == 200 and check(client, next_b.access) == 200


def test_concurrent_refreshes_over_http_all_succeed(tmp_path: Path) -> None:
    with running_latch(tmp_path / "data") as latch, latch.sign_in(EMAIL) as browser:
        token = browser.cookies["latch_refresh"]

        def tab(_: int) -> httpx.Response:
            with httpx.Client(base_url=latch.url) as c:
                return c.post("/api/refresh", json={}, headers={"Cookie": f"latch_refresh={token}"})

        with ThreadPoolExecutor(4) as pool:
            answers = list(pool.map(tab, range(4)))
        assert [a.status_code for a in answers] == [200] * 4
        for answer in answers:
            access = answer.cookies["latch_session"]
            check_answer = httpx.get(
                f"{latch.url}/auth/check", headers={"Cookie": f"latch_session={access}"}
            )
            assert check_answer.status_code == 200
        assert len({a.cookies["latch_refresh"] for a in answers}) == 1


# --- expiry ------------------------------------------------------------------------------------


def test_idle_session_cannot_refresh(
    client: TestClient, transport: RecordingTransport, clock: FakeClock
) -> None:
    first = signed_in(client, transport)
    clock.advance(7 * DAY + 1)
    assert refresh(client, first.refresh).status_code == 401


def test_use_extends_idle_expiry_but_not_beyond_the_absolute_one(
    client: TestClient, transport: RecordingTransport, clock: FakeClock
) -> None:
    tokens = signed_in(client, transport)
    for _ in range(4):  # day 6, 12, 18, 24: each use keeps the session alive
        clock.advance(6 * DAY)
        tokens = pair(refresh(client, tokens.refresh))
    clock.advance(6 * DAY)  # day 30: the absolute lifetime is over
    assert refresh(client, tokens.refresh).status_code == 401


# --- GET /refresh ------------------------------------------------------------------------------


def test_get_refresh_rotates_and_goes_back_to_next(
    client: TestClient, transport: RecordingTransport
) -> None:
    first = signed_in(client, transport)
    response = client.get(
        "/refresh",
        params={"next": "/account?tab=sessions"},
        headers={"Cookie": f"latch_refresh={first.refresh}"},
        follow_redirects=False,
    )
    assert response.status_code == 303
    assert response.headers["location"] == "/account?tab=sessions"
    assert check(client, response.cookies["latch_session"]) == 200


def test_get_refresh_without_a_token_goes_to_login_with_the_same_next(
    client: TestClient,
) -> None:
    response = client.get("/refresh", params={"next": "/account?a=1&b=2"}, follow_redirects=False)
    assert response.status_code == 303
    location = httpx.URL(response.headers["location"])
    assert location.path == "/login" and location.params["next"] == "/account?a=1&b=2"


def test_get_refresh_never_follows_an_unsafe_next(
    client: TestClient, transport: RecordingTransport
) -> None:
    first = signed_in(client, transport)
    response = client.get(
        "/refresh",
        params={"next": "https://evil.example.net/"},
        headers={"Cookie": f"latch_refresh={first.refresh}"},
        follow_redirects=False,
    )
    assert response.status_code == 303 and response.headers["location"] == "/account"


# --- revocation --------------------------------------------------------------------------------


def test_logout_everywhere_shuts_every_session_out_of_auth_check(
    client: TestClient, transport: RecordingTransport
) -> None:
    laptop, phone = signed_in(client, transport), signed_in(client, transport)
    assert check(client, laptop.access) == 200 and check(client, phone.access) == 200
    response = client.post(
        "/api/logout", json={"all": True}, headers={"Cookie": f"latch_session={laptop.access}"}
    )
    assert response.status_code == 204
    # At once on this instance (the cache entry is dropped), not after the staleness window.
    assert check(client, laptop.access) == 401 and check(client, phone.access) == 401
    assert refresh(client, phone.refresh).status_code == 401


def test_sessions_api_lists_and_revokes_the_persons_sessions(
    client: TestClient, transport: RecordingTransport
) -> None:
    laptop, phone = signed_in(client, transport), signed_in(client, transport)
    other = signed_in(client, transport, "mallory@example.com")
    mine = {"Cookie": f"latch_session={laptop.access}"}
    listed = client.get("/api/sessions", headers=mine).json()["sessions"]
    assert len(listed) == 2
    assert [s["current"] for s in listed].count(True) == 1
    assert {"id", "device", "ip", "created_at", "last_used_at"} <= set(listed[0])
    current = next(s for s in listed if s["current"])
    phone_id = next(s["id"] for s in listed if not s["current"])
    theirs = client.get(
        "/api/sessions", headers={"Cookie": f"latch_session={other.access}"}
    ).json()["sessions"][0]["id"]
    assert client.delete(f"/api/sessions/{theirs}", headers=mine).status_code == 404
    assert client.delete("/api/sessions/nope", headers=mine).status_code == 404
    assert check(client, other.access) == 200
    assert client.delete(f"/api/sessions/{phone_id}", headers=mine).status_code == 204
    assert check(client, phone.access) == 401
    assert [s["id"] for s in client.get("/api/sessions", headers=mine).json()["sessions"]] == [
        current["id"]
    ]
    client.cookies.clear()
    assert client.get("/api/sessions").status_code == 401


def _cli(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "DATA_DIR": str(data_dir),
        "PUBLIC_URL": "http://127.0.0.1:8000",
    }
    return subprocess.run(
        [sys.executable, "-m", "service", *args],
        env=env,
        cwd=data_dir.parent,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_cli_revokes_every_session_of_an_address(
    client: TestClient, transport: RecordingTransport, tmp_path: Path
) -> None:
    one, two = signed_in(client, transport), signed_in(client, transport)
    bystander = signed_in(client, transport, "frank@example.com")
    done = _cli(tmp_path / "data", "sessions", "revoke", "--email", EMAIL.upper())
    assert done.returncode == 0, done.stderr
    assert "revoked 2 session(s)" in done.stdout
    assert check(client, one.access) == 401 and check(client, two.access) == 401
    assert refresh(client, one.refresh).status_code == 401
    assert check(client, bystander.access) == 200
    unknown = _cli(tmp_path / "data", "sessions", "revoke", "--email", "nobody@example.com")
    assert unknown.returncode == 1


def test_rotation_grace_and_reuse_on_each_backend(
    make_client: ClientFactory,
    database_url: str,
    transport: RecordingTransport,
    clock: FakeClock,
) -> None:
    with make_client(database_url=database_url) as client:
        first = signed_in(client, transport)
        tab_a = pair(refresh(client, first.refresh))
        tab_b = pair(refresh(client, first.refresh))  # within the grace
        assert tab_a.refresh == tab_b.refresh
        clock.advance(31)
        assert refresh(client, first.refresh).status_code == 401  # reuse after the grace
        assert check(client, tab_a.access) == 401


def test_auth_check_refuses_an_idle_expired_session(
    make_settings: SettingsFactory, transport: RecordingTransport, clock: FakeClock
) -> None:
    from service.app import create_app
    from tests.conftest import BASE_URL

    settings = make_settings()
    app = create_app(settings, mail_transport=transport, clock=clock)
    with TestClient(app, base_url=BASE_URL) as client:
        tokens = signed_in(client, transport)
    clock.advance(7 * DAY + 1)  # idle past SESSION_IDLE_TTL, still within the 30-day maximum
    # A fresh instance (nothing cached) asks the database, which says the session is over.
    again = create_app(settings, mail_transport=transport, clock=clock)
    with TestClient(again, base_url=BASE_URL) as other:
        assert check(other, tokens.access) == 401
