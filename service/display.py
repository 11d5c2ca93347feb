"""How people are shown: masked addresses (devices in words: service/device.py)."""

from __future__ import annotations


def mask_email(email: str) -> str:
    """`alice@example.com` -> `a•••@example.com` (for logs and the link page)."""
    local, _, domain = email.rpartition("@")
    if not local:
        return "•••"
    return f"{local[0]}•••@{domain}"
