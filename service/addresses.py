"""Email addresses: accept exactly one plain address, refuse anything else (never repair it)."""

from __future__ import annotations

import re
import unicodedata

from email_validator import EmailNotValidError, validate_email

from service.errors import InvalidRequestError

MAX_INPUT = 320
MAX_LOCAL = 64  # RFC 5321 4.5.3.1.1: the local part is at most 64 octets
# Characters that smuggle a second address or a header: refused outright, never stripped.
_FORBIDDEN = frozenset(',;<>\r\n\t\x00"()[]\\ ')
# The local part Latch accepts: dot-separated runs of ASCII letters, digits and `_ - + '`.
#
# RFC 5322 allows far more in a dot-atom (`! # $ % & * / = ? ^ ` { | } ~`), and every extra
# character is a way for the same string to mean two things to two parsers:
#   `=` `?`  spell RFC 2047 encoded-words (`=?iso-8859-1?q?a=40evil.example=2c?=boss@ok`):
#            Python's header parser decodes them into a second recipient ("Splitting the
#            email atom", PortSwigger 2024).
#   `%`      the percent hack: `user%evil.example@ok` is relayed to evil.example by some MTAs.
#   `!`      UUCP bang paths: `evil.example!user@ok` is routed to evil.example by some MTAs.
#   `` ` `` `$` `|` `&` `*` `#` `^` `{` `}` `~` `/`  shell, template and X.400 metacharacters
#            that no sign-in address needs, and that the consumers receiving X-Latch-Email
#            might pass on to something that interprets them.
# `+` (sub-addressing) and `'` (o'brien@) are what real people's addresses use, so they stay.
# Quoted local parts (`"a@b"@c`, the nodemailer and Auth.js advisories), comments `(...)`,
# angle brackets, source routes (`@a,@b:user@c`) and domain literals are refused as well:
# `"`, `(`, `<`, `,`, `:`, `[` and a second `@` are not in this grammar.
_LOCAL = re.compile(r"[A-Za-z0-9_'+-]+(?:\.[A-Za-z0-9_'+-]+)*")
# Gmail ignores dots in the local part, and googlemail.com is the same mailbox as gmail.com.
_DOTLESS_DOMAINS = {"gmail.com": "gmail.com", "googlemail.com": "gmail.com"}


def parse_email(raw: str, allowed_domains: tuple[str, ...] = ()) -> tuple[str, str]:
    """(address, email_key) for one plain address, else InvalidRequestError.

    The address is a local part of the grammar above (at most 64 octets), `@`, and a dotted
    domain, IDNA-encoded (UTS-46), at most 254 octets in all. `email_key` is its casefolded
    form: the account's identity, used for lookups. The mail limits use `limit_key`.
    """
    candidate = raw.strip()
    if not candidate or len(candidate) > MAX_INPUT:
        raise InvalidRequestError("Enter one email address.", field="email")
    if any(ch in _FORBIDDEN or unicodedata.category(ch).startswith("C") for ch in candidate):
        raise InvalidRequestError("Enter one plain email address.", field="email")
    # A fullwidth ＠ (or anything else that folds to @) must not become a second @ later.
    if candidate.count("@") != 1 or unicodedata.normalize("NFKC", candidate).count("@") != 1:
        raise InvalidRequestError("Enter one plain email address.", field="email")
    local = candidate.partition("@")[0]
    # Checked on what was typed, before any library normalises it: what is accepted is what
    # is sent to, stored, and put in tokens, byte for byte.
    if not _LOCAL.fullmatch(local):
        raise InvalidRequestError(
            "Use only letters, digits and . _ - + ' before the @.", field="email"
        )
    if len(local) > MAX_LOCAL:
        raise InvalidRequestError("The part before the @ is too long.", field="email")
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
    if (
        not address
        or len(address.encode("ascii")) > 254
        or "." not in result.ascii_domain
        or result.local_part != local
    ):
        raise InvalidRequestError("That is not a valid email address.", field="email")
    domain = result.ascii_domain.lower()
    if allowed_domains and domain not in allowed_domains:
        raise InvalidRequestError(
            "This address's domain is not allowed to sign in here.", field="email"
        )
    return address, address.casefold()


def limit_key(email_key: str) -> str:
    """The mailbox an address delivers to, for counting the per-address mail limits.

    `user+a@` and `user+b@` are separate accounts (email_key), but the same inbox: without
    this, each spelling would get its own allowance of mails, and one inbox could be flooded
    through any number of tags. The `+tag` is dropped; for Gmail, dots too.
    """
    local, _, domain = email_key.rpartition("@")
    base = local.partition("+")[0] or local
    if domain in _DOTLESS_DOMAINS:
        domain = _DOTLESS_DOMAINS[domain]
        base = base.replace(".", "") or base
    return f"{base}@{domain}"
