"""One benchmark run: start the sink, the baseline and Latch; load each endpoint; report."""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bench import fixtures, micro, oidc, report, second_factor
from bench import mail as mail_bench
from bench import smtp as smtp_bench
from bench.load import THREADS, Load, Result, run_wrk, wrk_path
from bench.report import Row, Target
from bench.servers import MailSink, Server, latch_env, plain_env

TARGETS = {
    "GET /auth/check": Target(0.90, 10.0),
    "GET /.well-known/jwks.json": Target(0.90),
    "GET /.well-known/latch-configuration": Target(0.90),
    "POST /api/verify": Target(0.12, 60.0),
    "POST /api/start": Target(0.15),
}
MAIL_WAIT = 90.0
# The last mail of a rush at the sink at most this long after the load ended (issue 21).
MAIL_LAST_TARGET = 2.0
RSS_TARGET_MB = 150.0


@dataclass(frozen=True)
class Slot:
    """An endpoint the targets name that needs state made per request: `make` returns its load
    (given Latch, the sink, the work folder and the seconds the load will run; called once for
    the warm-up and once for the measured run, each with state of its own), or None when it is
    not wired, `why` saying so."""

    name: str
    target: Target
    make: Callable[[Server, MailSink, Path, float], Load | None]
    why: str = "not built yet"


SLOTS = (
    Slot("POST /oauth/token (OpenID token endpoint)", Target(0.12, 60.0), oidc.token_load),
    Slot("POST /oauth/token (ES256 client)", Target(0.12, 60.0), oidc.token_load_es256),
    Slot(
        "POST /api/second-factor (second step)",
        Target(0.12, 60.0),
        second_factor.second_factor_load,
    ),
)


def arguments(argv: list[str] | None) -> argparse.Namespace:
    """Command-line options (the defaults are the published benchmark)."""
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--seconds", type=float, default=10.0, help="measured seconds a load")
    parser.add_argument("--warmup", type=float, default=2.0, help="warm-up seconds a load")
    parser.add_argument(
        "--verify-flows", type=int, default=20_000, help="pre-made flows for the measured verify"
    )
    parser.add_argument("--no-write", action="store_true", help="print only, keep RESULTS.md")
    parser.add_argument(
        "--only",
        metavar="TEXT",
        help="load only the endpoints whose name contains TEXT (the bare one always runs;"
        " implies --no-write and skips the in-process measurements)",
    )
    opts = parser.parse_args(argv)
    if opts.only is not None:
        opts.no_write = True  # a partial run never replaces the published one
    return opts


def wanted(opts: argparse.Namespace, name: str) -> bool:
    """Whether this run loads the endpoint `name` (--only)."""
    return opts.only is None or opts.only in name


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
        main_count = opts.verify_flows if wanted(opts, "POST /api/verify") else 0
        warm_count = max(2000, main_count // 4) if opts.warmup > 0 and main_count else 0
        began = time.monotonic()
        fixtures.make_flows(
            f"sqlite:///{data / 'latch.db'}",
            secret,
            {warm_flows: warm_count, main_flows: main_count},
        )
        made = warm_count + main_count
        print(f"pre-made {made} flows in {time.monotonic() - began:.1f} s", flush=True)
        bare = Server("bare", "bench.baseline:app", plain_env(), work / "bare")
        latch = Server("latch", "service.asgi:app", {}, work / "latch")
        latch.env = latch_env(data, latch.port, secret, sink.port)
        with bare.start("/"), latch.start("/healthz"):
            flows = (warm_flows, main_flows)
            rows, notes = run_loads(bare, latch, sink, opts, flows, data / "latch.db", work)
            notes.append(rss_note(latch))
    bare_rps = rows[0].result.rps
    extra: list[str] = []
    if opts.only is None:
        extra += ["", "In-process token verification (`python -m bench.micro`):", ""]
        extra += micro.lines(micro.measure())
        extra += ["", "Composing one sign-in mail, in-process (`python -m bench.mail`):", ""]
        extra += mail_bench.lines(mail_bench.measure())
        extra += ["", "Handing one sign-in mail to SMTP, in-process (`python -m bench.smtp`):", ""]
        extra += smtp_bench.lines(smtp_bench.measure())
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
    work: Path,
) -> tuple[list[Row], list[str]]:
    """Every load, in an order where nothing left running skews a later one: start goes last
    (its mails are still being sent after wrk stops)."""
    warm_flows, main_flows = flows
    cookie = fixtures.sign_in(latch.url, sink)
    check = Load("/auth/check", headers=(f"Cookie: latch_session={cookie}",))
    jwks = Load("/.well-known/jwks.json")
    configuration = Load("/.well-known/latch-configuration")
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
        ("GET /.well-known/latch-configuration", configuration, configuration),
        ("POST /api/verify", verify, verify_warm),
    ):
        if not wanted(opts, name):
            continue
        rows.append(Row(name, measure(latch, name, load, warm, opts)[1], TARGETS[name]))
    notes: list[str] = []
    for slot in SLOTS:
        if not wanted(opts, slot.name):
            continue
        slot_warm = slot.make(latch, sink, work, opts.warmup) if opts.warmup > 0 else None
        slot_load = slot.make(latch, sink, work, opts.seconds)
        if slot_load is None:
            notes.append(f"`{slot.name}` ({slot.target.describe()}): not measured, {slot.why}.")
            continue
        warm = slot_warm or slot_load
        measured = measure(latch, slot.name, slot_load, warm, opts)[1]
        rows.append(Row(slot.name, measured, slot.target))
    if wanted(opts, "POST /api/start"):
        _, started = measure(latch, "POST /api/start", start, start_warm, opts)
        ended = time.monotonic()
        rows.append(Row("POST /api/start", started, TARGETS["POST /api/start"]))
        notes.insert(0, mail_note(sink, database, ended))
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


def rss_note(latch: Server) -> str:
    """Latch's resident memory after every load (the soak of this run)."""
    rss_kb = 0
    for line in Path(f"/proc/{latch.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss_kb = int(line.split()[1])
    mb = rss_kb / 1024
    verdict = "meets" if mb <= RSS_TARGET_MB else "**MISSES**"
    return (
        f"Memory: Latch's resident set after every load was {mb:.0f} MB"
        f" (target ≤ {RSS_TARGET_MB:g} MB: {verdict})."
    )


def mail_note(sink: MailSink, database: Path, ended: float) -> str:
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
        last = max(0.0, sink.last_at - ended)
        verdict = "meets" if last <= MAIL_LAST_TARGET else "**MISSES**"
        return (
            f"Mail: all {stored} accepted starts (warm-up and measured) had their mail delivered"
            f" to the sink, the last {last:.1f} s after the load ended"
            f" (target ≤ {MAIL_LAST_TARGET:g} s: {verdict})."
        )
    return (
        f"Mail: NOT all delivered: {stored} starts accepted, {sent} marked sent, {delivered}"
        f" reached the sink within {took:.0f} s after the load ended."
    )
