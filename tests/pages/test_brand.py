"""Branding without forking (accent colour, logo, app name) and the development mail preview."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from service import colour
from service.app import create_app
from service.errors import ConfigError
from service.web.templates import brand_css
from tests.conftest import (
    ClientFactory,
    FakeClock,
    RecordingTransport,
    SettingsFactory,
)
from tests.support.web import start_html

EMAIL = "brand@example.com"
PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6300010000050001"
    "0d0a2db40000000049454e44ae426082"
)


def _stylesheet_url(page: str) -> str:
    match = re.search(r'href="(/static/brand\.css\?v=[0-9a-f]{12})"', page)
    assert match, "no brand stylesheet on the page"
    return match.group(1)


def test_accent_colour_reaches_the_pages_as_a_stylesheet(make_client: ClientFactory) -> None:
    with make_client(ACCENT_COLOR="#0b6e4f") as client:
        page = client.get("/login").text
        css = client.get(_stylesheet_url(page))
    assert css.status_code == 200
    assert css.headers["content-type"].startswith("text/css")
    assert ":root{--accent:#0b6e4f;" in css.text
    assert "prefers-color-scheme: dark" in css.text
    assert "immutable" in css.headers["cache-control"]


def test_another_accent_colour_gets_another_stylesheet_url(make_client: ClientFactory) -> None:
    with make_client() as client:
        default = _stylesheet_url(client.get("/login").text)
    with make_client(ACCENT_COLOR="#36c") as client:
        assert _stylesheet_url(client.get("/login").text) != default


def test_brand_colours_are_readable_in_light_and_dark() -> None:
    css = brand_css("#0b6e4f")
    light, dark = css.split("@media")
    values = dict(re.findall(r"--(accent(?:-ink|-text)?):(#[0-9a-f]{6})", light))
    assert colour.contrast(values["accent-ink"], "#0b6e4f") >= colour.AA
    assert colour.contrast(values["accent-text"], colour.WHITE) >= colour.AA
    dark_values = dict(re.findall(r"--(accent(?:-ink|-text)?):(#[0-9a-f]{6})", dark))
    assert colour.contrast(dark_values["accent-text"], colour.PAPER_DARK) >= colour.AA
    assert colour.contrast(dark_values["accent-ink"], dark_values["accent"]) >= colour.AA


@pytest.mark.parametrize(
    "value",
    ["red", "#12345", "#4f46e5;", "#4f46e5}body{x:y", "rgb(0,0,0)", "#ggg", "4f46e5", "#fff"],
)
def test_accent_colour_other_than_a_dark_enough_hex_refuses_to_start(
    make_settings: SettingsFactory, value: str
) -> None:
    with pytest.raises(ConfigError, match="ACCENT_COLOR"):
        make_settings(ACCENT_COLOR=value)


def test_logo_is_served_with_its_type_and_used_by_pages_and_mail(
    make_client: ClientFactory, transport: RecordingTransport, tmp_path: Path
) -> None:
    logo = tmp_path / "logo.png"
    logo.write_bytes(PNG)
    with make_client(LOGO_FILE=str(logo), APP_NAME="Acme") as client:
        page = client.get("/login").text
        served = client.get("/logo")
        start_html(client, EMAIL)
        message = transport.wait_for(EMAIL)
    assert re.search(r'<img src="/logo\?v=[0-9a-f]{12}" alt="Acme"', page)
    assert served.status_code == 200 and served.content == PNG
    assert served.headers["content-type"] == "image/png"
    assert "sandbox" in served.headers["content-security-policy"]
    html = message.get_body(("html",))
    assert html is not None and 'src="http://127.0.0.1:8000/logo"' in html.get_content()


def test_svg_logo_cannot_run_script_when_opened_directly(
    make_client: ClientFactory, tmp_path: Path
) -> None:
    logo = tmp_path / "logo.svg"
    logo.write_text('<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>')
    with make_client(LOGO_FILE=str(logo)) as client:
        served = client.get("/logo")
    assert served.headers["content-type"] == "image/svg+xml"
    policy = served.headers["content-security-policy"]
    assert "sandbox" in policy and "default-src 'none'" in policy and "script" not in policy


def test_no_logo_setting_means_no_logo_and_a_404(client: TestClient) -> None:
    assert client.get("/logo").status_code == 404
    assert "<img" not in client.get("/login").text


@pytest.mark.parametrize("name", ["logo.gif", "logo.html", "logo"])
def test_logo_of_another_type_refuses_to_start(
    make_settings: SettingsFactory, tmp_path: Path, name: str
) -> None:
    (tmp_path / name).write_bytes(PNG)
    with pytest.raises(ConfigError, match="LOGO_FILE"):
        make_settings(LOGO_FILE=str(tmp_path / name))


def test_missing_logo_file_refuses_to_start(make_settings: SettingsFactory, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="LOGO_FILE"):
        make_settings(LOGO_FILE=str(tmp_path / "nowhere.png"))


def test_mail_preview_renders_the_sign_in_mail_with_sample_values(
    client: TestClient, transport: RecordingTransport
) -> None:
    preview = client.get("/dev/mail/preview")
    text = client.get("/dev/mail/preview", params={"part": "text"})
    assert preview.status_code == 200 and preview.headers["content-type"].startswith("text/html")
    assert "Sign in to Latch" in preview.text and "123456" in preview.text
    assert "sample-link-for-preview" in preview.text
    policy = preview.headers["content-security-policy"]
    assert "sandbox" in policy and "script-src" not in policy and "form-action 'none'" in policy
    assert text.headers["content-type"].startswith("text/plain") and "123 456" in text.text
    assert transport.messages == []  # a preview sends nothing


def test_mail_preview_is_a_404_outside_development(
    make_settings: SettingsFactory, clock: FakeClock, transport: RecordingTransport
) -> None:
    # Production settings (validation would also want keys on disk: HS256 needs none).
    base = make_settings(JWT_ALGORITHM="HS256")
    settings = dataclasses.replace(
        base,
        public_url="https://login.example.com",
        mail=dataclasses.replace(
            base.mail, smtp_host="127.0.0.1", from_address="login@example.com"
        ),
    )
    assert not settings.development
    app = create_app(settings, mail_transport=transport, clock=clock)
    with TestClient(app, base_url="https://login.example.com") as client:
        assert client.get("/dev/mail/preview").status_code == 404
        assert client.get("/login").status_code == 200
