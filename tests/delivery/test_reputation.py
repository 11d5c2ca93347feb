"""What receiving mail systems make of the real sign-in mail: SpamAssassin's offline rules and
a DKIM verifier, both fed the exact bytes aiosmtpd received from Latch's SMTP transport."""

from __future__ import annotations

import asyncio
import base64
import os
import re
import subprocess
import time
from collections.abc import Callable
from html.parser import HTMLParser
from pathlib import Path

import dkim
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from starlette.testclient import TestClient

from service.app import create_app
from service.db import open_database
from service.delivery.account_mail import Notice, NoticeKind
from service.delivery.mail import Mailer
from service.delivery.notices import Notice as FactorNotice
from service.delivery.notices import Notices
from service.delivery.transports import default_transport
from service.settings import Settings
from tests.conftest import BASE_URL, mail_code, start
from tests.support.smtp import Delivery, SmtpSink, html_part

MakeSettings = Callable[..., Settings]
ADA = "ada@example.com"
SPAMASSASSIN = "/usr/bin/spamassassin"


def delivered_mail(settings: Settings, sink: SmtpSink) -> Delivery:
    """Start one sign-in through the real SMTP transport; the delivery aiosmtpd accepted."""
    with TestClient(create_app(settings), base_url=BASE_URL) as client:
        start(client, ADA)
        sink.wait_for(ADA)
    return sink.deliveries[-1]


def smtp_env(sink: SmtpSink, **env: str) -> dict[str, str]:
    return {
        "SMTP_HOST": "127.0.0.1",
        "SMTP_PORT": str(sink.port),
        "SMTP_TLS": "none",
        "MAIL_FROM": "Latch <login@example.com>",
        **env,
    }


def write_rsa_key(path: Path, bits: int = 2048) -> bytes:
    """A PEM RSA private key at `path`; returns the DNS TXT record publishing its public half."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    der = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return b"v=DKIM1; k=rsa; p=" + base64.b64encode(der)


def dns_of(records: dict[bytes, bytes]) -> Callable[..., bytes | None]:
    """dkimpy's dnsfunc over a fixed table: the test never asks real DNS."""

    def lookup(name: bytes, timeout: int = 5) -> bytes | None:
        return records.get(name.rstrip(b"."))

    return lookup


# --- SpamAssassin ------------------------------------------------------------------------------


def spamassassin_score(raw: bytes, home: Path) -> tuple[float, str]:
    """(score, rules hit) from Debian's SpamAssassin with local tests only (-L: no DNS, no
    network), no Bayes and no user preferences, so the verdict depends on the mail alone."""
    if not os.access(SPAMASSASSIN, os.X_OK):
        pytest.fail(f"{SPAMASSASSIN} is missing: install Debian's spamassassin (.ci/run does)")
    prefs = home / "user_prefs"
    prefs.write_text("use_bayes 0\n")
    result = subprocess.run(
        [
            SPAMASSASSIN,
            "-L",
            "-t",
            "-p",
            str(prefs),
            "--cf=use_bayes 0",
            "--cf=use_auto_whitelist 0",
        ],
        input=raw,
        capture_output=True,
        env={"PATH": "/usr/bin:/bin", "HOME": str(home), "LANG": "C.UTF-8"},
        timeout=120,
        check=True,
    )
    out = result.stdout.decode("utf-8", "replace")
    status = re.search(r"^X-Spam-Status: .*?score=(-?[\d.]+).*?(?=^\S)", out, re.M | re.S)
    assert status, out[-2000:]
    return float(status.group(1)), " ".join(status.group(0).split())


def test_spamassassin_scores_the_real_sign_in_mail_at_most_zero(
    make_settings: MakeSettings, tmp_path: Path
) -> None:
    with SmtpSink() as sink:
        delivery = delivered_mail(make_settings(**smtp_env(sink)), sink)
    score, status = spamassassin_score(delivery.raw, tmp_path)
    assert score <= 0, status
    assert "HTML_FONT_LOW_CONTRAST" not in status


class _VisibleText(HTMLParser):
    """The text a reader sees, in order (the <head>'s title left out)."""

    def __init__(self) -> None:
        super().__init__()
        self.parts: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._skip += tag in ("head", "title", "style")

    def handle_endtag(self, tag: str) -> None:
        self._skip -= tag in ("head", "title", "style")

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self.parts.append(data)


def test_preview_line_is_visible_text_that_ends_before_the_code(
    make_settings: MakeSettings,
) -> None:
    with SmtpSink() as sink:
        message = delivered_mail(make_settings(**smtp_env(sink)), sink).message
    html = html_part(message)
    assert "display:none" not in html.replace(" ", "") and "&zwnj;" not in html
    reader = _VisibleText()
    reader.feed(html)
    text = " ".join(" ".join(reader.parts).split())
    assert text.startswith("Your Latch sign-in code and link are below."), text[:200]
    # Inbox previews show about 100-140 characters: the code (lock screens) comes well after.
    assert text.index(mail_code(message)) > 160, text[:200]


def test_sign_in_mail_asks_exchange_not_to_auto_reply(make_settings: MakeSettings) -> None:
    # Out-of-office and read receipts to login@ are noise at best and backscatter at worst.
    with SmtpSink() as sink:
        message = delivered_mail(make_settings(**smtp_env(sink)), sink).message
    assert message["X-Auto-Response-Suppress"] == "All"
    assert message["Auto-Submitted"] == "auto-generated"


# --- DKIM --------------------------------------------------------------------------------------


def test_dkim_signed_mail_verifies_against_the_published_key(
    make_settings: MakeSettings, tmp_path: Path
) -> None:
    record = write_rsa_key(tmp_path / "dkim.pem")
    with SmtpSink() as sink:
        settings = make_settings(
            **smtp_env(
                sink,
                DKIM_DOMAIN="example.com",
                DKIM_SELECTOR="latch2026",
                DKIM_PRIVATE_KEY_FILE=str(tmp_path / "dkim.pem"),
            )
        )
        delivery = delivered_mail(settings, sink)
    dns = dns_of({b"latch2026._domainkey.example.com": record})
    assert dkim.verify(delivery.raw, dnsfunc=dns)
    signature = delivery.message["DKIM-Signature"]
    tags = dict(
        t.strip().split("=", 1) for t in "".join(str(signature).split()).split(";") if t.strip()
    )
    assert tags["d"] == "example.com" and tags["s"] == "latch2026"
    signed = tags["h"].lower().split(":")
    for header in ("from", "to", "subject", "date", "message-id"):
        assert header in signed
    assert mail_code(delivery.message)  # still the usable sign-in mail


def test_dkim_signature_breaks_when_the_mail_is_altered(
    make_settings: MakeSettings, tmp_path: Path
) -> None:
    record = write_rsa_key(tmp_path / "dkim.pem")
    with SmtpSink() as sink:
        settings = make_settings(
            **smtp_env(
                sink,
                DKIM_DOMAIN="example.com",
                DKIM_SELECTOR="s1",
                DKIM_PRIVATE_KEY_FILE=str(tmp_path / "dkim.pem"),
            )
        )
        raw = delivered_mail(settings, sink).raw
    dns = dns_of({b"s1._domainkey.example.com": record})
    assert not dkim.verify(raw.replace(b"Subject: Sign in", b"Subject: Sign on"), dnsfunc=dns)
    other = write_rsa_key(tmp_path / "other.pem")
    assert not dkim.verify(raw, dnsfunc=dns_of({b"s1._domainkey.example.com": other}))


def test_without_dkim_settings_nothing_is_signed(make_settings: MakeSettings) -> None:
    with SmtpSink() as sink:
        message = delivered_mail(make_settings(**smtp_env(sink)), sink).message
    assert message["DKIM-Signature"] is None


def test_every_notice_is_signed_and_suppresses_auto_replies(
    make_settings: MakeSettings, tmp_path: Path
) -> None:
    """The mails beside the sign-in one (§11's factor notices, passkeys' among them; §14's
    new-device, change-of-address and old-address mails) take the general path, and still
    leave as the sign-in mail does: DKIM-signed as sent, no auto-replies asked for."""
    record = write_rsa_key(tmp_path / "dkim.pem")
    kinds = {
        "new-device@example.com": Notice(
            kind=NoticeKind.NEW_DEVICE,
            to="new-device@example.com",
            ref="n1",
            expires_at=2**40,
            context={
                "when": "12:00 UTC",
                "device": "Firefox on Linux",
                "ip": "192.0.2.7",
                "link": f"{BASE_URL}/account/not-me?t=x",
                "link_days": "7",
            },
        ),
        "confirm@example.com": Notice(
            kind=NoticeKind.CONFIRM_ADDRESS,
            to="confirm@example.com",
            ref="c1",
            expires_at=2**40,
            context={
                "code": "123456",
                "code_display": "123 456",
                "link": f"{BASE_URL}/account/email/link?t=x",
                "expires_minutes": "10",
            },
        ),
        "old@example.com": Notice(
            kind=NoticeKind.ADDRESS_CHANGED,
            to="old@example.com",
            ref="a1",
            expires_at=2**40,
            context={"when": "12:00 UTC", "new_masked": "n***@example.com"},
        ),
    }
    factor_notices = {
        "totp@example.com": FactorNotice(
            kind="factor_added", to="totp@example.com", factor="an authenticator app"
        ),
        "passkey-added@example.com": FactorNotice(
            kind="factor_added", to="passkey-added@example.com", factor="a passkey"
        ),
        "passkey-removed@example.com": FactorNotice(
            kind="factor_removed", to="passkey-removed@example.com", factor="a passkey"
        ),
        "recovery@example.com": FactorNotice(
            kind="recovery_code_used", to="recovery@example.com", left=3
        ),
    }
    with SmtpSink() as sink:
        settings = make_settings(
            **smtp_env(
                sink,
                DKIM_DOMAIN="example.com",
                DKIM_SELECTOR="n1",
                DKIM_PRIVATE_KEY_FILE=str(tmp_path / "dkim.pem"),
            )
        )

        async def send_all() -> None:
            mailer = Mailer(
                settings,
                default_transport(settings),
                open_database("sqlite:///:memory:"),
                time.time,
            )
            notices = Notices(settings, mailer)
            mailer.start()
            for notice in kinds.values():
                assert mailer.notify(notice)
            for factor_notice in factor_notices.values():
                notices.send(factor_notice)
            await notices.drain(10)
            await mailer.drain(10)

        asyncio.run(send_all())
        for to in (*kinds, *factor_notices):
            sink.wait_for(to)
        deliveries = {d.message["To"]: d for d in sink.deliveries}
    dns = dns_of({b"n1._domainkey.example.com": record})
    assert set(deliveries) == {*kinds, *factor_notices}
    for to, delivery in deliveries.items():
        assert dkim.verify(delivery.raw, dnsfunc=dns), to
        assert delivery.message["X-Auto-Response-Suppress"] == "All", to
        assert delivery.message["Auto-Submitted"] == "auto-generated", to
