"""Latch as a real process: `python -m service` under uvicorn on a loopback TCP port."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Self

import httpx

from .net import HOST, free_port
from .running import Running
from .wait import eventually

CHECKOUT = Path(__file__).resolve().parents[2]


class LatchProcess(Running):
    """`python -m service --host 127.0.0.1 --port N` with a given environment.

    Its stdout and stderr go to files rather than pipes: nothing can block on a full pipe, and
    `output()` returns everything the process ever wrote, for tests that search it for secrets.
    The process runs in `workdir`, so no stray `.env` of the developer's is read.
    """

    def __init__(self, env: Mapping[str, str], workdir: Path, *, host_name: str = HOST) -> None:
        self.port = free_port()
        # `host_name="localhost"` for passkeys (browsers refuse an IP address as their relying
        # party); the process still listens on HOST, which localhost names.
        self.url = f"http://{host_name}:{self.port}"
        self.workdir = workdir
        self.env = {
            # Only what Python needs to run, plus the test's settings: the developer's own
            # SMTP_HOST or SECRET_KEY must not leak into the process under test.
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "PYTHONUNBUFFERED": "1",
            # The process runs in a temp dir: it must import this checkout's `service`, not
            # whichever one the virtual environment was installed from.
            "PYTHONPATH": str(CHECKOUT),
            **env,
            # Last: Latch refuses requests addressed to any host but PUBLIC_URL's.
            "PUBLIC_URL": self.url,
        }
        self._out = workdir / "latch.stdout"
        self._err = workdir / "latch.stderr"
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def proc(self) -> subprocess.Popen[bytes]:
        """The running process."""
        if self._proc is None:
            raise RuntimeError("LatchProcess was not started")
        return self._proc

    def start(self, timeout: float = 20.0) -> Self:
        """Start the process and wait until /healthz answers."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        with self._out.open("wb") as out, self._err.open("wb") as err:
            self._proc = subprocess.Popen(
                [sys.executable, "-m", "service", "--host", HOST, "--port", str(self.port)],
                env=self.env,
                cwd=self.workdir,
                stdout=out,
                stderr=err,
            )
        self._wait_healthy(timeout)
        return self

    def _wait_healthy(self, timeout: float) -> None:
        def healthy() -> bool:
            if self.proc.poll() is not None:
                raise RuntimeError(f"Latch exited with {self.proc.returncode}:\n{self.output()}")
            try:
                return httpx.get(f"{self.url}/healthz", timeout=1.0).status_code == 200
            except httpx.TransportError:
                return False

        try:
            eventually(healthy, "Latch to answer /healthz", timeout)
        except AssertionError as e:
            self.kill()
            raise AssertionError(f"{e}\n{self.output()}") from None

    def terminate(self, timeout: float = 30.0) -> int:
        """Send SIGTERM and wait for the process to end; returns its exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise

    def stop(self) -> None:
        """End the process at once (cleanup after a failure): SIGKILL."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait(10)

    kill = stop

    def output(self) -> str:
        """Everything the process wrote to stdout and stderr so far."""
        parts = [p.read_text(errors="replace") for p in (self._out, self._err) if p.exists()]
        return "\n".join(parts)
