"""The composed sign-in mail (service/delivery/compose.py) says exactly what the templates say:
the shortcut of rendering once and filling in changes the cost of a mail, never its text."""

from __future__ import annotations

import time
from collections.abc import Callable
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest

from service.delivery.compose import plain_address
from service.delivery.mail import MailJob, Renderer
from service.settings import Settings
from tests.conftest import BASE_URL
from tests.support.mail import write_templates

MakeSettings = Callable[..., Settings]
CHROME = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/140.0 Safari/537.36"


def _job(**overrides: Any) -> MailJob:
    fields: dict[str, Any] = {
        "flow_id": "f" * 32,
        "seq": 1,
        "to": "ada@example.com",
        "code": "123456",
        "link": f"{BASE_URL}/login/link?t=eyJmIjoiYWJjIn0.ZmQ1.c2lnbmF0dXJl",
        "expires_at": int(time.time()) + 600,
        "ip": "203.0.113.9",
        "user_agent": CHROME,
    }
    fields.update(overrides)
    return MailJob(**fields)


def _parts(message: EmailMessage) -> list[tuple[str, str]]:
    """(content type, text with LF line ends) of each part."""
    return [
        (part.get_content_type(), str(part.get_content()).replace("\r\n", "\n"))
        for part in message.iter_parts()
    ]


def _headers(message: EmailMessage) -> dict[str, str]:
    return {name: str(message[name]) for name in ("Subject", "From", "To", "Auto-Submitted")}


JOBS = [
    _job(),
    _job(ip="", user_agent=""),
    _job(ip="2001:db8::1", user_agent="curl/8.0"),
    _job(to="o'brien&sons+tag@mail.example.com", link=f"{BASE_URL}/login/link?t=a&b<c>"),
    _job(code="000000", user_agent="Evil\r\nBcc: victim@example.net"),
]


@pytest.mark.parametrize("job", JOBS)
def test_composed_mail_reads_as_the_templates_render_it(
    make_settings: MakeSettings, job: MailJob
) -> None:
    renderer = Renderer(make_settings())
    composed, general = renderer.render(job), renderer.render_general(job)
    assert _parts(composed) == _parts(general)
    assert _headers(composed) == _headers(general)
    # The shortcut was taken (a shape exists for this mail), so this compared two paths.
    assert any(renderer._composer._shapes.values())


def test_composed_mail_is_seven_bit_with_short_lines(make_settings: MakeSettings) -> None:
    data = Renderer(make_settings()).mime(_job(link=f"{BASE_URL}/login/link?t=" + "x" * 300))
    assert data.isascii()
    assert b"\n" not in data.replace(b"\r\n", b"")
    assert max(len(line) for line in data.split(b"\r\n")) <= 78


def test_a_template_that_changes_a_value_is_rendered_by_jinja(
    make_settings: MakeSettings, tmp_path: Path
) -> None:
    templates = write_templates(
        tmp_path / "templates",
        subject="Sign in\n",
        body="{{ email|upper }} {{ code_display }} {{ link[:30] }}\n",
        html="<p>{{ code|reverse }}</p>\n",
    )
    renderer = Renderer(make_settings(EMAIL_TEMPLATES_DIR=str(templates)))
    job = _job()
    assert _parts(renderer.render(job)) == _parts(renderer.render_general(job))
    assert "ADA@EXAMPLE.COM" in _parts(renderer.render(job))[0][1]
    assert "654321" in _parts(renderer.render(job))[1][1]


def test_a_value_longer_than_the_probes_takes_the_general_path(
    make_settings: MakeSettings, tmp_path: Path
) -> None:
    # A template that cuts the link at 400 characters: no probe is that long, so only a mail
    # whose link is longer shows the difference, and must still be cut.
    templates = write_templates(
        tmp_path / "templates", subject="Sign in\n", body="{{ link|truncate(400) }}\n"
    )
    renderer = Renderer(make_settings(EMAIL_TEMPLATES_DIR=str(templates)))
    job = _job(link=f"{BASE_URL}/login/link?t=" + "y" * 600)
    assert _parts(renderer.render(job)) == _parts(renderer.render_general(job))
    assert len(_parts(renderer.render(job))[0][1]) < 420


def test_a_subject_with_a_per_mail_value_is_rendered_by_jinja(
    make_settings: MakeSettings, tmp_path: Path
) -> None:
    templates = write_templates(
        tmp_path / "templates", subject="Sign in, {{ email }}\n", body="{{ code }}\n"
    )
    renderer = Renderer(make_settings(EMAIL_TEMPLATES_DIR=str(templates)))
    assert renderer.render(_job())["Subject"] == "Sign in, ada@example.com"
    assert renderer.render(_job(to="bob@example.com"))["Subject"] == "Sign in, bob@example.com"


@pytest.mark.parametrize(
    "address",
    [
        "=?iso-8859-1?q?attacker=40evil.example=2c?=boss@example.com",
        "a=b@example.com",
        "what?@example.com",
        '"quoted"@example.com',
        "a..b@example.com",
        "ü@example.com",
    ],
)
def test_an_address_a_header_could_read_otherwise_is_never_composed(address: str) -> None:
    # These go the general path, where Address() refuses what a parser would split.
    assert not plain_address(address)
