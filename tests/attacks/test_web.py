"""Attacks on the web layer: forwarded-for spoofing, hostile bodies and query strings, clients
that hang up or go slow, paths that would split a header. One test per attack, named after it;
most speak raw HTTP to a real uvicorn, since the attacks are what ordinary clients refuse to send.
"""

from __future__ import annotations

import asyncio
import json
import re
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import httpx
import httpx2
import pytest
from starlette.routing import Route
from starlette.testclient import TestClient

from service.app import create_app
from tests.conftest import ROOT, TEST_ENV, ClientFactory, SettingsFactory
from tests.support.net import HOST
from tests.support.process import LatchProcess
from tests.support.wait import eventually
from tests.support.web import page_token

JSON = {"content-type": "application/json"}
# Every string field any JSON endpoint reads.
STRING_FIELDS = ("email", "next", "flow_id", "code", "token")
SAFETY = 20.0  # seconds a socket waits before the test gives up (a hang, not a timing claim)


def _connect(port: int) -> socket.socket:
    sock = socket.create_connection((HOST, port), timeout=SAFETY)
    return sock


def _read_response(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """One HTTP/1.1 response: status, headers (last line wins), body by Content-Length."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed before a full response: {data!r}")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:])}
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return status, headers, body


def _exchange(port: int, request: bytes) -> tuple[int, dict[str, str], bytes]:
    with _connect(port) as sock:
        sock.sendall(request)
        return _read_response(sock)


def _closed(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection."""
    received = b""
    while chunk := sock.recv(65536):
        received += chunk
    return received


def _process_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    # PYTHONPATH: the process runs in a temp dir, and must import this checkout's `service`
    # (not whichever one the virtualenv has installed).
    return {
        **TEST_ENV,
        "PYTHONPATH": str(ROOT),
        "DATA_DIR": str(tmp_path / "data"),
        "LOG_LEVEL": "DEBUG",
        **extra,
    }


@pytest.fixture
def latch_process(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[LatchProcess]:
    extra: dict[str, str] = getattr(request, "param", {})
    with LatchProcess(_process_env(tmp_path, **extra), tmp_path / "run") as proc:
        yield proc


def _log_lines(proc: LatchProcess) -> list[dict[str, Any]]:
    lines = []
    for raw in proc.output().splitlines():
        if not raw.strip():
            continue
        try:
            lines.append(json.loads(raw))
        except ValueError:
            lines.append({"level": "unparsed", "msg": raw})
    return lines


# --- 1. X-Forwarded-For over two header lines --------------------------------------------------


@pytest.mark.parametrize(
    "latch_process", [{"TRUSTED_PROXIES": "127.0.0.1", "LIMIT_STARTS_PER_IP": "2"}], indirect=True
)
def test_spoofed_forwarded_for_line_before_the_proxys_own_line_is_not_believed(
    latch_process: LatchProcess,
) -> None:
    # HAProxy's `option forwardfor` adds its own line after the client's: the right-most
    # address of all lines together is the one the proxy saw. (A real `python -m service`:
    # uvicorn's own proxy-header handling, on by default, is off there as in production.)
    port = latch_process.port

    def start_via_proxy(i: int, real: str) -> int:
        body = json.dumps({"email": f"xff{i}@example.com"}).encode()
        request = (
            f"POST /api/start HTTP/1.1\r\nHost: {HOST}:{port}\r\n"
            "Content-Type: application/json\r\n"
            f"X-Forwarded-For: 203.0.113.{i}\r\n"  # the client's own, a new lie each time
            f"X-Forwarded-For: {real}\r\n"  # the proxy's line
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        ).encode() + body
        return _exchange(port, request)[0]

    assert [start_via_proxy(i, "198.51.100.7") for i in range(3)] == [202, 202, 429]
    assert start_via_proxy(3, "198.51.100.8") == 202  # counted per real address
    refused = [ln for ln in _log_lines(latch_process) if ln.get("event") == "limit.hit"]
    assert len(refused) == 1 and "what=start" in refused[0]["msg"]
    # The console mail shows the address the proxy saw, never the client's claim.
    output = latch_process.output()
    assert "198.51.100.7" in output and "203.0.113." not in output


# --- 2. hostile JSON, forms and query strings --------------------------------------------------


def _json_routes(client: TestClient) -> list[tuple[str, str]]:
    """(method, path) of every POST and DELETE under /api/, path parameters filled in."""
    found = []
    for route in client.app.routes:  # type: ignore[attr-defined]
        if isinstance(route, Route) and route.path.startswith("/api/"):
            for method in sorted((route.methods or set()) & {"POST", "DELETE"}):
                found.append((method, re.sub(r"\{[^}]+\}", "x" * 22, route.path)))
    assert len(found) >= 7, found
    return found


def _assert_json_4xx(response: httpx2.Response, what: str) -> None:
    assert 400 <= response.status_code < 500, (what, response.status_code, response.text)
    assert response.headers["content-type"].startswith("application/json"), what
    assert "error" in response.json(), what


def test_json_nested_thousands_deep_gets_400_on_every_json_endpoint(
    make_client: ClientFactory,
) -> None:
    bodies = [
        b"[" * 8000 + b"]" * 8000,
        b'{"a":' * 8000 + b"1" + b"}" * 8000,
        b'{"email": "deep@example.com", "next": ' + b"[" * 5000 + b"]" * 5000 + b"}",
    ]
    with make_client() as client:
        for method, path in _json_routes(client):
            for body in bodies:
                response = client.request(method, path, content=body, headers=JSON)
                _assert_json_4xx(response, f"{method} {path} deep")
        response = client.post("/api/start", content=bodies[2], headers=JSON)
        assert response.json()["error"]["code"] == "invalid_request"
        assert "nested too deeply" in response.json()["error"]["message"]


def test_lone_surrogate_in_any_string_field_gets_400_on_every_json_endpoint(
    make_client: ClientFactory,
) -> None:
    valid = {"email": "s@example.com", "next": "/x", "flow_id": "f" * 32, "code": "123456"}
    with make_client() as client:
        for method, path in _json_routes(client):
            for name in STRING_FIELDS:
                for bad in ("\ud800", "/\udfff", "a\ud800b@example.com"):
                    # json.dumps escapes it as \\ud800: valid JSON, invalid Unicode.
                    body = json.dumps({**valid, "token": "t" * 40, name: bad}).encode()
                    response = client.request(method, path, content=body, headers=JSON)
                    _assert_json_4xx(response, f"{method} {path} {name}={bad!r}")
                # The same character as raw (invalid) UTF-8 bytes.
                raw = (
                    json.dumps({**valid, name: "@@"})
                    .replace("@@", "\udcff")
                    .encode("utf-8", "surrogateescape")
                )
                raw = raw.replace(b"\xff", b"\xed\xa0\x80")
                response = client.request(method, path, content=raw, headers=JSON)
                _assert_json_4xx(response, f"{method} {path} raw {name}")
            key = json.dumps({**valid, "\ud800": "a key"}).encode()
            _assert_json_4xx(client.request(method, path, content=key, headers=JSON), path)
        response = client.post("/api/verify", content=b'{"flow_id": "\\ud800"}', headers=JSON)
        assert response.json()["error"]["code"] == "invalid_request"


def test_form_with_invalid_utf8_gets_400_instead_of_replaced_text(
    make_client: ClientFactory,
) -> None:
    form = {"content-type": "application/x-www-form-urlencoded"}
    with make_client() as client:
        token = page_token(client)
        for bad in (b"next=%ED%A0%80", b"next=/\xed\xa0\x80", b"email=%FF%FE", b"%C0%AF=1"):
            body = b"csrf=" + token.encode() + b"&email=f%40example.com&" + bad
            response = client.post("/login", content=body, headers=form, follow_redirects=False)
            assert response.status_code == 400, (bad, response.status_code)
            assert response.headers["content-type"].startswith("text/html")
        good = b"csrf=" + token.encode() + b"&email=f%40example.com&next=%2Fcaf%C3%A9"
        response = client.post("/login", content=good, headers=form, follow_redirects=False)
        assert response.status_code == 303


def test_bad_percent_encoding_in_query_strings_never_gets_500_on_any_page(
    make_client: ClientFactory,
) -> None:
    queries = ["next=%ED%A0%80", "t=%ED%A0%80", "t=%ff", "next=%", "next=%zz", "%ED%A0%80=1"]
    with make_client() as client:
        for route in client.app.routes:  # type: ignore[attr-defined]
            if not isinstance(route, Route) or "GET" not in (route.methods or set()):
                continue
            path = re.sub(r"\{[^}]+\}", "x", route.path)
            for query in queries:
                response = client.get(f"{path}?{query}", follow_redirects=False)
                assert response.status_code < 500, (path, query, response.status_code)


# --- 3. a client that hangs up mid-body --------------------------------------------------------


def _request_counts(proc: LatchProcess) -> dict[str, float]:
    text = httpx.get(f"{proc.url}/metrics", timeout=SAFETY).text  # from loopback
    pattern = r"^latch_request_seconds_count\{(.*)\} (\S+)$"
    return {labels: float(n) for labels, n in re.findall(pattern, text, re.M)}


def test_client_hanging_up_mid_body_is_no_5xx_and_no_error_line(
    latch_process: LatchProcess,
) -> None:
    port = latch_process.port
    with _connect(port) as sock:
        sock.sendall(
            f"POST /api/start HTTP/1.1\r\nHost: {HOST}:{port}\r\n"
            "Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n".encode()
            + b'{"email": '
        )
    eventually(
        lambda: any('route="/api/start"' in k for k in _request_counts(latch_process)),
        "the hung-up request to be recorded",
        SAFETY,
    )
    counts = _request_counts(latch_process)
    assert not [k for k in counts if re.search(r'status="5\d\d"', k)], counts
    lines = _log_lines(latch_process)
    assert not [ln for ln in lines if ln.get("level") in ("error", "critical", "unparsed")]
    gone = [ln for ln in lines if ln.get("event") == "http.disconnect"]
    assert gone and gone[0]["level"] == "info"


# --- 4. slow clients ---------------------------------------------------------------------------


@pytest.mark.parametrize("latch_process", [{"BODY_TIMEOUT": "1"}], indirect=True)
def test_half_sent_body_gets_408_and_the_connection_closed(latch_process: LatchProcess) -> None:
    port = latch_process.port
    with _connect(port) as sock:
        sock.sendall(
            f"POST /api/start HTTP/1.1\r\nHost: {HOST}:{port}\r\n"
            "Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{".encode()
        )
        answer = _closed(sock)
    assert answer.startswith(b"HTTP/1.1 408 "), answer[:80]
    assert b'"request_timeout"' in answer
    assert any(ln.get("event") == "http.slow_body" for ln in _log_lines(latch_process))


@pytest.mark.parametrize(
    "latch_process", [{"HEADER_TIMEOUT": "1", "BODY_TIMEOUT": "1"}], indirect=True
)
def test_slowloris_clients_are_cut_off_and_others_still_served(
    latch_process: LatchProcess,
) -> None:
    port = latch_process.port
    half_headers = f"GET /login HTTP/1.1\r\nHost: {HOST}:{port}\r\nX-Slow: ".encode()
    half_body = (
        f"POST /api/start HTTP/1.1\r\nHost: {HOST}:{port}\r\n"
        "Content-Type: application/json\r\nContent-Length: 500\r\n\r\n{"
    ).encode()
    slow: list[socket.socket] = []
    try:
        for i in range(60):
            sock = _connect(port)
            slow.append(sock)
            if i % 3:
                sock.sendall(half_headers if i % 3 == 1 else half_body)
            # i % 3 == 0: connected and silent
        assert httpx.get(f"{latch_process.url}/healthz", timeout=SAFETY).status_code == 200
        for sock in slow:  # each one is answered with a 408 or closed: none stays open
            answer = _closed(sock)
            assert answer == b"" or answer.startswith(b"HTTP/1.1 408 "), answer[:80]
    finally:
        for sock in slow:
            sock.close()
    assert httpx.get(f"{latch_process.url}/healthz", timeout=SAFETY).status_code == 200


# --- 5. a development redirect of a path that would split the header -------------------------

HOSTILE_PATHS = {
    "/a%0D%0ASet-Cookie:%20pwn=1": "/a\r\nSet-Cookie: pwn=1",
    "/nul%00x": "/nul\x00x",
    "/caf%C3%A9/%E2%9C%93": "/café/✓",
    "/with%20space/and%2520percent": "/with space/and%20percent",
    "//evil.example/%0a": "//evil.example/\n",
}


def _assert_redirect_to_public_url(location: str, public_url: str, path: str) -> None:
    assert location.isascii() and not re.search(r"[\x00-\x20\x7f]", location), location
    assert location.startswith(public_url + "/"), location
    assert unquote(location[len(public_url) :]) == path


def test_development_redirect_of_a_path_with_crlf_nul_or_unicode_is_a_valid_location(
    latch_process: LatchProcess,
) -> None:
    port = latch_process.port
    for raw, path in HOSTILE_PATHS.items():
        request = f"GET {raw} HTTP/1.1\r\nHost: localhost:{port}\r\nConnection: close\r\n\r\n"
        status, headers, _ = _exchange(port, request.encode())
        assert status == 302, (raw, status)
        assert "set-cookie" not in headers
        _assert_redirect_to_public_url(headers["location"], latch_process.url, path)
    assert not [ln for ln in _log_lines(latch_process) if ln.get("level") == "error"]


def _asgi_get(app: Any, path: str, host: bytes) -> list[dict[str, Any]]:
    """The messages the app sends for a GET of an already-decoded `path` (a raw ASGI call)."""
    sent: list[dict[str, Any]] = []
    scope = {
        "type": "http",
        "method": "GET",
        "path": path,
        "raw_path": path.encode("utf-8", "replace"),
        "query_string": b"",
        "headers": [(b"host", host)],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 8000),
        "scheme": "http",
    }

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    return sent


def test_development_redirect_through_asgi_encodes_any_decoded_path(
    make_settings: SettingsFactory,
) -> None:
    settings = make_settings()
    app = create_app(settings)
    for path in [*HOSTILE_PATHS.values(), "/\udcff\ud800", "/%41"]:
        sent = _asgi_get(app, path, b"localhost:8000")
        assert sent[0]["status"] == 302, path
        location = dict(sent[0]["headers"])[b"location"].decode("ascii")
        # Lone surrogates cannot be encoded: each becomes "?" (%3F), still one valid header.
        expected = path.encode("utf-8", "replace").decode("utf-8")
        _assert_redirect_to_public_url(location, settings.public_url, expected)
