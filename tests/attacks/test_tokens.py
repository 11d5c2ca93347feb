"""Attacks on access tokens, at /auth/check and in service/verifier.py alike: keys that were
retired, lifetimes longer than ACCESS_TTL, prefix-matched public paths, and every spelling of a
claim or of a base64url segment that one path let through and the other did not."""

from __future__ import annotations

import base64
import json
import logging
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from jwt.algorithms import get_default_algorithms
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route
from starlette.testclient import TestClient

from service import tokens
from service.tokens import Keyring, SigningKey
from service.verifier import InvalidTokenError, LatchAuthMiddleware, Verifier
from service.web.state import app_state_of
from tests.conftest import RecordingTransport, sign_in
from tests.support.keys import keys_cli, published
from tests.support.net import HOST
from tests.support.server import Latch, ThreadedServer, running_latch
from tests.support.wait import eventually

JWKS = "/.well-known/jwks.json"
TEN_YEARS = 10 * 365 * 86400


# --- forging: signs exactly the bytes given, with Latch's real current key ----------------------


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _current(keys_dir: Path) -> SigningKey:
    # Whatever the folder signs with (ES256 by default, EdDSA in the fixtures that pin it).
    alg = next(e["alg"] for e in tokens.list_keys(keys_dir) if e["state"] == "current")
    return Keyring(keys_dir, alg, b"").current


def _raw_signature(key: SigningKey, signing_input: bytes) -> bytes:
    # PyJWT's own signer for the key's algorithm: raw r||s for ES256, as JWS wants it.
    return bytes(get_default_algorithms()[key.alg].sign(signing_input, key.private))


def _signed(keys_dir: Path, header: bytes, payload: bytes) -> str:
    signing_input = f"{_b64(header)}.{_b64(payload)}"
    signature = _raw_signature(_current(keys_dir), signing_input.encode())
    return f"{signing_input}.{_b64(signature)}"


def _header(keys_dir: Path, **extra: Any) -> dict[str, Any]:
    key = _current(keys_dir)
    return {"alg": key.alg, "kid": key.kid, "typ": "at+jwt", **extra}


def _forge(
    keys_dir: Path, genuine: str, header: dict[str, Any] | None = None, **claims: Any
) -> str:
    """A token like `genuine` with some claims replaced (`None` removes one), JSON as given:
    `float("inf")` goes out as `Infinity`, which Python's json reads back."""
    body = {**jwt.decode(genuine, options={"verify_signature": False}), **claims}
    body = {k: v for k, v in body.items() if v is not None}
    head = header if header is not None else _header(keys_dir)
    return _signed(keys_dir, json.dumps(head).encode(), json.dumps(body).encode())


def _raw(keys_dir: Path, genuine: str, replace: Callable[[str], str]) -> str:
    """A token whose payload JSON text is edited by hand (duplicate members, odd numbers)."""
    body = json.dumps(jwt.decode(genuine, options={"verify_signature": False}))
    return _signed(keys_dir, json.dumps(_header(keys_dir)).encode(), replace(body).encode())


def _check(client: TestClient | httpx.Client, token: str) -> int:
    """/auth/check with the token as a bearer (any base64 character survives a header)."""
    return client.get("/auth/check", headers={"Authorization": f"Bearer {token}"}).status_code


# --- 1. a retired key stops every token it signed, and no token outlives ACCESS_TTL --------------


def test_retired_key_stops_its_cached_tokens_at_auth_check_within_the_reload_interval(
    tmp_path: Path,
) -> None:
    with running_latch(tmp_path / "data", KEYS_RELOAD_INTERVAL="0.05") as latch:
        keyring: Keyring = app_state_of(latch.counter).keyring
        old_kid = keyring.current.kid
        with latch.sign_in("ivy@example.com") as browser:
            token = browser.cookies["latch_session"]
        with httpx.Client(base_url=latch.url) as http:
            assert _check(http, token) == 200  # verified once: now in the cache
            assert keys_cli(latch, "rotate").returncode == 0
            assert keys_cli(latch, "retire", "--force", old_kid).returncode == 0
            eventually(lambda: old_kid not in published(latch), "the old key to be unpublished")
            # The key is gone from the JWKS: its tokens must be refused within a reload.
            eventually(lambda: _check(http, token) == 401, "the retired key's token to be refused")
            assert _check(http, token) == 401


def test_verifier_drops_cached_tokens_of_a_key_that_left_the_jwks(tmp_path: Path) -> None:
    with running_latch(tmp_path / "data", KEYS_RELOAD_INTERVAL="0.05") as latch:
        keyring: Keyring = app_state_of(latch.counter).keyring
        old_kid = keyring.current.kid
        with latch.sign_in("ivy@example.com") as browser:
            token = browser.cookies["latch_session"]
        tick = [1000.0]
        verifier = Verifier(
            issuer=latch.url,
            audience=latch.url,
            jwks_url=latch.url + JWKS,
            monotonic=lambda: tick[0],
        )
        assert verifier.verify(token).email == "ivy@example.com"
        assert keys_cli(latch, "rotate").returncode == 0
        assert keys_cli(latch, "retire", "--force", old_kid).returncode == 0
        eventually(lambda: old_kid not in published(latch), "the old key to be unpublished")
        tick[0] += verifier.jwks_max_age  # the JWKS copy is now due for a refetch
        with pytest.raises(InvalidTokenError):
            verifier.verify(token)


@pytest.mark.parametrize("lifetime", [900 + 1, 3600, TEN_YEARS])
def test_token_living_longer_than_access_ttl_is_refused_at_auth_check(
    lifetime: int,
    client: TestClient,
    transport: RecordingTransport,
    caplog: pytest.LogCaptureFixture,
) -> None:
    sign_in(client, transport, "jo@example.com")
    genuine = client.cookies["latch_session"]
    client.cookies.clear()  # only the forged bearer speaks below
    keys_dir = app_state_of(client).settings.tokens.keys_dir
    now = int(time.time())
    assert _check(client, _forge(keys_dir, genuine, iat=now, nbf=now, exp=now + 900)) == 200
    with caplog.at_level(logging.DEBUG, logger="latch.sessions"):
        assert (
            _check(client, _forge(keys_dir, genuine, iat=now, nbf=now, exp=now + lifetime)) == 401
        )
    assert "lifetime" in caplog.text


def test_verifier_refuses_a_ten_year_token_signed_by_latchs_own_key(tmp_path: Path) -> None:
    with running_latch(tmp_path / "data") as latch:
        with latch.sign_in("kim@example.com") as browser:
            genuine = browser.cookies["latch_session"]
        now = int(time.time())
        forged = _forge(
            latch.settings.tokens.keys_dir, genuine, iat=now, nbf=now, exp=now + TEN_YEARS
        )
        verifier = Verifier(issuer=latch.url, audience=latch.url, jwks_url=latch.url + JWKS)
        assert verifier.verify(genuine).email == "kim@example.com"
        with pytest.raises(InvalidTokenError, match="lifetime"):
            verifier.verify(forged)
        # Told a longer lifetime (Latch run with ACCESS_TTL=10 years), the verifier takes it.
        trusting = Verifier(
            issuer=latch.url, audience=latch.url, jwks_url=latch.url + JWKS, max_lifetime=TEN_YEARS
        )
        assert trusting.verify(forged).email == "kim@example.com"


# --- 2. public_paths match whole path segments, never a prefix or a dot-segment trick -----------


def _service() -> Starlette:
    async def hello(request: Request) -> Response:
        return PlainTextResponse(f"served {request.url.path}")

    return Starlette(
        routes=[Route("/{path:path}", hello)],
        middleware=[
            Middleware(
                LatchAuthMiddleware,
                verifier=Verifier(
                    issuer="https://login.example.com",
                    audience="https://login.example.com",
                    jwks_url="http://127.0.0.1:9/jwks.json",  # never asked: no token is sent
                ),
                login_url="https://login.example.com/login",
                refresh_url="https://login.example.com/refresh",
                public_paths=("/public",),
            )
        ],
    )


def _raw_get(port: int, target: str) -> int:
    """The status of a GET sent byte for byte (HTTP clients normalise `..` and `%2F` away)."""
    with socket.create_connection((HOST, port), timeout=10) as sock:
        request = (
            f"GET {target} HTTP/1.1\r\nHost: app.example.com\r\n"
            "Accept: application/json\r\nConnection: close\r\n\r\n"
        )
        sock.sendall(request.encode())
        answer = b""
        while b"\r\n" not in answer:
            chunk = sock.recv(4096)
            if not chunk:
                break
            answer += chunk
    return int(answer.split(b" ", 2)[1])


@pytest.fixture(scope="module")
def service_port() -> Iterator[int]:
    with ThreadedServer(_service()) as server:
        yield server.port


@pytest.mark.parametrize("target", ["/public", "/public/", "/public/logo.png", "/public/a/b"])
def test_public_paths_open_the_path_and_what_is_under_it(service_port: int, target: str) -> None:
    assert _raw_get(service_port, target) == 200


@pytest.mark.parametrize(
    "target",
    [
        "/public-admin",
        "/publicity/export",
        "/public.json",
        "/public%2Dadmin",
        "/public/../admin",
        "/public/..",
        "/public/./../admin",
        "/public%2F..%2Fadmin",
        "/public%2f..%2fadmin",
        "/public/%2e%2e/admin",
        "/public/%2E%2E/admin",
        "/public/.%2e/admin",
        "/public%5C..%5Cadmin",
        "/public\\..\\admin",
        "/PUBLIC/x",
        "//public/../admin",
    ],
)
def test_public_paths_prefix_and_dot_segment_tricks_need_a_token(
    service_port: int, target: str
) -> None:
    assert _raw_get(service_port, target) == 401


# --- 3. one strict reading of the claims and the segments, on both paths --------------------------


def _now() -> int:
    return int(time.time())


# Each makes a token Latch's key really signed, that one of the two paths used to accept or
# crash on. The `sid`/`sub` mismatch is for /auth/check only (a verifier has no session table).
CLAIM_VECTORS: dict[str, Callable[[Path, str], str]] = {
    "exp Infinity": lambda d, t: _forge(d, t, exp=float("inf")),
    "exp -Infinity": lambda d, t: _forge(d, t, exp=float("-inf")),
    "exp NaN": lambda d, t: _forge(d, t, exp=float("nan")),
    "exp 1e400": lambda d, t: _raw(d, t, lambda b: _set(b, "exp", "1e400")),
    "exp a float": lambda d, t: _forge(d, t, exp=_now() + 600.5),
    "exp a numeric string": lambda d, t: _forge(d, t, exp=str(_now() + 600)),
    "exp true": lambda d, t: _forge(d, t, exp=True),
    "exp negative": lambda d, t: _forge(d, t, exp=-1),
    "exp a huge int": lambda d, t: _forge(d, t, exp=10**30),
    "exp 5000 digits": lambda d, t: _raw(d, t, lambda b: _set(b, "exp", "9" * 5000)),
    "exp null": lambda d, t: _raw(d, t, lambda b: _set(b, "exp", "null")),
    "iat NaN": lambda d, t: _forge(d, t, iat=float("nan")),
    "iat a string": lambda d, t: _forge(d, t, iat=str(_now())),
    "iat true": lambda d, t: _forge(d, t, iat=True),
    "iat a huge negative int": lambda d, t: _forge(d, t, iat=-(10**30)),
    "nbf -Infinity": lambda d, t: _forge(d, t, nbf=float("-inf")),
    "nbf a string": lambda d, t: _forge(d, t, nbf=str(_now())),
    "nbf false": lambda d, t: _forge(d, t, nbf=False),
    "no iat": lambda d, t: _forge(d, t, iat=None),
    "sub a number": lambda d, t: _forge(d, t, sub=12345),
    "sub empty": lambda d, t: _forge(d, t, sub=""),
    "sub 10k characters": lambda d, t: _forge(d, t, sub="a" * 10_000),
    "sid a list": lambda d, t: _forge(d, t, sid=["x"]),
    "jti 10k characters": lambda d, t: _forge(d, t, jti="j" * 10_000),
    "email with CRLF": lambda d, t: _forge(d, t, email="a@example.com\r\nX-Latch-User: admin"),
    "email a lone surrogate": lambda d, t: _raw(d, t, lambda b: _set(b, "email", '"\\ud800"')),
    "duplicate sub": lambda d, t: _raw(d, t, lambda b: b[:-1] + ', "sub": "someone-else"}'),
    "duplicate exp": lambda d, t: _raw(d, t, lambda b: b[:-1] + f', "exp": {10**10}}}'),
    "payload not an object": lambda d, t: _signed(d, json.dumps(_header(d)).encode(), b'["iss"]'),
    "crit header": lambda d, t: _forge(d, t, header=_header(d, crit=["b64"], b64=False)),
    "b64 false header": lambda d, t: _forge(d, t, header=_header(d, b64=False)),
    "zip header": lambda d, t: _forge(d, t, header=_header(d, zip="DEF")),
    # The header names another algorithm than the key's (signed with the key's own).
    "alg mismatch": lambda d, t: _forge(
        d, t, header=_header(d, alg="EdDSA" if _current(d).alg == "ES256" else "ES256")
    ),
    "duplicate alg in header": lambda d, t: _signed(
        d,
        json.dumps(_header(d)).encode()[:-1] + b', "alg": "HS256"}',
        json.dumps(jwt.decode(t, options={"verify_signature": False})).encode(),
    ),
}


def _set(body: str, name: str, literal: str) -> str:
    """The payload JSON with one member's value replaced by a literal spelled by hand."""
    claims = json.loads(body)
    claims[name] = "@@"
    return json.dumps(claims).replace('"@@"', literal)


def _respell(token: str, index: int, how: str) -> str:
    """One segment of a genuine token spelled another way that decodes to the same bytes."""
    parts = token.split(".")
    seg = parts[index]
    if how == "padded":
        assert len(seg) % 4, "this segment needs no padding"
        seg += "=" * (-len(seg) % 4)
    elif how == "standard alphabet":
        assert "-" in seg or "_" in seg
        seg = seg.replace("-", "+").replace("_", "/")
    elif how == "stray bits":
        alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
        assert len(seg) % 4 in (2, 3), "this segment has no unused bits"
        seg = seg[:-1] + alphabet[alphabet.index(seg[-1]) ^ 1]
    elif how == "extra padding":
        seg += "===="
    elif how == "stray character":
        seg = seg[:4] + "!" + seg[4:]
    parts[index] = seg
    respelled = ".".join(parts)
    assert respelled != token
    return respelled


SPELLINGS = ["padded", "standard alphabet", "stray bits", "extra padding", "stray character"]


def _awkward(keys_dir: Path, genuine: str) -> str:
    """A genuine-shaped token whose three segments all have unused bits, and whose payload and
    signature hold `-` or `_`, so every respelling applies (found by padding the JSON).

    A header of `alg`, `kid` and `typ` never holds `-` or `_`: in base64 they come only from
    bytes above 0x7F or from `>`, `?`, `~` at every third place, which none of its values has.
    """
    claims = jwt.decode(genuine, options={"verify_signature": False})
    for attempt in range(500):
        head = json.dumps(_header(keys_dir)).replace(":", ":" + " " * (attempt % 3), 1)
        body = json.dumps({**claims, "pad": "~?" * (attempt // 3)})
        token = _signed(keys_dir, head.encode(), body.encode())
        segments = token.split(".")
        if all(len(s) % 4 in (2, 3) for s in segments) and all(
            "-" in s or "_" in s for s in segments[1:]
        ):
            return token
    raise AssertionError("no awkward token found")


@pytest.fixture(scope="module")
def latch(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Latch]:
    with running_latch(tmp_path_factory.mktemp("latch") / "data") as server:
        yield server


@pytest.fixture(scope="module")
def people(latch: Latch) -> dict[str, str]:
    tokens = {}
    for email in ("lee@example.com", "max@example.com"):
        with latch.sign_in(email) as browser:
            tokens[email] = browser.cookies["latch_session"]
    return tokens


@pytest.fixture(scope="module")
def genuine(people: dict[str, str]) -> str:
    return people["lee@example.com"]


def _verifier(latch: Latch) -> Verifier:
    return Verifier(issuer=latch.url, audience=latch.url, jwks_url=latch.url + JWKS)


@pytest.mark.parametrize("name", list(CLAIM_VECTORS))
def test_malformed_claim_or_header_is_refused_at_auth_check(
    name: str, latch: Latch, genuine: str
) -> None:
    token = CLAIM_VECTORS[name](latch.settings.tokens.keys_dir, genuine)
    with httpx.Client(base_url=latch.url) as http:
        assert _check(http, genuine) == 200
        assert _check(http, token) == 401
        cookie = http.get("/auth/check", headers={"Cookie": f"latch_session={token}"})
        assert cookie.status_code == 401


@pytest.mark.parametrize("name", list(CLAIM_VECTORS))
def test_malformed_claim_or_header_is_refused_by_the_verifier(
    name: str, latch: Latch, genuine: str
) -> None:
    token = CLAIM_VECTORS[name](latch.settings.tokens.keys_dir, genuine)
    verifier = _verifier(latch)
    assert verifier.verify(genuine).email == "lee@example.com"
    with pytest.raises(InvalidTokenError):  # never OverflowError, ValueError, ...
        verifier.verify(token)


@pytest.mark.parametrize(
    ("index", "how"),
    [
        pytest.param(index, how, id=f"{part}-{how}")
        for index, part in enumerate(("header", "payload", "signature"))
        for how in SPELLINGS
        if (part, how) != ("header", "standard alphabet")  # see _awkward
    ],
)
def test_second_spelling_of_a_segment_is_refused_on_both_paths(
    index: int, how: str, latch: Latch, genuine: str
) -> None:
    canonical = _awkward(latch.settings.tokens.keys_dir, genuine)
    token = _respell(canonical, index, how)
    verifier = _verifier(latch)
    assert verifier.verify(canonical).email == "lee@example.com"
    with pytest.raises(InvalidTokenError):
        verifier.verify(token)
    with httpx.Client(base_url=latch.url) as http:
        assert _check(http, canonical) == 200
        assert _check(http, token) == 401


def test_session_of_another_user_is_refused_at_auth_check(
    latch: Latch, people: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    lee = jwt.decode(people["lee@example.com"], options={"verify_signature": False})
    max_ = jwt.decode(people["max@example.com"], options={"verify_signature": False})
    # Max's id with Lee's live session: a token only a key holder could make, or a mix-up.
    forged = _forge(latch.settings.tokens.keys_dir, people["lee@example.com"], sub=max_["sub"])
    with httpx.Client(base_url=latch.url) as http:
        assert _check(http, people["lee@example.com"]) == 200  # Lee's session is cached valid
        with caplog.at_level(logging.DEBUG, logger="latch.sessions"):
            assert _check(http, forged) == 401
        swapped = _forge(latch.settings.tokens.keys_dir, people["max@example.com"], sid=lee["sid"])
        assert _check(http, swapped) == 401
    assert "does not belong" in caplog.text


@pytest.mark.parametrize("index", [0, 1], ids=["header", "payload"])
def test_padded_segment_signed_as_padded_is_refused_on_both_paths(
    index: int, latch: Latch, genuine: str
) -> None:
    # Respelling a header or payload breaks the signature (it covers the segment's text), so
    # the test above only proves that much; signed over its padded text, the segment is
    # genuine but not canonical base64url, and one strict reader refuses it all the same.
    key = _current(latch.settings.tokens.keys_dir)
    parts = _awkward(latch.settings.tokens.keys_dir, genuine).split(".")[:2]
    parts[index] += "=" * (-len(parts[index]) % 4)
    signing_input = ".".join(parts)
    token = f"{signing_input}.{_b64(_raw_signature(key, signing_input.encode()))}"
    with pytest.raises(InvalidTokenError):
        _verifier(latch).verify(token)
    with httpx.Client(base_url=latch.url) as http:
        assert _check(http, token) == 401
