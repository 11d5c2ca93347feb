"""Security notices: what each says, that none carries a secret, and that a deployment whose
templates predate them still sends them."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from service.db import open_database
from service.delivery.mail import Mailer
from service.delivery.notices import Notice, Notices
from tests.conftest import ROOT, FakeClock, RecordingTransport, SettingsFactory, text_of


def _notices(settings_dir: SettingsFactory, transport: RecordingTransport, **env: str) -> Notices:
    settings = settings_dir(**env)
    database = open_database("sqlite:///:memory:")
    return Notices(settings, Mailer(settings, transport, database, FakeClock()))


@pytest.mark.parametrize(
    ("notice", "subject", "says"),
    [
        (
            Notice(kind="factor_added", to="ida@example.com", factor="an authenticator app"),
            "A second factor was added to your Latch account",
            "An authenticator app was added",
        ),
        (
            Notice(kind="factor_removed", to="ida@example.com", factor="an authenticator app"),
            "A second factor was removed from your Latch account",
            "An authenticator app was removed",
        ),
        (
            Notice(kind="recovery_code_used", to="ida@example.com", left=1),
            "A recovery code was used to sign in to Latch",
            "You have 1 recovery code left.",
        ),
    ],
)
def test_each_notice_says_what_happened(
    make_settings: SettingsFactory,
    transport: RecordingTransport,
    notice: Notice,
    subject: str,
    says: str,
) -> None:
    message = _notices(make_settings, transport).render(notice)
    assert message["Subject"] == subject and message["To"] == "ida@example.com"
    assert says in text_of(message)
    assert "http://127.0.0.1:8000/account" in text_of(message)
    part = message.get_body(("html",))
    assert part is not None and says.split()[0] in str(part.get_content())


def test_templates_dir_without_notices_falls_back_to_latchs_own(
    make_settings: SettingsFactory, transport: RecordingTransport, tmp_path: Path
) -> None:
    own = tmp_path / "mine"
    own.mkdir()
    for name in ("subject.txt", "body.txt", "body.html"):
        (own / name).write_text((ROOT / "email_templates" / name).read_text())
    notices = _notices(make_settings, transport, EMAIL_TEMPLATES_DIR=str(own))
    message = notices.render(Notice(kind="factor_added", to="ida@example.com", factor="x"))
    assert "was added" in str(message["Subject"])


def test_a_notice_is_sent_in_the_background_through_the_transport(
    make_settings: SettingsFactory, transport: RecordingTransport
) -> None:
    notices = _notices(make_settings, transport)

    async def send() -> None:
        notices.send(Notice(kind="recovery_code_used", to="ida@example.com", left=9))
        await notices.drain(5)

    asyncio.run(send())
    assert transport.envelopes[-1][1] == ("ida@example.com",)
    assert "9 recovery codes left" in text_of(transport.messages[-1])
