"""service/settings/: each section validates itself and names the variable to set; load_settings
reports every problem of every section in one start-up."""

from __future__ import annotations

import re
from dataclasses import fields
from pathlib import Path
from typing import Any

import pytest

from service.errors import ConfigError
from service.settings import (
    BrandSettings,
    DkimSettings,
    FactorSettings,
    LimitSettings,
    MailSettings,
    PasskeySettings,
    RuntimeSettings,
    SessionSettings,
    Settings,
    SigninSettings,
    StorageSettings,
    TokenSettings,
    WebSettings,
    load_settings,
)
from tests.conftest import ROOT

SECTIONS: tuple[type[Any], ...] = (
    StorageSettings,
    MailSettings,
    DkimSettings,
    LimitSettings,
    SigninSettings,
    FactorSettings,
    SessionSettings,
    TokenSettings,
    WebSettings,
    BrandSettings,
    RuntimeSettings,
    PasskeySettings,
)


def _refusal(tmp_path: Path, **env: str) -> str:
    with pytest.raises(ConfigError) as refused:
        load_settings({"DATA_DIR": str(tmp_path), **env})
    return str(refused.value)


@pytest.mark.parametrize(
    ("section", "values", "name"),
    [
        (StorageSettings, {"database_url": "mysql://db/latch"}, "DATABASE_URL"),
        (MailSettings, {"smtp_tls": "sometimes"}, "SMTP_TLS"),
        (MailSettings, {"smtp_port": 70000}, "SMTP_PORT"),
        (MailSettings, {"workers": 0}, "MAIL_WORKERS"),
        (MailSettings, {"queue_size": 0}, "MAIL_QUEUE_SIZE"),
        (
            MailSettings,
            {"smtp_host": "smtp.example.com", "smtp_tls": "none", "smtp_username": "latch"},
            "SMTP_TLS",
        ),
        (MailSettings, {"from_address": "a@example.com\r\nBcc: x@evil.test"}, "MAIL_FROM"),
        (LimitSettings, {"mail_window": 0}, "LIMIT_MAIL_WINDOW"),
        (LimitSettings, {"address_lock": 0}, "LIMIT_ADDRESS_LOCK"),
        (LimitSettings, {"ip_window": 0}, "LIMIT_IP_WINDOW"),
        (SigninSettings, {"code_ttl": 0}, "CODE_TTL"),
        (FactorSettings, {"require_second_factor": "sometimes"}, "REQUIRE_SECOND_FACTOR"),
        (FactorSettings, {"step_up_ttl": 0}, "STEP_UP_TTL"),
        (SessionSettings, {"access_ttl": 0}, "ACCESS_TTL"),
        (SessionSettings, {"idle_ttl": 10, "max_ttl": 5}, "SESSION_IDLE_TTL"),
        (SessionSettings, {"cookie_domain": "example.com"}, "COOKIE_DOMAIN"),
        (TokenSettings, {"algorithm": "none"}, "JWT_ALGORITHM"),
        (BrandSettings, {"accent_color": "red;x:y"}, "ACCENT_COLOR"),
        (BrandSettings, {"accent_color": "#ffff00"}, "ACCENT_COLOR"),
        (BrandSettings, {"logo_file": "logo.gif"}, "LOGO_FILE"),
        (RuntimeSettings, {"log_level": "LOUD"}, "LOG_LEVEL"),
    ],
)
def test_a_section_names_the_variable_of_its_bad_value(
    section: type[Any], values: dict[str, Any], name: str
) -> None:
    problems = section(**values).validate()
    assert len(problems) == 1 and problems[0].startswith(name), problems


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "::1", "[::1]"])
def test_smtp_auth_without_tls_is_allowed_only_to_a_relay_on_this_host(host: str) -> None:
    assert MailSettings(smtp_host=host, smtp_tls="none", smtp_username="x").validate() == []
    remote = MailSettings(smtp_host="10.0.0.5", smtp_tls="none", smtp_username="x")
    assert remote.validate() != []
    encrypted = MailSettings(smtp_host="10.0.0.5", smtp_tls="starttls", smtp_username="x")
    assert encrypted.validate() == []


@pytest.mark.parametrize("section", SECTIONS)
def test_every_section_is_valid_with_its_defaults(section: type[Any]) -> None:
    assert section().validate() == []


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("DATABASE_URL", "mysql://db/latch"),  # storage
        ("MAIL_WORKERS", "0"),  # mail
        ("SMTP_PORT", "587x"),
        ("LIMIT_IP_WINDOW", "0"),  # limits
        ("MAX_BODY_BYTES", "-1"),
        ("CODE_TTL", "0"),  # signin
        ("ALLOW_SIGNUP", "maybe"),
        ("REQUIRE_SECOND_FACTOR", "always"),  # factors
        ("STEP_UP_TTL", "soon"),
        ("COOKIE_DOMAIN", "example.com"),  # sessions
        ("SESSION_MAX_TTL", "soon"),
        ("JWT_ALGORITHM", "none"),  # tokens
        ("KEYS_RELOAD_INTERVAL", "often"),
        ("ALLOWED_ORIGINS", "app.example.com"),  # web
        ("TRUSTED_PROXIES", "10.0.0.0/33"),
        ("ACCENT_COLOR", "#ffff00"),  # brand
        ("LOG_LEVEL", "loud"),  # runtime
        ("SHUTDOWN_GRACE", "-1"),
        ("PUBLIC_URL", "https://login.example.com/latch"),  # root
    ],
)
def test_a_bad_value_in_any_section_refuses_start_naming_the_variable(
    tmp_path: Path, name: str, value: str
) -> None:
    assert re.search(rf"\b{name}\b", _refusal(tmp_path, **{name: value}))


def test_every_problem_is_reported_in_one_start(tmp_path: Path) -> None:
    message = _refusal(
        tmp_path, SMTP_PORT="x", LIMIT_MAIL_WINDOW="0", LOG_LEVEL="loud", ACCENT_COLOR="red"
    )
    for name in ("SMTP_PORT", "LIMIT_MAIL_WINDOW", "LOG_LEVEL", "ACCENT_COLOR"):
        assert name in message


def test_a_zero_window_is_accepted_when_its_limit_is_off(tmp_path: Path) -> None:
    settings = load_settings(
        {"DATA_DIR": str(tmp_path), "LIMIT_MAIL_PER_WINDOW": "0", "LIMIT_MAIL_WINDOW": "0"}
    )
    assert settings.limits.mail_per_window == 0


def test_production_reports_every_missing_requirement_at_once(tmp_path: Path) -> None:
    message = _refusal(tmp_path, PUBLIC_URL="https://login.example.com", LIMIT_CODE_ATTEMPTS="0")
    for name in ("SECRET_KEY", "SMTP_HOST", "MAIL_FROM", "KEYS_DIR", "LIMIT_CODE_ATTEMPTS"):
        assert name in message


def test_derived_defaults_follow_the_settings_they_come_from(tmp_path: Path) -> None:
    settings = load_settings({"DATA_DIR": str(tmp_path), "PUBLIC_URL": "http://localhost:9000/"})
    assert settings.tokens.keys_dir == tmp_path / "keys"
    assert settings.tokens.audience == "http://localhost:9000"
    assert settings.storage.resolved_database_url == f"sqlite:///{tmp_path / 'latch.db'}"


def test_an_empty_value_counts_as_unset(tmp_path: Path) -> None:
    settings = load_settings({"DATA_DIR": str(tmp_path), "CODE_TTL": "", "JWT_AUDIENCE": ""})
    assert settings.signin.code_ttl == 600
    assert settings.tokens.audience == settings.public_url


def test_secrets_stay_out_of_the_settings_repr(tmp_path: Path) -> None:
    settings = load_settings(
        {
            "DATA_DIR": str(tmp_path),
            "SECRET_KEY": "k" * 40 + "-secret-key",
            "SMTP_PASSWORD": "smtp-pass-word",
            "DATABASE_URL": "postgresql://latch:db-pass-word@db/latch",
        }
    )
    shown = repr(settings)
    assert "secret-key" not in shown and "smtp-pass-word" not in shown
    assert "db-pass-word" not in shown


def test_every_variable_is_declared_once_and_listed_in_the_sample() -> None:
    every: tuple[type[Any], ...] = (Settings, *SECTIONS)
    sample = (ROOT / ".env.sample").read_text()
    names = [f.metadata["env"] for cls in every for f in fields(cls) if "env" in f.metadata]
    assert len(names) == len(set(names))
    missing = [n for n in names if not re.search(rf"^#? ?{n}=", sample, re.MULTILINE)]
    assert missing == []
