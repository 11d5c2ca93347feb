"""Settings: one frozen object built from the environment in one place, validated at start-up."""

from __future__ import annotations

import ipaddress
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from service import colour
from service.errors import ConfigError

ALGORITHMS = ("EdDSA", "ES256", "RS256", "HS256")
SMTP_TLS_MODES = ("tls", "starttls", "none")
DEV_HOSTS = ("localhost", "127.0.0.1", "::1", "[::1]")
# The logo is served by Latch as an image: only these types, each with its content type.
LOGO_TYPES = {
    ".png": "image/png",
    ".svg": "image/svg+xml",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".webp": "image/webp",
}
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
LOOPBACK: tuple[Network, ...] = (
    ipaddress.ip_network("127.0.0.0/8"),
    ipaddress.ip_network("::1/128"),
)


@dataclass(frozen=True)
class Settings:
    """Every knob of Latch. Durations are seconds; a limit of 0 turns that limit off."""

    public_url: str = "http://127.0.0.1:8000"
    secret_key: bytes = b""
    data_dir: Path = Path("./data")
    database_url: str = ""
    smtp_host: str = ""
    smtp_port: int = 0
    smtp_username: str = ""
    smtp_password: str = ""
    smtp_tls: str = "starttls"
    smtp_timeout: float = 10.0
    smtp_ca_file: str = ""
    mail_from: str = ""
    email_templates_dir: Path = Path("./email_templates")
    jwt_algorithm: str = "EdDSA"
    jwt_audience: str = ""
    keys_dir: Path = Path("./data/keys")
    access_ttl: int = 900
    code_ttl: int = 600
    refresh_grace: int = 30
    session_idle_ttl: int = 7 * 86400
    session_max_ttl: int = 30 * 86400
    cookie_domain: str = ""
    allowed_origins: tuple[str, ...] = ()
    allowed_redirect_origins: tuple[str, ...] = ()
    allowed_email_domains: tuple[str, ...] = ()
    allow_signup: bool = True
    link_same_browser: bool = False
    trusted_proxies: tuple[Network, ...] = ()
    metrics_allow: tuple[Network, ...] = LOOPBACK
    purge_interval: int = 3600
    shutdown_grace: float = 20.0
    keys_reload_interval: float = 5.0
    log_level: str = "INFO"
    limit_code_attempts: int = 5
    limit_address_failures: int = 100
    limit_address_lock: int = 86400
    limit_mail_interval: int = 30
    limit_mail_per_window: int = 5
    limit_mail_window: int = 900
    limit_mail_per_day: int = 20
    limit_mail_global: int = 600
    limit_starts_per_ip: int = 30
    limit_ip_window: int = 900
    max_body_bytes: int = 16 * 1024
    mail_queue_size: int = 1000
    mail_workers: int = 4
    mail_retry_delays: tuple[float, ...] = (1.0, 5.0, 25.0, 125.0)
    mail_stale_after: int = 120
    app_name: str = "Latch"
    accent_color: str = "#4f46e5"
    logo_file: str = ""

    @property
    def development(self) -> bool:
        """A PUBLIC_URL on localhost is development: generated keys, console mail, no Secure."""
        return (urlsplit(self.public_url).hostname or "") in DEV_HOSTS

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
    def audience(self) -> str:
        """The `aud` of access tokens: JWT_AUDIENCE, or PUBLIC_URL."""
        return self.jwt_audience or self.public_url

    @property
    def cookie_secure(self) -> bool:
        """Secure cookies everywhere except plain http on localhost."""
        return self.https or not self.development

    def cookie_name(self, base: str, *, shared: bool = False) -> str:
        """`__Host-` prefix under https (`__Secure-` for a cookie sent to COOKIE_DOMAIN)."""
        if not self.https:
            return base
        if shared and self.cookie_domain:
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

    @property
    def resolved_database_url(self) -> str:
        """DATABASE_URL, or the SQLite file in DATA_DIR."""
        return self.database_url or f"sqlite:///{self.data_dir / 'latch.db'}"


def _bool(value: str, name: str) -> bool:
    lowered = value.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off", ""):
        return False
    raise ConfigError(f"{name} must be true or false, not {value!r}")


def _int(value: str, name: str) -> int:
    try:
        number = int(value.strip())
    except ValueError as e:
        raise ConfigError(f"{name} must be a whole number, not {value!r}") from e
    if number < 0:
        raise ConfigError(f"{name} must not be negative")
    return number


def _float(value: str, name: str) -> float:
    try:
        number = float(value.strip())
    except ValueError as e:
        raise ConfigError(f"{name} must be a number, not {value!r}") from e
    if number < 0:
        raise ConfigError(f"{name} must not be negative")
    return number


def _list(value: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in value.split(",") if item.strip())


def _networks(value: str, name: str) -> tuple[Network, ...]:
    try:
        return tuple(ipaddress.ip_network(item, strict=False) for item in _list(value))
    except ValueError as e:
        raise ConfigError(f"{name} must be a comma-separated list of IPs or CIDRs") from e


def _origins(value: str, name: str) -> tuple[str, ...]:
    origins = []
    for item in _list(value):
        parts = urlsplit(item)
        if parts.scheme not in ("https", "http") or not parts.netloc or parts.path not in ("", "/"):
            raise ConfigError(f"{name}: {item!r} is not an origin like https://app.example.com")
        origins.append(f"{parts.scheme}://{parts.netloc}".lower())
    return tuple(origins)


_INTS = (
    "SMTP_PORT ACCESS_TTL CODE_TTL REFRESH_GRACE SESSION_IDLE_TTL SESSION_MAX_TTL PURGE_INTERVAL "
    "LIMIT_CODE_ATTEMPTS LIMIT_ADDRESS_FAILURES LIMIT_ADDRESS_LOCK LIMIT_MAIL_INTERVAL "
    "LIMIT_MAIL_PER_WINDOW LIMIT_MAIL_WINDOW LIMIT_MAIL_PER_DAY LIMIT_MAIL_GLOBAL "
    "LIMIT_STARTS_PER_IP LIMIT_IP_WINDOW MAX_BODY_BYTES MAIL_QUEUE_SIZE MAIL_WORKERS "
    "MAIL_STALE_AFTER"
).split()
_FLOATS = ("SMTP_TIMEOUT", "SHUTDOWN_GRACE", "KEYS_RELOAD_INTERVAL")
_STRINGS = (
    "PUBLIC_URL DATABASE_URL SMTP_HOST SMTP_USERNAME SMTP_PASSWORD SMTP_TLS SMTP_CA_FILE "
    "MAIL_FROM JWT_ALGORITHM JWT_AUDIENCE COOKIE_DOMAIN LOG_LEVEL APP_NAME ACCENT_COLOR LOGO_FILE"
).split()


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


def load_settings(environ: Mapping[str, str], *, require_key: bool = True) -> Settings:
    """Build and validate Settings from an environment mapping (never reads os.environ itself).

    In development a missing SECRET_KEY is generated once into DATA_DIR and kept.
    """
    env = {k: v for k, v in environ.items() if v != ""}
    kw: dict[str, object] = {}
    for name in _INTS:
        if name in env:
            kw[name.lower()] = _int(env[name], name)
    for name in _FLOATS:
        if name in env:
            kw[name.lower()] = _float(env[name], name)
    for name in _STRINGS:
        if name in env:
            kw[name.lower()] = env[name].strip()
    for name in ("ALLOW_SIGNUP", "LINK_SAME_BROWSER"):
        if name in env:
            kw[name.lower()] = _bool(env[name], name)
    if "ALLOWED_ORIGINS" in env:
        kw["allowed_origins"] = _origins(env["ALLOWED_ORIGINS"], "ALLOWED_ORIGINS")
    if "ALLOWED_REDIRECT_ORIGINS" in env:
        kw["allowed_redirect_origins"] = _origins(
            env["ALLOWED_REDIRECT_ORIGINS"], "ALLOWED_REDIRECT_ORIGINS"
        )
    if "ALLOWED_EMAIL_DOMAINS" in env:
        kw["allowed_email_domains"] = tuple(d.lower() for d in _list(env["ALLOWED_EMAIL_DOMAINS"]))
    if "TRUSTED_PROXIES" in env:
        kw["trusted_proxies"] = _networks(env["TRUSTED_PROXIES"], "TRUSTED_PROXIES")
    if "METRICS_ALLOW" in env:
        kw["metrics_allow"] = _networks(env["METRICS_ALLOW"], "METRICS_ALLOW")
    if "MAIL_RETRY_DELAYS" in env:
        kw["mail_retry_delays"] = tuple(
            _float(x, "MAIL_RETRY_DELAYS") for x in _list(env["MAIL_RETRY_DELAYS"])
        )
    data_dir = Path(env.get("DATA_DIR", "./data"))
    kw["data_dir"] = data_dir
    kw["keys_dir"] = Path(env.get("KEYS_DIR", str(data_dir / "keys")))
    kw["email_templates_dir"] = Path(env.get("EMAIL_TEMPLATES_DIR", "./email_templates"))
    if "SECRET_KEY" in env:
        kw["secret_key"] = env["SECRET_KEY"].encode("utf-8")
    kw["public_url"] = str(kw.get("public_url", Settings.public_url)).rstrip("/")
    if "smtp_tls" in kw:
        kw["smtp_tls"] = str(kw["smtp_tls"]).lower()
    settings = Settings(**kw)  # type: ignore[arg-type]
    if not settings.secret_key and settings.development:
        settings = _with_dev_secret(settings)
    validate(settings, require_key=require_key)
    return settings


def _with_dev_secret(settings: Settings) -> Settings:
    """Generate (once) and keep a development secret key in DATA_DIR."""
    from dataclasses import replace

    path = settings.data_dir / "secret_key"
    if not path.exists():
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_urlsafe(48))
    return replace(settings, secret_key=path.read_text().strip().encode())


def validate(settings: Settings, *, require_key: bool = True) -> None:
    """Refuse unsafe or incomplete settings with a message naming what to set."""
    problems: list[str] = []
    url = urlsplit(settings.public_url)
    if url.scheme not in ("http", "https") or not url.hostname or url.path not in ("", "/"):
        problems.append("PUBLIC_URL must look like https://login.example.com (no path)")
    if settings.jwt_algorithm not in ALGORITHMS:
        problems.append(f"JWT_ALGORITHM must be one of {', '.join(ALGORITHMS)}")
    if settings.smtp_tls not in SMTP_TLS_MODES:
        problems.append("SMTP_TLS must be tls, starttls or none")
    if settings.session_idle_ttl > settings.session_max_ttl:
        problems.append("SESSION_IDLE_TTL must not exceed SESSION_MAX_TTL")
    if settings.access_ttl <= 0 or settings.code_ttl <= 0:
        problems.append("ACCESS_TTL and CODE_TTL must be positive")
    if settings.mail_workers < 1 or settings.mail_queue_size < 1:
        problems.append("MAIL_WORKERS and MAIL_QUEUE_SIZE must be at least 1")
    if settings.cookie_domain and not settings.cookie_domain.startswith("."):
        problems.append("COOKIE_DOMAIN must start with a dot, like .example.com")
    if "\r" in settings.mail_from or "\n" in settings.mail_from:
        # It becomes the From header of every mail: a line break would add headers of its own.
        problems.append("MAIL_FROM must be one address on one line")
    problems.extend(_branding_problems(settings))
    if not settings.development:
        problems.extend(_production_problems(settings, require_key))
    if problems:
        raise ConfigError("Latch will not start: " + "; ".join(problems))


def _branding_problems(settings: Settings) -> list[str]:
    problems = []
    # ACCENT_COLOR goes into a stylesheet and the mail's inline styles: only a plain hex colour
    # (nothing that could close the declaration), and dark enough for the white button text.
    if not colour.HEX_COLOUR.fullmatch(settings.accent_color):
        problems.append("ACCENT_COLOR must be a colour like #4f46e5 or #36c")
    elif colour.contrast(settings.accent_color, colour.WHITE) < colour.AA:
        problems.append("ACCENT_COLOR is too light: white text on it must reach 4.5:1 contrast")
    if settings.logo_file:
        logo = Path(settings.logo_file)
        if logo.suffix.lower() not in LOGO_TYPES:
            problems.append("LOGO_FILE must be a .png, .svg, .jpg or .webp file")
        elif not logo.is_file():
            problems.append(f"LOGO_FILE {settings.logo_file} is not a readable file")
    return problems


def _production_problems(settings: Settings, require_key: bool) -> list[str]:
    problems = []
    if len(settings.secret_key) < 32:
        problems.append("SECRET_KEY must be set to at least 32 random bytes in production")
    if not settings.smtp_host:
        problems.append("SMTP_HOST must be set in production (mail cannot go to the console)")
    has_key = (settings.keys_dir / "keyring.json").is_file()
    if require_key and settings.jwt_algorithm != "HS256" and not has_key:
        problems.append(
            f"no signing key in KEYS_DIR ({settings.keys_dir}): "
            "run `python -m service keys generate` or set KEYS_DIR"
        )
    if settings.limit_code_attempts == 0:
        problems.append("LIMIT_CODE_ATTEMPTS cannot be 0 (off) in production")
    if not settings.mail_from:
        problems.append("MAIL_FROM must be set in production")
    return problems
