"""`python -m bench.profile`: sample Latch with py-spy while wrk loads one hot path at a time.

Needs py-spy (`.venv/bin/pip install py-spy`; not a project dependency: it is only for digging).
Prints, per endpoint, the functions where the samples land (self) and the ones they pass
through (inclusive), and keeps the raw collapsed stacks in bench/profiles/ for flame graphs.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import tempfile
import threading
from collections import Counter
from pathlib import Path

from bench import fixtures
from bench.load import THREADS, Load, run_wrk
from bench.servers import MailSink, Server, latch_env

OUT = Path(__file__).resolve().parent / "profiles"


_LINE = re.compile(r":\d+\)$")
# Inclusive time is shown for these only: the framework frames every request passes through
# would otherwise fill the list.
_INTERESTING = (
    "service/", "jwt/", "email_validator/", "itsdangerous/", "aiosmtplib/", "json/", "email/",
    "jinja2/", "cookies", "cryptography", "hmac", "secrets", "random",
)  # fmt: skip


def summarise(raw: Path, top: int) -> str:
    """Top self and inclusive functions of py-spy's collapsed stacks, as % of samples."""
    own: Counter[str] = Counter()
    through: Counter[str] = Counter()
    threads: Counter[str] = Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack:
            continue
        count = int(count_text)
        # Line numbers dropped: a function's samples are counted together.
        frames = [_LINE.sub(")", frame) for frame in stack.split(";")]
        total += count
        threads[frames[0]] += count
        own[frames[-1]] += count
        for frame in set(frames[1:]):
            if any(mark in frame for mark in _INTERESTING):
                through[frame] += count
    lines = [f"  {total} samples; by thread:"]
    lines += [f"    {100 * n / total:5.1f}%  {name}" for name, n in threads.most_common()]
    for title, counter in (("self", own), ("inclusive (Latch and crypto/mail libs)", through)):
        lines.append(f"  top {title}:")
        for frame, count in counter.most_common(top):
            lines.append(f"    {100 * count / max(total, 1):5.1f}%  {frame}")
    return "\n".join(lines)


def profile(server: Server, name: str, load: Load, seconds: float, *, gil: bool = False) -> Path:
    """wrk on `load` while py-spy samples the server; the raw stacks' file. With `gil`, only
    the thread holding the GIL is sampled: where the Python time goes, without the time
    threads spend waiting for the GIL (which plain samples charge to whatever frame waits)."""
    py_spy = shutil.which("py-spy") or str(Path(fixtures.__file__).parents[1] / ".venv/bin/py-spy")
    OUT.mkdir(exist_ok=True)
    raw = OUT / f"{name}.txt"
    run_wrk(server.url, server.host_header, load, 1.0)  # warm-up
    # S603: our own command line (py-spy, a pid, numbers, a path of ours).
    spy = subprocess.Popen(  # noqa: S603
        [py_spy, "record", "-p", str(server.pid), "-d", f"{int(seconds)}", "-r", "200"]
        + ["-f", "raw", "-o", str(raw), "--threads"]
        + (["--gil"] if gil else []),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    result = run_wrk(server.url, server.host_header, load, seconds)
    _, err = spy.communicate(timeout=seconds + 30)
    if spy.returncode != 0:
        raise RuntimeError(f"py-spy failed: {err.decode(errors='replace')}")
    print(f"\n{name}: {result.rps:,.0f} req/s under py-spy, p99 {result.p99:.1f} ms")
    return raw


def main(argv: list[str] | None = None) -> int:
    """Profile /auth/check, /api/verify and /api/start."""
    parser = argparse.ArgumentParser(prog="python -m bench.profile")
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--gil", action="store_true", help="sample only the GIL's holder")
    parser.add_argument("--only", help="profile only the loads whose name contains this")
    opts = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="latch-profile-") as tmp, MailSink() as sink:
        work = Path(tmp)
        data, secret, flows = work / "data", fixtures.new_secret(), work / "flows.txt"
        fixtures.make_flows(f"sqlite:///{data / 'latch.db'}", secret, {flows: 30_000})
        latch = Server("latch", "service.asgi:app", {}, work / "latch")
        latch.env = latch_env(data, latch.port, secret, sink.port)
        with latch.start("/healthz"):
            cookie = fixtures.sign_in(latch.url, sink)
            loads = {
                "auth_check": Load("/auth/check", headers=(f"Cookie: latch_session={cookie}",)),
                "verify": Load(
                    "/api/verify", script="verify.lua", script_args=(str(flows), str(THREADS))
                ),
                "start": Load("/api/start", script="start.lua", script_args=("sp",)),
            }
            for name, load in loads.items():
                if opts.only and opts.only not in name:
                    continue
                raw = profile(latch, name, load, opts.seconds, gil=opts.gil)
                print(summarise(raw, opts.top), flush=True)
            # Let the mail queue drain before shutdown (bounded by the shutdown grace).
            threading.Event().wait(1.0)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
