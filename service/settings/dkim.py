"""DKIM signing of the sign-in mail (optional): which domain signs, under which selector, with
which key. All three or none; the key is read and checked at start, not at the first mail."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from service.settings.fields import env, lower, text

# RFC 8301: verifiers must refuse RSA keys under 1024 bits; 2048 is what receivers recommend.
MIN_RSA_BITS = 1024
_DNS_NAME = re.compile(
    r"[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9])?)*"
)


def _domain(value: str) -> str:
    return lower(value).rstrip(".")


def _optional_path(value: str) -> Path | None:
    stripped = value.strip()
    return Path(stripped) if stripped else None


@dataclass(frozen=True, kw_only=True)
class DkimSettings:
    """DKIM_DOMAIN (the d= tag), DKIM_SELECTOR (s=; the key is published in DNS at
    SELECTOR._domainkey.DOMAIN) and DKIM_PRIVATE_KEY_FILE (an RSA private key, PEM)."""

    domain: str = env("DKIM_DOMAIN", _domain, "")
    selector: str = env("DKIM_SELECTOR", text, "")
    private_key_file: Path | None = env("DKIM_PRIVATE_KEY_FILE", _optional_path, None)

    @property
    def enabled(self) -> bool:
        """True when mail is to be signed (validate() has made sure all three are set)."""
        return bool(self.domain and self.selector and self.private_key_file)

    def private_key(self) -> bytes:
        """The PEM key, read from its file (callers run after validate() has checked it)."""
        if self.private_key_file is None:
            raise ValueError("DKIM is not configured")
        return self.private_key_file.read_bytes()

    def validate(self) -> list[str]:
        """The problems of this section, each naming the variable to set."""
        given = {
            "DKIM_DOMAIN": bool(self.domain),
            "DKIM_SELECTOR": bool(self.selector),
            "DKIM_PRIVATE_KEY_FILE": self.private_key_file is not None,
        }
        if not any(given.values()):
            return []
        if not all(given.values()):
            # Half a DKIM set-up would send unsigned mail while the operator believes it signed.
            missing = ", ".join(name for name, ok in given.items() if not ok)
            return [
                f"DKIM needs DKIM_DOMAIN, DKIM_SELECTOR and DKIM_PRIVATE_KEY_FILE ({missing} unset)"
            ]
        problems = []
        # Both end up in a DNS name and in the DKIM-Signature header: no room for anything else.
        for name, value in (("DKIM_DOMAIN", self.domain), ("DKIM_SELECTOR", self.selector)):
            if not _DNS_NAME.fullmatch(value):
                problems.append(f"{name} must be a DNS name (letters, digits, '-', '.'): {value!r}")
        problems.extend(self._key_problems())
        return problems

    def _key_problems(self) -> list[str]:
        # Read now: a missing, unreadable or wrong key must stop start-up, not fail every mail
        # (or, worse, let mail go out unsigned and fail DMARC at the receiver).
        try:
            data = self.private_key()
        except OSError as e:
            return [f"DKIM_PRIVATE_KEY_FILE cannot be read: {e.strerror or type(e).__name__}"]
        try:
            key = load_pem_private_key(data, password=None)
        except (ValueError, TypeError):
            # Never quote the file: it is a private key.
            return ["DKIM_PRIVATE_KEY_FILE must hold an unencrypted PEM private key"]
        if not isinstance(key, rsa.RSAPrivateKey):
            # Gmail and Outlook verify rsa-sha256 only; Ed25519 (RFC 8463) is not widely checked.
            return [
                "DKIM_PRIVATE_KEY_FILE must hold an RSA key (openssl genrsa -out dkim.pem 2048)"
            ]
        if key.key_size < MIN_RSA_BITS:
            return [
                (
                    f"DKIM_PRIVATE_KEY_FILE: the RSA key has {key.key_size} bits; receivers refuse "
                    f"fewer than {MIN_RSA_BITS} (use 2048)"
                )
            ]
        return []
