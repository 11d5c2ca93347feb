"""Email addresses: accept exactly one plain address, refuse anything else (never repair it)."""

from __future__ import annotations

import unicodedata

from email_validator import EmailNotValidError, validate_email

from service.errors import InvalidRequestError

MAX_INPUT = 320
# Characters that smuggle a second address or a header: refused outright, never stripped.
_FORBIDDEN = frozenset(',;<>\r\n\t\x00"()[]\\ ')


def parse_email(raw: str, allowed_domains: tuple[str, ...] = ()) -> tuple[str, str]:
    """(address, email_key) for one plain address, else InvalidRequestError.

    The address is an ASCII dot-atom local part, `@`, and a dotted domain, IDNA-encoded (UTS-46),
    at most 254 octets. `email_key` is its casefolded form, used for lookups and limits.
    """
    candidate = raw.strip()
    if not candidate or len(candidate) > MAX_INPUT:
        raise InvalidRequestError("Enter one email address.", field="email")
    if any(ch in _FORBIDDEN or unicodedata.category(ch).startswith("C") for ch in candidate):
        raise InvalidRequestError("Enter one plain email address.", field="email")
    # A fullwidth ＠ (or anything else that folds to @) must not become a second @ later.
    if unicodedata.normalize("NFKC", candidate).count("@") != candidate.count("@"):
        raise InvalidRequestError("Enter one plain email address.", field="email")
    try:
        result = validate_email(
            candidate,
            allow_smtputf8=False,
            allow_quoted_local=False,
            allow_domain_literal=False,
            allow_display_name=False,
            check_deliverability=False,
        )
    except EmailNotValidError as e:
        raise InvalidRequestError("That is not a valid email address.", field="email") from e
    address = result.ascii_email
    if not address or len(address.encode("ascii")) > 254 or "." not in result.ascii_domain:
        raise InvalidRequestError("That is not a valid email address.", field="email")
    domain = result.ascii_domain.lower()
    if allowed_domains and domain not in allowed_domains:
        raise InvalidRequestError(
            "This address's domain is not allowed to sign in here.", field="email"
        )
    return address, address.casefold()
