"""DKIM settings: all three or none, and the key is read and checked when Latch starts."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from service.errors import ConfigError
from service.settings import load_settings
from tests.conftest import TEST_ENV
from tests.delivery.test_reputation import write_rsa_key


def _load(tmp_path: Path, **env: str) -> None:
    load_settings({"DATA_DIR": str(tmp_path / "data"), **TEST_ENV, **env})


def _refusal(tmp_path: Path, **env: str) -> str:
    with pytest.raises(ConfigError) as refused:
        _load(tmp_path, **env)
    return str(refused.value)


def test_all_three_dkim_settings_with_a_good_key_start(tmp_path: Path) -> None:
    write_rsa_key(tmp_path / "dkim.pem")
    _load(
        tmp_path,
        DKIM_DOMAIN="example.com",
        DKIM_SELECTOR="s1",
        DKIM_PRIVATE_KEY_FILE=str(tmp_path / "dkim.pem"),
    )


@pytest.mark.parametrize(
    "env",
    [
        {"DKIM_DOMAIN": "example.com"},
        {"DKIM_SELECTOR": "s1"},
        {"DKIM_DOMAIN": "example.com", "DKIM_SELECTOR": "s1"},
        {"DKIM_PRIVATE_KEY_FILE": "/nonexistent/dkim.pem"},
    ],
)
def test_half_a_dkim_set_up_refuses_to_start(tmp_path: Path, env: dict[str, str]) -> None:
    message = _refusal(tmp_path, **env)
    assert "DKIM needs DKIM_DOMAIN, DKIM_SELECTOR and DKIM_PRIVATE_KEY_FILE" in message


def _complete(tmp_path: Path, key_file: Path, **env: str) -> str:
    return _refusal(
        tmp_path,
        **{
            "DKIM_DOMAIN": "example.com",
            "DKIM_SELECTOR": "s1",
            "DKIM_PRIVATE_KEY_FILE": str(key_file),
            **env,
        },
    )


def test_a_missing_key_file_refuses_to_start(tmp_path: Path) -> None:
    assert "DKIM_PRIVATE_KEY_FILE cannot be read" in _complete(tmp_path, tmp_path / "none.pem")


def test_a_key_file_that_is_not_a_key_refuses_to_start_without_quoting_it(
    tmp_path: Path,
) -> None:
    (tmp_path / "dkim.pem").write_text("-----BEGIN PRIVATE KEY-----\nc2VjcmV0LWlzaA==\n")
    message = _complete(tmp_path, tmp_path / "dkim.pem")
    assert "must hold an unencrypted PEM private key" in message
    assert "c2VjcmV0" not in message


def test_an_encrypted_key_refuses_to_start(tmp_path: Path) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    (tmp_path / "dkim.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"passphrase"),
        )
    )
    assert "unencrypted PEM" in _complete(tmp_path, tmp_path / "dkim.pem")


def test_a_non_rsa_key_refuses_to_start(tmp_path: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    (tmp_path / "dkim.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    assert "must hold an RSA key" in _complete(tmp_path, tmp_path / "dkim.pem")


def test_a_short_rsa_key_refuses_to_start(tmp_path: Path) -> None:
    # cryptography will not make one this short; OpenSSL still will.
    subprocess.run(
        ["openssl", "genrsa", "-out", str(tmp_path / "dkim.pem"), "768"],
        check=True,
        capture_output=True,
    )
    assert "has 768 bits" in _complete(tmp_path, tmp_path / "dkim.pem")


def test_a_domain_or_selector_that_is_not_a_dns_name_refuses_to_start(tmp_path: Path) -> None:
    write_rsa_key(tmp_path / "dkim.pem")
    key = tmp_path / "dkim.pem"
    assert "DKIM_DOMAIN must be a DNS name" in _complete(tmp_path, key, DKIM_DOMAIN="a b.com")
    assert "DKIM_SELECTOR must be a DNS name" in _complete(tmp_path, key, DKIM_SELECTOR="s1;x=y")
