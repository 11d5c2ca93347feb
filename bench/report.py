"""The results table: printed, and written to bench/RESULTS.md with earlier runs kept below."""

from __future__ import annotations

import os
import platform
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from bench.load import Result

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"
KEEP_RUNS = 5
HEADER = f"""# Benchmark results

Latch against a bare Starlette endpoint (`bench/baseline.py`), both under uvicorn with the same
settings (one worker, uvloop, httptools, no access log), loaded in the same run by wrk (2 threads,
64 connections, 10 s after a warm-up) on loopback. Latch runs on SQLite with mail going to a
lean SMTP sink (`bench/sink.py`), the default mail queue, and the per-address/IP limits off. The
ratio is requests/s over the bare endpoint's requests/s in the same run. Rerun with `make bench`
(or `.venv/bin/python -m bench`); each run is added at the top and the last {KEEP_RUNS} are kept.
"""


@dataclass(frozen=True)
class Target:
    """The speed an endpoint must reach, as a ratio to bare Starlette and a p99 bound (ms)."""

    ratio: float
    p99_ms: float | None = None

    def describe(self) -> str:
        """Like `≥ 0.60, p99 ≤ 25 ms`."""
        text = f"≥ {self.ratio:.2f}"
        return text + (f", p99 ≤ {self.p99_ms:g} ms" if self.p99_ms is not None else "")


@dataclass(frozen=True)
class Row:
    """One measured endpoint."""

    name: str
    result: Result
    target: Target | None


def cpu_model() -> str:
    """The CPU's model name (Linux), else what platform knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def verdict(row: Row, bare_rps: float) -> str:
    """'meets', 'MISSES (…)', or '—' for the baseline itself."""
    if row.target is None:
        return "—"
    misses = []
    ratio = row.result.rps / bare_rps
    if ratio < row.target.ratio:
        misses.append("ratio")
    if row.target.p99_ms is not None and row.result.p99 > row.target.p99_ms:
        misses.append("p99")
    if row.result.errors:
        misses.append("errors")
    return "meets" if not misses else f"**MISSES** ({', '.join(misses)})"


def table(rows: list[Row], bare_rps: float) -> str:
    """The Markdown table of one run."""
    lines = [
        "| endpoint | req/s | p50 ms | p99 ms | errors | ratio to bare | target | |",
        "| --- | ---: | ---: | ---: | ---: | ---: | --- | --- |",
    ]
    for row in rows:
        r = row.result
        target = row.target.describe() if row.target else "—"
        lines.append(
            f"| `{row.name}` | {r.rps:,.0f} | {r.p50:.2f} | {r.p99:.2f} | {r.errors} |"
            f" {r.rps / bare_rps:.3f} | {target} | {verdict(row, bare_rps)} |"
        )
    return "\n".join(lines)


def section(rows: list[Row], bare_rps: float, notes: list[str]) -> str:
    """One run: when, on what, the table and its notes."""
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    machine = f"{cpu_model()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    body = [f"## Run of {when}", "", f"Machine: {machine}.", "", table(rows, bare_rps), ""]
    body += [f"- {note}" for note in notes]
    return "\n".join(body) + "\n"


def write(new_section: str) -> None:
    """RESULTS.md: the header, this run, then the most recent earlier runs."""
    earlier: list[str] = []
    if RESULTS.exists():
        earlier = re.split(r"(?m)^(?=## Run of )", RESULTS.read_text())[1:]
    runs = [new_section, *earlier][:KEEP_RUNS]
    RESULTS.write_text(HEADER + "\n" + "\n".join(run.rstrip() + "\n" for run in runs))
