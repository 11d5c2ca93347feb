"""`python -m bench.smtp`: what handing one sign-in mail to SMTP costs, in-process.

A real composed sign-in mail is sent over loopback to the bench's lean sink (bench/sink.py,
which offers PIPELINING), running in a process of its own so that what is measured is the
sender alone: Latch's transport (service/delivery/smtp_wire.py) against aiosmtplib (what
Latch used before: `sendmail` on kept connections), with 1 and `MAIL_WORKERS` senders each
holding one connection. Reported: CPU µs of the sending process a mail (what the mail queue
takes from the event loop that also serves requests) and mails a second (wall clock).
"""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

from bench.mail import ROOT, USER_AGENT
from bench.servers import HOST, free_port
from service.delivery.mail import MailJob, Renderer
from service.delivery.transports import SmtpTransport
from service.settings import Settings, load_settings

MAILS = 4000
SENDER = "login@localhost"
_SINK = (
    "import sys, threading\n"
    "from bench.sink import LeanSink\n"
    "sink = LeanSink(sys.argv[1], int(sys.argv[2]), lambda rcpts, data: None)\n"
    "sink.start()\n"
    "sys.stdin.read()\n"
    "sink.stop()\n"
)
Send = Callable[[bytes, str], Awaitable[None]]
T = TypeVar("T")


def _on_uvloop(main: Coroutine[Any, Any, T]) -> T:
    """Run on uvloop when installed, as Latch runs under uvicorn."""
    try:
        import uvloop  # noqa: PLC0415
    except ImportError:
        return asyncio.run(main)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(main)


def _sink() -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    process = subprocess.Popen(  # noqa: S603 (our own interpreter and script)
        [sys.executable, "-c", _SINK, HOST, str(port)], stdin=subprocess.PIPE, cwd=ROOT
    )
    for _ in range(200):
        try:
            socket.create_connection((HOST, port), timeout=1).close()
            return process, port
        except OSError:
            time.sleep(0.05)
    process.kill()
    raise RuntimeError("the bench sink did not start")


async def _run(send: Send, data: bytes, senders: int, mails: int) -> tuple[float, float]:
    """(CPU µs a mail, mails a second) for `mails` sends by `senders` concurrent tasks."""
    left = iter(range(mails))

    async def worker() -> None:
        for i in left:
            await send(data, f"user{i}@example.com")

    await asyncio.gather(*(worker() for _ in range(senders)))  # warm: connections open
    left = iter(range(mails))
    cpu, wall = time.process_time(), time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(senders)))
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    return cpu / mails * 1e6, mails / wall


async def _latch(settings: Settings, data: bytes, senders: int) -> tuple[float, float]:
    transport = SmtpTransport(settings)

    async def send(data: bytes, to: str) -> None:
        await transport.send_raw(data, sender=SENDER, recipients=[to])

    try:
        return await _run(send, data, senders, MAILS)
    finally:
        await transport.aclose()


async def _aiosmtplib(port: int, data: bytes, senders: int) -> tuple[float, float]:
    import aiosmtplib  # noqa: PLC0415 (a test extra now, for this comparison only)

    idle: list[aiosmtplib.SMTP] = []

    async def send(data: bytes, to: str) -> None:
        if idle:
            client = idle.pop()
        else:
            client = aiosmtplib.SMTP(hostname=HOST, port=port, start_tls=False, timeout=10)
            await client.connect()
        await client.sendmail(SENDER, [to], data)
        idle.append(client)

    try:
        return await _run(send, data, senders, MAILS // 2)
    finally:
        for client in idle:
            await client.quit()


def measure() -> dict[str, tuple[float, float]]:
    """{label: (CPU µs a mail, mails a second)}."""
    process, port = _sink()
    try:
        with tempfile.TemporaryDirectory(prefix="latch-smtp-") as tmp:
            settings = load_settings(
                {
                    "DATA_DIR": tmp,
                    "PUBLIC_URL": "http://127.0.0.1:8000",
                    "EMAIL_TEMPLATES_DIR": str(Path(ROOT) / "email_templates"),
                    "SMTP_HOST": HOST,
                    "SMTP_PORT": str(port),
                    "SMTP_TLS": "none",
                }
            )
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
            data = Renderer(settings).mime(job)
            workers = settings.mail.workers
            timings: dict[str, tuple[float, float]] = {}
            for senders in (1, workers):
                key = f"{senders} connection{'s' if senders > 1 else ''}"
                timings[f"Latch's client (pipelined), {key}"] = _on_uvloop(
                    _latch(settings, data, senders)
                )
                try:
                    timings[f"aiosmtplib 5, {key}"] = _on_uvloop(_aiosmtplib(port, data, senders))
                except ImportError:
                    pass  # not installed (a test extra): nothing to compare with
            return timings
    finally:
        assert process.stdin is not None
        process.stdin.close()
        process.wait(10)


def lines(timings: dict[str, tuple[float, float]]) -> list[str]:
    """The timings as a small Markdown table."""
    out = ["| sender | CPU µs a mail | mails/s |", "| --- | ---: | ---: |"]
    out += [f"| {name} | {us:.0f} | {rate:,.0f} |" for name, (us, rate) in timings.items()]
    return out


def main() -> int:
    """Print the micro-benchmark."""
    print("\n".join(lines(measure())))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
