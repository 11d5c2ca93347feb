"""JWT_ALGORITHM against KEYS_DIR: a folder whose current key is of another kind refuses to
start in production, with a message whose two commands switch it; development rotates."""

from __future__ import annotations

import logging
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from service import tokens
from service.app import create_app
from service.errors import ConfigError
from service.settings import load_settings
from service.tokens import Keyring

CHECKOUT = Path(__file__).resolve().parents[1]
PROD = {
    "PUBLIC_URL": "https://login.example.com",
    "MAIL_FROM": "Login <login@example.com>",
    "SECRET_KEY": "s" * 40,
    "SMTP_HOST": "smtp.example.com",
}


def _env(data: Path, **extra: str) -> dict[str, str]:
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "PYTHONPATH": str(CHECKOUT),
        "DATA_DIR": str(data),
        **PROD,
        **extra,
    }


def _latch(data: Path, *args: str, **extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "service", *args],
        env=_env(data, **extra),
        cwd=data,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_an_eddsa_folder_under_the_es256_default_refuses_to_start_and_says_how_out(
    tmp_path: Path,
) -> None:
    # What an operator upgrading sees: a folder made when EdDSA was the default, no setting.
    old = tokens.add_key(tmp_path / "keys", "EdDSA", "current")
    done = _latch(tmp_path, "--port", "1")  # never reaches uvicorn: the port is not bound
    assert done.returncode == 2, done.stderr
    message = done.stderr.splitlines()[-1]
    assert message.startswith("Latch will not start:")
    assert old in message and "EdDSA" in message and "ES256" in message
    assert "set JWT_ALGORITHM=EdDSA" in message
    commands = re.findall(r"`(JWT_ALGORITHM=\S+ python -m service keys [^`]*)`", message)
    assert [c.split(" keys ")[1] for c in commands] == ["rotate --publish-first", "rotate"]

    # The way out the message names first: keep EdDSA.
    create_app(load_settings({"DATA_DIR": str(tmp_path), **PROD, "JWT_ALGORITHM": "EdDSA"}))

    # The other: run its two commands, exactly as printed; then the default starts, signing
    # with a new ES256 key, and the EdDSA key stays published for the tokens it signed.
    for command in commands:
        assignment, *argv = shlex.split(command)
        name, _, value = assignment.partition("=")
        assert argv[:3] == ["python", "-m", "service"]
        ran = _latch(tmp_path, *argv[3:], **{name: value})
        assert ran.returncode == 0, ran.stderr
    create_app(load_settings({"DATA_DIR": str(tmp_path), **PROD}))  # starts: no ConfigError
    keyring = Keyring(tmp_path / "keys", "ES256", b"")
    assert keyring.current.alg == "ES256"
    assert keyring.keys[old].state == "retired"
    assert {k["alg"] for k in keyring.jwks()["keys"]} == {"EdDSA", "ES256"}


def test_an_es256_folder_with_jwt_algorithm_eddsa_refuses_in_process(tmp_path: Path) -> None:
    tokens.add_key(tmp_path / "keys", "ES256", "current")
    settings = load_settings({"DATA_DIR": str(tmp_path), **PROD, "JWT_ALGORITHM": "EdDSA"})
    with pytest.raises(ConfigError, match=r"is ES256 but JWT_ALGORITHM is EdDSA") as refused:
        create_app(settings)
    assert "JWT_ALGORITHM=EdDSA python -m service keys rotate --publish-first" in str(refused.value)


def test_keys_commands_still_run_on_a_mismatched_folder(tmp_path: Path) -> None:
    # The way out must not be locked behind the check it gets out of.
    tokens.add_key(tmp_path / "keys", "EdDSA", "current")
    listed = _latch(tmp_path, "keys", "list")
    assert listed.returncode == 0 and "EdDSA" in listed.stdout, listed.stderr


def test_development_rotates_a_folder_of_another_kind_and_keeps_the_old_key_published(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    old = tokens.add_key(tmp_path / "keys", "EdDSA", "current")
    settings = load_settings({"DATA_DIR": str(tmp_path), "PUBLIC_URL": "http://127.0.0.1:8000"})
    with caplog.at_level(logging.WARNING, logger="latch.tokens"):
        create_app(settings)
    keyring = Keyring(tmp_path / "keys", "ES256", b"")
    assert keyring.current.alg == "ES256" and keyring.keys[old].state == "retired"
    assert "rotated the signing key from EdDSA to ES256" in caplog.text


def test_a_running_instance_follows_a_rotation_to_another_algorithm_and_warns(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Switching a shared folder while instances run: they must all sign with the one current
    # key, so they follow it, and each says its setting now disagrees.
    keys = tmp_path / "keys"
    tokens.add_key(keys, "EdDSA", "current")
    keyring = Keyring(keys, "EdDSA", b"")
    tokens.add_key(keys, "ES256", "current")
    with caplog.at_level(logging.WARNING, logger="latch.tokens"):
        assert keyring.reload()
    assert keyring.current.alg == "ES256"
    assert "set JWT_ALGORITHM=ES256 before the next restart" in caplog.text
