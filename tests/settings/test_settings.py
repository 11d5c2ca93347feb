"""Settings: production refuses unsafe or incomplete configuration, naming what to set."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from service.errors import ConfigError
from service.settings import load_settings
from service.tokens import add_key

PROD = {"PUBLIC_URL": "https://login.example.com", "MAIL_FROM": "Login <login@example.com>"}
STRONG = "s" * 40


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    return {"DATA_DIR": str(tmp_path), **PROD, **extra}


def test_production_without_secret_key_refuses_to_start(tmp_path: Path) -> None:
    add_key(tmp_path / "keys", "EdDSA", "current")
    with pytest.raises(ConfigError, match="SECRET_KEY"):
        load_settings(_env(tmp_path, SMTP_HOST="smtp.example.com"))


def test_production_with_short_secret_key_refuses_to_start(tmp_path: Path) -> None:
    add_key(tmp_path / "keys", "EdDSA", "current")
    with pytest.raises(ConfigError, match="SECRET_KEY"):
        load_settings(_env(tmp_path, SMTP_HOST="smtp.example.com", SECRET_KEY="short"))


def test_production_without_smtp_host_refuses_to_start(tmp_path: Path) -> None:
    add_key(tmp_path / "keys", "EdDSA", "current")
    with pytest.raises(ConfigError, match="SMTP_HOST"):
        load_settings(_env(tmp_path, SECRET_KEY=STRONG))


def test_production_without_signing_key_refuses_to_start(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="signing key"):
        load_settings(_env(tmp_path, SECRET_KEY=STRONG, SMTP_HOST="smtp.example.com"))


def test_production_refuses_to_turn_code_attempts_off(tmp_path: Path) -> None:
    add_key(tmp_path / "keys", "EdDSA", "current")
    with pytest.raises(ConfigError, match="LIMIT_CODE_ATTEMPTS"):
        load_settings(
            _env(tmp_path, SECRET_KEY=STRONG, SMTP_HOST="smtp.example.com", LIMIT_CODE_ATTEMPTS="0")
        )


def test_complete_production_settings_load(tmp_path: Path) -> None:
    add_key(tmp_path / "keys", "EdDSA", "current")
    settings = load_settings(_env(tmp_path, SECRET_KEY=STRONG, SMTP_HOST="smtp.example.com"))
    assert not settings.development and settings.cookie_secure
    assert settings.session_cookie == "__Host-latch_session"


def test_development_generates_and_keeps_a_secret_key(tmp_path: Path) -> None:
    first = load_settings({"DATA_DIR": str(tmp_path)})
    second = load_settings({"DATA_DIR": str(tmp_path)})
    assert len(first.secret_key) >= 32 and first.secret_key == second.secret_key
    assert first.development and not first.cookie_secure


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("CODE_TTL", "ten"),
        ("ALLOW_SIGNUP", "maybe"),
        ("JWT_ALGORITHM", "none"),
        ("SMTP_TLS", "sometimes"),
        ("TRUSTED_PROXIES", "not-an-ip"),
        ("ALLOWED_REDIRECT_ORIGINS", "evil"),
        ("PUBLIC_URL", "ftp://x"),
        ("LIMIT_MAIL_GLOBAL", "-1"),
    ],
)
def test_malformed_settings_are_refused_by_name(tmp_path: Path, name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name.split("_")[0]):
        load_settings({"DATA_DIR": str(tmp_path), name: value})


def test_cli_refuses_to_start_with_a_clear_message(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "service", "migrate"],
        env={"DATA_DIR": str(tmp_path), **PROD, "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert result.returncode == 2
    assert "SECRET_KEY" in result.stderr and "SMTP_HOST" in result.stderr


def test_keys_generate_makes_the_first_production_key(tmp_path: Path) -> None:
    env = {
        "DATA_DIR": str(tmp_path),
        **PROD,
        "SECRET_KEY": STRONG,
        "SMTP_HOST": "smtp.example.com",
        "PATH": "/usr/bin:/bin",
    }
    made = subprocess.run(
        [sys.executable, "-m", "service", "keys", "generate"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert made.returncode == 0, made.stderr
    assert (tmp_path / "keys" / "keyring.json").is_file()
    listed = subprocess.run(
        [sys.executable, "-m", "service", "keys", "list"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert "current" in listed.stdout
