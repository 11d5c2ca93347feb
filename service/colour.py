"""Colours for branding: strict parsing and WCAG 2 contrast (no third-party colour library)."""

from __future__ import annotations

import re

# Only `#rgb` and `#rrggbb`: the value ends up in a stylesheet and in the mail's inline styles,
# so anything looser (names, functions, `;`) could smuggle CSS of its own.
HEX_COLOUR = re.compile(r"#(?:[0-9a-fA-F]{3}|[0-9a-fA-F]{6})")
WHITE = "#ffffff"
# The text colours the pages put on or around the accent (style.css).
INK_DARK = "#11121a"
PAPER_DARK = "#1c1e27"
AA = 4.5  # WCAG 2 AA for normal text


def parse(colour: str) -> tuple[int, int, int]:
    """(r, g, b) of a `#rgb` / `#rrggbb` colour; ValueError otherwise."""
    if not HEX_COLOUR.fullmatch(colour):
        raise ValueError(f"not a #rgb or #rrggbb colour: {colour!r}")
    digits = colour[1:]
    if len(digits) == 3:
        digits = "".join(c * 2 for c in digits)
    return int(digits[0:2], 16), int(digits[2:4], 16), int(digits[4:6], 16)


def to_hex(rgb: tuple[int, int, int]) -> str:
    """`#rrggbb` of an (r, g, b) triple."""
    return "#{:02x}{:02x}{:02x}".format(*rgb)


def luminance(colour: str) -> float:
    """Relative luminance (WCAG 2)."""

    def channel(value: int) -> float:
        c = value / 255
        return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b = (channel(v) for v in parse(colour))
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast(a: str, b: str) -> float:
    """Contrast ratio of two colours, 1 to 21."""
    light, dark = sorted((luminance(a), luminance(b)), reverse=True)
    return (light + 0.05) / (dark + 0.05)


def mix(colour: str, other: str, amount: float) -> str:
    """`colour` moved `amount` (0..1) of the way towards `other`."""
    pairs = zip(parse(colour), parse(other), strict=True)
    r, g, b = (round(x + (y - x) * amount) for x, y in pairs)
    return to_hex((r, g, b))


def readable_on(colour: str, background: str, towards: str) -> str:
    """`colour`, moved towards `towards` only as far as needed for AA contrast on `background`."""
    for step in range(21):
        candidate = mix(colour, towards, step / 20)
        if contrast(candidate, background) >= AA:
            return candidate
    return towards
