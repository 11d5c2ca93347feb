"""Second factors against Latch as a real uvicorn process over TCP, mailing through a real
SMTP server, on the wall clock: set up the app, sign in with its code and with a recovery code,
and leave no factor secret in anything the process wrote."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import ROOT, TEST_ENV, mail_code, text_of
from tests.support.otp import oathtool
from tests.support.process import LatchProcess
from tests.support.smtp import SmtpSink
from tests.support.wait import eventually

EMAIL = "jo@example.com"


@pytest.fixture
def sink() -> Iterator[SmtpSink]:
    with SmtpSink() as server:
        yield server


def first_step(client: httpx.Client, sink: SmtpSink) -> httpx.Response:
    client.cookies.clear()
    before = len([m for m in sink.messages_for(EMAIL) if "Sign in" in m["Subject"]])
    started = client.post("/api/start", json={"email": EMAIL})
    assert started.status_code == 202, started.text

    def mailed() -> str | None:
        signins = [m for m in sink.messages_for(EMAIL) if "Sign in" in m["Subject"]]
        return mail_code(signins[before]) if len(signins) > before else None

    code = eventually(mailed, "the sign-in mail")
    return client.post("/api/verify", json={"flow_id": started.json()["flow_id"], "code": code})


def next_code(secret: str) -> str:
    """The code of the step after now's: accepted (±1) and later than any step used before."""
    return oathtool(secret, int(time.time()) + 30)


def test_authenticator_and_recovery_code_sign_ins_over_tcp(tmp_path: Path, sink: SmtpSink) -> None:
    env = {
        **TEST_ENV,
        "DATA_DIR": str(tmp_path / "data"),
        "EMAIL_TEMPLATES_DIR": str(ROOT / "email_templates"),
        "SMTP_HOST": sink.host,
        "SMTP_PORT": str(sink.port),
        "SMTP_TLS": "none",
        "LOG_LEVEL": "DEBUG",
    }
    with LatchProcess(env, tmp_path / "run") as latch:
        with httpx.Client(base_url=latch.url, timeout=10) as client:
            assert first_step(client, sink).status_code == 200
            secret = client.post("/api/factors/totp", json={}).json()["secret"]
            confirmed = client.post(
                "/api/factors/totp/confirm", json={"code": oathtool(secret, int(time.time()))}
            )
            assert confirmed.status_code == 200, confirmed.text
            codes = confirmed.json()["recovery_codes"]
            eventually(
                lambda: [m for m in sink.messages_for(EMAIL) if "was added" in m["Subject"]],
                "the factor-added notice",
            )

            due = first_step(client, sink)
            assert due.json()["next_step"] == "second_factor"
            assert client.get("/auth/check").status_code == 401
            done = client.post(
                "/api/second-factor", json={"method": "totp", "code": next_code(secret)}
            )
            assert done.status_code == 200, done.text
            assert client.get("/auth/check").headers["x-latch-aal"] == "2"

            first_step(client, sink)
            rc = client.post(
                "/api/second-factor", json={"method": "recovery_code", "code": codes[0]}
            )
            assert rc.status_code == 200, rc.text
            used = eventually(
                lambda: [m for m in sink.messages_for(EMAIL) if "recovery code" in m["Subject"]],
                "the recovery-code notice",
            )
            assert "9 recovery codes left" in text_of(used[0])
        # The sink holds the mail a moment before Latch has read the server's reply and logged.

        def logged() -> str | None:
            out = latch.output()
            return out if "mail.notice kind=recovery_code_used" in out else None

        output = eventually(logged, "the notice's log line")
    assert "factor.added method=totp" in output
    for value in [secret, secret.lower(), *codes, *(c.replace("-", "") for c in codes)]:
        assert value not in output, "a factor secret reached the process output"
