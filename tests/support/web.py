"""Driving Latch's HTML forms the way a browser does: read the hidden fields, post them back."""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from contextlib import contextmanager

import httpx2
from starlette.testclient import TestClient

from tests.conftest import RecordingTransport, mail_code

CSRF_FIELD = re.compile(r'name="csrf" value="([0-9a-f]{64})"')


def csrf_of(page: httpx2.Response) -> str:
    """The CSRF hidden field of a page (asserting there is one)."""
    match = CSRF_FIELD.search(page.text)
    assert match, "no csrf field on the page"
    return match.group(1)


def hidden(page: httpx2.Response, name: str) -> str:
    """The (unescaped) value of a hidden field."""
    pattern = rf'<input type="hidden" name="{re.escape(name)}" value="([^"]*)"'
    match = re.search(pattern, page.text)
    assert match, f"no hidden field {name!r}"
    return html.unescape(match.group(1))


def assert_post_answer(response: httpx2.Response) -> None:
    """Every POST answers with a 303 or a page: never a 307, which re-sends the form."""
    status = response.status_code
    assert status != 307
    ctype = response.headers.get("content-type", "")
    assert status == 303 or ctype.startswith("text/html"), (status, ctype)


def page_token(client: TestClient) -> str:
    """A CSRF field for this client's cookie, read from the sign-in page."""
    return csrf_of(client.get("/login"))


def post_form(
    client: TestClient,
    path: str,
    data: dict[str, str] | None = None,
    *,
    token: str | None = None,
    headers: dict[str, str] | None = None,
) -> httpx2.Response:
    """POST a form as the page would (with its CSRF field), not following the redirect."""
    fields = {"csrf": page_token(client) if token is None else token, **(data or {})}
    response = client.post(path, data=fields, headers=headers, follow_redirects=False)
    assert_post_answer(response)
    return response


def start_html(client: TestClient, email: str, next_url: str | None = None) -> httpx2.Response:
    """GET /login (with `next`), then POST the form back; returns the POST's answer."""
    page = client.get("/login", params={"next": next_url} if next_url is not None else None)
    data = {"email": email, "next": hidden(page, "next")}
    return post_form(client, "/login", data, token=csrf_of(page))


def wrong_code(code: str) -> str:
    """A well-formed code that is not `code`."""
    return "000000" if code != "000000" else "111111"


def code_of_html_start(client: TestClient, transport: RecordingTransport, email: str) -> str:
    """Start a flow through the pages (the first mail to `email`); the code it mails."""
    start_html(client, email)
    return mail_code(transport.wait_for(email))


def sign_in_html(
    client: TestClient,
    transport: RecordingTransport,
    email: str,
    *,
    next_url: str | None = None,
    raw_next: str | None = None,
) -> httpx2.Response:
    """A whole sign-in through the forms; returns the 303 that follows the right code.

    `raw_next` posts a `next` field the page never offered (as a forged form would).
    """
    before = len([m for m in transport.messages if str(m["To"]).lower() == email.lower()])
    if raw_next is None:
        started = start_html(client, email, next_url)
    else:
        data = {"email": email, "next": raw_next}
        started = post_form(client, "/login", data)
    assert started.status_code == 303, started.text
    code = mail_code(transport.wait_for(email, index=before))
    page = client.get("/login/code")
    return post_form(client, "/login/code", {"code": code}, token=csrf_of(page))


@contextmanager
def other_browser(client: TestClient, user_agent: str | None = None) -> Iterator[TestClient]:
    """The same app seen from a browser with none of this one's cookies (another device)."""
    saved, saved_agent = client.cookies, client.headers.get("user-agent")
    client.cookies = httpx2.Cookies()
    if user_agent is not None:
        client.headers["user-agent"] = user_agent
    try:
        yield client
    finally:
        client.cookies = saved
        if saved_agent is not None:
            client.headers["user-agent"] = saved_agent
