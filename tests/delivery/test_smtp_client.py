"""The SMTP transport against real servers: pipelining, kept connections that servers close,
refusals mid-transaction, many senders at once, TLS and AUTH with pipelining."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from service.delivery.transports import PermanentMailError, SmtpTransport, TransientMailError
from service.settings import Settings
from tests.support.smtp import SINK_LOGIN, ScriptedSmtpServer, SmtpSink, smtp_settings

MakeSettings = Callable[..., Settings]
SENDER = "login@localhost"


def _mail(to: str, body: str = "code 123 456") -> bytes:
    return (f"From: Latch <{SENDER}>\r\nTo: {to}\r\nSubject: Sign in\r\n\r\n{body}\r\n").encode()


Run = Callable[[Settings, Callable[[SmtpTransport], Awaitable[None]]], None]


@pytest.fixture(params=["asyncio", "uvloop"])
def run(request: pytest.FixtureRequest) -> Run:
    """Runs a use of a fresh transport on each event loop Latch may run on: asyncio's, and
    uvloop's (uvicorn's choice), whose transports are not asyncio classes."""
    factory: Callable[[], asyncio.AbstractEventLoop] | None = None
    if request.param == "uvloop":
        uvloop = pytest.importorskip("uvloop")
        factory = uvloop.new_event_loop

    def run_it(settings: Settings, use: Callable[[SmtpTransport], Awaitable[None]]) -> None:
        async def main() -> None:
            transport = SmtpTransport(settings)
            try:
                await use(transport)
            finally:
                await transport.aclose()
                await asyncio.sleep(0.1)  # a TLS close takes a round trip to finish

        with asyncio.Runner(loop_factory=factory) as runner:
            runner.run(main())

    return run_it


async def _send(transport: SmtpTransport, to: str, body: str = "code 123 456") -> None:
    await transport.send_raw(_mail(to, body), sender=SENDER, recipients=[to])


def test_with_pipelining_mail_rcpt_and_data_go_out_before_any_reply(
    make_settings: MakeSettings, run: Run
) -> None:
    # The server answers MAIL and RCPT only once DATA has arrived: a client waiting for each
    # reply would time out here.
    with ScriptedSmtpServer(pipelining=True) as server:
        settings = smtp_settings(make_settings, server.port, SMTP_TIMEOUT="2")

        async def two(transport: SmtpTransport) -> None:
            await _send(transport, "ada@example.com")
            await _send(transport, "bob@example.com")

        run(settings, two)
    assert [m[:2] for m in server.messages] == [
        (SENDER, ("ada@example.com",)),
        (SENDER, ("bob@example.com",)),
    ]
    assert server.messages[0][2] == _mail("ada@example.com")
    assert server.connections == 1


def test_without_pipelining_each_command_waits_for_its_reply(
    make_settings: MakeSettings, run: Run
) -> None:
    with ScriptedSmtpServer(pipelining=False) as server:
        settings = smtp_settings(make_settings, server.port)
        run(settings, lambda t: _send(t, "ada@example.com"))
    assert len(server.messages) == 1
    assert server.early_commands == 0


def test_many_concurrent_sends_each_arrive_once_byte_exact(
    make_settings: MakeSettings, run: Run
) -> None:
    count = 120
    with ScriptedSmtpServer(pipelining=True) as server:
        settings = smtp_settings(make_settings, server.port)

        async def many(transport: SmtpTransport) -> None:
            queue: asyncio.Queue[int] = asyncio.Queue()
            for i in range(count):
                queue.put_nowait(i)

            async def worker() -> None:  # as the mailer's senders do
                while not queue.empty():
                    i = queue.get_nowait()
                    await _send(transport, f"user{i}@example.com", f"mail {i}\r\n.{i}")

            await asyncio.gather(*(worker() for _ in range(8)))

        run(settings, many)
    received = {m[1]: m[2] for m in server.messages}
    assert len(server.messages) == count == len(received)
    for i in range(count):
        to = f"user{i}@example.com"
        assert received[(to,)] == _mail(to, f"mail {i}\r\n.{i}")
    assert 1 < server.connections <= 8  # kept and shared, at most one per sender


def test_dot_lines_and_bare_line_ends_arrive_as_one_message(
    make_settings: MakeSettings, run: Run
) -> None:
    with SmtpSink(pipelining=True) as sink:
        settings = smtp_settings(make_settings, sink.port)
        body = ".starts with a dot\r\n.\r\n..two\r\nsmuggled\n.\nMAIL FROM:<x@evil.example>\r\n"
        run(settings, lambda t: _send(t, "ada@example.com", body))
    [delivery] = sink.deliveries
    assert delivery.rcpt_tos == ("ada@example.com",)
    text = delivery.raw.decode()
    assert ".starts with a dot\r\n.\r\n..two\r\nsmuggled\r\n.\r\nMAIL FROM:<x@evil" in text


def test_a_server_closing_after_each_message_costs_no_mail(
    make_settings: MakeSettings, run: Run
) -> None:
    with ScriptedSmtpServer(close_after=1) as server:
        settings = smtp_settings(make_settings, server.port)

        async def three(transport: SmtpTransport) -> None:
            for to in ("a@example.com", "b@example.com", "c@example.com"):
                await _send(transport, to)
                await asyncio.sleep(0.05)  # the close reaches us, or not: both must work

        run(settings, three)
    assert [m[1] for m in server.messages] == [
        ("a@example.com",),
        ("b@example.com",),
        ("c@example.com",),
    ]


def test_a_421_to_a_kept_connection_is_retried_on_a_fresh_one(
    make_settings: MakeSettings, run: Run
) -> None:
    with ScriptedSmtpServer(refuse_later=True) as server:
        settings = smtp_settings(make_settings, server.port)

        async def two(transport: SmtpTransport) -> None:
            await _send(transport, "a@example.com")
            await _send(transport, "b@example.com")

        run(settings, two)
        assert server.refusals == 1
        assert [m[1] for m in server.messages] == [("a@example.com",), ("b@example.com",)]
        assert server.connections == 2


def test_a_connection_lost_after_the_dot_is_not_resent_at_once(
    make_settings: MakeSettings, run: Run
) -> None:
    # The server may have queued the mail before the connection broke: an immediate second
    # try would deliver it twice. The mailer's backoff decides, not the transport.
    with ScriptedSmtpServer(drop_at_dot=2) as server:
        settings = smtp_settings(make_settings, server.port)

        async def two(transport: SmtpTransport) -> None:
            await _send(transport, "a@example.com")
            with pytest.raises(TransientMailError):
                await _send(transport, "b@example.com")

        run(settings, two)
        assert [m[1] for m in server.messages] == [("a@example.com",), ("b@example.com",)]
        assert server.connections == 1


def test_a_pipelined_4xx_to_rcpt_is_transient_and_the_connection_stays(
    make_settings: MakeSettings, run: Run
) -> None:
    with SmtpSink(pipelining=True, rcpt_reply="451 4.7.1 greylisted", failures=1) as sink:
        settings = smtp_settings(make_settings, sink.port)

        async def two(transport: SmtpTransport) -> None:
            with pytest.raises(TransientMailError, match="451"):
                await _send(transport, "ada@example.com")
            await _send(transport, "ada@example.com")

        run(settings, two)
        assert len(sink.messages_for("ada@example.com")) == 1
        assert sink.rejections == 1


def test_a_pipelined_5xx_to_data_is_permanent_and_the_next_mail_goes(
    make_settings: MakeSettings, run: Run
) -> None:
    with SmtpSink(pipelining=True, data_reply="554 5.7.1 refused", failures=1) as sink:
        settings = smtp_settings(make_settings, sink.port)

        async def two(transport: SmtpTransport) -> None:
            with pytest.raises(PermanentMailError, match="554"):
                await _send(transport, "ada@example.com")
            await _send(transport, "bob@example.com")

        run(settings, two)
        assert sink.messages_for("ada@example.com") == []
        assert len(sink.messages_for("bob@example.com")) == 1
        assert len(set(sink.peers)) == 1


def test_a_message_over_the_servers_size_is_permanent_and_not_sent(
    make_settings: MakeSettings, run: Run
) -> None:
    with SmtpSink(pipelining=True, size_limit=100) as sink:
        settings = smtp_settings(make_settings, sink.port)

        async def big(transport: SmtpTransport) -> None:
            with pytest.raises(PermanentMailError, match="SIZE"):
                await _send(transport, "ada@example.com", "x" * 200)

        run(settings, big)
        assert sink.messages == []


@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN"])
def test_starttls_auth_and_pipelining_together(
    make_settings: MakeSettings, run: Run, mechanism: str
) -> None:
    with SmtpSink(
        auth=SINK_LOGIN, require_starttls=True, pipelining=True, auth_mechanisms=(mechanism,)
    ) as sink:
        env = {
            "SMTP_TLS": "starttls",
            "SMTP_CA_FILE": str(sink.ca_path),
            "SMTP_USERNAME": SINK_LOGIN[0],
            "SMTP_PASSWORD": SINK_LOGIN[1],
        }
        settings = smtp_settings(make_settings, sink.port, **env)

        async def two(transport: SmtpTransport) -> None:
            await _send(transport, "ada@example.com")
            await _send(transport, "bob@example.com")

        run(settings, two)
        assert len(sink.messages) == 2
        assert len(set(sink.peers)) == 1


def test_implicit_tls_with_pipelining(make_settings: MakeSettings, run: Run) -> None:
    with SmtpSink(implicit_tls=True, pipelining=True) as sink:
        settings = smtp_settings(
            make_settings, sink.port, SMTP_TLS="tls", SMTP_CA_FILE=str(sink.ca_path)
        )
        run(settings, lambda t: _send(t, "ada@example.com"))
        assert len(sink.messages_for("ada@example.com")) == 1


def test_auth_required_but_not_offered_is_permanent(make_settings: MakeSettings, run: Run) -> None:
    with ScriptedSmtpServer() as server:
        settings = smtp_settings(make_settings, server.port, SMTP_USERNAME="latch")

        async def one(transport: SmtpTransport) -> None:
            with pytest.raises(PermanentMailError, match="AUTH"):
                await _send(transport, "ada@example.com")

        run(settings, one)
        assert server.messages == []


def test_data_injected_before_the_tls_handshake_ends_the_session(
    make_settings: MakeSettings, run: Run
) -> None:
    # A forged reply sent in clear text right after "220 go ahead" must not be read as if it
    # came over TLS (CVE-2011-0411 and kin): nothing is sent, and it is worth a retry only.
    with ScriptedSmtpServer(inject_after_starttls=True) as server:
        settings = smtp_settings(make_settings, server.port, SMTP_TLS="starttls")

        async def one(transport: SmtpTransport) -> None:
            with pytest.raises(TransientMailError, match="after its STARTTLS reply"):
                await _send(transport, "ada@example.com")

        run(settings, one)
        assert server.messages == []
