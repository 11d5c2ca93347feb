"""A Latch token with default settings verifies in the libraries other services use.

Node: `jose`, `jsonwebtoken` and `oauth4webapi`'s RFC 9068 validator (tests/node, pinned; run
through tests/node/verify-token.mjs). Python: PyJWT and `joserfc`. Each is given what a real
service would configure (issuer, audience, the algorithms latch-configuration lists) and must
check `iss`, `aud` and `typ`: the refusals below prove each check is switched on.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from joserfc import jwt as jose_jwt
from joserfc.errors import SecurityWarning
from joserfc.jwk import KeySet

from service.tokens import Keyring
from service.verifier import InvalidTokenError, Verifier
from tests.support.keys import JWKS
from tests.support.server import Latch, running_latch

NODE_DIR = Path(__file__).resolve().parent / "node"
NODE_LIBRARIES = ("jose", "jsonwebtoken", "oauth4webapi")


@dataclass(frozen=True)
class Issued:
    """A running Latch, its configuration and a token it issued at sign-in."""

    latch: Latch
    config: dict[str, Any]
    token: str

    def forged(self, *, typ: str = "at+jwt", **claims: Any) -> str:
        """The token re-signed by Latch's own key with a changed `typ` or claims: genuine
        signatures, so only the library's claim and type checks can refuse it."""
        key = Keyring(self.latch.settings.tokens.keys_dir, self.config["algorithms"][0], b"")
        body = {**jwt.decode(self.token, options={"verify_signature": False}), **claims}
        head = {"kid": key.current.kid, "typ": typ}
        return jwt.encode(body, key.current.private, algorithm=key.current.alg, headers=head)


def _issued(data_dir: Path, **env: str) -> Iterator[Issued]:
    with running_latch(data_dir, **env) as latch:
        config = httpx.get(latch.url + "/.well-known/latch-configuration").json()
        with latch.sign_in("ada@example.com") as browser:
            token = browser.cookies["latch_session"]
        yield Issued(latch, config, token)


@pytest.fixture(scope="module")
def default(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Issued]:
    yield from _issued(tmp_path_factory.mktemp("es256") / "data")


@pytest.fixture(scope="module")
def eddsa(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Issued]:
    yield from _issued(tmp_path_factory.mktemp("eddsa") / "data", JWT_ALGORITHM="EdDSA")


def node_verify(library: str, issued: Issued, token: str | None = None) -> dict[str, Any]:
    """What tests/node/verify-token.mjs says about the token under `library`."""
    if not (NODE_DIR / "node_modules" / library).is_dir():
        pytest.fail("the Node libraries are missing: run npm ci --prefix tests/node")
    node = shutil.which("node")
    assert node, "node is not installed (Debian's nodejs)"
    request = {
        "library": library,
        "token": token or issued.token,
        "issuer": issued.config["issuer"],
        "audience": issued.config["audience"],
        "jwks_uri": issued.config["jwks_uri"],
        "algorithms": issued.config["algorithms"],
    }
    done = subprocess.run(
        [node, str(NODE_DIR / "verify-token.mjs")],
        input=json.dumps(request),
        capture_output=True,
        text=True,
        timeout=60,
        cwd=NODE_DIR,
    )
    assert done.stdout, done.stderr
    answer: dict[str, Any] = json.loads(done.stdout)
    return answer


def test_default_token_is_es256_typed_at_jwt_with_latchs_own_client_id(default: Issued) -> None:
    header = jwt.get_unverified_header(default.token)
    claims = jwt.decode(default.token, options={"verify_signature": False})
    assert (header["alg"], header["typ"]) == ("ES256", "at+jwt")
    assert default.config["algorithms"] == ["ES256"]
    assert claims["client_id"] == default.latch.url == default.config["client_id"]


@pytest.mark.parametrize("library", NODE_LIBRARIES)
def test_default_token_verifies_in_node(library: str, default: Issued) -> None:
    answer = node_verify(library, default)
    assert answer["ok"], answer
    assert answer["claims"]["sub"] and answer["claims"]["email"] == "ada@example.com"
    assert answer["header"]["typ"] == "at+jwt"


@pytest.mark.parametrize("library", ["jose", "oauth4webapi"])
def test_eddsa_token_verifies_in_node_libraries_that_support_it(
    library: str, eddsa: Issued
) -> None:
    answer = node_verify(library, eddsa)
    assert answer["ok"], answer


def test_jsonwebtoken_refuses_eddsa_which_is_why_es256_is_the_default(eddsa: Issued) -> None:
    # Pinned jsonwebtoken 9.0.3. If a release learns Ed25519, this fails and the README's table
    # of tested libraries should say so.
    answer = node_verify("jsonwebtoken", eddsa)
    assert not answer["ok"] and "ed25519" in answer["error"].lower(), answer


@pytest.mark.parametrize("library", NODE_LIBRARIES)
@pytest.mark.parametrize(
    "change",
    [{"typ": "JWT"}, {"aud": "https://other.example.com"}, {"iss": "https://other.example.com"}],
    ids=["typ", "aud", "iss"],
)
def test_node_libraries_refuse_a_genuinely_signed_token_of_another_type_audience_or_issuer(
    library: str, change: dict[str, str], default: Issued
) -> None:
    answer = node_verify(library, default, default.forged(**change))
    assert not answer["ok"], answer


# --- Python --------------------------------------------------------------------------------------


def pyjwt_verify(issued: Issued, token: str) -> dict[str, Any]:
    """PyJWT as its documentation shows, plus the `typ` check it does not do itself."""
    key = jwt.PyJWKClient(issued.config["jwks_uri"]).get_signing_key_from_jwt(token)
    if jwt.get_unverified_header(token).get("typ") != "at+jwt":
        raise jwt.InvalidTokenError("typ is not at+jwt")
    claims: dict[str, Any] = jwt.decode(
        token,
        key,
        algorithms=issued.config["algorithms"],
        issuer=issued.config["issuer"],
        audience=issued.config["audience"],
        options={"require": ["iss", "aud", "sub", "exp", "iat", "jti", "client_id"]},
    )
    return claims


def joserfc_verify(issued: Issued, token: str) -> dict[str, Any]:
    """joserfc: the JWS with the JWKS, then its claims registry for iss/aud/exp."""
    keys = KeySet.import_key_set(httpx.get(issued.config["jwks_uri"]).json())
    # EdDSA is not among joserfc's recommended algorithms, so the list is always explicit.
    decoded = jose_jwt.decode(token, keys, algorithms=issued.config["algorithms"])
    if decoded.header.get("typ") != "at+jwt":
        raise ValueError("typ is not at+jwt")
    registry = jose_jwt.JWTClaimsRegistry(
        iss={"essential": True, "value": issued.config["issuer"]},
        aud={"essential": True, "value": issued.config["audience"]},
        sub={"essential": True},
        client_id={"essential": True},
    )
    registry.validate(decoded.claims)
    return dict(decoded.claims)


PYTHON = {"pyjwt": pyjwt_verify, "joserfc": joserfc_verify}


@pytest.mark.parametrize("library", PYTHON)
@pytest.mark.parametrize("which", ["default", "eddsa"])
def test_token_verifies_in_python_libraries(
    library: str, which: str, request: pytest.FixtureRequest
) -> None:
    issued: Issued = request.getfixturevalue(which)
    if (library, which) == ("joserfc", "eddsa"):
        # joserfc 1.8 still verifies "EdDSA" but warns: RFC 9864 deprecates the name in favour
        # of "Ed25519" (docs/design.md §2 says why Latch still writes "EdDSA").
        with pytest.warns(SecurityWarning, match="RFC 9864"):
            claims = PYTHON[library](issued, issued.token)
    else:
        claims = PYTHON[library](issued, issued.token)
    assert claims["email"] == "ada@example.com" and claims["client_id"] == issued.latch.url


@pytest.mark.parametrize("library", PYTHON)
@pytest.mark.parametrize(
    "change",
    [{"typ": "JWT"}, {"aud": "https://other.example.com"}, {"iss": "https://other.example.com"}],
    ids=["typ", "aud", "iss"],
)
def test_python_libraries_refuse_a_genuinely_signed_token_of_another_type_audience_or_issuer(
    library: str, change: dict[str, str], default: Issued
) -> None:
    with pytest.raises(Exception) as refused:
        PYTHON[library](default, default.forged(**change))
    assert not isinstance(refused.value, AssertionError)


# --- service/verifier.py and client_id ------------------------------------------------------------


def _verifier(issued: Issued, **kw: Any) -> Verifier:
    url = issued.latch.url
    return Verifier(issuer=url, audience=url, jwks_url=url + JWKS, **kw)


def test_verifier_reads_client_id_and_checks_it_only_when_asked(default: Issued) -> None:
    assert _verifier(default).verify(default.token).client_id == default.latch.url
    assert _verifier(default, client_id=default.latch.url).verify(default.token)
    with pytest.raises(InvalidTokenError, match="client_id"):
        _verifier(default, client_id="some-other-client").verify(default.token)


def test_verifier_asked_for_a_client_id_refuses_a_token_without_one(default: Issued) -> None:
    claims = jwt.decode(default.token, options={"verify_signature": False})
    del claims["client_id"]
    key = Keyring(default.latch.settings.tokens.keys_dir, "ES256", b"").current
    old = jwt.encode(
        claims, key.private, algorithm="ES256", headers={"kid": key.kid, "typ": "at+jwt"}
    )
    assert _verifier(default).verify(old).client_id == ""  # a token from before client_id
    with pytest.raises(InvalidTokenError, match="client_id"):
        _verifier(default, client_id=default.latch.url).verify(old)
