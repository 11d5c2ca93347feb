"""Fast composition of the sign-in mail: each template rendered once per shape, then filled in.

Rendering three Jinja templates and building the MIME tree with Python's `email` package cost
~1.7 ms a mail (measured): in a rush, the process that serves requests could not keep up with
its own mails. Almost all of a sign-in mail is the same for every mail of one brand: only the
address, the code, the link, the expiry time and the client IP change. So each template is
rendered once per *shape* (the device description, and whether there is an IP: the values the
default templates branch on) with unique markers in place of the per-mail values, and split at
the markers; a mail is then the pieces joined with its values (HTML-escaped in the HTML part,
as Jinja's autoescape would) and the pieces quoted-printable encoded once, under headers
built once. That is tens of microseconds (bench/mail.py measures it).

The shortcut is taken only where it gives the same text as Jinja would:

- a shape is accepted only if filling it with two sets of probe values (long ones, and ones
  with every character HTML escapes) gives exactly what Jinja renders for them; a template that
  filters, cuts or tests a per-mail value in a way filling cannot reproduce is rendered by
  Jinja for every mail, as before;
- a mail whose value is longer than its probe, or whose address is not a plain dot-atom
  (which the To header then carries as is), is rendered the slow way;
- the subject must not depend on a per-mail value (it then stays one fixed, encoded line).
"""

from __future__ import annotations

import binascii
import re
import secrets
from collections.abc import Callable, Mapping
from email.utils import formatdate, make_msgid
from typing import Any

import jinja2
from markupsafe import escape

# Values that change from one mail to the next; everything else in the context is fixed.
PER_MAIL = ("email", "code", "code_display", "link", "expires_at", "request_ip")
_MARK = "\ue000{}\ue001"
_MARKS = re.compile("\ue000(\\d+)\ue001")
# The longest values the probes vouch for (a real value beyond them takes the slow path).
_LONG = {
    "email": "o'brien&sons+" + "x" * 200 + "@" + "mail-" * 6 + "example.com",
    "code": "908172",
    "code_display": "908 172",
    "link": "https://latch.example.com:8443/a/very/long/prefix/login/link?t=" + "Ab-_9" * 80,
    "expires_at": "23:59 UTC",
    "request_ip": "ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255",
}
_ODD = {
    "email": "a<b>\"c'd&e@example.com",
    "code": "000001",
    "code_display": "000 001",
    "link": "http://127.0.0.1:8000/login/link?t=a&b=<c>\"d'e",
    "expires_at": "00:00 UTC",
    "request_ip": "10.0.0.1",
}
# RFC 5322 dot-atom without "=" and "?": such an address stands in a To header exactly as
# written. "=?…?=" is the start of an RFC 2047 encoded-word, which header parsers decode
# (`=?q?a=40evil.example=2c?=b@ok` reads as two recipients): any address with either
# character takes the general path, whose Address() refuses it.
_DOT_ATOM = re.compile(r"[A-Za-z0-9!#$%&'*+/^_`{|}~-]+(\.[A-Za-z0-9!#$%&'*+/^_`{|}~-]+)*")
_DOMAIN = re.compile(r"[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*")

Pieces = tuple[tuple[str, ...], tuple[int, ...]]


def split(rendered: str) -> Pieces:
    """Literal text and the index of the value between each two pieces."""
    parts = _MARKS.split(rendered)
    return tuple(parts[0::2]), tuple(int(i) for i in parts[1::2])


def fill(pieces: Pieces, values: tuple[str, ...]) -> str:
    """The pieces joined with their values."""
    texts, slots = pieces
    out = [texts[0]]
    for slot, text in zip(slots, texts[1:], strict=True):
        out.append(values[slot])
        out.append(text)
    return "".join(out)


def plain_address(address: str) -> bool:
    """True when `address` is an ASCII dot-atom address a header carries unchanged."""
    local, at, domain = address.rpartition("@")
    return bool(at) and bool(_DOT_ATOM.fullmatch(local)) and bool(_DOMAIN.fullmatch(domain))


class Shape:
    """One shape of the mail: subject, text and HTML split at the per-mail values, and each
    literal piece already quoted-printable encoded.

    Quoted-printable wraps lines at 76 characters, so where a line breaks depends on the
    lengths of the values on it. Each value is therefore set between two soft line breaks
    ("=" at the end of a line, which decoding removes): every piece and every value starts a
    line of its own, and each is wrapped correctly on its own, once for the pieces.
    """

    def __init__(self, subject: str, text: Pieces, html: Pieces) -> None:
        self.subject = subject
        self.text = text
        self.html = html
        self.text_qp = _encode_pieces(text)
        self.html_qp = _encode_pieces(html)


def _encode_pieces(pieces: Pieces) -> tuple[bytes, ...]:
    texts = list(pieces[0])
    if not texts[-1].endswith("\n"):
        texts[-1] += "\n"  # a part ends with a line end, as the email package writes it
    return tuple(_qp(text) for text in texts)


def _qp(text: str) -> bytes:
    return binascii.b2a_qp(text.encode("utf-8"), quotetabs=False, istext=True, header=False)


def encoded(pieces: tuple[bytes, ...], slots: tuple[int, ...], values: tuple[str, ...]) -> bytes:
    """A quoted-printable part: the encoded pieces, each value encoded between soft breaks."""
    out = [pieces[0]]
    for slot, piece in zip(slots, pieces[1:], strict=True):
        out.append(b"=\n" + _qp(values[slot]) + b"=\n")
        out.append(piece)
    return b"".join(out)


class Composer:
    """Shapes for one brand, built on first use and checked against Jinja."""

    def __init__(
        self,
        subject: jinja2.Template,
        text: jinja2.Template,
        html: jinja2.Template,
        one_line: Callable[[str], str],
    ) -> None:
        self._templates = (subject, text, html)
        self._one_line = one_line
        # None: this shape must be rendered by Jinja. Keys are few: the device description is
        # one of the fixed names of service/device.py.
        self._shapes: dict[tuple[str, bool], Shape | None] = {}

    def shape(self, fixed: Mapping[str, Any], device: str, has_ip: bool) -> Shape | None:
        """The shape for this device and IP presence, or None (render with Jinja)."""
        key = (device, has_ip)
        if key not in self._shapes:
            self._shapes[key] = self._build(fixed, device, has_ip)
        return self._shapes[key]

    def _render(self, context: Mapping[str, Any]) -> tuple[str, str, str]:
        subject, text, html = self._templates
        return (
            self._one_line(subject.render(context)),
            text.render(context),
            html.render(context),
        )

    def _build(self, fixed: Mapping[str, Any], device: str, has_ip: bool) -> Shape | None:
        marks = {name: _MARK.format(i) for i, name in enumerate(PER_MAIL)}
        if not has_ip:
            marks["request_ip"] = ""
        subject, text, html = self._render({**fixed, **marks, "request_device": device})
        if "\ue000" in subject:
            return None
        shape = Shape(subject, split(text), split(html))
        for probe in (_LONG, _ODD):
            values = {**probe, "request_ip": probe["request_ip"] if has_ip else ""}
            expected = self._render({**fixed, **values, "request_device": device})
            if self.fill(shape, values) != expected[1:]:
                return None
        return shape

    @staticmethod
    def fill(shape: Shape, values: Mapping[str, str]) -> tuple[str, str]:
        """The text and HTML bodies of one mail, as text."""
        raw = tuple(values[name] for name in PER_MAIL)
        escaped = tuple(str(escape(value)) for value in raw)
        return fill(shape.text, raw), fill(shape.html, escaped)

    @staticmethod
    def encode(shape: Shape, values: Mapping[str, str]) -> tuple[bytes, bytes]:
        """The text and HTML bodies of one mail, quoted-printable encoded (LF line ends)."""
        raw = tuple(values[name] for name in PER_MAIL)
        escaped = tuple(str(escape(value)) for value in raw)
        return (
            encoded(shape.text_qp, shape.text[1], raw),
            encoded(shape.html_qp, shape.html[1], escaped),
        )

    @staticmethod
    def fits(values: Mapping[str, str]) -> bool:
        """True when every value is one line within what the probes vouched for."""
        for name in PER_MAIL:
            value = values[name]
            if len(value) > len(_LONG[name]) or "\n" in value or "\r" in value:
                return False
        return plain_address(values["email"])


def mime(head: bytes, to: str, domain: str, text: bytes, html: bytes) -> bytes:
    """The complete message, CRLF line ends: `head` (Subject and From lines, built once), then
    To, Date, Message-ID, and a multipart/alternative of the two quoted-printable parts
    (`Composer.encode`).

    The boundary holds "=_", which quoted-printable never writes ("=" is always "=3D").
    """
    boundary = "=_latch_" + secrets.token_hex(12)
    lines = (
        head
        + (
            f"To: {to}\n"
            f"Date: {formatdate()[:-5]}+0000\n"
            f"Message-ID: {make_msgid(domain=domain)}\n"
            "Auto-Submitted: auto-generated\n"
            "X-Auto-Response-Suppress: All\n"
            "MIME-Version: 1.0\n"
            f'Content-Type: multipart/alternative;\n boundary="{boundary}"\n'
            "\n"
            f"--{boundary}\n"
            'Content-Type: text/plain; charset="utf-8"\n'
            "Content-Transfer-Encoding: quoted-printable\n"
            "\n"
        ).encode("ascii")
        + text
        + (
            # The line end before a boundary belongs to the boundary (RFC 2046 §5.1.1).
            f"\n--{boundary}\n"
            'Content-Type: text/html; charset="utf-8"\n'
            "Content-Transfer-Encoding: quoted-printable\n"
            "\n"
        ).encode("ascii")
        + html
        + f"\n--{boundary}--\n".encode("ascii")
    )
    return lines.replace(b"\n", b"\r\n")
