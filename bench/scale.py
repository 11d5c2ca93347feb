"""`python -m bench.scale` (`make bench-scale`): cost with data, and the purge of a backlog
under load.

1. Latch on an empty database: `/auth/check`, `/api/verify`, `/api/start`.
2. The same on a database holding 1,000,000 users with live sessions, 1,000,000 dead
   sessions and 3,000,000 old flows and mail-log rows (written straight into the tables after
   migration): each endpoint should stay within 10% of the empty run.
3. The same database with the purge switched on: `/api/start` and `/api/verify` loaded while
   it deletes the backlog in batches; p99 ≤ 100 ms and no request over 1 s.

SQLite only (PostgreSQL's batching is proven by tests/store/test_purge.py, not timed here).
`--scale 0.1` runs a tenth of the data. Prints a Markdown report; `--write` adds it to
bench/SCALE.md.
"""

from __future__ import annotations

import argparse
import contextlib
import sqlite3
import tempfile
import threading
import time
from pathlib import Path

from bench import fixtures
from bench.load import THREADS, Load, Result, run_wrk
from bench.servers import MailSink, Server, latch_env

HERE = Path(__file__).resolve().parent
FLOW_RETENTION = 86400
OLD = 2 * FLOW_RETENTION
_NUMBERS = "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?) "


def seed(database: Path, *, users: int, dead: int, flows: int) -> float:
    """Write the backlog straight into the tables; the seconds it took."""
    began = time.monotonic()
    now = int(time.time())
    old = now - OLD
    with contextlib.closing(sqlite3.connect(database)) as conn:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = OFF")
        with conn:
            conn.execute(
                _NUMBERS + "INSERT INTO users (id, email, email_key, created_at)"
                " SELECT 'u' || i, 'u' || i || '@scale.example.com',"
                " 'u' || i || '@scale.example.com', ? FROM n",
                (users, now),
            )
            conn.execute(
                _NUMBERS + "INSERT INTO sessions (id, user_id, refresh_hash, created_at,"
                " last_used_at, idle_expires_at, expires_at, ip, user_agent, auth_time)"
                " SELECT 'l' || i, 'u' || i, 'lr' || i, ?, ?, ?, ?, '192.0.2.1', 'ua', ? FROM n",
                (users, now, now, now + 7 * 86400, now + 30 * 86400, now),
            )
            conn.execute(
                _NUMBERS + "INSERT INTO sessions (id, user_id, refresh_hash, created_at,"
                " last_used_at, idle_expires_at, expires_at, ip, user_agent, auth_time)"
                " SELECT 'd' || i, 'u' || (1 + i % ?), 'dr' || i, ?, ?, ?, ?, '192.0.2.1',"
                " 'ua', ? FROM n",
                (dead, max(1, users), old, old, old, old, old),
            )
            conn.execute(
                _NUMBERS + "INSERT INTO login_flows (id, email, email_key, code_hash, link_hash,"
                " next_url, created_at, expires_at, mail_status, mail_at, ip, user_agent)"
                " SELECT 'o' || i, 'o@scale.example.com', 'o@scale.example.com', 'h', 'h', '/',"
                " ?, ?, 'sent', ?, '192.0.2.1', 'ua' FROM n",
                (flows, old, old, old),
            )
            conn.execute(
                _NUMBERS + "INSERT INTO mail_log (flow_id, email_key, created_at)"
                " SELECT 'o' || i, 'o@scale.example.com', ? FROM n",
                (flows, old),
            )
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return time.monotonic() - began


def backlog_left(database: Path) -> int:
    """Old flows and dead sessions still there (a read-only look)."""
    with contextlib.closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True)) as conn:
        cut = int(time.time()) - FLOW_RETENTION
        flows = conn.execute("SELECT COUNT(*) FROM login_flows WHERE created_at < ?", (cut,))
        dead = conn.execute(
            "SELECT COUNT(*) FROM sessions WHERE expires_at < ?", (int(time.time()),)
        )
        return int(flows.fetchone()[0]) + int(dead.fetchone()[0])


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
    """Run the three phases and print the report."""
    parser = argparse.ArgumentParser(prog="python -m bench.scale", description=__doc__)
    parser.add_argument("--scale", type=float, default=1.0, help="fraction of the data")
    parser.add_argument("--seconds", type=float, default=8.0, help="measured seconds a load")
    parser.add_argument("--write", action="store_true", help="add the report to bench/SCALE.md")
    opts = parser.parse_args(argv)
    users, dead, old_flows = (int(n * opts.scale) for n in (1_000_000, 1_000_000, 3_000_000))
    verify_count = 4000 * int(opts.seconds)
    lines = [f"## Scale run of {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}", ""]
    with tempfile.TemporaryDirectory(prefix="latch-scale-") as tmp:
        work = Path(tmp)
        secret = fixtures.new_secret()
        results: dict[str, dict[str, Result]] = {}
        for phase in ("empty", "big"):
            data = work / phase
            flows = work / f"verify-{phase}.txt"
            extra = {work / "verify-purge.txt": verify_count} if phase == "big" else {}
            fixtures.make_flows(
                f"sqlite:///{data / 'latch.db'}", secret, {flows: verify_count, **extra}
            )
            if phase == "big":
                took = seed(data / "latch.db", users=users, dead=dead, flows=old_flows)
                lines.append(
                    f"Seeded {users:,} users with live sessions, {dead:,} dead sessions and"
                    f" {old_flows:,} old flows and mail-log rows in {took:.0f} s."
                )
            print(f"{phase} database:", flush=True)
            latch = Server("latch", "service.asgi:app", {}, work / f"latch-{phase}")
            # A sink per phase: the sign-in that gets the cookie waits for its own mail.
            with MailSink() as sink:
                latch.env = latch_env(data, latch.port, secret, sink.port)
                with latch.start("/healthz", timeout=120):
                    results[phase] = loads(latch, sink, flows, opts.seconds)
        lines += ["", "| endpoint | empty req/s | big req/s | change | within 10% |"]
        lines.append("| --- | ---: | ---: | ---: | --- |")
        for name, empty in results["empty"].items():
            big = results["big"][name]
            change = big.rps / empty.rps - 1
            ok = "yes" if abs(change) <= 0.10 else "**no**"
            lines.append(f"| `{name}` | {empty.rps:,.0f} | {big.rps:,.0f} | {change:+.0%} | {ok} |")
        with MailSink() as sink:
            lines += ["", *purge_phase(work, secret, sink, opts.seconds)]
    report = "\n".join(lines) + "\n"
    print(report)
    if opts.write:
        target = HERE / "SCALE.md"
        earlier = target.read_text() if target.exists() else "# Scale results\n\n"
        head, _, rest = earlier.partition("\n## ")
        target.write_text(head.rstrip() + "\n\n" + report + ("\n## " + rest if rest else ""))
    return 0


def purge_phase(work: Path, secret: str, sink: MailSink, seconds: float) -> list[str]:
    """Start and verify under load while the purge deletes the backlog."""
    data = work / "big"
    database = data / "latch.db"
    before = backlog_left(database)
    latch = Server("latch", "service.asgi:app", {}, work / "latch-purge")
    latch.env = {**latch_env(data, latch.port, secret, sink.port), "PURGE_INTERVAL": "2"}
    finished: list[float] = []
    stop = threading.Event()

    def watch(began: float) -> None:
        while not stop.wait(0.5):
            if backlog_left(database) == 0:
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
        watcher.join(600)
        stop.set()
    done = (
        f"the backlog was gone after {finished[0]:.0f} s"
        if finished
        else "the backlog was not gone within 10 minutes"
    )
    out = [
        f"Purge under load: {before:,} old flows and dead sessions waiting; the purge"
        f" (PURGE_INTERVAL=2) began ~2 s after start-up; the loads ran for the first"
        f" {loaded:.0f} s; {done}.",
        "",
        "| endpoint during the purge | req/s | p99 ms | max ms | target |",
        "| --- | ---: | ---: | ---: | --- |",
    ]
    for name, r in measured.items():
        ok = "meets" if r.p99 <= 100 and r.max_ms <= 1000 and not r.errors else "**MISSES**"
        out.append(
            f"| `{name}` | {r.rps:,.0f} | {r.p99:.1f} | {r.max_ms:.1f} |"
            f" p99 ≤ 100 ms, max ≤ 1 s: {ok} |"
        )
    return out


if __name__ == "__main__":
    raise SystemExit(main())
