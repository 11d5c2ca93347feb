"""How a settings field names its environment variable and parses it, in one declaration.

A section field is written `smtp_port: int = env("SMTP_PORT", whole, 0)`: the name, the parser
and the default sit together, so there is no list of names by type to keep in step with the
dataclass. `read_section` builds a section from an environment mapping and reports every value
it could not parse, so one start-up names all of them instead of the first.
"""

from __future__ import annotations

import ipaddress
import math
from collections.abc import Callable, Mapping
from dataclasses import field, fields
from pathlib import Path
from typing import Any, TypeVar, cast
from urllib.parse import urlsplit

T = TypeVar("T")
S = TypeVar("S")
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
LOOPBACK: tuple[Network, ...] = (
    ipaddress.ip_network("127.0.0.0/8"),
    ipaddress.ip_network("::1/128"),
)


def env(name: str, parse: Callable[[str], T], default: T, *, hidden: bool = False) -> T:
    """A dataclass field read from the environment variable `name` with `parse`.

    `hidden` keeps a secret out of the dataclass's repr, so logging or printing Settings (or an
    error that shows it) never carries it.
    """
    metadata = {"env": name, "parse": parse}
    return field(default=default, metadata=metadata, repr=not hidden)


def read_section(
    section: type[S], environ: Mapping[str, str], problems: list[str], **derived: Any
) -> S:
    """Build `section` from `environ`; unparseable values go to `problems`, keeping the default.

    An empty value counts as unset. `derived` gives defaults that depend on other sections
    (KEYS_DIR under DATA_DIR), used only when the variable itself is not set.
    """
    values: dict[str, Any] = {}
    for f in fields(cast(Any, section)):
        name = f.metadata.get("env")
        if name is None:
            continue
        raw = environ.get(name, "")
        if raw == "":
            if f.name in derived:
                values[f.name] = derived[f.name]
            continue
        try:
            values[f.name] = f.metadata["parse"](raw)
        except ValueError as e:
            # A parser's message quotes the value: never for a hidden (secret) field.
            problems.append(f"{name} {e}" if f.repr else f"{name} is malformed")
            # Keep the default so the other checks still run and report in the same start.
            if f.name in derived:
                values[f.name] = derived[f.name]
    return section(**values)


def text(value: str) -> str:
    """The value without surrounding blanks."""
    return value.strip()


def lower(value: str) -> str:
    """The value without surrounding blanks, lower-cased (modes, names)."""
    return value.strip().lower()


def upper(value: str) -> str:
    """The value without surrounding blanks, upper-cased (log levels)."""
    return value.strip().upper()


def secret(value: str) -> bytes:
    """The secret's bytes (UTF-8)."""
    return value.encode("utf-8")


def path(value: str) -> Path:
    """A filesystem path."""
    return Path(value.strip())


def flag(value: str) -> bool:
    """true/false, yes/no, on/off, 1/0."""
    lowered = value.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"must be true or false, not {value!r}")


def whole(value: str) -> int:
    """A whole number, zero or more."""
    try:
        number = int(value.strip())
    except ValueError as e:
        raise ValueError(f"must be a whole number, not {value!r}") from e
    if number < 0:
        raise ValueError("must not be negative")
    return number


def seconds(value: str) -> float:
    """A number (of seconds), zero or more."""
    try:
        number = float(value.strip())
    except ValueError as e:
        raise ValueError(f"must be a number, not {value!r}") from e
    if not math.isfinite(number) or number < 0:
        raise ValueError(f"must be a number of seconds, zero or more, not {value!r}")
    return number


def items(value: str) -> tuple[str, ...]:
    """A comma-separated list, blanks dropped."""
    return tuple(item.strip() for item in value.split(",") if item.strip())


def lower_items(value: str) -> tuple[str, ...]:
    """A comma-separated list, lower-cased (domain names)."""
    return tuple(item.lower() for item in items(value))


def delays(value: str) -> tuple[float, ...]:
    """A comma-separated list of seconds."""
    return tuple(seconds(item) for item in items(value))


def networks(value: str) -> tuple[Network, ...]:
    """A comma-separated list of IP addresses or CIDR networks."""
    try:
        return tuple(ipaddress.ip_network(item, strict=False) for item in items(value))
    except ValueError as e:
        raise ValueError("must be a comma-separated list of IPs or CIDRs") from e


def origins(value: str) -> tuple[str, ...]:
    """A comma-separated list of origins (scheme://host[:port]), normalised to lower case."""
    found = []
    for item in items(value):
        parts = urlsplit(item)
        if parts.scheme not in ("https", "http") or not parts.netloc or parts.path not in ("", "/"):
            raise ValueError(f"must list origins like https://app.example.com, not {item!r}")
        found.append(f"{parts.scheme}://{parts.netloc}".lower())
    return tuple(found)


def url(value: str) -> str:
    """A base URL, without the trailing slash."""
    return value.strip().rstrip("/")
