"""OpenID clients: what one is, how it is registered, how it proves who it is (docs/design.md §13).

A confidential client's secret is 256 random bits, shown once and stored as its SHA-256 (like
refresh tokens: a value that cannot be guessed needs no slow hash). A public client has no
secret and must use PKCE. Redirect URIs are compared as exact strings, never as prefixes or
patterns (RFC 9700 §4.1.3): each is registered whole, https or loopback http only.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from service import crypto, tokens
from service.db import Database, Row
from service.store import oauth

SCOPES = ("openid", "email", "profile")
ID_TOKEN_ALGS = ("RS256", "ES256", "EdDSA")
LOOPBACK = ("localhost", "127.0.0.1", "[::1]", "::1")
MAX_URI = 2000


class ClientError(ValueError):
    """A registration that cannot be accepted; the message says why."""


@dataclass(frozen=True, kw_only=True)
class Client:
    """A registered relying party."""

    id: str
    name: str
    secret_hash: str | None
    redirect_uris: tuple[str, ...]
    post_logout_redirect_uris: tuple[str, ...]
    scopes: tuple[str, ...]
    first_party: bool
    require_aal2: bool
    id_token_alg: str

    @property
    def public(self) -> bool:
        """No secret: it authenticates by PKCE alone."""
        return self.secret_hash is None

    @classmethod
    def from_row(cls, row: Row) -> Client:
        """From an oauth_clients row."""
        return cls(
            id=row["id"],
            name=row["name"],
            secret_hash=row["secret_hash"],
            redirect_uris=tuple(row["redirect_uris"].split()),
            post_logout_redirect_uris=tuple(row["post_logout_redirect_uris"].split()),
            scopes=tuple(row["scopes"].split()),
            first_party=bool(row["first_party"]),
            require_aal2=bool(row["require_aal2"]),
            id_token_alg=row["id_token_alg"],
        )

    def describe(self) -> dict[str, Any]:
        """What `clients list|show` prints (never the secret's hash)."""
        return {
            "client_id": self.id,
            "name": self.name,
            "type": "public" if self.public else "confidential",
            "redirect_uris": list(self.redirect_uris),
            "post_logout_redirect_uris": list(self.post_logout_redirect_uris),
            "scopes": list(self.scopes),
            "first_party": self.first_party,
            "require_second_factor": self.require_aal2,
            "id_token_alg": self.id_token_alg,
        }


def check_redirect_uri(uri: str) -> str:
    """A redirect URI fit to register: absolute, https (or http on a loopback host, for
    development and native apps), no fragment (RFC 6749 §3.1.2), no userinfo, no spaces."""
    if not uri or len(uri) > MAX_URI or any(ord(c) <= 0x20 or ord(c) == 0x7F for c in uri):
        raise ClientError(f"not a redirect URI: {uri!r}")
    try:
        parts = urlsplit(uri)
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError as e:
        raise ClientError(f"not a redirect URI: {uri!r}") from e
    if parts.fragment or "#" in uri or "@" in parts.netloc or not parts.hostname:
        raise ClientError(f"a redirect URI has a host and no fragment or userinfo: {uri!r}")
    if parts.scheme == "https" or (parts.scheme == "http" and parts.hostname in LOOPBACK):
        return uri
    raise ClientError(f"a redirect URI is https (or http on localhost): {uri!r}")


def hash_secret(secret: str) -> str:
    """What is stored of a client secret."""
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def secret_matches(client: Client, presented: str) -> bool:
    """Constant-time check of a presented secret against the stored hash."""
    if client.secret_hash is None:
        return False
    return hmac.compare_digest(hash_secret(presented), client.secret_hash)


async def register(
    database: Database,
    keys_dir: Path,
    *,
    name: str,
    redirect_uris: list[str],
    post_logout_redirect_uris: list[str] | None = None,
    public: bool = False,
    first_party: bool = False,
    require_second_factor: bool = False,
    id_token_alg: str = "RS256",  # noqa: S107 - an algorithm name, not a password
    scopes: tuple[str, ...] = SCOPES,
    now: int,
) -> tuple[Client, str | None]:
    """Register a client; returns it and its secret (None for a public client), the only time
    the secret exists outside the client. A signing key for its ID token algorithm is made
    when KEYS_DIR holds none, so the JWKS publishes it from the next key reload."""
    name = name.strip()
    if not name or len(name) > 100:
        raise ClientError("a client needs a name of at most 100 characters")
    if not redirect_uris:
        raise ClientError("a client needs at least one --redirect-uri")
    if id_token_alg not in ID_TOKEN_ALGS:
        raise ClientError(f"ID token algorithm must be one of {', '.join(ID_TOKEN_ALGS)}")
    uris = [check_redirect_uri(u) for u in redirect_uris]
    logout_uris = [check_redirect_uri(u) for u in post_logout_redirect_uris or []]
    secret = None if public else secrets.token_urlsafe(32)
    tokens.ensure_oidc_key(keys_dir, id_token_alg)
    row = {
        "id": crypto.new_id(),
        "name": name,
        "secret_hash": None if secret is None else hash_secret(secret),
        "redirect_uris": " ".join(dict.fromkeys(uris)),
        "post_logout_redirect_uris": " ".join(dict.fromkeys(logout_uris)),
        "scopes": " ".join(scopes),
        "first_party": int(first_party),
        "require_aal2": int(require_second_factor),
        "id_token_alg": id_token_alg,
        "created_at": now,
    }
    await database.run(oauth.add_client(row))
    return Client.from_row(row), secret


async def find(database: Database, client_id: str) -> Client | None:
    """A registered client, or None."""
    if not client_id or len(client_id) > 64:
        return None
    row = await database.run(oauth.get_client(client_id), write=False)
    return None if row is None else Client.from_row(row)


async def rotate_secret(database: Database, client_id: str) -> str | None:
    """A new secret for a confidential client (the old one stops at once), else None."""
    secret = secrets.token_urlsafe(32)
    done = await database.run(oauth.set_client_secret(client_id, hash_secret(secret)))
    return secret if done else None
