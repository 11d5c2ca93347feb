"""Signing keys: the manifest, the `keys` CLI, rotation seen by a real running Latch and by the
verifier through its JWKS, and the refetch limit on unknown `kid`s."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519

from service import tokens
from service.tokens import Keyring
from service.verifier import InvalidTokenError, Verifier
from service.web.state import app_state_of
from tests.support.keys import JWKS, keys_cli, published
from tests.support.server import Latch, running_latch
from tests.support.wait import eventually


def kid_of(token: str) -> str:
    return str(jwt.get_unverified_header(token)["kid"])


def verifier_for(latch: Latch, **kw: object) -> Verifier:
    return Verifier(issuer=latch.url, audience=latch.url, jwks_url=latch.url + JWKS, **kw)  # type: ignore[arg-type]


def test_key_ids_can_be_typed_as_a_command_line_argument(tmp_path: Path) -> None:
    # `python -m service keys retire KID`: a kid beginning with "-" would be read as an option.
    kids = {tokens.add_key(tmp_path, "ES256", "next") for _ in range(3)}
    assert all(kid.isalnum() and kid.isascii() for kid in kids), kids


def test_rotation_keeps_old_tokens_valid_and_publishes_before_signing(tmp_path: Path) -> None:
    with running_latch(tmp_path / "data", KEYS_RELOAD_INTERVAL="0.02") as latch:
        keyring: Keyring = app_state_of(latch.counter).keyring
        old_kid = keyring.current.kid
        with latch.sign_in("gina@example.com") as browser:
            old_token = browser.cookies["latch_session"]
        early = verifier_for(latch)
        early.verify(old_token)  # fetched the JWKS while only the old key was in it

        done = keys_cli(latch, "rotate", "--publish-first")
        assert done.returncode == 0, done.stderr
        eventually(lambda: len(published(latch)) == 2, "the next key to be published")
        assert keyring.current.kid == old_kid  # published, not signing yet
        (new_kid,) = published(latch) - {old_kid}

        done = keys_cli(latch, "rotate")
        assert done.returncode == 0, done.stderr
        eventually(lambda: keyring.current.kid == new_kid, "the rotation to be picked up")
        with latch.sign_in("gina@example.com") as browser:
            new_token = browser.cookies["latch_session"]
        assert kid_of(old_token) == old_kid and kid_of(new_token) == new_kid
        assert published(latch) == {old_kid, new_kid}  # the old key stays, as retired

        fresh = verifier_for(latch)
        assert fresh.verify(old_token).email == "gina@example.com"
        assert fresh.verify(new_token).email == "gina@example.com"
        # A verifier holding the JWKS of before: the new kid is unknown and is fetched once
        # its refetch interval allows (0 here).
        early.refetch_interval = 0
        assert early.verify(new_token).email == "gina@example.com"
        assert (
            httpx.get(f"{latch.url}/auth/check", cookies={"latch_session": old_token}).status_code
            == 200
        )


def test_unknown_kid_triggers_one_refetch_not_one_per_request(tmp_path: Path) -> None:
    with running_latch(tmp_path / "data") as latch:
        with latch.sign_in("hank@example.com") as browser:
            genuine = browser.cookies["latch_session"]
        claims = jwt.decode(genuine, options={"verify_signature": False})
        stranger = ed25519.Ed25519PrivateKey.generate()
        forged = jwt.encode(
            claims, stranger, algorithm="EdDSA", headers={"kid": "made-up", "typ": "at+jwt"}
        )
        now = [1000.0]
        verifier = verifier_for(latch, monotonic=lambda: now[0])
        verifier.verify(genuine)
        fetches = latch.counter.counts[JWKS]
        now[0] += 31  # past the refetch interval
        for _ in range(20):
            with pytest.raises(InvalidTokenError):
                verifier.verify(forged)
        assert latch.counter.counts[JWKS] == fetches + 1
        now[0] += 31
        for _ in range(5):
            with pytest.raises(InvalidTokenError):
                verifier.verify(forged)
        assert latch.counter.counts[JWKS] == fetches + 2


def test_retire_refuses_the_current_key_and_one_whose_tokens_may_live(tmp_path: Path) -> None:
    with running_latch(tmp_path / "data", KEYS_RELOAD_INTERVAL="0.02") as latch:
        keyring: Keyring = app_state_of(latch.counter).keyring
        old_kid = keyring.current.kid
        assert keys_cli(latch, "retire", old_kid).returncode == 1  # it is current
        assert keys_cli(latch, "rotate").returncode == 0
        eventually(lambda: keyring.current.kid != old_kid, "the rotation")
        young = keys_cli(latch, "retire", old_kid)
        assert young.returncode == 1 and "--force" in young.stderr
        forced = keys_cli(latch, "retire", "--force", old_kid)
        assert forced.returncode == 0, forced.stderr
        eventually(lambda: old_kid not in published(latch), "the retired key to be unpublished")
        states = {e["kid"]: e["state"] for e in tokens.list_keys(latch.settings.tokens.keys_dir)}
        assert states[old_kid] == "removed"


def test_keyring_sees_two_rotations_within_one_timestamp_tick(tmp_path: Path) -> None:
    keys_dir = tmp_path / "keys"
    tokens.add_key(keys_dir, "EdDSA", "current")
    keyring = Keyring(keys_dir, "EdDSA", b"")
    manifest = keys_dir / tokens.MANIFEST
    stamp = manifest.stat().st_mtime_ns
    kid = tokens.add_key(keys_dir, "EdDSA", "current")
    os.utime(manifest, ns=(stamp, stamp))  # a coarse filesystem clock: same mtime as before
    assert keyring.reload() is True
    assert keyring.current.kid == kid


def test_key_whose_manifest_alg_does_not_fit_is_refused(tmp_path: Path) -> None:
    keys_dir = tmp_path / "keys"
    tokens.add_key(keys_dir, "EdDSA", "current")
    manifest = keys_dir / tokens.MANIFEST
    data = json.loads(manifest.read_text())
    data["keys"][0]["alg"] = "RS256"
    manifest.write_text(json.dumps(data))
    with pytest.raises(ValueError, match="cannot sign"):
        Keyring(keys_dir, "EdDSA", b"")


def test_rotation_stamps_when_the_old_key_was_retired(tmp_path: Path) -> None:
    keys_dir = tmp_path / "keys"
    old = tokens.add_key(keys_dir, "EdDSA", "current")
    tokens.set_state(keys_dir, tokens.add_key(keys_dir, "EdDSA", "next"), "current")
    entry = next(e for e in tokens.list_keys(keys_dir) if e["kid"] == old)
    assert entry["state"] == "retired" and entry["retired_at"] >= int(time.time()) - 5


def test_latch_configuration_names_what_a_verifier_needs(tmp_path: Path) -> None:
    with running_latch(tmp_path / "data") as latch:
        answer = httpx.get(latch.url + "/.well-known/latch-configuration")
    assert answer.status_code == 200
    assert answer.headers["cache-control"] == "public, max-age=300"
    body = answer.json()
    assert body["issuer"] == latch.url and body["audience"] == latch.url
    assert body["jwks_uri"] == latch.url + JWKS
    assert body["refresh_url"] == latch.url + "/refresh"
    assert body["cookie_names"] == {"session": "latch_session", "refresh": "latch_refresh"}
    assert body["algorithms"] == ["ES256"]
    assert body["client_id"] == latch.url
