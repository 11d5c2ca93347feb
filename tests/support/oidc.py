"""Driving Latch's OpenID provider the way a relying party and a browser do."""

from __future__ import annotations

import base64
import hashlib
import html
import json
import os
import re
import secrets
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urljoin, urlsplit

import httpx
import httpx2
from starlette.testclient import TestClient

from service.oidc import clients
from service.oidc.clients import Client
from service.web.state import app_state_of
from tests.conftest import RecordingTransport, mail_code
from tests.support.process import CHECKOUT
from tests.support.web import csrf_of, hidden

RP = "http://127.0.0.1:9/callback"
_REFRESH = re.compile(r'<meta http-equiv="refresh" content="0; url=([^"]+)">')


def register(client: TestClient, **options: Any) -> tuple[Client, str | None]:
    """Register an OpenID client in the app behind `client`."""
    state = app_state_of(client)
    options.setdefault("name", "Test app")
    options.setdefault("redirect_uris", [RP])
    assert client.portal is not None
    registered: tuple[Client, str | None] = client.portal.call(
        lambda: clients.register(
            state.database, state.settings.tokens.keys_dir, now=int(state.clock()), **options
        )
    )
    return registered


def pkce() -> tuple[str, str]:
    """A code verifier and its S256 challenge."""
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode()).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def query_of(url: str) -> dict[str, str]:
    """The query parameters of a URL (one value each)."""
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


def app_target(response: httpx2.Response) -> str:
    """Where Latch sends the browser back to the app: a redirect, or the forwarding page."""
    if response.status_code in (302, 303):
        return response.headers["location"]
    assert response.status_code == 200, (response.status_code, response.text[:300])
    match = _REFRESH.search(response.text)
    assert match, "no way back to the app on this page"
    return html.unescape(match.group(1))


def auth_params(client: Client, challenge: str | None = None, **extra: str) -> dict[str, str]:
    """A well-formed authorization request for `client`."""
    params = {
        "client_id": client.id,
        "redirect_uri": client.redirect_uris[0],
        "response_type": "code",
        "scope": "openid email",
        "state": secrets.token_urlsafe(8),
        "nonce": secrets.token_urlsafe(8),
    }
    if challenge is not None:
        params.update(code_challenge=challenge, code_challenge_method="S256")
    params.update(extra)
    return params


def sign_in_through_pages(
    browser: TestClient, transport: RecordingTransport, login: str, email: str
) -> httpx2.Response:
    """From Latch's /login?next=… (where authorize sent the browser) through the emailed code;
    returns the answer of the `next` Latch goes back to (not followed further)."""
    page = browser.get(login)
    assert page.status_code == 200, page.text[:300]
    before = len([m for m in transport.messages if str(m["To"]) == email])
    started = browser.post(
        "/login",
        data={"email": email, "next": hidden(page, "next"), "csrf": csrf_of(page)},
        follow_redirects=False,
    )
    assert started.status_code == 303, started.text[:300]
    code = mail_code(transport.wait_for(email, index=before))
    done = browser.post(
        "/login/code", data={"code": code, "csrf": csrf_of(page)}, follow_redirects=False
    )
    assert done.status_code == 303, done.text[:300]
    return browser.get(done.headers["location"], follow_redirects=False)


def exchange(
    browser: TestClient, client: Client, secret: str | None, code: str, **extra: str
) -> httpx2.Response:
    """POST /oauth/token for a code (client_secret_basic when there is a secret)."""
    data = {"grant_type": "authorization_code", "code": code, "redirect_uri": RP, **extra}
    if secret is None:
        return browser.post("/oauth/token", data={**data, "client_id": client.id})
    return browser.post("/oauth/token", data=data, auth=(client.id, secret))


# --- a browser over real HTTP (httpx), for Latch under uvicorn and real relying parties -------

_FORM_LOGIN = '<form method="post" action="/login"'
_FORM_CONSENT = 'action="/oauth/consent"'
_FIELD = r'<input type="hidden" name="{}" value="([^"]*)"'


def _hidden(text: str, name: str) -> str:
    match = re.search(_FIELD.format(re.escape(name)), text)
    assert match, f"no hidden field {name!r}"
    return html.unescape(match.group(1))


def browse(
    browser: httpx.Client,
    url: str,
    transport: RecordingTransport,
    email: str,
    *,
    stop_at: str = "",
    consent: bool = True,
) -> tuple[str, httpx.Response | None]:
    """Go to `url` as a person would: follow redirects and forwarding pages, sign in on
    Latch's pages with the code from the mail, allow a consent page. Stops at the first URL
    starting with `stop_at` (a relying party that is not listening), returning it unvisited,
    or at the first page that is none of these, returning its URL and the page."""
    for _ in range(30):
        if stop_at and url.startswith(stop_at):
            return url, None
        page = browser.get(url)
        here = str(page.url)
        if page.is_redirect:
            url = urljoin(here, page.headers["location"])
            continue
        if page.status_code == 200 and _FORM_LOGIN in page.text:
            url = urljoin(here, _sign_in(browser, here, page.text, transport, email))
            continue
        if page.status_code == 200 and _FORM_CONSENT in page.text and consent:
            decided = browser.post(
                urljoin(here, "/oauth/consent"),
                data={
                    "csrf": _hidden(page.text, "csrf"),
                    "request": _hidden(page.text, "request"),
                    "decision": "allow",
                },
            )
            assert decided.status_code == 303, decided.text[:300]
            url = urljoin(here, decided.headers["location"])
            continue
        forward = _REFRESH.search(page.text)
        if page.status_code == 200 and forward:
            url = urljoin(here, html.unescape(forward.group(1)))
            continue
        return here, page
    raise AssertionError("too many steps")


def _sign_in(
    browser: httpx.Client, here: str, text: str, transport: RecordingTransport, email: str
) -> str:
    before = len([m for m in transport.messages if str(m["To"]) == email])
    csrf = _hidden(text, "csrf")
    started = browser.post(
        urljoin(here, "/login"),
        data={"email": email, "next": _hidden(text, "next"), "csrf": csrf},
    )
    assert started.status_code == 303, started.text[:300]
    code = mail_code(transport.wait_for(email, index=before, timeout=10))
    done = browser.post(urljoin(here, "/login/code"), data={"code": code, "csrf": csrf})
    assert done.status_code == 303, done.text[:300]
    return done.headers["location"]


def clients_cli(
    data_dir: Path, public_url: str, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """`python -m service clients …` against a running Latch's DATA_DIR, as an operator runs it."""
    return subprocess.run(
        [sys.executable, "-m", "service", "clients", *args],
        env={
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "PYTHONPATH": str(CHECKOUT),
            "DATA_DIR": str(data_dir),
            "PUBLIC_URL": public_url,
            **(env or {}),
        },
        cwd=data_dir,
        capture_output=True,
        text=True,
        timeout=60,
    )


def add_client_cli(data_dir: Path, public_url: str, *args: str) -> dict[str, Any]:
    """`clients add … --json`, asserting success; its JSON."""
    done = clients_cli(data_dir, public_url, "add", *args, "--json")
    assert done.returncode == 0, done.stderr
    added: dict[str, Any] = json.loads(done.stdout)
    return added
