"""`python -m bench.scale` (`make bench-scale`): cost with data, and the purge of a backlog
under load, on SQLite and on PostgreSQL 15.

For each database:

1. Latch on an empty database: `/auth/check`, `/api/verify`, `/api/start`.
2. The same on a database holding 1,000,000 users with live sessions, 1,000,000 dead
   sessions and 3,000,000 old flows and mail-log rows (written straight into the tables after
   migration, bench/scale_db.py): each endpoint should stay within 10% of the empty run.
3. The same database with the purge switched on: `/api/start` and `/api/verify` loaded while
   it deletes the backlog in batches; p99 ≤ 100 ms and no request over 1 s. Beside it, the
   same loads' p99 and max from step 2 (no purge), which is what the purge is to be judged
   against: at 64 connections on two cores the loads' own tail is most of it.

PostgreSQL runs in a throwaway cluster of the tests' kind (tests/support/postgres.py: fsync
and synchronous_commit off, as SQLite runs with synchronous=NORMAL), Latch pointed at it with
DATABASE_URL. `--scale 0.1` runs a tenth of the data; `--database sqlite|postgres|both`.
Prints a Markdown report; `--write` adds it to bench/SCALE.md.
"""

from __future__ import annotations

import argparse
import contextlib
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path

from bench import fixtures
from bench.load import THREADS, Load, Result, run_wrk
from bench.scale_db import backlog_left, postgres_cluster, seed
from bench.servers import MailSink, Server, latch_env

HERE = Path(__file__).resolve().parent
WAIT = 300.0
NAMES = {"sqlite": "SQLite", "postgres": "PostgreSQL 15"}


def loads(latch: Server, sink: MailSink, flows: Path, seconds: float) -> dict[str, Result]:
    """check, verify and start on a running Latch."""
    cookie = fixtures.sign_in(latch.url, sink)
    check = Load("/auth/check", headers=(f"Cookie: latch_session={cookie}",))
    verify = Load("/api/verify", script="verify.lua", script_args=(str(flows), str(THREADS)))
    start = Load("/api/start", script="start.lua", script_args=("sc",))
    out = {}
    for name, load in (
        ("GET /auth/check", check),
        ("POST /api/verify", verify),
        ("POST /api/start", start),
    ):
        if load is not verify:  # a warm-up (verify's flows are each good once)
            run_wrk(latch.url, latch.host_header, load, 1.0)
        out[name] = run_wrk(latch.url, latch.host_header, load, seconds)
        print(f"  {name:<20} {out[name].rps:>8,.0f} req/s  p99 {out[name].p99:7.2f} ms", flush=True)
    return out


def main(argv: list[str] | None = None) -> int:
    """Run the three phases on each database and print the report."""
    parser = argparse.ArgumentParser(prog="python -m bench.scale", description=__doc__)
    parser.add_argument("--scale", type=float, default=1.0, help="fraction of the data")
    parser.add_argument("--seconds", type=float, default=8.0, help="measured seconds a load")
    parser.add_argument(
        "--database", choices=("sqlite", "postgres", "both"), default="both", help="which"
    )
    parser.add_argument("--write", action="store_true", help="add the report to bench/SCALE.md")
    opts = parser.parse_args(argv)
    kinds = ("sqlite", "postgres") if opts.database == "both" else (opts.database,)
    lines = [f"## Scale run of {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}", ""]
    lines.append(f"`--scale {opts.scale:g} --seconds {opts.seconds:g}`.")
    with tempfile.TemporaryDirectory(prefix="latch-scale-") as tmp:
        for kind in kinds:
            with _databases(kind, Path(tmp)) as url_of:
                part = ["", f"### {NAMES[kind]}", ""]
                part += run_database(kind, url_of, Path(tmp) / kind, opts.scale, opts.seconds)
                print("\n".join(part), flush=True)
                lines += part
    report = "\n".join(lines) + "\n"
    print(report)
    if opts.write:
        target = HERE / "SCALE.md"
        earlier = target.read_text() if target.exists() else "# Scale results\n\n"
        head, _, rest = earlier.partition("\n## ")
        target.write_text(head.rstrip() + "\n\n" + report + ("\n## " + rest if rest else ""))
    return 0


@contextlib.contextmanager
def _databases(kind: str, work: Path) -> Iterator[Callable[[str], str]]:
    """A function giving the DATABASE_URL of each phase's database ("empty", "big")."""
    if kind == "sqlite":
        yield lambda phase: f"sqlite:///{work / kind / phase / 'latch.db'}"
        return
    with postgres_cluster() as cluster:
        made: dict[str, str] = {}

        def url_of(phase: str) -> str:
            if phase not in made:
                made[phase] = cluster.create_database(phase)
            return made[phase]

        yield url_of


def run_database(
    kind: str, url_of: Callable[[str], str], work: Path, scale: float, seconds: float
) -> list[str]:
    """The empty and big runs and the purge under load on one database; its report."""
    users, dead, old_flows = (int(n * scale) for n in (1_000_000, 1_000_000, 3_000_000))
    verify_count = 4000 * int(seconds)
    secret = fixtures.new_secret()
    results: dict[str, dict[str, Result]] = {}
    lines: list[str] = []
    for phase in ("empty", "big"):
        url = url_of(phase)
        flows = work / f"verify-{phase}.txt"
        extra = {work / "verify-purge.txt": verify_count} if phase == "big" else {}
        work.mkdir(parents=True, exist_ok=True)
        fixtures.make_flows(url, secret, {flows: verify_count, **extra})
        if phase == "big":
            took = seed(url, users=users, dead=dead, flows=old_flows)
            lines.append(
                f"Seeded {users:,} users with live sessions, {dead:,} dead sessions and"
                f" {old_flows:,} old flows and mail-log rows in {took:.0f} s."
            )
        print(f"{NAMES[kind]}, {phase} database:", flush=True)
        results[phase] = _serve(
            work, phase, url, secret, partial(loads, flows=flows, seconds=seconds)
        )
    lines += ["", "| endpoint | empty req/s | big req/s | change | within 10% | big p99 ms |"]
    lines.append("| --- | ---: | ---: | ---: | --- | ---: |")
    for name, empty in results["empty"].items():
        big = results["big"][name]
        change = big.rps / empty.rps - 1
        ok = "yes" if abs(change) <= 0.10 else "**no**"
        lines.append(
            f"| `{name}` | {empty.rps:,.0f} | {big.rps:,.0f} | {change:+.0%} | {ok} |"
            f" {big.p99:.1f} |"
        )
    with MailSink() as sink:
        lines += ["", *purge_phase(work, url_of("big"), secret, sink, seconds, results["big"])]
    return lines


def _env(data: Path, url: str, latch: Server, secret: str, sink: MailSink) -> dict[str, str]:
    env = latch_env(data, latch.port, secret, sink.port)
    if not url.startswith("sqlite"):
        env["DATABASE_URL"] = url
    return env


def _serve(
    work: Path,
    phase: str,
    url: str,
    secret: str,
    measure: Callable[[Server, MailSink], dict[str, Result]],
) -> dict[str, Result]:
    data = Path(url.partition(":///")[2]).parent if url.startswith("sqlite") else work / phase
    latch = Server("latch", "service.asgi:app", {}, work / f"latch-{phase}")
    # A sink per phase: the sign-in that gets the cookie waits for its own mail.
    with MailSink() as sink:
        latch.env = _env(data, url, latch, secret, sink)
        with latch.start("/healthz", timeout=120):
            return measure(latch, sink)


def purge_phase(
    work: Path, url: str, secret: str, sink: MailSink, seconds: float, quiet: dict[str, Result]
) -> list[str]:
    """Start and verify under load while the purge deletes the backlog."""
    data = Path(url.partition(":///")[2]).parent if url.startswith("sqlite") else work / "big"
    before = backlog_left(url)
    latch = Server("latch", "service.asgi:app", {}, work / "latch-purge")
    latch.env = {**_env(data, url, latch, secret, sink), "PURGE_INTERVAL": "2"}
    finished: list[float] = []
    stop = threading.Event()

    def watch(began: float) -> None:
        while not stop.wait(0.5):
            if backlog_left(url) == 0:
                finished.append(time.monotonic() - began)
                return

    print("purge under load:", flush=True)
    with latch.start("/healthz", timeout=120):
        began = time.monotonic()
        watcher = threading.Thread(target=watch, args=(began,), daemon=True)
        watcher.start()
        flows = work / "verify-purge.txt"
        start = Load("/api/start", script="start.lua", script_args=("sp",))
        verify = Load("/api/verify", script="verify.lua", script_args=(str(flows), str(THREADS)))
        measured = {
            "POST /api/start": run_wrk(latch.url, latch.host_header, start, seconds),
            "POST /api/verify": run_wrk(latch.url, latch.host_header, verify, seconds),
        }
        loaded = time.monotonic() - began
        # The purge goes on after the loads (paced, a fifth of the database's time at most);
        # waiting for the last of a full-size backlog on PostgreSQL would be many minutes, so
        # the run stops looking after WAIT and reports what was left and the rate.
        watcher.join(WAIT)
        stop.set()
        looked = time.monotonic() - began
    if finished:
        done = (
            f"the backlog was gone after {finished[0]:.0f} s ({before / finished[0]:,.0f} rows/s)"
        )
    else:
        left = backlog_left(url)
        done = (
            f"{left:,} rows were left after {looked:.0f} s ({(before - left) / looked:,.0f} rows/s)"
        )
    out = [
        f"Purge under load: {before:,} old flows and dead sessions waiting; the purge"
        f" (PURGE_INTERVAL=2) began ~2 s after start-up; the loads ran for the first"
        f" {loaded:.0f} s; {done}.",
        "",
        "| endpoint during the purge | req/s | p99 ms | max ms | no purge: p99 / max ms | target |",
        "| --- | ---: | ---: | ---: | ---: | --- |",
    ]
    for name, r in measured.items():
        ok = "meets" if r.p99 <= 100 and r.max_ms <= 1000 and not r.errors else "**MISSES**"
        q = quiet[name]
        out.append(
            f"| `{name}` | {r.rps:,.0f} | {r.p99:.1f} | {r.max_ms:.1f} |"
            f" {q.p99:.1f} / {q.max_ms:.1f} | p99 ≤ 100 ms, max ≤ 1 s: {ok} |"
        )
    return out


if __name__ == "__main__":
    raise SystemExit(main())
