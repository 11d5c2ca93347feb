"""Settings: one frozen object made of sections, built from the environment in one place
(`load_settings`), validated as a whole at start-up.

Each section (service/settings/sections.py) declares, field by field, the environment variable it
reads and how; it validates itself. `Settings.validate` adds the checks that span sections, such
as what production requires, and reports every problem at once, each with what to set.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from urllib.parse import urlsplit

from service.errors import ConfigError
from service.settings.dkim import DkimSettings
from service.settings.fields import Network, env, read_section, secret, url
from service.settings.operator import OperatorSettings
from service.settings.passkeys import PasskeySettings
from service.settings.sections import (
    ALGORITHMS,
    LOGO_TYPES,
    SECOND_FACTOR_POLICIES,
    SMTP_TLS_MODES,
    BrandSettings,
    FactorSettings,
    LimitSettings,
    MailSettings,
    RuntimeSettings,
    SessionSettings,
    SigninSettings,
    StorageSettings,
    TokenSettings,
    WebSettings,
)

__all__ = [
    "ALGORITHMS",
    "DEV_HOSTS",
    "LOGO_TYPES",
    "SECOND_FACTOR_POLICIES",
    "SMTP_TLS_MODES",
    "BrandSettings",
    "DkimSettings",
    "FactorSettings",
    "LimitSettings",
    "MailSettings",
    "Network",
    "PasskeySettings",
    "OperatorSettings",
    "RuntimeSettings",
    "SessionSettings",
    "Settings",
    "SigninSettings",
    "StorageSettings",
    "TokenSettings",
    "WebSettings",
    "load_settings",
    "read_env_file",
    "read_environment",
]

DEV_HOSTS = ("localhost", "127.0.0.1", "::1", "[::1]")


@dataclass(frozen=True, kw_only=True)
class Settings:
    """Every knob of Latch. Durations are seconds; a limit of 0 turns that limit off."""

    # localhost, not 127.0.0.1: browsers refuse an IP address as a passkey's relying party.
    public_url: str = env("PUBLIC_URL", url, "http://localhost:8000")
    secret_key: bytes = env("SECRET_KEY", secret, b"", hidden=True)
    storage: StorageSettings = field(default_factory=StorageSettings)
    mail: MailSettings = field(default_factory=MailSettings)
    dkim: DkimSettings = field(default_factory=DkimSettings)
    limits: LimitSettings = field(default_factory=LimitSettings)
    signin: SigninSettings = field(default_factory=SigninSettings)
    factors: FactorSettings = field(default_factory=FactorSettings)
    sessions: SessionSettings = field(default_factory=SessionSettings)
    tokens: TokenSettings = field(default_factory=TokenSettings)
    web: WebSettings = field(default_factory=WebSettings)
    brand: BrandSettings = field(default_factory=BrandSettings)
    runtime: RuntimeSettings = field(default_factory=RuntimeSettings)
    passkeys: PasskeySettings = field(default_factory=PasskeySettings)
    operator: OperatorSettings = field(default_factory=OperatorSettings)

    @property
    def development(self) -> bool:
        """A PUBLIC_URL on localhost is development: generated keys, console mail, no Secure."""
        return (urlsplit(self.public_url).hostname or "") in DEV_HOSTS

    @property
    def passkeys_enabled(self) -> bool:
        """Whether passkeys are offered (docs/design.md §12)."""
        return self.passkeys.enabled_for(self.public_url)

    @property
    def webauthn_rp_id(self) -> str:
        """The WebAuthn relying-party id."""
        return self.passkeys.rp_id_for(self.public_url)

    @property
    def webauthn_origins(self) -> tuple[str, ...]:
        """The origins whose pages may run the passkey ceremonies: Latch's own first."""
        return (self.origin, *self.passkeys.extra_origins)

    @property
    def https(self) -> bool:
        """True when Latch is served over https (cookies get Secure and a prefix)."""
        return urlsplit(self.public_url).scheme == "https"

    @property
    def origin(self) -> str:
        """scheme://host[:port] of PUBLIC_URL, the only origin Latch's own pages have."""
        parts = urlsplit(self.public_url)
        return f"{parts.scheme}://{parts.netloc}".lower()

    @property
    def host(self) -> str:
        """The host[:port] requests must be addressed to."""
        return urlsplit(self.public_url).netloc.lower()

    @property
    def cookie_secure(self) -> bool:
        """Secure cookies everywhere except plain http on localhost."""
        return self.https or not self.development

    def cookie_name(self, base: str, *, shared: bool = False) -> str:
        """`__Host-` prefix under https (`__Secure-` for a cookie sent to COOKIE_DOMAIN)."""
        if not self.https:
            return base
        if shared and self.sessions.cookie_domain:
            return f"__Secure-{base}"
        return f"__Host-{base}"

    @property
    def session_cookie(self) -> str:
        """Name of the access-JWT cookie."""
        return self.cookie_name("latch_session", shared=True)

    @property
    def refresh_cookie(self) -> str:
        """Name of the refresh-token cookie (host-only, always)."""
        return self.cookie_name("latch_refresh")

    @property
    def flow_cookie(self) -> str:
        """Name of the cookie binding a code form to the browser that started it."""
        return self.cookie_name("latch_flow")

    @property
    def csrf_cookie(self) -> str:
        """Name of the double-submit CSRF cookie."""
        return self.cookie_name("latch_csrf")

    def problems(self, *, require_key: bool = True) -> list[str]:
        """Every problem of every section plus those across sections, each saying what to set."""
        found: list[str] = []
        parts = urlsplit(self.public_url)
        if (
            parts.scheme not in ("http", "https")
            or not parts.hostname
            or parts.path not in ("", "/")
        ):
            found.append("PUBLIC_URL must look like https://login.example.com (no path)")
        for section in (
            self.storage,
            self.mail,
            self.dkim,
            self.limits,
            self.signin,
            self.factors,
            self.sessions,
            self.tokens,
            self.web,
            self.brand,
            self.runtime,
            self.passkeys,
            self.operator,
        ):
            found.extend(section.validate())
        found.extend(self.passkeys.problems_with(self.public_url))
        if not self.development:
            found.extend(self._production_problems(require_key))
        return found

    def validate(self, *, require_key: bool = True) -> None:
        """Refuse unsafe or incomplete settings with one message naming everything to set.

        `require_key=False` is for `python -m service keys`, which makes the signing key.
        """
        found = self.problems(require_key=require_key)
        if found:
            raise ConfigError("Latch will not start: " + "; ".join(found))

    def _production_problems(self, require_key: bool) -> list[str]:
        # Development may fall back (generated keys, console mail); production must not, so
        # each missing piece is named here rather than discovered by the first sign-in.
        found = []
        if len(self.secret_key) < 32:
            found.append("SECRET_KEY must be set to at least 32 random bytes in production")
        if not self.mail.smtp_host:
            found.append("SMTP_HOST must be set in production (mail cannot go to the console)")
        if not self.mail.from_address:
            found.append("MAIL_FROM must be set in production")
        has_key = (self.tokens.keys_dir / "keyring.json").is_file()
        if require_key and self.tokens.algorithm != "HS256" and not has_key:
            found.append(
                f"no signing key in KEYS_DIR ({self.tokens.keys_dir}): "
                "run `python -m service keys generate` or set KEYS_DIR"
            )
        if self.limits.code_attempts == 0:
            # Five guesses at a six-digit code is what makes the code safe to mail at all.
            found.append("LIMIT_CODE_ATTEMPTS cannot be 0 (off) in production")
        return found


def read_env_file(path: Path) -> dict[str, str]:
    """Parse a `.env` file of KEY=value lines (comments and blank lines ignored)."""
    values: dict[str, str] = {}
    if not path.is_file():
        return values
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.partition("=")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[key.strip().removeprefix("export ").strip()] = value
    return values


def read_environment() -> dict[str, str]:
    """`.env` in the working directory, overridden by the real environment.

    The one place Latch reads os.environ; everything else receives Settings.
    """
    return {**read_env_file(Path(".env")), **os.environ}


def load_settings(environ: Mapping[str, str], *, require_key: bool = True) -> Settings:
    """Build and validate Settings from an environment mapping (never reads os.environ itself).

    Every unparseable value and every unsafe combination is reported in one ConfigError. In
    development a missing SECRET_KEY is generated once into DATA_DIR and kept.
    """
    problems: list[str] = []
    root = read_section(Settings, environ, problems)  # PUBLIC_URL and SECRET_KEY
    storage = read_section(StorageSettings, environ, problems)
    settings = replace(
        root,
        storage=storage,
        mail=read_section(MailSettings, environ, problems),
        dkim=read_section(DkimSettings, environ, problems),
        limits=read_section(LimitSettings, environ, problems),
        signin=read_section(SigninSettings, environ, problems),
        factors=read_section(FactorSettings, environ, problems),
        sessions=read_section(SessionSettings, environ, problems),
        tokens=read_section(
            TokenSettings,
            environ,
            problems,
            keys_dir=storage.data_dir / "keys",
            audience=root.public_url,
        ),
        web=read_section(WebSettings, environ, problems),
        brand=read_section(BrandSettings, environ, problems),
        runtime=read_section(RuntimeSettings, environ, problems),
        passkeys=read_section(PasskeySettings, environ, problems),
        operator=read_section(OperatorSettings, environ, problems),
    )
    if not problems and not settings.secret_key and settings.development:
        settings = _with_dev_secret(settings)
    problems.extend(settings.problems(require_key=require_key))
    if problems:
        raise ConfigError("Latch will not start: " + "; ".join(problems))
    return settings


def _with_dev_secret(settings: Settings) -> Settings:
    """Generate (once) and keep a development secret key in DATA_DIR."""
    data_dir = settings.storage.data_dir
    path = data_dir / "secret_key"
    if not path.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_urlsafe(48))
    return replace(settings, secret_key=path.read_text().strip().encode())
