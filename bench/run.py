"""One benchmark run: start the sink, the baseline and Latch; load each endpoint; report."""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from bench import fixtures, micro, report
from bench.load import THREADS, Load, Result, run_wrk, wrk_path
from bench.report import Row, Target
from bench.servers import MailSink, Server, latch_env, plain_env

TARGETS = {
    "GET /auth/check": Target(0.60, 25.0),
    "GET /.well-known/jwks.json": Target(0.80),
    "POST /api/verify": Target(0.08, 100.0),
    "POST /api/start": Target(0.10, 100.0),
}
MAIL_WAIT = 90.0


def arguments(argv: list[str] | None) -> argparse.Namespace:
    """Command-line options (the defaults are the published benchmark)."""
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--seconds", type=float, default=10.0, help="measured seconds a load")
    parser.add_argument("--warmup", type=float, default=2.0, help="warm-up seconds a load")
    parser.add_argument(
        "--verify-flows", type=int, default=20_000, help="pre-made flows for the measured verify"
    )
    parser.add_argument("--no-write", action="store_true", help="print only, keep RESULTS.md")
    return parser.parse_args(argv)


def measure(
    server: Server, name: str, load: Load, warm: Load, opts: argparse.Namespace
) -> tuple[Result | None, Result]:
    """A warm-up, then the measured run, of one endpoint."""
    warmed = None
    if opts.warmup > 0:
        warmed = run_wrk(server.url, server.host_header, warm, opts.warmup)
    result = run_wrk(server.url, server.host_header, load, opts.seconds)
    print(
        f"{name:<28} {result.rps:>9,.0f} req/s  p50 {result.p50:7.2f} ms"
        f"  p99 {result.p99:7.2f} ms  errors {result.errors}",
        flush=True,
    )
    return warmed, result


def main(argv: list[str] | None = None) -> int:
    """Run everything; 0 when every target is met, 1 otherwise."""
    opts = arguments(argv)
    wrk_path()
    with tempfile.TemporaryDirectory(prefix="latch-bench-") as tmp, MailSink() as sink:
        work = Path(tmp)
        data = work / "data"
        secret = fixtures.new_secret()
        warm_flows, main_flows = work / "verify-warm.txt", work / "verify-main.txt"
        warm_count = max(2000, opts.verify_flows // 4) if opts.warmup > 0 else 0
        began = time.monotonic()
        fixtures.make_flows(
            f"sqlite:///{data / 'latch.db'}",
            secret,
            {warm_flows: warm_count, main_flows: opts.verify_flows},
        )
        made = warm_count + opts.verify_flows
        print(f"pre-made {made} flows in {time.monotonic() - began:.1f} s", flush=True)
        bare = Server("bare", "bench.baseline:app", plain_env(), work / "bare")
        latch = Server("latch", "service.asgi:app", {}, work / "latch")
        latch.env = latch_env(data, latch.port, secret, sink.port)
        with bare.start("/"), latch.start("/healthz"):
            flows = (warm_flows, main_flows)
            rows, notes = run_loads(bare, latch, sink, opts, flows, data / "latch.db")
    bare_rps = rows[0].result.rps
    timings = micro.measure()
    extra = ["", "In-process token verification (`python -m bench.micro`):", ""]
    extra += micro.lines(timings)
    print()
    print(report.table(rows, bare_rps))
    for note in notes:
        print(f"- {note}")
    print("\n".join(extra))
    if not opts.no_write:
        report.write(report.section(rows, bare_rps, notes) + "\n".join(extra) + "\n")
        print(f"\nwritten to {report.RESULTS}")
    # A missed speed target is reported, not a failure (the numbers depend on the machine);
    # wrong answers or undelivered mail are failures.
    errors = [r for r in rows if r.result.errors]
    return 1 if errors or any("NOT" in note for note in notes) else 0


def run_loads(
    bare: Server,
    latch: Server,
    sink: MailSink,
    opts: argparse.Namespace,
    flows: tuple[Path, Path],
    database: Path,
) -> tuple[list[Row], list[str]]:
    """Every load, in an order where nothing left running skews a later one: start goes last
    (its mails are still being sent after wrk stops)."""
    warm_flows, main_flows = flows
    cookie = fixtures.sign_in(latch.url, sink)
    check = Load("/auth/check", headers=(f"Cookie: latch_session={cookie}",))
    jwks = Load("/.well-known/jwks.json")
    threads = str(THREADS)
    verify = Load("/api/verify", script="verify.lua", script_args=(str(main_flows), threads))
    verify_warm = Load("/api/verify", script="verify.lua", script_args=(str(warm_flows), threads))
    start = Load("/api/start", script="start.lua", script_args=("sm",))
    start_warm = Load("/api/start", script="start.lua", script_args=("sw",))
    bare_load = Load("/")

    _, bare_before = measure(bare, "GET / (bare Starlette)", bare_load, bare_load, opts)
    rows: list[Row] = []
    for name, load, warm in (
        ("GET /auth/check", check, check),
        ("GET /.well-known/jwks.json", jwks, jwks),
        ("POST /api/verify", verify, verify_warm),
    ):
        rows.append(Row(name, measure(latch, name, load, warm, opts)[1], TARGETS[name]))
    _, started = measure(latch, "POST /api/start", start, start_warm, opts)
    rows.append(Row("POST /api/start", started, TARGETS["POST /api/start"]))
    notes = [mail_note(sink, database)]
    _, bare_after = measure(bare, "GET / (bare, again)", bare_load, bare_load, opts)
    bare_rps = (bare_before.rps + bare_after.rps) / 2
    bare_row = Result(
        requests=bare_before.requests + bare_after.requests,
        seconds=bare_before.seconds + bare_after.seconds,
        rps=bare_rps,
        p50=max(bare_before.p50, bare_after.p50),
        p99=max(bare_before.p99, bare_after.p99),
        non_2xx=bare_before.non_2xx + bare_after.non_2xx,
        socket_errors=bare_before.socket_errors + bare_after.socket_errors,
    )
    notes.append(
        f"Bare Starlette measured first ({bare_before.rps:,.0f} req/s) and last"
        f" ({bare_after.rps:,.0f} req/s); the ratios use the mean, p50/p99 shown are the worse."
    )
    notes.append(
        "Errors are wrk's non-2xx/3xx answers plus socket errors (connect, read, write, timeout)."
    )
    return [Row("GET / (bare Starlette)", bare_row, None), *rows], notes


def mail_note(sink: MailSink, database: Path) -> str:
    """Wait until every accepted start's mail reached the sink; say how it went."""
    began = time.monotonic()
    prefixes = ("sm", "sw")
    while True:
        stored, sent = fixtures.started_flows(database, prefixes)
        delivered = sink.count(*prefixes)
        if (delivered == stored == sent) or time.monotonic() - began > MAIL_WAIT:
            break
        time.sleep(0.25)
    took = time.monotonic() - began
    if delivered == stored == sent:
        return (
            f"Mail: all {stored} accepted starts (warm-up and measured) had their mail delivered"
            f" to the sink, the last {took:.1f} s after the load ended."
        )
    return (
        f"Mail: NOT all delivered: {stored} starts accepted, {sent} marked sent, {delivered}"
        f" reached the sink within {took:.0f} s after the load ended."
    )
