"""service/verifier.py against a real Latch on loopback, and the same forgeries at /auth/check."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from jwt import api_jws as jws
from jwt.algorithms import OKPAlgorithm
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.testclient import TestClient

from service.tokens import Keyring
from service.verifier import (
    Claims,
    ExpiredTokenError,
    InvalidTokenError,
    LatchAuthMiddleware,
    Verifier,
    verify_token,
)
from tests.support.server import Latch, running_latch

EMAIL = "carol@example.com"


@pytest.fixture(scope="module")
def latch(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Latch]:
    # EdDSA, not the default ES256: the forgers here sign raw Ed25519, and this keeps an
    # EdDSA key folder (what a Latch from before ES256 left behind) under the whole suite.
    with running_latch(tmp_path_factory.mktemp("latch") / "data", JWT_ALGORITHM="EdDSA") as server:
        yield server


@pytest.fixture(scope="module")
def http(latch: Latch) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=latch.url) as client:
        yield client


@pytest.fixture(scope="module")
def session_token(latch: Latch) -> str:
    with latch.sign_in(EMAIL) as client:
        token = client.cookies.get("latch_session")
    assert token
    return token


def verifier_for(latch: Latch, **kw: Any) -> Verifier:
    return Verifier(
        issuer=latch.url, audience=latch.url, jwks_url=f"{latch.url}/.well-known/jwks.json", **kw
    )


# --- forging -----------------------------------------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unsigned(header: dict[str, Any], claims: dict[str, Any]) -> str:
    return f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"


class Forge:
    """Signs made-up tokens with Latch's real current key (read from KEYS_DIR)."""

    def __init__(self, latch: Latch, genuine: str) -> None:
        self.keyring = Keyring(latch.settings.tokens.keys_dir, "EdDSA", b"")
        self.claims: dict[str, Any] = jwt.decode(genuine, options={"verify_signature": False})
        self.kid = self.keyring.current.kid

    def header(self, **extra: Any) -> dict[str, Any]:
        return {"alg": "EdDSA", "kid": self.kid, "typ": "at+jwt", **extra}

    def sign(self, *, header: dict[str, Any] | None = None, **claims: Any) -> str:
        body = {**self.claims, **claims}
        head = header if header is not None else self.header()
        signing = {k: v for k, v in head.items() if k != "alg"}
        key = self.keyring.current.private
        # PyJWS, not jwt.encode: the payload goes out as given, even claims PyJWT would refuse.
        payload = json.dumps(body).encode()
        return jws.encode(payload, key, algorithm=head["alg"], headers=signing)

    def public_pem(self) -> bytes:
        public = self.keyring.current.public
        assert isinstance(public, ed25519.Ed25519PublicKey)
        return public.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )


def _alg_none(spelling: str) -> Callable[[Forge], str]:
    def make(f: Forge) -> str:
        return _unsigned(f.header(alg=spelling), f.claims) + "."

    return make


def _hs256_with_public_key(f: Forge) -> str:
    # The classic confusion attack: HMAC "signed" with the published key as the secret.
    signing_input = _unsigned(f.header(alg="HS256"), f.claims)
    mac = hmac.new(f.public_pem(), signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64(mac)}"


def _attacker_key_in_jwk_header(f: Forge) -> str:
    attacker = ed25519.Ed25519PrivateKey.generate()
    jwk = OKPAlgorithm.to_jwk(attacker.public_key(), as_dict=True)
    return jwt.encode(f.claims, attacker, algorithm="EdDSA", headers=f.header(jwk=jwk))


def _attacker_kid_with_jku(f: Forge) -> str:
    attacker = ed25519.Ed25519PrivateKey.generate()
    head = {"kid": "attacker", "typ": "at+jwt", "jku": "http://127.0.0.1:9/jwks.json"}
    return jwt.encode(f.claims, attacker, algorithm="EdDSA", headers=head)


def _tampered(f: Forge) -> str:
    token = f.sign()
    head, body, sig = token.split(".")
    flipped = _b64(bytes([base64.urlsafe_b64decode(sig + "==")[0] ^ 1]))[:2]
    return f"{head}.{body}.{flipped}{sig[2:]}"


def _tampered_claims(f: Forge) -> str:
    head, _, sig = f.sign().split(".")
    return f"{head}.{_b64(json.dumps({**f.claims, 'email': 'boss@example.com'}).encode())}.{sig}"


FORGERIES: dict[str, Callable[[Forge], str]] = {
    "alg none": _alg_none("none"),
    "alg None": _alg_none("None"),
    "alg nOnE": _alg_none("nOnE"),
    "hs256 with the public key as secret": _hs256_with_public_key,
    "iss prefix": lambda f: f.sign(iss=f.claims["iss"][:-1]),
    "iss with suffix": lambda f: f.sign(iss=f.claims["iss"] + ".evil.com"),
    "iss as a list": lambda f: f.sign(iss=[f.claims["iss"]]),
    "wrong aud": lambda f: f.sign(aud="https://other.example.com"),
    "aud prefix": lambda f: f.sign(aud=f.claims["aud"][:-1]),
    "expired": lambda f: f.sign(exp=int(time.time()) - 10),
    "nbf in the future": lambda f: f.sign(nbf=int(time.time()) + 3600),
    "typ JWT": lambda f: f.sign(header=f.header(typ="JWT")),
    "no typ": lambda f: f.sign(header={"alg": "EdDSA", "kid": f.kid}),
    "tampered signature": _tampered,
    "tampered claims": _tampered_claims,
    "attacker key in jwk header": _attacker_key_in_jwk_header,
    "attacker kid with jku": _attacker_kid_with_jku,
    "unknown kid": lambda f: f.sign(header=f.header(kid="no-such-key")),
    "kid with a path": lambda f: f.sign(header=f.header(kid="../../keys/" + f.kid)),
    "kid with sql": lambda f: f.sign(header=f.header(kid=f"{f.kid}' OR '1'='1")),
    "not a jwt": lambda f: "not.a.jwt",
}


@pytest.fixture(scope="module")
def forge(latch: Latch, session_token: str) -> Forge:
    return Forge(latch, session_token)


# --- the verifier ------------------------------------------------------------------------------


def test_verifier_accepts_a_token_latch_issued(latch: Latch, session_token: str) -> None:
    claims = verifier_for(latch).verify(session_token)
    assert isinstance(claims, Claims)
    assert claims.email == EMAIL and claims.iss == latch.url and claims.aud == latch.url


def test_forge_signs_tokens_the_verifier_accepts(latch: Latch, forge: Forge) -> None:
    # The forgeries below differ from this token in one respect each: their refusal is real.
    assert verifier_for(latch).verify(forge.sign(jti="fresh")).email == EMAIL


@pytest.mark.parametrize("name", list(FORGERIES))
def test_verifier_refuses(name: str, latch: Latch, forge: Forge) -> None:
    token = FORGERIES[name](forge)
    with pytest.raises(InvalidTokenError):
        verifier_for(latch, refetch_interval=0).verify(token)


@pytest.mark.parametrize("name", list(FORGERIES))
def test_auth_check_refuses(name: str, http: httpx.Client, forge: Forge) -> None:
    token = FORGERIES[name](forge)
    for headers in ({"Cookie": f"latch_session={token}"}, {"Authorization": f"Bearer {token}"}):
        assert http.get("/auth/check", headers=headers).status_code == 401


def test_expired_token_is_told_apart_from_a_bad_one(latch: Latch, session_token: str) -> None:
    exp = jwt.decode(session_token, options={"verify_signature": False})["exp"]
    later = verifier_for(latch, clock=lambda: exp + 1)
    with pytest.raises(ExpiredTokenError):
        later.verify(session_token)


def test_cached_token_is_dropped_at_its_expiry(latch: Latch, session_token: str) -> None:
    now = [time.time()]
    verifier = verifier_for(latch, clock=lambda: now[0])
    verifier.verify(session_token)
    now[0] = jwt.decode(session_token, options={"verify_signature": False})["exp"]
    with pytest.raises(ExpiredTokenError):
        verifier.verify(session_token)


def test_second_verify_of_a_token_is_served_from_the_cache(
    latch: Latch, session_token: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    verifier = verifier_for(latch)
    decodes = []
    real_verify = verify_token

    def counting_verify(*args: Any, **kwargs: Any) -> Any:
        decodes.append(1)
        return real_verify(*args, **kwargs)

    # The signature check and claim parsing (verifier.verify_token, no longer PyJWT's decode).
    monkeypatch.setattr("service.verifier.verify_token", counting_verify)
    first = verifier.verify(session_token)
    for _ in range(5):
        assert verifier.verify(session_token) == first
    assert len(decodes) == 1


def test_revoked_session_still_verifies_locally_until_exp(latch: Latch, http: httpx.Client) -> None:
    # Local verification is stateless: after sign-out the access JWT verifies until it
    # expires (ACCESS_TTL). /auth/check, which asks the database, refuses it at once.
    with latch.sign_in("dave@example.com") as client:
        token = client.cookies.get("latch_session")
        assert token
        assert client.get("/auth/check").status_code == 200
        assert client.post("/api/logout", json={"all": True}).status_code == 204
    refused = http.get("/auth/check", headers={"Cookie": f"latch_session={token}"})
    assert refused.status_code == 401
    assert verifier_for(latch).verify(token).email == "dave@example.com"


def test_verifier_module_needs_no_latch_settings() -> None:
    source = (Path(__file__).parent.parent / "service" / "verifier.py").read_text()
    assert "from service" not in source and "import service" not in source


# --- the middleware ----------------------------------------------------------------------------


def _service(verifier: Verifier) -> Starlette:
    async def whoami(request: Request) -> Response:
        claims: Claims = request.state.latch
        return JSONResponse({"email": claims.email, "user": request.scope["user"].sub})

    return Starlette(
        routes=[Route("/page", whoami), Route("/api/me", whoami)],
        middleware=[
            Middleware(
                LatchAuthMiddleware,
                verifier=verifier,
                login_url="https://login.example.com/login",
                refresh_url="https://login.example.com/refresh",
            )
        ],
    )


def test_middleware_puts_claims_on_the_request(latch: Latch, session_token: str) -> None:
    with TestClient(_service(verifier_for(latch)), base_url="https://app.example.com") as app:
        app.cookies.set("latch_session", session_token)
        answer = app.get("/page")
    assert answer.status_code == 200
    assert answer.json()["email"] == EMAIL


def test_middleware_answers_api_calls_with_401_json(latch: Latch) -> None:
    with TestClient(_service(verifier_for(latch)), base_url="https://app.example.com") as app:
        for path, headers in (("/api/me", {}), ("/page", {"Accept": "application/json"})):
            answer = app.get(path, headers=headers, follow_redirects=False)
            assert answer.status_code == 401
            assert answer.json()["error"]["code"] == "unauthenticated"


def test_middleware_sends_anonymous_browsers_to_login(latch: Latch) -> None:
    with TestClient(_service(verifier_for(latch)), base_url="https://app.example.com") as app:
        answer = app.get("/page?x=1&y=2", headers={"Accept": "text/html"}, follow_redirects=False)
    assert answer.status_code == 303
    target = httpx.URL(answer.headers["location"])
    assert str(target.copy_with(query=None)) == "https://login.example.com/login"
    assert target.params["next"] == "https://app.example.com/page?x=1&y=2"


def test_middleware_sends_expired_browsers_to_refresh(latch: Latch, session_token: str) -> None:
    exp = jwt.decode(session_token, options={"verify_signature": False})["exp"]
    later = verifier_for(latch, clock=lambda: exp + 60)
    with TestClient(_service(later), base_url="https://app.example.com") as app:
        app.cookies.set("latch_session", session_token)
        answer = app.get("/page", headers={"Accept": "text/html"}, follow_redirects=False)
    assert answer.status_code == 303
    target = httpx.URL(answer.headers["location"])
    assert str(target.copy_with(query=None)) == "https://login.example.com/refresh"
    assert target.params["next"] == "https://app.example.com/page"
