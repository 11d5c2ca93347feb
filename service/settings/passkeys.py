"""Passkeys (WebAuthn, docs/design.md §12): whether they are on, and for which relying party.

The relying-party id is a domain the browser checks against the page's origin: PUBLIC_URL's
host unless `WEBAUTHN_RP_ID` names a parent domain of it. Browsers refuse an IP address as an
RP id (Chromium: "This is an invalid domain."), so a Latch on http://127.0.0.1 cannot offer
passkeys at all: `PASSKEYS=auto` (the default) turns them off there and on everywhere else,
and `PASSKEYS=on` with an IP-address RP id refuses to start rather than serve pages whose
passkey buttons can only fail.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from urllib.parse import urlsplit

from service.settings.fields import env, lower, origins, whole

PASSKEY_MODES = ("auto", "on", "off")


def is_ip_address(host: str) -> bool:
    """True for an IPv4 or IPv6 address (with or without brackets)."""
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


@dataclass(frozen=True, kw_only=True)
class PasskeySettings:
    """Passkeys on or off, the relying-party id, and the origins assertions may come from."""

    mode: str = env("PASSKEYS", lower, "auto")
    # '' = PUBLIC_URL's host (see `rp_id_for`).
    rp_id: str = env("WEBAUTHN_RP_ID", lower, "")
    # Origins besides PUBLIC_URL's whose pages may run the ceremonies (a single-page app on
    # another subdomain of the RP id).
    extra_origins: tuple[str, ...] = env("WEBAUTHN_ORIGINS", origins, ())
    # Unanswered challenges one client IP may hold at once (each is a stored row); 0: no limit.
    challenges_per_ip: int = env("LIMIT_PASSKEY_CHALLENGES", whole, 60)

    def rp_id_for(self, public_url: str) -> str:
        """The relying-party id: WEBAUTHN_RP_ID, else PUBLIC_URL's host."""
        return self.rp_id or (urlsplit(public_url).hostname or "").lower()

    def enabled_for(self, public_url: str) -> bool:
        """Whether passkeys are offered: `on`, or `auto` with a domain-name RP id."""
        if self.mode == "off":
            return False
        return self.mode == "on" or not is_ip_address(self.rp_id_for(public_url))

    def validate(self) -> list[str]:
        """The problems of this section alone (those that need PUBLIC_URL: `problems_with`)."""
        if self.mode not in PASSKEY_MODES:
            return ["PASSKEYS must be auto, on or off"]
        return []

    def problems_with(self, public_url: str) -> list[str]:
        """What this section cannot be, given PUBLIC_URL."""
        if self.mode == "off":
            return []
        rp_id = self.rp_id_for(public_url)
        if is_ip_address(rp_id):
            if self.mode == "on" or self.rp_id:
                return [
                    f"passkeys need a domain name, and the relying-party id {rp_id} is an IP "
                    "address (browsers refuse it): set PUBLIC_URL to http://localhost:8000 in "
                    "development or a domain in production, or PASSKEYS=off"
                ]
            return []
        problems = []
        host = (urlsplit(public_url).hostname or "").lower()
        for name, origin_host in [("PUBLIC_URL", host)] + [
            ("WEBAUTHN_ORIGINS", (urlsplit(o).hostname or "").lower()) for o in self.extra_origins
        ]:
            # WebAuthn: the RP id must be the origin's host or a registrable suffix of it.
            if origin_host != rp_id and not origin_host.endswith("." + rp_id):
                problems.append(
                    f"WEBAUTHN_RP_ID {rp_id} must be the host of {name} ({origin_host}) "
                    "or a parent domain of it"
                )
        return problems
