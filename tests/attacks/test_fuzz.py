"""Fuzz run: schemathesis against /openapi.json on a live Latch — no 5xx, every answer matches
the schema. Bounded (a fixed seed and number of examples), so the run is repeatable."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import httpx

from tests.conftest import TEST_ENV
from tests.support.process import LatchProcess
from tests.support.smtp import SmtpSink, text_part

CHECKS = ",".join(
    [
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_headers_conformance",
        "response_schema_conformance",
    ]
)


def _sign_in(base: str, sink: SmtpSink) -> str:
    r = httpx.post(f"{base}/api/start", json={"email": "fuzz@example.com"}, timeout=10)
    assert r.status_code == 202, r.text
    code_match = re.search(r"\b(\d{3}) ?(\d{3})\b", text_part(sink.wait_for("fuzz@example.com")))
    assert code_match
    r = httpx.post(
        f"{base}/api/verify",
        json={"code": "".join(code_match.groups())},
        cookies=r.cookies,
        timeout=10,
    )
    assert r.status_code == 200, r.text
    return str(r.cookies["latch_session"])


def test_schemathesis_finds_no_5xx_and_no_schema_mismatch(tmp_path: Path) -> None:
    with SmtpSink() as sink:
        env = {
            **TEST_ENV,
            "DATA_DIR": str(tmp_path / "data"),
            "SMTP_HOST": sink.host,
            "SMTP_PORT": str(sink.port),
            "SMTP_TLS": "none",
        }
        with LatchProcess(env, tmp_path) as latch:
            token = _sign_in(latch.url, sink)
            result = subprocess.run(
                [
                    str(Path(sys.executable).parent / "st"),
                    "run",
                    f"{latch.url}/openapi.json",
                    "--max-examples",
                    "25",
                    "--seed",
                    "1",
                    "--checks",
                    CHECKS,
                    "--phases",
                    "examples,coverage,fuzzing",
                    "--no-color",
                    "-H",
                    f"Cookie: latch_session={token}",
                ],
                capture_output=True,
                text=True,
                timeout=240,
                cwd=tmp_path,
                env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
            )
            output = result.stdout + result.stderr
            assert result.returncode == 0, output[-4000:]
            assert re.search(r"\d+ generated, \d+ passed", output), output[-2000:]
            assert latch.proc.poll() is None, "Latch died under the fuzz run"
            assert " 500 " not in latch.output()
