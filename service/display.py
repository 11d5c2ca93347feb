"""How people and devices are shown: masked addresses, a device in words."""

from __future__ import annotations

import re


def mask_email(email: str) -> str:
    """`alice@example.com` -> `a•••@example.com` (for logs and the link page)."""
    local, _, domain = email.rpartition("@")
    if not local:
        return "•••"
    return f"{local[0]}•••@{domain}"


_BROWSERS = (
    ("Edg/", "Edge"),
    ("OPR/", "Opera"),
    ("Firefox/", "Firefox"),
    ("Chrome/", "Chrome"),
    ("Chromium/", "Chromium"),
    ("Safari/", "Safari"),
    ("curl/", "curl"),
    ("python-httpx", "a script"),
    ("python-requests", "a script"),
)
_SYSTEMS = (
    ("iPhone", "iPhone"),
    ("iPad", "iPad"),
    ("Android", "Android"),
    ("Windows", "Windows"),
    ("Mac OS X", "macOS"),
    ("Macintosh", "macOS"),
    ("CrOS", "ChromeOS"),
    ("Linux", "Linux"),
)
_SAFE = re.compile(r"[^\w .,;:/()+-]")


def describe_device(user_agent: str) -> str:
    """`Firefox on Linux`, from a User-Agent; '' when nothing is recognised."""
    browser = next((name for token, name in _BROWSERS if token in user_agent), "")
    system = next((name for token, name in _SYSTEMS if token in user_agent), "")
    if browser and system:
        return f"{browser} on {system}"
    return browser or system or _SAFE.sub("", user_agent)[:40]
