"""Latch's SMTP client on its own: the reply parser, the DATA body, and command writing."""

from __future__ import annotations

import pytest

from service.delivery.smtp_wire import (
    Reply,
    ReplyParser,
    SmtpProtocolError,
    SmtpRefused,
    _path,
    ehlo_name,
    wire_body,
)

EHLO = b"250-mx.example.com\r\n250-PIPELINING\r\n250-SIZE 1000\r\n250 STARTTLS\r\n"
EHLO_REPLY = Reply(250, "mx.example.com\nPIPELINING\nSIZE 1000\nSTARTTLS")


def test_several_replies_in_one_read_are_all_kept() -> None:
    # The bug class this parser exists for: three pipelined replies arrive in one read.
    parser = ReplyParser()
    replies = parser.feed(b"250 2.1.0 OK\r\n250 2.1.5 OK\r\n354 go ahead\r\n")
    assert replies == [Reply(250, "2.1.0 OK"), Reply(250, "2.1.5 OK"), Reply(354, "go ahead")]
    assert not parser.partial


@pytest.mark.parametrize("size", [1, 2, 3, 5, 7, 13])
def test_a_reply_cut_anywhere_comes_out_whole_once(size: int) -> None:
    stream = EHLO + b"250 OK\r\n" + b"451 4.3.0 later\r\n"
    parser = ReplyParser()
    replies: list[Reply] = []
    for i in range(0, len(stream), size):
        replies += parser.feed(stream[i : i + size])
    assert replies == [EHLO_REPLY, Reply(250, "OK"), Reply(451, "4.3.0 later")]
    assert not parser.partial


def test_a_multiline_reply_waits_for_its_last_line() -> None:
    parser = ReplyParser()
    assert parser.feed(EHLO[:-10]) == []
    assert parser.partial
    assert parser.feed(EHLO[-10:] + b"250 O") == [EHLO_REPLY]
    assert parser.partial  # the start of the next reply is kept
    assert parser.feed(b"K\r\n") == [Reply(250, "OK")]


def test_bare_code_and_lf_only_lines_are_replies() -> None:
    assert ReplyParser().feed(b"250\r\n221 bye\n") == [Reply(250, ""), Reply(221, "bye")]


@pytest.mark.parametrize("garbage", [b"hello\r\n", b"25 OK\r\n", b"250xOK\r\n", b"\r\n"])
def test_what_is_not_a_reply_is_refused(garbage: bytes) -> None:
    with pytest.raises(SmtpProtocolError):
        ReplyParser().feed(garbage)


def test_an_endless_line_or_reply_is_refused() -> None:
    with pytest.raises(SmtpProtocolError, match="too long"):
        ReplyParser().feed(b"250 " + b"x" * 5000)
    with pytest.raises(SmtpProtocolError, match="too many"):
        ReplyParser().feed(b"250-x\r\n" * 101)


def test_body_lines_starting_with_a_dot_are_stuffed() -> None:
    body = b".first\r\nmiddle\r\n.\r\n..two\r\nlast\r\n"
    assert wire_body(body) == b"..first\r\nmiddle\r\n..\r\n...two\r\nlast\r\n.\r\n"


def test_crlf_message_is_sent_as_it_is_with_the_end_marker() -> None:
    body = b"Subject: hi\r\n\r\ncode 123 456\r\n"
    assert wire_body(body) == body + b".\r\n"
    assert wire_body(b"no final line end") == b"no final line end\r\n.\r\n"


@pytest.mark.parametrize(
    "smuggled",
    [
        b"a\r\n\n.\nMAIL FROM:<x@evil.example>\r\n",
        b"a\r\n\r.\rMAIL FROM:<x@evil.example>\r\n",
        b"a\n.\r\nMAIL FROM:<x@evil.example>\r\n",
        b"a\r\n.\nMAIL FROM:<x@evil.example>\r\n",
    ],
)
def test_bare_cr_or_lf_can_never_end_the_data_early(smuggled: bytes) -> None:
    # SMTP smuggling: a server that reads `\n.\n` (or similar) as the end of the message would
    # take what follows as a second message. Every line end becomes CRLF and is then stuffed.
    out = wire_body(smuggled)
    assert out.endswith(b"\r\n.\r\n")
    assert out.count(b"\r\n.\r\n") == 1  # only the real end
    assert b"\r\n.." in out
    lf, cr = out.count(b"\n"), out.count(b"\r")
    assert lf == cr == out.count(b"\r\n")


@pytest.mark.parametrize(
    "address", ["a@b.example>\r\nRCPT TO:<c@evil.example", "a b@example.com", "é@example.com"]
)
def test_an_address_that_would_change_the_command_is_refused(address: str) -> None:
    with pytest.raises(SmtpRefused):
        _path(address)
    assert _path("ada@example.com") == b"<ada@example.com>"


def test_ehlo_names_ip_addresses_as_literals() -> None:
    assert ehlo_name("login.example.com") == "login.example.com"
    assert ehlo_name("127.0.0.1") == "[127.0.0.1]"
    assert ehlo_name("::1") == "[IPv6:::1]"
    assert ehlo_name("") == "localhost"
