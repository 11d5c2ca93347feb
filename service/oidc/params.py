"""An authorization request, parsed and checked in one place (OpenID Connect Core §3.1.2.1,
RFC 6749 §4.1.1, RFC 7636, RFC 9700).

The order of the checks matters. Until the client and its redirect URI are known good, an
error is shown on Latch's own page: redirecting to an unchecked URI would make Latch an open
redirector (RFC 6749 §4.1.2.1). After that, errors go back to the client's redirect URI.
Where the specifications leave a choice, the stricter one is taken: PKCE's `plain` is refused,
public clients must send S256, a parameter given twice is refused, `request` objects are not
supported, and only the query response mode exists.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass

from service.oidc.clients import SCOPES, Client

# RFC 7636 §4.2: BASE64URL(SHA256(verifier)) is always 43 characters.
_S256 = re.compile(r"[A-Za-z0-9_-]{43}")
PROMPTS = ("none", "login", "consent", "select_account")
MAX_STATE = 2000
MAX_NONCE = 500
MAX_HINT = 254
MAX_MAX_AGE = 10 * 365 * 86400


class PageError(Exception):
    """An authorization request that must not be answered by redirect: shown on a page."""

    def __init__(self, description: str) -> None:
        super().__init__(description)
        self.description = description


class AuthorizeError(Exception):
    """An error for the client, sent to its redirect URI (RFC 6749 §4.1.2.1)."""

    def __init__(self, error: str, description: str) -> None:
        super().__init__(description)
        self.error = error
        self.description = description


@dataclass(frozen=True, kw_only=True)
class AuthorizationRequest:
    """A checked authorization request."""

    client_id: str
    redirect_uri: str
    scope: tuple[str, ...]
    state: str | None = None
    nonce: str | None = None
    code_challenge: str | None = None
    prompt: tuple[str, ...] = ()
    max_age: int | None = None
    login_hint: str | None = None
    require_aal2: bool = False

    def to_json(self) -> str:
        """For keeping it server-side while the person signs in."""
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> AuthorizationRequest:
        """Back from `to_json`."""
        data = json.loads(text)
        data["scope"] = tuple(data["scope"])
        data["prompt"] = tuple(data["prompt"])
        return cls(**data)


def _single(params: dict[str, Sequence[str]], name: str) -> str | None:
    values = params.get(name) or []
    if len(values) > 1:
        # RFC 6749 §3.1: "Request and response parameters MUST NOT be included more than once."
        raise AuthorizeError("invalid_request", f"{name} is given more than once")
    return values[0] if values and values[0] != "" else None


def check_client(params: dict[str, Sequence[str]], client: Client | None) -> str:
    """The redirect URI to answer to, else PageError (unknown client, unregistered URI)."""
    ids, uris = params.get("client_id") or [], params.get("redirect_uri") or []
    if len(ids) != 1 or client is None or client.id != ids[0]:
        raise PageError("This app is not registered with this sign-in service.")
    # An exact string match: no prefix, no pattern, no normalisation (RFC 9700 §4.1.3). The
    # OpenID Core makes redirect_uri required, so a client cannot rely on a default.
    if len(uris) != 1 or uris[0] not in client.redirect_uris:
        raise PageError("This app asked to return to an address it has not registered.")
    return uris[0]


def parse_authorize(params: dict[str, Sequence[str]], client: Client) -> AuthorizationRequest:
    """The checked request, or AuthorizeError for the client (call check_client first)."""
    redirect_uri = check_client(params, client)
    if _single(params, "request") or _single(params, "request_uri"):
        raise AuthorizeError("request_not_supported", "request objects are not supported")
    if _single(params, "response_type") != "code":
        raise AuthorizeError("unsupported_response_type", "only response_type=code is supported")
    if (_single(params, "response_mode") or "query") != "query":
        raise AuthorizeError("invalid_request", "only response_mode=query is supported")
    requested = (_single(params, "scope") or "").split(" ")
    if "openid" not in requested:
        raise AuthorizeError("invalid_scope", "scope must contain openid")
    # Scopes Latch does not know, or this client may not have, are left out (RFC 6749 §3.3);
    # the token response says which were granted.
    scope = tuple(s for s in dict.fromkeys(requested) if s in SCOPES and s in client.scopes)
    state = _bounded(_single(params, "state"), MAX_STATE, "state")
    nonce = _bounded(_single(params, "nonce"), MAX_NONCE, "nonce")
    return AuthorizationRequest(
        client_id=client.id,
        redirect_uri=redirect_uri,
        scope=scope,
        state=state,
        nonce=nonce,
        code_challenge=_pkce(params, client),
        prompt=_prompt(_single(params, "prompt")),
        max_age=_max_age(_single(params, "max_age")),
        login_hint=_bounded(_single(params, "login_hint"), MAX_HINT, "login_hint"),
        require_aal2=client.require_aal2 or "aal2" in (_single(params, "acr_values") or "").split(),
    )


def state_of(params: dict[str, Sequence[str]]) -> str | None:
    """The state to echo with an error, when there is exactly one of reasonable size."""
    values = params.get("state") or []
    return values[0] if len(values) == 1 and 0 < len(values[0]) <= MAX_STATE else None


def _bounded(value: str | None, limit: int, name: str) -> str | None:
    if value is not None and len(value) > limit:
        raise AuthorizeError("invalid_request", f"{name} is too long")
    return value


def _pkce(params: dict[str, Sequence[str]], client: Client) -> str | None:
    challenge = _single(params, "code_challenge")
    method = _single(params, "code_challenge_method")
    if challenge is None:
        if method is not None:
            raise AuthorizeError("invalid_request", "code_challenge_method without code_challenge")
        if client.public:
            raise AuthorizeError("invalid_request", "PKCE (S256) is required for this client")
        return None
    # An absent method means `plain` (RFC 7636 §4.3), which gives no protection if the
    # request leaks: refused, as RFC 9700 §2.1.1 recommends.
    if method != "S256":
        raise AuthorizeError("invalid_request", "code_challenge_method must be S256")
    if not _S256.fullmatch(challenge):
        raise AuthorizeError("invalid_request", "code_challenge is not an S256 challenge")
    return challenge


def _prompt(raw: str | None) -> tuple[str, ...]:
    values = tuple(dict.fromkeys((raw or "").split()))
    if any(v not in PROMPTS for v in values):
        raise AuthorizeError("invalid_request", "unknown prompt value")
    if "none" in values and len(values) > 1:
        raise AuthorizeError("invalid_request", "prompt=none cannot be combined")
    return values


def _max_age(raw: str | None) -> int | None:
    if raw is None:
        return None
    if not raw.isascii() or not raw.isdigit() or int(raw) > MAX_MAX_AGE:
        raise AuthorizeError("invalid_request", "max_age must be a number of seconds")
    return int(raw)
