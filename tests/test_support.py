"""The test fixtures themselves: real SMTP servers and a real PostgreSQL cluster."""

from __future__ import annotations

import asyncio
import gc
import socket
import time
import warnings
from collections.abc import Iterator
from email.message import EmailMessage

import aiosmtplib
import asyncpg
import pytest

from tests.support.postgres import PostgresCluster
from tests.support.smtp import (
    DroppingSmtpServer,
    HangingSmtpServer,
    SmtpSink,
    html_part,
    refused_port,
    text_part,
)


@pytest.fixture(autouse=True)
def _collect_client_sockets() -> Iterator[None]:
    # These tests drive aiosmtplib into its error paths (refused logins, refused STARTTLS, closed
    # ports), where it leaves sockets to the garbage collector. Collected later, their
    # ResourceWarning (an error in this suite) would fail whichever test happened to run then:
    # collect them here, at the end of the test that made them, where they are expected.
    yield
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()


def _mail(to: str = "ada@example.com") -> EmailMessage:
    message = EmailMessage()
    message["From"] = "latch@example.com"
    message["To"] = to
    message["Subject"] = "Your code"
    message.set_content("code: 123456\n")
    message.add_alternative("<p>code: <b>123456</b></p>\n", subtype="html")
    return message


def test_plain_mail_is_received_and_parsed() -> None:
    with SmtpSink() as sink:
        asyncio.run(aiosmtplib.send(_mail(), hostname=sink.host, port=sink.port))
        received = sink.wait_for("ADA@example.com", timeout=5)
    assert received["Subject"] == "Your code"
    assert text_part(received) == "code: 123456\n"
    assert "<b>123456</b>" in html_part(received)
    assert sink.deliveries[0].mail_from == "latch@example.com"


def test_starttls_with_auth_is_verified_against_the_generated_ca() -> None:
    with SmtpSink(require_starttls=True, auth=("latch", "s3cret")) as sink:

        async def send() -> None:
            await aiosmtplib.send(
                _mail(),
                hostname="localhost",
                port=sink.port,
                start_tls=True,
                username="latch",
                password="s3cret",
                cert_bundle=str(sink.ca_path),
            )
            message = await sink.wait_for_async("ada@example.com", timeout=5)
            assert message["To"] == "ada@example.com"

        asyncio.run(send())


def test_implicit_tls_sink_is_verified_against_the_generated_ca() -> None:
    with SmtpSink(implicit_tls=True) as sink:
        asyncio.run(
            aiosmtplib.send(
                _mail(),
                hostname=sink.host,
                port=sink.port,
                use_tls=True,
                cert_bundle=str(sink.ca_path),
            )
        )
        sink.wait_for("ada@example.com", timeout=5)


def test_wrong_password_is_refused() -> None:
    # aiosmtplib.send() leaves its socket to the garbage collector when login fails (an
    # unclosed-socket warning, an error under this suite's filterwarnings, lands in whichever
    # test runs next): the client's context manager closes it.
    async def log_in(sink: SmtpSink) -> None:
        client = aiosmtplib.SMTP(
            hostname=sink.host, port=sink.port, start_tls=True, cert_bundle=str(sink.ca_path)
        )
        async with client:
            await client.login("latch", "wrong")

    with SmtpSink(auth=("latch", "s3cret")) as sink:
        with pytest.raises(aiosmtplib.SMTPAuthenticationError):
            asyncio.run(log_in(sink))
    assert sink.messages == []


def test_required_starttls_fails_when_server_does_not_offer_it() -> None:
    async def connect(sink: SmtpSink) -> None:
        async with aiosmtplib.SMTP(hostname=sink.host, port=sink.port, start_tls=True):
            pass

    with SmtpSink() as sink:
        with pytest.raises(aiosmtplib.SMTPException, match="STARTTLS"):
            asyncio.run(connect(sink))
    assert sink.messages == []


def test_configured_rejection_applies_to_first_attempts_only() -> None:
    with SmtpSink(data_reply="451 4.3.0 try later", failures=1) as sink:
        with pytest.raises(aiosmtplib.SMTPDataError) as refused:
            asyncio.run(aiosmtplib.send(_mail(), hostname=sink.host, port=sink.port))
        assert refused.value.code == 451
        asyncio.run(aiosmtplib.send(_mail(), hostname=sink.host, port=sink.port))
        sink.wait_for("ada@example.com", timeout=5)
    assert sink.rejections == 1


def test_unknown_recipient_is_rejected_at_rcpt() -> None:
    with SmtpSink(rcpt_reply="550 5.1.1 no such user") as sink:
        with pytest.raises(aiosmtplib.SMTPRecipientsRefused):
            asyncio.run(aiosmtplib.send(_mail(), hostname=sink.host, port=sink.port))


def test_slow_sink_delays_the_data_reply() -> None:
    with SmtpSink(delay=0.3) as sink:
        started = time.monotonic()
        asyncio.run(aiosmtplib.send(_mail(), hostname=sink.host, port=sink.port))
        assert time.monotonic() - started >= 0.3


def test_sink_restarts_on_the_same_port() -> None:
    sink = SmtpSink().start()
    port = sink.port
    sink.stop()
    with pytest.raises(aiosmtplib.SMTPConnectError):
        asyncio.run(aiosmtplib.send(_mail(), hostname=sink.host, port=port))
    with sink.start():
        assert sink.port == port
        asyncio.run(aiosmtplib.send(_mail(), hostname=sink.host, port=port))
        sink.wait_for("ada@example.com", timeout=5)


def test_hanging_server_times_out_the_client() -> None:
    with HangingSmtpServer() as server:
        with pytest.raises(aiosmtplib.SMTPTimeoutError):
            asyncio.run(
                aiosmtplib.send(_mail(), hostname=server.host, port=server.port, timeout=0.3)
            )
        assert server.connections == 1
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((server.host, server.port), timeout=1).close()


def test_dropping_server_disconnects_mid_data() -> None:
    with DroppingSmtpServer() as server:
        with pytest.raises(aiosmtplib.SMTPServerDisconnected):
            asyncio.run(aiosmtplib.send(_mail(), hostname=server.host, port=server.port))
        assert server.drops == 1


def test_refused_port_refuses() -> None:
    with pytest.raises(aiosmtplib.SMTPConnectError):
        asyncio.run(aiosmtplib.send(_mail(), hostname="127.0.0.1", port=refused_port()))


async def _fetch_one(dsn: str) -> int:
    connection = await asyncpg.connect(dsn, timeout=5)
    try:
        value = await connection.fetchval("SELECT 1")
    finally:
        await connection.close()
    assert isinstance(value, int)
    return value


@pytest.mark.postgres
def test_postgres_cluster_survives_stop_and_start() -> None:
    with PostgresCluster() as cluster:
        dsn = cluster.dsn
        assert cluster.url == dsn.replace("postgresql://", "postgresql+asyncpg://")
        assert asyncio.run(_fetch_one(dsn)) == 1
        fresh = cluster.create_database("isolated")
        assert asyncio.run(_fetch_one(fresh.replace("+asyncpg", ""))) == 1
        cluster.stop()
        with pytest.raises(OSError):
            asyncio.run(_fetch_one(dsn))
        cluster.start()
        assert asyncio.run(_fetch_one(dsn)) == 1
        root = cluster.data_dir.parent
    assert not root.exists()
