"""Signing keys (next / current / retired), access-JWT issue and verification, the JWKS.

Keys live as PEM files in KEYS_DIR with a manifest, `keyring.json`, that names each key's state.
The manifest is replaced atomically (write + rename), so a rotation is one visible step for
every instance that reads the folder.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

# The strict reader lives in the standalone verifier module (which must never import `service`),
# so the dependency runs one way: Latch uses the verifier's reader, not the other way round.
from service.verifier import Claims, InvalidTokenError, parse_token, verify_token

log = logging.getLogger("latch.tokens")

TYP = "at+jwt"
# Keys of the OpenID provider (docs/design.md §13): one current key per algorithm, beside the
# sessions' one current key, for clients whose ID token algorithm differs from JWT_ALGORITHM.
OIDC = "oidc"
MANIFEST = "keyring.json"
PrivateKey = ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
PublicKey = ed25519.Ed25519PublicKey | ec.EllipticCurvePublicKey | rsa.RSAPublicKey


class TokenError(Exception):
    """An access token that must not be trusted; the reason is for debug logs only."""


class AlgorithmMismatchError(RuntimeError):
    """KEYS_DIR's current key signs with another algorithm than JWT_ALGORITHM asks for."""


def switch_commands(alg: str) -> str:
    """The two `keys` commands that move a key folder to `alg` without breaking sessions."""
    return (
        f"`JWT_ALGORITHM={alg} python -m service keys rotate --publish-first`, then, once "
        f"verifiers have refetched the JWKS (5 minutes), `JWT_ALGORITHM={alg} python -m service "
        "keys rotate`"
    )


def algorithm_mismatch(current: str, kid: str, keys_dir: Path, wanted: str) -> str:
    """What an operator reads when the folder's current key is not `wanted`'s kind."""
    # An operator upgrading from a Latch whose default was EdDSA meets this with no setting of
    # their own, so the message says where ES256 came from.
    why = " (the default now: EdDSA was until Node's jsonwebtoken was found to refuse it)"
    return (
        f"the current signing key {kid} in KEYS_DIR ({keys_dir}) is {current} but JWT_ALGORITHM "
        f"is {wanted}{why if wanted == 'ES256' else ''}. To keep signing with {current}, set "
        f"JWT_ALGORITHM={current}. To switch to {wanted} without signing anyone out, run "
        f"{switch_commands(wanted)}"
    )


@dataclass(frozen=True, kw_only=True)
class SigningKey:
    """One key: its id, pinned algorithm, state, and key material."""

    kid: str
    alg: str
    state: str
    private: PrivateKey | bytes
    public: PublicKey | bytes


def generate_private_key(alg: str) -> PrivateKey:
    """A fresh private key for EdDSA (Ed25519), ES256 (P-256) or RS256 (3072-bit)."""
    if alg == "EdDSA":
        return ed25519.Ed25519PrivateKey.generate()
    if alg == "ES256":
        return ec.generate_private_key(ec.SECP256R1())
    if alg == "RS256":
        return rsa.generate_private_key(public_exponent=65537, key_size=3072)
    raise ValueError(f"cannot generate a key for {alg}")


def _read_manifest(keys_dir: Path) -> list[dict[str, Any]]:
    path = keys_dir / MANIFEST
    if not path.is_file():
        return []
    data = json.loads(path.read_text())
    return list(data.get("keys", []))


def _write_manifest(keys_dir: Path, entries: list[dict[str, Any]]) -> None:
    tmp = keys_dir / f".{MANIFEST}.{secrets.token_hex(4)}"
    tmp.write_text(json.dumps({"keys": entries}, indent=2) + "\n")
    os.replace(tmp, keys_dir / MANIFEST)


def add_key(keys_dir: Path, alg: str, state: str, purpose: str = "") -> str:
    """Generate a key into KEYS_DIR with the given state; returns its kid. `purpose` "oidc"
    makes a key of the OpenID provider (see OIDC below) instead of the sessions' key."""
    keys_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    # Hex, not base64url: a kid is typed on the command line (`keys retire KID`), and one in 64
    # base64url kids begins with "-", which argparse reads as an option (a flaky CI run found it).
    kid = secrets.token_hex(12)
    pem = generate_private_key(alg).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    fd = os.open(keys_dir / f"{kid}.pem", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    entries = _read_manifest(keys_dir)
    now = int(time.time())
    if state == "current":
        _retire_current(entries, now, purpose, alg)
    entry = {"kid": kid, "alg": alg, "state": state, "created_at": now}
    entries.append({**entry, "purpose": purpose} if purpose else entry)
    _write_manifest(keys_dir, entries)
    return kid


def _same_role(entry: Mapping[str, Any], purpose: str, alg: str) -> bool:
    # The sessions' key is one, whatever its algorithm; the OpenID keys are one per algorithm.
    if entry.get("purpose", "") != purpose:
        return False
    return purpose != OIDC or entry["alg"] == alg


def _retire_current(entries: list[dict[str, Any]], now: int, purpose: str, alg: str) -> None:
    # `retired_at` says when the last token this key signed can expire (plus ACCESS_TTL), so
    # `keys retire` can tell whether unpublishing it would break tokens still in use.
    for entry in entries:
        if entry["state"] == "current" and _same_role(entry, purpose, alg):
            entry["state"] = "retired"
            entry["retired_at"] = now


def set_state(keys_dir: Path, kid: str, state: str) -> None:
    """Change a key's state; promoting one to current demotes the old current to 'retired'."""
    entries = _read_manifest(keys_dir)
    if not any(e["kid"] == kid for e in entries):
        raise KeyError(kid)
    now = int(time.time())
    if state == "current":
        promoted = next(e for e in entries if e["kid"] == kid)
        _retire_current(entries, now, promoted.get("purpose", ""), promoted["alg"])
    for entry in entries:
        if entry["kid"] == kid:
            entry["state"] = state
            entry[f"{state}_at"] = now
    _write_manifest(keys_dir, entries)


def list_keys(keys_dir: Path) -> list[dict[str, Any]]:
    """The manifest entries (kid, alg, state, timestamps)."""
    return _read_manifest(keys_dir)


def ensure_key(keys_dir: Path, alg: str) -> None:
    """Development: generate a current key on first start so `make run` needs no set-up.

    A development folder whose current key is of another algorithm (a `data/` made before the
    default became ES256, or JWT_ALGORITHM changed) gets a new current key of `alg`; the old
    one stays published as retired, so tokens already issued keep verifying. Production never
    does this: there the folder is shared and the operator rotates (see Keyring).
    """
    current = [
        e for e in _read_manifest(keys_dir) if e["state"] == "current" and not e.get("purpose")
    ]
    if not current:
        kid = add_key(keys_dir, alg, "current")
        log.warning("generated a development signing key %s in %s", kid, keys_dir)
    elif current[0]["alg"] != alg:
        kid = add_key(keys_dir, alg, "current")
        log.warning(
            "development: rotated the signing key from %s to %s (new key %s) in %s",
            current[0]["alg"],
            alg,
            kid,
            keys_dir,
        )


def ensure_oidc_key(keys_dir: Path, alg: str) -> str | None:
    """A key to sign an OpenID client's ID tokens with `alg`: the sessions' own key when it is
    of that algorithm, else a current OpenID key of it, generated when there is none (so the
    JWKS gains an RS256 key when the first client needs one). The new kid, or None."""
    entries = _read_manifest(keys_dir)
    if any(e["state"] == "current" and e["alg"] == alg for e in entries):
        return None
    kid = add_key(keys_dir, alg, "current", OIDC)
    log.warning("generated an OpenID %s signing key %s in %s", alg, kid, keys_dir)
    return kid


def _load(keys_dir: Path, entry: Mapping[str, Any]) -> SigningKey:
    pem = (keys_dir / f"{entry['kid']}.pem").read_bytes()
    private = serialization.load_pem_private_key(pem, password=None)
    # The manifest's `alg` is what the JWKS publishes and what verification pins: it must be
    # the one algorithm this key type can do (an RSA key listed as EdDSA, a P-384 key as
    # ES256, would publish a lie that verifiers then pin).
    if not isinstance(
        private, ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
    ) or not _fits(private, entry["alg"]):
        raise ValueError(f"key {entry['kid']} cannot sign {entry['alg']!r}")
    return SigningKey(
        kid=entry["kid"],
        alg=entry["alg"],
        state=entry["state"],
        private=private,
        public=private.public_key(),
    )


def _fits(private: Any, alg: str) -> bool:
    if alg == "EdDSA":
        return isinstance(private, ed25519.Ed25519PrivateKey)
    if alg == "ES256":
        return isinstance(private, ec.EllipticCurvePrivateKey) and isinstance(
            private.curve, ec.SECP256R1
        )
    if alg == "RS256":
        return isinstance(private, rsa.RSAPrivateKey) and private.key_size >= 2048
    return False


class Keyring:
    """The keys an instance signs and verifies with, reloaded when KEYS_DIR changes."""

    def __init__(self, keys_dir: Path, alg: str, hmac_key: bytes) -> None:
        """Load KEYS_DIR; AlgorithmMismatchError when its current key is not an `alg` key.

        Refusing to start, rather than warning and signing on with the folder's key, is the
        safer of the two: an operator who sets JWT_ALGORITHM=ES256 does so because some
        verifier accepts only ES256, and a Latch that starts anyway would sign every session
        with a token that verifier refuses, found out from users, not from the start-up.
        A refused start is found at once, and the message says both ways out.
        """
        self.keys_dir = keys_dir
        self.alg = alg
        self._hmac_key = hmac_key
        self._stamp: bytes | None = None
        self.current: SigningKey
        # The OpenID provider's current keys, by algorithm, beside the sessions' key.
        self.oidc: dict[str, SigningKey] = {}
        self.keys: dict[str, SigningKey] = {}
        self._jwks_cache: tuple[dict[str, SigningKey], bytes] | None = None
        # Bumped whenever the published keys change: caches of verified tokens are tied to it,
        # so a key that is retired or removed takes every token it signed with it at once.
        self.generation = 0
        self.reload()
        if self.current.alg != alg:
            raise AlgorithmMismatchError(
                algorithm_mismatch(self.current.alg, self.current.kid, keys_dir, alg)
            )

    def reload(self) -> bool:
        """Re-read the manifest if it changed; True when the keys changed."""
        if self.alg == "HS256":
            if not self.keys:
                key = SigningKey(
                    kid="hs256",
                    alg="HS256",
                    state="current",
                    private=self._hmac_key,
                    public=self._hmac_key,
                )
                self.current, self.keys = key, {key.kid: key}
            return False
        try:
            # The manifest's bytes, not its mtime: two rotations within one timestamp tick
            # (coarse on some filesystems) would otherwise go unseen until the next change.
            stamp = (self.keys_dir / MANIFEST).read_bytes()
        except FileNotFoundError as e:
            raise RuntimeError(f"no signing key in {self.keys_dir}") from e
        if stamp == self._stamp:
            return False
        entries = json.loads(stamp).get("keys", [])
        keys = {
            e["kid"]: _load(self.keys_dir, e)
            for e in entries
            if e["state"] in ("next", "current", "retired")
        }
        roles = {e["kid"]: e.get("purpose", "") for e in entries}
        current = [k for k in keys.values() if k.state == "current" and not roles[k.kid]]
        oidc = {k.alg: k for k in keys.values() if k.state == "current" and roles[k.kid] == OIDC}
        if len(current) != 1:
            raise RuntimeError(f"{self.keys_dir} must hold exactly one current key")
        if self._stamp is not None and current[0].alg != self.alg:
            # A running instance follows the shared folder (another instance or the CLI rotated
            # it; every instance must sign with the one current key), but says so: its own
            # JWT_ALGORITHM now disagrees, and it would refuse to start again as configured.
            log.warning(
                "the new current key %s is %s but JWT_ALGORITHM is %s: signing with %s; set "
                "JWT_ALGORITHM=%s before the next restart",
                current[0].kid,
                current[0].alg,
                self.alg,
                current[0].alg,
                current[0].alg,
            )
        self.keys, self.current, self._stamp = keys, current[0], stamp
        self.oidc = oidc
        self.generation += 1
        log.info("signing keys loaded: current %s, %d published", current[0].kid, len(keys))
        return True

    def jwks_json(self) -> bytes:
        """The JWKS as JSON bytes, built once per key set (the endpoint is hot)."""
        if self._jwks_cache is None or self._jwks_cache[0] is not self.keys:
            self._jwks_cache = (self.keys, json.dumps(self.jwks()).encode())
        return self._jwks_cache[1]

    def jwks(self) -> dict[str, Any]:
        """The public keys: next, current and retired ones (none for HS256)."""
        out = []
        for key in self.keys.values():
            if key.alg == "HS256":
                continue
            jwk = _to_jwk(key)
            jwk.update({"kid": key.kid, "alg": key.alg, "use": "sig"})
            out.append(jwk)
        return {"keys": out}

    def sign(self, claims: Mapping[str, Any]) -> str:
        """An access JWT signed by the current key."""
        key = self.current
        return jwt.encode(
            dict(claims),
            key.private,
            algorithm=key.alg,
            headers={"kid": key.kid, "typ": TYP},
        )

    def sign_as(self, alg: str, claims: Mapping[str, Any], *, typ: str) -> str:
        """A JWT signed with `alg` (ID tokens, the provider's access tokens): by the sessions'
        key when it is of that algorithm, else by the current OpenID key of it; KeyError when
        KEYS_DIR holds none."""
        key = self.current if self.current.alg == alg else self.oidc.get(alg)
        if key is None:
            self.reload()  # a key `clients add` has just made is used without waiting
            key = self.current if self.current.alg == alg else self.oidc[alg]
        return jwt.encode(
            dict(claims), key.private, algorithm=key.alg, headers={"kid": key.kid, "typ": typ}
        )

    def verify(self, token: str, *, issuer: str, audience: str, max_lifetime: int) -> Claims:
        """The claims of a token we issued and that is valid now, else TokenError."""
        return verify_jwt(
            token, self.keys, issuer=issuer, audience=audience, max_lifetime=max_lifetime
        )


def _to_jwk(key: SigningKey) -> dict[str, Any]:
    if isinstance(key.public, ed25519.Ed25519PublicKey):
        return OKPAlgorithm.to_jwk(key.public, as_dict=True)
    if isinstance(key.public, ec.EllipticCurvePublicKey):
        return ECAlgorithm.to_jwk(key.public, as_dict=True)
    if isinstance(key.public, rsa.RSAPublicKey):
        return RSAAlgorithm.to_jwk(key.public, as_dict=True)
    raise TypeError("no JWK for a shared secret")


def verify_jwt(
    token: str,
    keys: Mapping[str, SigningKey],
    *,
    issuer: str,
    audience: str,
    max_lifetime: int,
    now: float | None = None,
) -> Claims:
    """Verify per RFC 8725, with the one strict reader that service/verifier.py uses too.

    The key is found by `kid` among OUR keys only, its pinned algorithm is the only one accepted
    (never the header's); `iss`, `aud`, `exp`, `nbf`, `typ` are checked exactly; every segment
    must be canonical base64url and every time a JSON integer; no token may claim to live longer
    than `max_lifetime` (ACCESS_TTL). `jku`, `x5u`, `jwk` and `crit` headers are refused: keys
    never come from a token. No leeway: Latch checks its own tokens on its own clock.
    """
    try:
        parsed = parse_token(token)
        key = keys.get(parsed.kid)
        if key is None:
            raise TokenError("unknown kid")
        return verify_token(
            parsed,
            key.alg,
            key.public,
            issuer=issuer,
            audience=audience,
            now=time.time() if now is None else now,
            leeway=0,
            max_lifetime=max_lifetime,
        )
    except InvalidTokenError as e:
        raise TokenError(str(e)) from e
