"""What every HTML surface's pages share: the static assets under /static (with content-hashed
URLs) and the brand's version. The sign-in pages and the OpenID provider's pages each keep their
own templates; this is the one place their layout's assets and cache-busting come from, so both
name the same URL for the same file."""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, StrictUndefined

from service import colour
from service.settings import Settings

# The stylesheet, script and icons served under /static (by the pages surface's mount).
STATIC = Path(__file__).resolve().parent.parent / "pages" / "static"


@functools.cache
def _asset_versions() -> dict[str, str]:
    # Static files are cached for a year, so each URL carries a hash of the file's content;
    # read once per process.
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest()[:12]
        for p in STATIC.iterdir()
        if p.is_file()
    }


def static_url(name: str) -> str:
    """/static/NAME?v=HASH: a URL that changes whenever the file does."""
    return f"/static/{name}?v={_asset_versions().get(name, '0')}"


def environment(folder: Path) -> Environment:
    """A strict, autoescaping template environment over `folder`, with `static()`."""
    env = Environment(
        loader=FileSystemLoader(folder),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.globals["static"] = static_url
    return env


@functools.lru_cache(maxsize=8)
def brand_css(accent: str) -> str:
    """The accent colour as CSS custom properties, for light and dark colour schemes.

    The button ink is black or white, whichever reads better on the accent; links and focus
    rings use the accent moved just far enough to reach 4.5:1 on the page's paper.
    """
    ink = max((colour.WHITE, colour.INK_DARK), key=lambda c: colour.contrast(c, accent))
    text = colour.readable_on(accent, colour.WHITE, "#000000")
    dark = colour.readable_on(accent, colour.PAPER_DARK, colour.WHITE)
    dark_ink = max((colour.WHITE, colour.INK_DARK), key=lambda c: colour.contrast(c, dark))
    return (
        f":root{{--accent:{accent};--accent-ink:{ink};--accent-text:{text}}}\n"
        "@media (prefers-color-scheme: dark){"
        f":root{{--accent:{dark};--accent-ink:{dark_ink};--accent-text:{dark}}}}}\n"
    )


def brand_version(settings: Settings) -> str:
    """A short hash of what /static/brand.css and /logo serve, for cache-busting URLs."""
    return _version(settings.brand.accent_color, settings.brand.logo_file)


@functools.lru_cache(maxsize=8)
def _version(accent: str, logo_file: str) -> str:
    digest = hashlib.sha256(brand_css(accent).encode())
    if logo_file:
        digest.update(Path(logo_file).read_bytes())
    return digest.hexdigest()[:12]
