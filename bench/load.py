"""Run wrk against one endpoint and read its report."""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
THREADS = 2
CONNECTIONS = 64
_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3, "h": 3600e3}


@dataclass(frozen=True)
class Load:
    """One wrk run: how to call the endpoint."""

    path: str
    headers: tuple[str, ...] = ()
    script: str | None = None
    script_args: tuple[str, ...] = ()


@dataclass(frozen=True)
class Result:
    """What wrk measured (latencies in milliseconds)."""

    requests: int
    seconds: float
    rps: float
    p50: float
    p99: float
    non_2xx: int
    socket_errors: int
    max_ms: float = 0.0

    @property
    def errors(self) -> int:
        """Answers that should have been 2xx and were not, plus requests that got no answer."""
        return self.non_2xx + self.socket_errors

    @property
    def ok(self) -> int:
        """Requests answered with a 2xx (or 3xx, which wrk does not tell apart)."""
        return self.requests - self.non_2xx


def wrk_path() -> str:
    """The wrk binary, or an error that says how to get it."""
    path = shutil.which("wrk")
    if path is None:
        raise SystemExit("wrk is not installed: `apt-get install -y wrk` (make bench does this)")
    return path


def run_wrk(base_url: str, host: str, load: Load, seconds: float) -> Result:
    """wrk with 2 threads and 64 connections for `seconds`, with latency percentiles."""
    args = [wrk_path(), "-t", str(THREADS), "-c", str(CONNECTIONS), "-d", f"{seconds:g}s"]
    args += ["--timeout", "5s", "--latency", "-H", f"Host: {host}"]
    for header in load.headers:
        args += ["-H", header]
    if load.script:
        args += ["-s", str(HERE / load.script)]
    args.append(base_url + load.path)
    if load.script_args:
        args += ["--", *load.script_args]
    # S603: every argument is ours (wrk's path, numbers, our scripts and URLs).
    done = subprocess.run(  # noqa: S603
        args, capture_output=True, text=True, timeout=seconds + 60, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stderr or done.stdout}")
    return parse(done.stdout)


def _ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m|h)", text)
    if match is None:
        raise ValueError(f"not a wrk duration: {text!r}")
    return float(match.group(1)) * _UNITS[match.group(2)]


def parse(out: str) -> Result:
    """The numbers of a `wrk --latency` report."""

    def find(pattern: str) -> re.Match[str]:
        match = re.search(pattern, out)
        if match is None:
            raise ValueError(f"wrk output without {pattern!r}:\n{out}")
        return match

    total = find(r"(\d+) requests in ([\d.]+)(us|ms|s|m),")
    sockets = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out
    )
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return Result(
        requests=int(total.group(1)),
        seconds=_ms(total.group(2) + total.group(3)) / 1000,
        rps=float(find(r"Requests/sec:\s+([\d.]+)").group(1)),
        p50=_ms(find(r"\n\s+50%\s+(\S+)").group(1)),
        p99=_ms(find(r"\n\s+99%\s+(\S+)").group(1)),
        non_2xx=int(non_2xx.group(1)) if non_2xx else 0,
        socket_errors=sum(int(n) for n in sockets.groups()) if sockets else 0,
        max_ms=_ms(find(r"Latency\s+\S+\s+\S+\s+(\S+)").group(1)),
    )
