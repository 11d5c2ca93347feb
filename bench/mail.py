"""`python -m bench.mail`: what one sign-in mail costs to compose, in-process.

The composed path (service/delivery/compose.py: templates rendered once per shape, values
filled in, quoted-printable pieces encoded once) against the general path (Jinja and the
`email` package for every mail), both giving the finished bytes that go to SMTP. Target: the
composed path ≤ 100 µs a mail.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from bench.micro import per_call_us
from service.delivery.mail import _WIRE, MailJob, Renderer
from service.settings import load_settings

ROOT = Path(__file__).resolve().parent.parent
TARGET_US = 100.0
USER_AGENT = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/140.0 Safari/537.36"


def measure() -> dict[str, float]:
    """µs a mail: composed and general."""
    with tempfile.TemporaryDirectory(prefix="latch-mail-") as tmp:
        settings = load_settings(
            {
                "DATA_DIR": tmp,
                "PUBLIC_URL": "http://127.0.0.1:8000",
                "EMAIL_TEMPLATES_DIR": str(ROOT / "email_templates"),
            }
        )
        renderer = Renderer(settings)
        job = MailJob(
            flow_id="f" * 32,
            seq=1,
            to="someone@example.com",
            code="123456",
            link="http://127.0.0.1:8000/login/link?t=" + "x" * 100,
            expires_at=int(time.time()) + 600,
            ip="203.0.113.7",
            user_agent=USER_AGENT,
        )
        renderer.mime(job)
        if renderer._composer.shape(renderer._fixed, "Chrome on Linux", True) is None:
            raise RuntimeError("the default templates no longer take the composed path")
        return {
            "composed (render once, fill in)": per_call_us(lambda: renderer.mime(job), 1000),
            "general (Jinja + email package)": per_call_us(
                lambda: renderer.render_general(job).as_bytes(policy=_WIRE), 200
            ),
        }


def lines(timings: dict[str, float]) -> list[str]:
    """The timings as a small Markdown table, with the target verdict."""
    composed = timings["composed (render once, fill in)"]
    verdict = "meets" if composed <= TARGET_US else "**MISSES**"
    out = ["| path | µs a mail | target | |", "| --- | ---: | --- | --- |"]
    for name, us in timings.items():
        first = name.startswith("composed")
        target = f"≤ {TARGET_US:g} µs" if first else "—"
        out.append(f"| {name} | {us:.1f} | {target} | {verdict if first else '—'} |")
    return out


def main() -> int:
    """Print the micro-benchmark."""
    print("\n".join(lines(measure())))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
