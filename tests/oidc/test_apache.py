"""A real relying party: Debian's Apache with mod_auth_openidc, configured by
docs/apache-openidc.conf, signs people in through a Latch under uvicorn over TCP.

The browser is httpx holding cookies and following what a browser follows (redirects and
Latch's forwarding page); the person types the code from the mail on Latch's pages. Two
Apaches are two apps: the second signs in without a new code (single sign-on), and signing out
through mod_auth_openidc ends the Latch session (RP-initiated logout)."""

from __future__ import annotations

import os
import re
import secrets
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
from playwright.sync_api import expect, sync_playwright

from tests.browser.test_pages import CHROMIUM, CHROMIUM_ARGS
from tests.conftest import ROOT, mail_code
from tests.support.net import HOST, free_port
from tests.support.oidc import add_client_cli, browse
from tests.support.server import Latch, running_latch
from tests.support.wait import eventually

APACHE = "/usr/sbin/apache2"
MODULE = "/usr/lib/apache2/modules/mod_auth_openidc.so"
CONF = ROOT / "docs" / "apache-openidc.conf"
EMAIL = "uma@example.com"
PAGE = '<p>Signed in as <!--#echo var="OIDC_CLAIM_email" --></p>\n'


@contextmanager
def apache(prefix: Path, latch: Latch, name: str) -> Iterator[str]:
    """One Apache protecting /protected with Latch as its provider; yields its URL."""
    port = free_port()
    url = f"http://{HOST}:{port}"
    client = add_client_cli(
        latch.settings.storage.data_dir,
        latch.url,
        name,
        "--redirect-uri",
        f"{url}/protected/redirect_uri",
        "--post-logout-redirect-uri",
        f"{url}/loggedout.html",
        "--first-party",
    )
    (prefix / "htdocs" / "protected").mkdir(parents=True)
    (prefix / "htdocs" / "protected" / "index.shtml").write_text(PAGE)
    (prefix / "htdocs" / "loggedout.html").write_text("<p>Signed out of the app</p>\n")
    # As root, Apache's workers run as www-data (Debian's apache2 refuses root): the prefix is
    # a world-readable temp dir of its own, outside pytest's 0700 one.
    user = "User www-data\nGroup www-data" if os.geteuid() == 0 else ""
    values = {
        "@PREFIX@": str(prefix),
        "@USER@": user,
        "@LISTEN@": f"{HOST}:{port}",
        "@LATCH_URL@": latch.url,
        "@CLIENT_ID@": client["client_id"],
        "@CLIENT_SECRET@": client["client_secret"],
        "@APP_URL@": url,
        "@PASSPHRASE@": secrets.token_hex(16),
        "@COOKIE@": f"{name.lower()}_session",
    }
    conf = CONF.read_text()
    for key, value in values.items():
        conf = conf.replace(key, value)
    (prefix / "httpd.conf").write_text(conf)
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    proc = subprocess.Popen(
        [APACHE, "-d", str(prefix), "-f", str(prefix / "httpd.conf"), "-DFOREGROUND"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        _wait_listening(port, proc, prefix)
        yield url
    finally:
        proc.terminate()
        proc.wait(10)
        if proc.stderr:
            proc.stderr.close()


def _wait_listening(port: int, proc: subprocess.Popen[bytes], prefix: Path) -> None:
    def listening() -> bool:
        if proc.poll() is not None:
            log = (
                (prefix / "error.log").read_text(errors="replace")
                if (prefix / "error.log").exists()
                else ""
            )
            err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
            raise RuntimeError(f"apache2 exited with {proc.returncode}: {err}{log}")
        with socket.socket() as sock:
            return sock.connect_ex((HOST, port)) == 0

    eventually(listening, "apache2 to listen")


def _readable(path: Path) -> Path:
    path.mkdir(parents=True)
    for each in (path, path.parent):
        each.chmod(0o755)
    return path


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Latch, str, str]]:
    for path in (APACHE, MODULE):
        if not os.path.exists(path):
            pytest.fail(f"{path} is missing: install apache2 and libapache2-mod-auth-openidc")
    root = tmp_path_factory.mktemp("apache")
    with (
        tempfile.TemporaryDirectory(prefix="latch-apache-") as shared,
        running_latch(root / "data") as latch,
        apache(_readable(Path(shared) / "one"), latch, "One") as one,
        apache(_readable(Path(shared) / "two"), latch, "Two") as two,
    ):
        yield latch, one, two


def test_apache_signs_in_through_latch_then_a_second_app_by_single_sign_on_then_logs_out(
    stack: tuple[Latch, str, str],
) -> None:
    latch, one, two = stack
    with httpx.Client(timeout=20) as browser:
        _, page = browse(browser, f"{one}/protected/", latch.transport, EMAIL)
        assert page is not None and page.status_code == 200, page and page.text[:500]
        assert f"Signed in as {EMAIL}" in page.text
        mails = len(latch.transport.messages)

        _, page = browse(browser, f"{two}/protected/", latch.transport, EMAIL)
        assert page is not None and f"Signed in as {EMAIL}" in page.text
        assert len(latch.transport.messages) == mails  # no new code: single sign-on

        assert browser.get(f"{latch.url}/api/session").status_code == 200
        back = quote(f"{one}/loggedout.html", safe="")
        _, page = browse(
            browser, f"{one}/protected/redirect_uri?logout={back}", latch.transport, EMAIL
        )
        assert page is not None and "Signed out of the app" in page.text
        assert browser.get(f"{latch.url}/api/session").status_code == 401


@pytest.mark.browser
def test_chromium_signs_in_to_apache_through_latchs_pages(stack: tuple[Latch, str, str]) -> None:
    # Chrome applies the code page's form-action to every redirect after its POST: the way back
    # to the app (another origin) must get through, which is what Latch's forwarding page is for.
    latch, one, _ = stack
    email = "vera@example.com"
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        try:
            page = chromium.new_context().new_page()
            page.set_default_timeout(20_000)
            page.goto(f"{one}/protected/")
            expect(page).to_have_url(re.compile(r"/login\?"))
            page.get_by_label("Email address").fill(email)
            page.get_by_role("button", name="Email me a code").click()
            expect(page).to_have_url(re.compile(r"/login/code$"))
            page.get_by_label("6-digit code").fill(mail_code(latch.transport.wait_for(email)))
            expect(page.get_by_text(f"Signed in as {email}")).to_be_visible()
            assert page.url.startswith(f"{one}/protected/")
        finally:
            chromium.close()
