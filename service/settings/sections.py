"""The sections of Settings: each a frozen dataclass whose fields name their environment variable,
and whose `validate()` lists its problems, each naming the variable to set.

Checks that need more than one section (production requirements) live on `Settings`.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import Path

from service import colour
from service.settings.fields import (
    LOOPBACK,
    Network,
    delays,
    env,
    flag,
    lower,
    lower_items,
    networks,
    origins,
    path,
    seconds,
    text,
    upper,
    whole,
)

ALGORITHMS = ("EdDSA", "ES256", "RS256", "HS256")
SMTP_TLS_MODES = ("tls", "starttls", "none")
DATABASE_SCHEMES = ("sqlite", "sqlite+aiosqlite", "postgresql", "postgresql+asyncpg", "postgres")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
# The logo is served by Latch as an image: only these types, each with its content type.
LOGO_TYPES = {
    ".png": "image/png",
    ".svg": "image/svg+xml",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".webp": "image/webp",
}


@dataclass(frozen=True, kw_only=True)
class StorageSettings:
    """Where Latch keeps its data, and how often it purges what has expired."""

    data_dir: Path = env("DATA_DIR", path, Path("./data"))
    # hidden: a PostgreSQL URL may carry its password.
    database_url: str = env("DATABASE_URL", text, "", hidden=True)
    purge_interval: int = env("PURGE_INTERVAL", whole, 3600)

    @property
    def resolved_database_url(self) -> str:
        """DATABASE_URL, or the SQLite file in DATA_DIR."""
        return self.database_url or f"sqlite:///{self.data_dir / 'latch.db'}"

    def validate(self) -> list[str]:
        """The problems of this section, each naming the variable to set."""
        scheme = self.resolved_database_url.partition("://")[0]
        if scheme not in DATABASE_SCHEMES:
            return ["DATABASE_URL must look like sqlite:///path or postgresql+asyncpg://…"]
        return []


def _loopback(host: str) -> bool:
    """True for a name or address of this host (`localhost`, 127.0.0.0/8, ::1)."""
    if host.lower() in ("localhost", "localhost.localdomain") or host.lower().endswith(
        ".localhost"
    ):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True, kw_only=True)
class MailSettings:
    """How the sign-in mail is written, queued and sent (DESIGN §6)."""

    smtp_host: str = env("SMTP_HOST", text, "")
    smtp_port: int = env("SMTP_PORT", whole, 0)  # 0: the usual port of SMTP_TLS
    smtp_username: str = env("SMTP_USERNAME", text, "")
    smtp_password: str = env("SMTP_PASSWORD", text, "", hidden=True)
    smtp_tls: str = env("SMTP_TLS", lower, "starttls")
    smtp_timeout: float = env("SMTP_TIMEOUT", seconds, 10.0)
    smtp_ca_file: str = env("SMTP_CA_FILE", text, "")
    from_address: str = env("MAIL_FROM", text, "")
    templates_dir: Path = env("EMAIL_TEMPLATES_DIR", path, Path("./email_templates"))
    # Mails accepted and not yet sent. It bounds how far mail may fall behind the starts (about
    # a second of mail at the bench's rate), so a rush is not answered with codes that arrive a
    # minute later; a start that finds it full waits up to MAIL_QUEUE_WAIT for a place (a rush
    # is slowed to the pace mail goes out) and is refused with 503 only after that.
    queue_size: int = env("MAIL_QUEUE_SIZE", whole, 1000)
    queue_wait: float = env("MAIL_QUEUE_WAIT", seconds, 5.0)
    # 16 senders (each one SMTP connection at most) keep mail moving while the event loop is
    # busy with requests: each SMTP reply waits for a turn of the loop, so under load the mail
    # rate grows with the senders (bench: 4 left the last mail of a rush 53 s behind; 16, ~3 s).
    workers: int = env("MAIL_WORKERS", whole, 16)
    retry_delays: tuple[float, ...] = env("MAIL_RETRY_DELAYS", delays, (1.0, 5.0, 25.0, 125.0))
    stale_after: int = env("MAIL_STALE_AFTER", whole, 120)

    def validate(self) -> list[str]:
        """The problems of this section, each naming the variable to set."""
        problems = []
        if self.smtp_tls not in SMTP_TLS_MODES:
            problems.append("SMTP_TLS must be tls, starttls or none")
        if self.smtp_port > 65535:
            problems.append("SMTP_PORT must be a port number (1-65535)")
        if self.workers < 1:
            problems.append("MAIL_WORKERS must be at least 1")
        if self.queue_size < 1:
            problems.append("MAIL_QUEUE_SIZE must be at least 1")
        plain = self.smtp_tls == "none" and self.smtp_host and not _loopback(self.smtp_host)
        if self.smtp_username and plain:
            # AUTH would carry the password (base64, not hidden) across the network in clear
            # text. A relay on this host (loopback) is the one place where that is no exposure.
            problems.append(
                "SMTP_TLS=none with SMTP_USERNAME would send the SMTP password in clear text:"
                " use starttls or tls (or a relay on this host)"
            )
        if "\r" in self.from_address or "\n" in self.from_address:
            # It becomes the From header of every mail: a line break would add headers of its own.
            problems.append("MAIL_FROM must be one address on one line")
        return problems


@dataclass(frozen=True, kw_only=True)
class LimitSettings:
    """The abuse limits of DESIGN §4, in seconds and counts; 0 turns a limit off.

    The store counts against this section directly (service/store/limits.py).
    """

    code_attempts: int = env("LIMIT_CODE_ATTEMPTS", whole, 5)
    address_failures: int = env("LIMIT_ADDRESS_FAILURES", whole, 100)
    address_lock: int = env("LIMIT_ADDRESS_LOCK", whole, 86400)
    mail_interval: int = env("LIMIT_MAIL_INTERVAL", whole, 30)
    mail_per_window: int = env("LIMIT_MAIL_PER_WINDOW", whole, 5)
    mail_window: int = env("LIMIT_MAIL_WINDOW", whole, 900)
    mail_per_day: int = env("LIMIT_MAIL_PER_DAY", whole, 20)
    mail_global: int = env("LIMIT_MAIL_GLOBAL", whole, 600)
    starts_per_ip: int = env("LIMIT_STARTS_PER_IP", whole, 30)
    ip_window: int = env("LIMIT_IP_WINDOW", whole, 900)
    body_bytes: int = env("MAX_BODY_BYTES", whole, 16 * 1024)

    def validate(self) -> list[str]:
        """The problems of this section, each naming the variable to set."""
        # A count with a zero window or lock counts nothing: the limit would be off while its
        # setting says it is on. 0 is the one way to turn a limit off, so refuse the disguise.
        problems = []
        for count, count_name, span, span_name in (
            (self.address_failures, "LIMIT_ADDRESS_FAILURES", self.address_lock, "ADDRESS_LOCK"),
            (self.mail_per_window, "LIMIT_MAIL_PER_WINDOW", self.mail_window, "MAIL_WINDOW"),
            (self.starts_per_ip, "LIMIT_STARTS_PER_IP", self.ip_window, "IP_WINDOW"),
        ):
            if count and not span:
                problems.append(
                    f"LIMIT_{span_name} must be positive while {count_name} is on "
                    f"(set {count_name}=0 to turn that limit off)"
                )
        return problems


@dataclass(frozen=True, kw_only=True)
class SigninSettings:
    """Who may sign in, and how long a code or link lasts."""

    code_ttl: int = env("CODE_TTL", whole, 600)
    allow_signup: bool = env("ALLOW_SIGNUP", flag, True)
    link_same_browser: bool = env("LINK_SAME_BROWSER", flag, False)
    allowed_email_domains: tuple[str, ...] = env("ALLOWED_EMAIL_DOMAINS", lower_items, ())

    def validate(self) -> list[str]:
        """The problems of this section, each naming the variable to set."""
        return [] if self.code_ttl > 0 else ["CODE_TTL must be positive"]


SECOND_FACTOR_POLICIES = ("off", "enrolled", "all")


@dataclass(frozen=True, kw_only=True)
class FactorSettings:
    """Second factors (docs/design.md §11): who must use one, and how recent a step must be
    for the account's sensitive actions."""

    # off: factors are ignored at sign-in; enrolled: who has one must use it; all: who has
    # none is taken through enrolment before the first session is issued.
    require_second_factor: str = env("REQUIRE_SECOND_FACTOR", lower, "enrolled")
    step_up_ttl: int = env("STEP_UP_TTL", whole, 600)

    def validate(self) -> list[str]:
        """The problems of this section, each naming the variable to set."""
        problems = []
        if self.require_second_factor not in SECOND_FACTOR_POLICIES:
            problems.append("REQUIRE_SECOND_FACTOR must be off, enrolled or all")
        if self.step_up_ttl <= 0:
            problems.append("STEP_UP_TTL must be positive")
        return problems


@dataclass(frozen=True, kw_only=True)
class SessionSettings:
    """How long sessions and access tokens last, and where the access cookie is sent."""

    access_ttl: int = env("ACCESS_TTL", whole, 900)
    refresh_grace: int = env("REFRESH_GRACE", whole, 30)
    idle_ttl: int = env("SESSION_IDLE_TTL", whole, 7 * 86400)
    max_ttl: int = env("SESSION_MAX_TTL", whole, 30 * 86400)
    cookie_domain: str = env("COOKIE_DOMAIN", text, "")

    def validate(self) -> list[str]:
        """The problems of this section, each naming the variable to set."""
        problems = []
        if self.access_ttl <= 0:
            problems.append("ACCESS_TTL must be positive")
        if self.idle_ttl > self.max_ttl:
            problems.append("SESSION_IDLE_TTL must not exceed SESSION_MAX_TTL")
        if self.cookie_domain and not self.cookie_domain.startswith("."):
            problems.append("COOKIE_DOMAIN must start with a dot, like .example.com")
        return problems


@dataclass(frozen=True, kw_only=True)
class TokenSettings:
    """How access tokens are signed, for whom, and where the signing keys live."""

    # ES256, not EdDSA: every verifier tried takes it (Node's jsonwebtoken 9 and python-jose
    # refuse EdDSA), and PyJWT checks it faster. A KEYS_DIR of another kind refuses to start.
    algorithm: str = env("JWT_ALGORITHM", text, "ES256")
    # The `aud` of access tokens; load_settings fills in PUBLIC_URL when JWT_AUDIENCE is unset.
    audience: str = env("JWT_AUDIENCE", text, "")
    keys_dir: Path = env("KEYS_DIR", path, Path("./data/keys"))
    keys_reload_interval: float = env("KEYS_RELOAD_INTERVAL", seconds, 5.0)

    def validate(self) -> list[str]:
        """The problems of this section, each naming the variable to set."""
        if self.algorithm not in ALGORITHMS:
            return [f"JWT_ALGORITHM must be one of {', '.join(ALGORITHMS)}"]
        return []


@dataclass(frozen=True, kw_only=True)
class WebSettings:
    """Which other origins and proxies Latch trusts (DESIGN §4, §5)."""

    allowed_origins: tuple[str, ...] = env("ALLOWED_ORIGINS", origins, ())
    allowed_redirect_origins: tuple[str, ...] = env("ALLOWED_REDIRECT_ORIGINS", origins, ())
    trusted_proxies: tuple[Network, ...] = env("TRUSTED_PROXIES", networks, ())
    # Who may read /metrics (operators only: counters move with what other people do).
    metrics_allow: tuple[Network, ...] = env("METRICS_ALLOW", networks, LOOPBACK)

    def validate(self) -> list[str]:
        """The problems of this section (its parsers already refuse malformed values)."""
        return []


@dataclass(frozen=True, kw_only=True)
class BrandSettings:
    """The name, colour and logo shown in the pages and the mail."""

    app_name: str = env("APP_NAME", text, "Latch")
    accent_color: str = env("ACCENT_COLOR", text, "#4f46e5")
    logo_file: str = env("LOGO_FILE", text, "")

    def validate(self) -> list[str]:
        """The problems of this section, each naming the variable to set."""
        problems = []
        # ACCENT_COLOR goes into a stylesheet and the mail's inline styles: only a plain hex
        # colour (nothing that could close the declaration), and dark enough for white text.
        if not colour.HEX_COLOUR.fullmatch(self.accent_color):
            problems.append("ACCENT_COLOR must be a colour like #4f46e5 or #36c")
        elif colour.contrast(self.accent_color, colour.WHITE) < colour.AA:
            problems.append("ACCENT_COLOR is too light: white text on it must reach 4.5:1 contrast")
        if self.logo_file:
            logo = Path(self.logo_file)
            if logo.suffix.lower() not in LOGO_TYPES:
                problems.append("LOGO_FILE must be a .png, .svg, .jpg or .webp file")
            elif not logo.is_file():
                problems.append(f"LOGO_FILE {self.logo_file} is not a readable file")
        return problems


@dataclass(frozen=True, kw_only=True)
class RuntimeSettings:
    """How the process serves connections, logs and stops."""

    log_level: str = env("LOG_LEVEL", upper, "INFO")
    shutdown_grace: float = env("SHUTDOWN_GRACE", seconds, 20.0)
    # Slow clients (docs/design.md §9): seconds to send the headers, seconds spent waiting for a
    # body, idle seconds between requests on a kept-alive connection, connections at once.
    header_timeout: float = env("HEADER_TIMEOUT", seconds, 10.0)
    body_timeout: float = env("BODY_TIMEOUT", seconds, 10.0)
    keep_alive_timeout: int = env("KEEP_ALIVE_TIMEOUT", whole, 5)
    max_connections: int = env("MAX_CONNECTIONS", whole, 1000)

    def validate(self) -> list[str]:
        """The problems of this section, each naming the variable to set."""
        if self.log_level not in LOG_LEVELS:
            return [f"LOG_LEVEL must be one of {', '.join(LOG_LEVELS)}"]
        return []
