"""oauth4webapi, a strict OpenID client, signs in through a Latch under uvicorn over TCP
(tests/node/oidc-rp.mjs): discovery, PKCE, state, nonce and `iss` (RFC 9207) in the response,
the code exchange with client_secret_basic, the ID token's claims, userinfo, the access token
as an RFC 9068 resource server checks it, a refresh, a revocation. The client is registered
with `python -m service clients add`, as an operator does."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.oidc import add_client_cli, browse
from tests.support.server import Latch, running_latch

NODE_DIR = Path(__file__).resolve().parents[1] / "node"
CALLBACK = "http://127.0.0.1:9/rp/callback"
EMAIL = "quinn@example.com"


@pytest.fixture(scope="module")
def latch(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Latch]:
    with running_latch(tmp_path_factory.mktemp("oidc") / "data") as running:
        yield running


def relying_party(latch: Latch, client: dict[str, Any], alg: str) -> dict[str, Any]:
    """Run the Node relying party through one sign-in; its results."""
    if not (NODE_DIR / "node_modules" / "oauth4webapi").is_dir():
        pytest.fail("the Node libraries are missing: run npm ci --prefix tests/node")
    node = shutil.which("node")
    assert node, "node is not installed (Debian's nodejs)"
    setup = {
        "issuer": latch.url,
        "client_id": client["client_id"],
        "client_secret": client["client_secret"],
        "redirect_uri": CALLBACK,
        "alg": alg,
    }
    with subprocess.Popen(
        [node, str(NODE_DIR / "oidc-rp.mjs"), json.dumps(setup)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=NODE_DIR,
    ) as rp:
        assert rp.stdout is not None and rp.stdin is not None
        authorize_url = json.loads(rp.stdout.readline())["authorize_url"]
        with httpx.Client(timeout=10) as browser:
            back, _ = browse(browser, authorize_url, latch.transport, EMAIL, stop_at=CALLBACK)
        out, err = rp.communicate(back + "\n", timeout=60)
        assert rp.returncode == 0, err
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return result


@pytest.mark.parametrize("alg", ["RS256", "ES256"])
def test_oauth4webapi_signs_in_and_checks_everything(latch: Latch, alg: str) -> None:
    data_dir = latch.settings.storage.data_dir
    client = add_client_cli(
        data_dir,
        latch.url,
        "Node app",
        "--redirect-uri",
        CALLBACK,
        "--first-party",
        "--id-token-alg",
        alg,
    )
    assert client["client_secret"]
    result = relying_party(latch, client, alg)
    assert result["wrong_state"] is not None
    claims = result["id_token"]
    assert claims["iss"] == latch.url and claims["aud"] == client["client_id"]
    assert claims["email"] == EMAIL and claims["acr"] == "aal1"
    assert result["userinfo"] == {"sub": claims["sub"], "email": EMAIL, "email_verified": True}
    assert result["access_token"]["client_id"] == client["client_id"]
    assert result["rotated"] is True
    assert result["after_revocation"] == "invalid_grant"
