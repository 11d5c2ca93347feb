"""The processes under load: uvicorn serving the baseline or Latch, and an SMTP sink.

Both apps run under the same uvicorn settings (one worker, uvloop, httptools, no access log,
no proxy headers, no Server header), so the ratio between them is Latch's own cost.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import Self

import httpx

from bench.sink import LeanSink

HOST = "127.0.0.1"
ROOT = Path(__file__).resolve().parent.parent
UVICORN_FLAGS = (
    "--loop", "uvloop", "--http", "httptools", "--no-access-log", "--log-level", "warning",
    "--no-proxy-headers", "--no-server-header", "--lifespan", "on",
)  # fmt: skip


def free_port() -> int:
    """A loopback port nothing listens on right now (the kernel's choice)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
    return port


class Server:
    """`python -m uvicorn APP` on a loopback port, output kept in a file."""

    def __init__(self, name: str, app: str, env: dict[str, str], workdir: Path) -> None:
        self.name = name
        self.app = app
        self.port = free_port()
        self.url = f"http://{HOST}:{self.port}"
        self.host_header = f"{HOST}:{self.port}"
        self.env = env
        self.workdir = workdir
        self.log = workdir / f"{name}.log"
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        """The server's process id (for py-spy)."""
        assert self._proc is not None
        return self._proc.pid

    def start(self, health: str, timeout: float = 30.0) -> Self:
        """Start uvicorn and wait until `health` answers 200."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        args = [sys.executable, "-m", "uvicorn", self.app, "--app-dir", str(ROOT)]
        args += ["--host", HOST, "--port", str(self.port), *UVICORN_FLAGS]
        with self.log.open("wb") as out:
            # S603: the command line is ours: this Python, uvicorn, our app and numbers.
            self._proc = subprocess.Popen(  # noqa: S603
                args, env=self.env, cwd=self.workdir, stdout=out, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited:\n{self.log.read_text()}")
            try:
                if httpx.get(self.url + health, timeout=1.0).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        self.stop()
        raise TimeoutError(f"{self.name} did not answer {health} in {timeout}s")

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it does not end."""
        if self._proc is None or self._proc.poll() is not None:
            return
        self._proc.terminate()
        try:
            self._proc.wait(30)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait(10)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def latch_env(data_dir: Path, port: int, secret: str, smtp_port: int) -> dict[str, str]:
    """Latch on SQLite in `data_dir`, mail to the sink, every per-address/IP limit off.

    The mail queue keeps its default size: a rush that fills it shows as 503s (errors).
    Limits are off because wrk sends everything from one IP; the work a limit check does
    still happens where the store does it for enabled limits only, so this is the cheapest
    configuration: the numbers are an upper bound for a deployment with limits on.
    """
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "PYTHONPATH": str(ROOT),
        "PUBLIC_URL": f"http://{HOST}:{port}",
        "SECRET_KEY": secret,
        "DATA_DIR": str(data_dir),
        "EMAIL_TEMPLATES_DIR": str(ROOT / "email_templates"),
        "LOG_LEVEL": "WARNING",
        "SMTP_HOST": HOST,
        "SMTP_PORT": str(smtp_port),
        "SMTP_TLS": "none",
        "MAIL_FROM": "latch@bench.example.com",
        "LIMIT_MAIL_INTERVAL": "0",
        "LIMIT_MAIL_PER_WINDOW": "0",
        "LIMIT_MAIL_PER_DAY": "0",
        "LIMIT_MAIL_GLOBAL": "0",
        "LIMIT_STARTS_PER_IP": "0",
        "PURGE_INTERVAL": "0",
    }


def plain_env() -> dict[str, str]:
    """The baseline's environment: only what Python needs."""
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONPATH": str(ROOT)}


class MailSink:
    """An SMTP sink on loopback (bench/sink.py) that counts deliveries per address prefix,
    notes when the last one arrived, and keeps the messages of a few watched addresses (the
    sign-in that gets the cookie for /auth/check)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.total = 0
        self.by_prefix: dict[str, int] = {}
        self.watched: dict[str, list[bytes]] = {}
        self._cond = threading.Condition()
        self.last_at = 0.0
        self._server = LeanSink(HOST, self.port, self.accept)

    def accept(self, rcpt_tos: list[str], content: bytes) -> None:
        """Record one delivered message."""
        with self._cond:
            self.total += 1
            self.last_at = time.monotonic()
            for rcpt in rcpt_tos:
                prefix = rcpt.split("-", 1)[0]
                self.by_prefix[prefix] = self.by_prefix.get(prefix, 0) + 1
                if rcpt in self.watched:
                    self.watched[rcpt].append(content)
            self._cond.notify_all()

    def watch(self, address: str) -> None:
        """Keep the messages to this address."""
        with self._cond:
            self.watched.setdefault(address, [])

    def wait_message(self, address: str, timeout: float = 10.0) -> bytes:
        """The first message to a watched address."""
        with self._cond:
            if not self._cond.wait_for(lambda: self.watched.get(address), timeout):
                raise TimeoutError(f"no mail to {address} within {timeout}s")
            return self.watched[address][0]

    def count(self, *prefixes: str) -> int:
        """Messages delivered so far to addresses starting with one of `prefix-`."""
        with self._cond:
            return sum(self.by_prefix.get(prefix, 0) for prefix in prefixes)

    def __enter__(self) -> Self:
        self._server.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._server.stop()
