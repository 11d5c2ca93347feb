"""Second-factor tools that are not ours: codes from Debian's `oathtool`, QR codes read back
by Debian's `zbarimg`, and what a test needs to get from one to the other.

`zbarimg` cannot read SVG here (its ImageMagick has no SVG renderer), so `svg_png` rasterises
the SVG Latch served, exactly as drawn: segno draws each row of modules as a horizontal
stroke of width 1 (`M x y` `h n` `m dx dy`) inside `scale(k)`. Nothing is taken from Latch but
that SVG: a wrong module in the served code is a wrong pixel here, and zbarimg says so.
"""

from __future__ import annotations

import re
import struct
import subprocess
import zlib
from email.message import EmailMessage
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, unquote, urlsplit

from tests.support.wait import eventually

if TYPE_CHECKING:
    from tests.conftest import RecordingTransport

PIXELS = 8  # per module in the PNG


def oathtool(secret: str, at: int) -> str:
    """The TOTP code of a base32 secret at a Unix time (RFC 6238 defaults), by oathtool."""
    done = subprocess.run(
        ["oathtool", "--totp", "-b", secret.replace(" ", ""), "--now", f"@{at}"],
        capture_output=True,
        text=True,
        check=True,
        timeout=10,
    )
    return done.stdout.strip()


def secret_of(uri: str) -> str:
    """The `secret` parameter of an otpauth:// URI."""
    return parse_qs(urlsplit(uri).query)["secret"][0]


def label_of(uri: str) -> str:
    """The decoded label (ISSUER:ACCOUNT) of an otpauth:// URI."""
    return unquote(urlsplit(uri).path.lstrip("/"))


def _modules(svg: str) -> list[list[bool]]:
    size_m = re.search(r'viewBox="0 0 (\d+) (\d+)"', svg)
    scale_m = re.search(r'transform="scale\((\d+)\)"', svg)
    path_m = re.search(r'class="qrline"[^>]*\sd="([^"]+)"', svg)
    assert size_m and scale_m and path_m, "not a segno QR code SVG"
    side = int(size_m.group(1)) // int(scale_m.group(1))
    grid = [[False] * side for _ in range(side)]
    x = y = 0.0
    for op, args in re.findall(r"([MmHh])([-\d.\s]+)", path_m.group(1)):
        numbers = [float(n) for n in args.split()]
        if op == "M":
            x, y = numbers
        elif op == "m":
            x, y = x + numbers[0], y + numbers[1]
        else:
            run = numbers[0] if op == "h" else numbers[0] - x
            row = int(y)  # a stroke of width 1 centred on y = row + 0.5
            for col in range(int(x), int(x + run)):
                grid[row][col] = True
            x += run
    return grid


def svg_png(svg: str, path: Path) -> Path:
    """Write the QR code of a segno SVG as a black-on-white PNG."""
    grid = _modules(svg)
    rows = []
    for row in grid:
        line = bytes(0 if dark else 255 for dark in row for _ in range(PIXELS))
        rows.extend([b"\x00" + line] * PIXELS)
    width = len(grid) * PIXELS

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, width, 8, 0, 0, 0, 0)  # 8-bit greyscale
    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
    png += chunk(b"IDAT", zlib.compress(b"".join(rows))) + chunk(b"IEND", b"")
    path.write_bytes(png)
    return path


def zbarimg(image: Path) -> str:
    """What Debian's zbarimg reads from an image (exactly one symbol expected)."""
    done = subprocess.run(
        ["zbarimg", "--quiet", "--raw", str(image)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, f"zbarimg read nothing ({done.returncode}): {done.stderr}"
    return done.stdout.strip()


def signin_mails(transport: RecordingTransport, email: str) -> list[EmailMessage]:
    """The sign-in mails to `email` (notices are mailed in the background, in any order)."""
    return [m for m in transport.messages_to(email) if str(m["Subject"]).startswith("Sign in")]


def next_signin_mail(transport: RecordingTransport, email: str, before: int) -> EmailMessage:
    def arrived() -> EmailMessage | None:
        mails = signin_mails(transport, email)
        return mails[before] if len(mails) > before else None

    return eventually(arrived, "the sign-in mail")
