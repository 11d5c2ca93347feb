"""Real nginx forward auth: Debian's nginx runs docs/nginx.conf with `auth_request` to a real
Latch, in front of a tiny upstream that echoes the X-Latch-Email header it receives (and says
which cookies reached it: never Latch's refresh token).

Anonymous visitors: browsers (Accept: text/html) get a 302 to Latch's /refresh?next=…, every
other client a 401 (docs/nginx.conf, @latch_unauthorized)."""

from __future__ import annotations

import os
import socket
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.conftest import ROOT
from tests.support.net import HOST, free_port
from tests.support.server import Latch, running_latch
from tests.support.upstream import SEEN_COOKIE, browser_cookies, echo_app
from tests.support.wait import eventually

NGINX = "/usr/sbin/nginx"
CONF = ROOT / "docs" / "nginx.conf"


@contextmanager
def nginx(prefix: Path, latch: Latch, app: str) -> Iterator[str]:
    """nginx as a non-daemon child, configured by docs/nginx.conf with our ports."""
    port = free_port()
    for sub in ("logs", "tmp"):
        (prefix / sub).mkdir(parents=True, exist_ok=True)
    conf = (
        CONF.read_text()
        .replace("@LISTEN@", f"{HOST}:{port}")
        .replace("@LATCH@", latch.url.removeprefix("http://"))
        .replace("@APP@", app)
        .replace("@LATCH_URL@", latch.url)
    )
    (prefix / "nginx.conf").write_text(conf)
    # As root the workers would switch to `nobody`, who cannot enter pytest's 0700 temp dir.
    user = " user root root;" if os.geteuid() == 0 else ""
    proc = subprocess.Popen(
        [NGINX, "-g", f"daemon off;{user}", "-p", f"{prefix}/", "-c", "nginx.conf"]
        + ["-e", str(prefix / "logs" / "error.log")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        _wait_listening(port, proc, prefix)
        yield f"http://{HOST}:{port}"
    finally:
        proc.terminate()
        proc.wait(10)
        if proc.stderr:
            proc.stderr.close()


def _wait_listening(port: int, proc: subprocess.Popen[bytes], prefix: Path) -> None:
    def listening() -> bool:
        if proc.poll() is not None:
            log = (prefix / "logs" / "error.log").read_text(errors="replace")
            raise RuntimeError(f"nginx exited with {proc.returncode}: {log}")
        with socket.socket() as sock:
            return sock.connect_ex((HOST, port)) == 0

    eventually(listening, "nginx to listen")


@dataclass
class Stack:
    latch: Latch
    front: str


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    if not os.access(NGINX, os.X_OK):
        pytest.fail(f"{NGINX} is missing: install Debian's nginx (.ci/run does)")
    root = tmp_path_factory.mktemp("nginx")
    with (
        running_latch(root / "data") as latch,
        echo_app() as app,
        nginx(root / "prefix", latch, app) as front,
    ):
        yield Stack(latch, front)


def test_signed_in_client_gets_through_with_its_email_upstream(stack: Stack) -> None:
    with stack.latch.sign_in("ivy@example.com") as browser:
        cookie = {"latch_session": browser.cookies["latch_session"]}
    # A header the client sends itself is replaced by the one Latch vouches for.
    forged = {"X-Latch-Email": "boss@example.com"}
    with httpx.Client(base_url=stack.front, cookies=cookie) as client:
        assert client.get("/anything?x=1", headers=forged).text == "email=ivy@example.com"
        assert client.post("/form", data={"a": "b"}).text == "email=ivy@example.com"


def test_anonymous_api_client_gets_401(stack: Stack) -> None:
    forged = {"X-Latch-Email": "boss@example.com"}
    answer = httpx.get(f"{stack.front}/anything", headers=forged)
    assert answer.status_code == 401
    assert "email=" not in answer.text


def test_anonymous_browser_is_sent_to_latch_refresh(stack: Stack) -> None:
    answer = httpx.get(f"{stack.front}/page", headers={"Accept": "text/html"})
    assert answer.status_code == 302
    target = httpx.URL(answer.headers["location"])
    assert str(target.copy_with(query=None)) == f"{stack.latch.url}/refresh"
    assert target.params["next"] == f"{stack.front}/page"


def test_revoked_session_is_shut_out(stack: Stack) -> None:
    with stack.latch.sign_in("jack@example.com") as browser:
        cookie = {"latch_session": browser.cookies["latch_session"]}
        with httpx.Client(base_url=stack.front, cookies=cookie) as client:
            assert client.get("/x").text == "email=jack@example.com"
            assert browser.post("/api/logout", json={}).status_code == 204
            assert client.get("/x").status_code == 401


def test_upstream_never_sees_the_refresh_cookie(stack: Stack) -> None:
    with stack.latch.sign_in("kim@example.com") as browser:
        jar = browser_cookies(dict(browser.cookies))
    # Wherever the refresh cookie sits among the others, it is cut out and nothing else is;
    # a stray second copy (another Path, or set before https) goes too.
    reordered = [jar, dict(reversed(jar.items())), {"latch_refresh": jar["latch_refresh"], **jar}]
    headers = ["; ".join(f"{k}={v}" for k, v in cookies.items()) for cookies in reordered]
    headers.append(f"latch_refresh=stray; {headers[0]}")
    # Its name under https.
    headers.append(headers[0].replace("latch_refresh=", "__Host-latch_refresh="))
    for header in headers:
        answer = httpx.get(f"{stack.front}/page", headers={"Cookie": header})
        assert answer.text == "email=kim@example.com"
        seen = answer.headers[SEEN_COOKIE]
        assert "latch_refresh" not in seen and jar["latch_refresh"] not in seen, seen
        assert f"latch_session={jar['latch_session']}" in seen
        assert "app_pref=dark" in seen and "app_cart=3" in seen
