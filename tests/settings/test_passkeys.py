"""Passkey settings (docs/design.md §12): the relying-party id must be a domain name that the
page's origin is under, and Latch refuses to start with passkeys on and an IP address."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from service.errors import ConfigError
from service.settings import PasskeySettings, load_settings
from tests.conftest import ROOT


def test_development_defaults_to_localhost_where_passkeys_work(tmp_path: Path) -> None:
    settings = load_settings({"DATA_DIR": str(tmp_path)})
    assert settings.public_url == "http://localhost:8000"
    assert settings.passkeys_enabled and settings.webauthn_rp_id == "localhost"
    assert settings.webauthn_origins == ("http://localhost:8000",)


def test_auto_turns_passkeys_off_on_an_ip_address(tmp_path: Path) -> None:
    settings = load_settings({"DATA_DIR": str(tmp_path), "PUBLIC_URL": "http://127.0.0.1:8000"})
    assert not settings.passkeys_enabled


@pytest.mark.parametrize(
    "env",
    [
        {"PUBLIC_URL": "http://127.0.0.1:8000", "PASSKEYS": "on"},
        {"PUBLIC_URL": "http://[::1]:8000", "PASSKEYS": "on"},
        {"PUBLIC_URL": "http://localhost:8000", "WEBAUTHN_RP_ID": "127.0.0.1"},
    ],
)
def test_passkeys_on_with_an_ip_address_rp_id_refuse_to_start(
    tmp_path: Path, env: dict[str, str]
) -> None:
    with pytest.raises(ConfigError, match="IP address"):
        load_settings({"DATA_DIR": str(tmp_path), **env})


@pytest.mark.parametrize(
    ("env", "name"),
    [
        ({"PUBLIC_URL": "http://localhost:8000", "PASSKEYS": "sometimes"}, "PASSKEYS"),
        (
            {"PUBLIC_URL": "http://localhost:8000", "WEBAUTHN_RP_ID": "example.com"},
            "WEBAUTHN_RP_ID",
        ),
        (
            {"PUBLIC_URL": "http://localhost:8000", "WEBAUTHN_ORIGINS": "https://app.example.com"},
            "WEBAUTHN_RP_ID",
        ),
    ],
)
def test_an_rp_id_the_origins_are_not_under_is_refused(
    tmp_path: Path, env: dict[str, str], name: str
) -> None:
    with pytest.raises(ConfigError, match=name):
        load_settings({"DATA_DIR": str(tmp_path), **env})


def test_a_parent_domain_rp_id_serves_its_subdomains() -> None:
    section = PasskeySettings(rp_id="example.com", extra_origins=("https://app.example.com",))
    assert section.problems_with("https://login.example.com") == []
    assert section.rp_id_for("https://login.example.com") == "example.com"
    assert section.problems_with("https://login.example.org") != []


def test_the_process_refuses_to_start_with_passkeys_on_an_ip_address(tmp_path: Path) -> None:
    env = {
        "PATH": "/usr/bin:/bin",
        "PYTHONPATH": str(ROOT),
        "DATA_DIR": str(tmp_path),
        "PUBLIC_URL": "http://127.0.0.1:8000",
        "PASSKEYS": "on",
    }
    done = subprocess.run(
        [sys.executable, "-m", "service", "--port", "0"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "Latch will not start" in done.stderr and "IP address" in done.stderr
    assert "localhost" in done.stderr  # and what to open instead
