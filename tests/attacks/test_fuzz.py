"""Fuzz run: schemathesis against /openapi.json on a live Latch — no 5xx, every answer matches
the schema. Bounded (a fixed seed and number of examples), so the run is repeatable."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import httpx

from tests.conftest import ROOT, TEST_ENV
from tests.support.process import LatchProcess
from tests.support.smtp import SmtpSink, text_part

CHECKS = ",".join(
    [
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_headers_conformance",
        "response_schema_conformance",
        # RFC 9110's headers on refusals: a 405 to a method the document does not declare must
        # carry Allow (unsupported_method), an OPTIONS answer's Allow must match the document
        # (allow_header_conformance); WWW-Authenticate is declared required on every 401, so
        # response_headers_conformance above checks it. Schemathesis 4.32 has no check of its
        # own for WWW-Authenticate.
        "unsupported_method",
        "allow_header_conformance",
        "missing_required_header",
        # An operation that declares credentials refuses a request without them.
        "ignored_auth",
    ]
)


def _sign_in(base: str, sink: SmtpSink, email: str) -> str:
    r = httpx.post(f"{base}/api/start", json={"email": email}, timeout=10)
    assert r.status_code == 202, r.text
    code_match = re.search(r"\b(\d{3}) ?(\d{3})\b", text_part(sink.wait_for(email)))
    assert code_match
    r = httpx.post(
        f"{base}/api/verify",
        json={"code": "".join(code_match.groups())},
        cookies=r.cookies,
        timeout=10,
    )
    assert r.status_code == 200, r.text
    return str(r.cookies["latch_session"])


def _admin_key(env: dict[str, str], cwd: Path) -> str:
    """An admin key made as an operator makes one (`python -m service admin-keys create`)."""
    done = subprocess.run(
        [sys.executable, "-m", "service", "admin-keys", "create", "fuzz", "--json"],
        env={"PATH": "/usr/bin:/bin", **env, "PYTHONPATH": str(ROOT)},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    key: str = json.loads(done.stdout)["key"]
    return key


def _schemathesis(url: str, credential: str, cwd: Path, *select: str) -> str:
    result = subprocess.run(
        [
            str(Path(sys.executable).parent / "st"),
            "run",
            f"{url}/openapi.json",
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
            credential,
            *select,
        ],
        capture_output=True,
        text=True,
        timeout=240,
        cwd=cwd,
        env={"PATH": "/usr/bin:/bin", "HOME": str(cwd)},
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    assert re.search(r"\d+ generated, \d+ passed", output), output[-2000:]
    return output


def _only_refused(output: str) -> set[str]:
    """The operations schemathesis reports as having answered nothing but 401/403."""
    block = output.split("Authentication failed:", 1)[1:] or [""]
    listing = block[0].split("\U0001f4a1", 1)[0]  # the list ends at its hint (a light bulb)
    return set(re.findall(r"^\s+- ([A-Z]+ \S+)$", listing, re.MULTILINE))


def test_schemathesis_finds_no_5xx_and_no_schema_mismatch(tmp_path: Path) -> None:
    with SmtpSink() as sink:
        env = {
            **TEST_ENV,
            "DATA_DIR": str(tmp_path / "data"),
            "SMTP_HOST": sink.host,
            "SMTP_PORT": str(sink.port),
            "SMTP_TLS": "none",
        }
        # On localhost, so that passkeys are on and their operations are fuzzed for real.
        with LatchProcess(env, tmp_path, host_name="localhost") as latch:
            # Logout revokes the session it is given, and so does revokeSession once
            # schemathesis has read the session's id from listSessions: they get a run (and a
            # session) of their own, otherwise every signed-in operation after them sees only
            # 401s, and ignored_auth never learns whether they enforce their credentials.
            alone = ("logout", "revokeSession")
            token = _sign_in(latch.url, sink, "fuzz@example.com")
            output = _schemathesis(
                latch.url,
                f"Cookie: latch_session={token}",
                tmp_path,
                *(arg for op in alone for arg in ("--exclude-operation-id", op)),
                # The admin API takes an admin key, never a session: a run of its own below.
                "--exclude-tag",
                "admin",
            )
            # Only refresh may see nothing but 401s: its credential, the refresh cookie, is not
            # given (a reused refresh token reads as theft and would end the session mid-run).
            # Passkey registration is listed too although it answers its signed-in calls 400
            # (Latch's log shows them): no generated body can be an authenticator's signed
            # credential, so it never succeeds, and schemathesis counts that as auth failing.
            allowed = {"POST /api/refresh", "POST /api/passkeys/register"}
            assert _only_refused(output) <= allowed, output[-3000:]
            token = _sign_in(latch.url, sink, "fuzz-logout@example.com")
            _schemathesis(
                latch.url,
                f"Cookie: latch_session={token}",
                tmp_path,
                *(arg for op in alone for arg in ("--include-operation-id", op)),
            )
            # The admin API with a real key, so that every operation gets past the key (and
            # ignored_auth sees each refuse a call without one). Not createWebhook: the sender
            # would go on posting to whatever URLs the fuzzer made up.
            key = _admin_key(env, tmp_path)
            output = _schemathesis(
                latch.url,
                f"Authorization: Bearer {key}",
                tmp_path,
                "--include-tag",
                "admin",
                "--exclude-operation-id",
                "createWebhook",
            )
            assert not _only_refused(output), output[-3000:]
            assert latch.proc.poll() is None, "Latch died under the fuzz run"
            assert " 500 " not in latch.output()
