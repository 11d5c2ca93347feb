"""The abuse limits of docs/design.md §4, counted in the database (they hold across instances)."""

from __future__ import annotations

from typing import Any

from service.db import Q, UseCase
from service.settings import LimitSettings


def mail_limit_wait(key: str, ip: str | None, limits: LimitSettings, now: int) -> UseCase[int]:
    """Seconds until every mail/start limit allows one more; 0 when allowed now.

    `key` is the address's limit key (addresses.limit_key), which mail_log.email_key holds.
    """
    cols: list[str] = []
    p: dict[str, Any] = {"k": key, "ip": ip}
    if limits.mail_interval:
        cols.append("(SELECT MAX(created_at) FROM mail_log WHERE email_key = :k) AS last_mail")
    for name, count, window, where in (
        ("win", limits.mail_per_window, limits.mail_window, "mail_log WHERE email_key = :k"),
        ("day", limits.mail_per_day, 86400, "mail_log WHERE email_key = :k"),
        ("glob", limits.mail_global, 60, "mail_log WHERE 1 = 1"),
        (
            "ip",
            limits.starts_per_ip if ip is not None else 0,
            limits.ip_window,
            "login_flows WHERE ip = :ip",
        ),
    ):
        if not count:
            continue
        p[f"{name}_since"] = now - window
        cols.append(f"(SELECT COUNT(*) FROM {where} AND created_at > :{name}_since) AS {name}_n")
        cols.append(
            f"(SELECT MIN(created_at) FROM {where} AND created_at > :{name}_since) AS {name}_first"
        )
    if not cols:
        return 0
    rows = yield Q("SELECT " + ", ".join(cols), p)
    r = rows[0]
    waits = [0]
    if limits.mail_interval and r["last_mail"] is not None:
        waits.append(r["last_mail"] + limits.mail_interval - now)
    for name, count, window in (
        ("win", limits.mail_per_window, limits.mail_window),
        ("day", limits.mail_per_day, 86400),
        ("glob", limits.mail_global, 60),
        ("ip", limits.starts_per_ip, limits.ip_window),
    ):
        if f"{name}_n" in r and r[f"{name}_n"] >= count:
            waits.append(r[f"{name}_first"] + window - now + 1)
    return max(waits)


def codes_locked_for(email_key: str, limits: LimitSettings, now: int) -> UseCase[int]:
    """Seconds the address's typed codes stay refused (0: not locked); under its lock."""
    if not limits.address_failures:
        return 0
    rows = yield Q(
        "SELECT locked_until FROM address_failures WHERE email_key = :k", {"k": email_key}
    )
    return max(0, rows[0]["locked_until"] - now) if rows else 0


def count_address_failure(email_key: str, limits: LimitSettings, now: int) -> UseCase[None]:
    """One more consecutive wrong typed code (email or authenticator) for the address; at the
    limit its typed codes are refused for LIMIT_ADDRESS_LOCK (NIST SP 800-63B §5.2.2)."""
    if not limits.address_failures:
        return
    rows = yield Q(
        "INSERT INTO address_failures (email_key, failures, locked_until, updated_at)"
        " VALUES (:k, 1, 0, :now) ON CONFLICT (email_key) DO UPDATE SET"
        " failures = address_failures.failures + 1, updated_at = :now RETURNING failures",
        {"k": email_key, "now": now},
    )
    if rows[0]["failures"] >= limits.address_failures:
        yield Q(
            "UPDATE address_failures SET failures = 0, locked_until = :until WHERE email_key = :k",
            {"k": email_key, "until": now + limits.address_lock},
        )


def reset_address_failures(email_key: str, limits: LimitSettings) -> UseCase[None]:
    """A sign-in passed every step: the consecutive count starts again."""
    if limits.address_failures:
        yield Q("DELETE FROM address_failures WHERE email_key = :k", {"k": email_key})
