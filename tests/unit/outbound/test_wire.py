"""The client's wire pieces without I/O: reply parsing (RFC 5321 §4.2, RFC 2034 enhanced
codes), EHLO keywords, command lines, and the DATA encoder (RFC 5321 §4.5.2)."""

from __future__ import annotations

import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mailwright.core.errors import LocalProtocolError
from mailwright.core.reply import Reply
from mailwright.outbound.wire import (
    DataEncoder,
    ReplyError,
    ReplyParser,
    command,
    describe,
    ehlo_keywords,
    make_reply,
)


def replies(data: bytes, **kwargs: int) -> list[Reply]:
    parser = ReplyParser(**kwargs)
    parser.feed(data)
    out = []
    while (reply := parser.next_reply()) is not None:
        out.append(reply)
    return out


def test_single_and_multiline_replies() -> None:
    got = replies(b"220 mx.example ESMTP\r\n250-mx.example\r\n250-PIPELINING\r\n250 SIZE 100\r\n")
    assert got == [
        Reply(220, None, ("mx.example ESMTP",)),
        Reply(250, None, ("mx.example", "PIPELINING", "SIZE 100")),
    ]


def test_enhanced_status_is_taken_off_every_line() -> None:
    (reply,) = replies(b"550-5.1.1 No such user\r\n550 5.1.1 here, sorry\r\n")
    assert reply == Reply(550, "5.1.1", ("No such user", "here, sorry"))
    assert describe(reply) == "550 5.1.1 No such user here, sorry"
    # A status of another class than the code is text, not a status (RFC 3463 §2).
    assert replies(b"250 5.1.1 odd\r\n") == [Reply(250, None, ("5.1.1 odd",))]
    assert make_reply(250, ["2.0.0"]) == Reply(250, "2.0.0", ("",))


def test_bare_code_lf_only_and_empty_last_line() -> None:
    assert replies(b"250\n") == [Reply(250, None, ("",))]
    # smtp-sink ends its EHLO reply with "250 " and nothing after it.
    (reply,) = replies(b"250-smtp-sink\r\n250-8BITMIME\r\n250 \r\n")
    assert ehlo_keywords(reply) == {"8BITMIME": ""}


def test_any_chunking_gives_the_same_replies() -> None:
    data = b"220 hi\r\n250-a\r\n250 b\r\n354 go\r\n"
    whole = replies(data)
    parser = ReplyParser()
    got = []
    for i in range(len(data)):
        parser.feed(data[i : i + 1])
        while (reply := parser.next_reply()) is not None:
            got.append(reply)
    assert got == whole
    assert parser.buffered == 0


@pytest.mark.parametrize(
    "data",
    [b"hello\r\n", b"25\r\n", b"250x\r\n", b"650 six\r\n", b"250-a\r\n251 b\r\n", b"abc def\r\n"],
)
def test_malformed_replies(data: bytes) -> None:
    with pytest.raises(ReplyError):
        replies(data)


def test_oversized_replies() -> None:
    with pytest.raises(ReplyError, match="longer"):
        replies(b"250 " + b"x" * 100, max_line=50)  # no line end yet, already too long
    with pytest.raises(ReplyError, match="longer"):
        replies(b"250 " + b"x" * 100 + b"\r\n", max_line=50)
    with pytest.raises(ReplyError, match="lines"):
        replies(b"250-x\r\n" * 20, max_lines=10)


def test_discard_drops_buffered_data() -> None:
    parser = ReplyParser()
    parser.feed(b"220 ready\r\n250-injected\r\n250 more")
    assert parser.next_reply() == Reply(220, None, ("ready",))
    assert parser.buffered > 0
    assert parser.discard() > 0
    assert parser.buffered == 0 and parser.next_reply() is None


def test_ehlo_keywords() -> None:
    reply = Reply(250, None, ("mx.example greets you", "size 1000", "AUTH PLAIN LOGIN", "8bitmime"))
    assert ehlo_keywords(reply) == {"SIZE": "1000", "AUTH": "PLAIN LOGIN", "8BITMIME": ""}


def test_command_refuses_control_characters() -> None:
    assert command("MAIL", "FROM:<a@b.test>", "SIZE=10") == b"MAIL FROM:<a@b.test> SIZE=10\r\n"
    assert command("QUIT") == b"QUIT\r\n"
    for bad in ("a\r\nRSET", "a\nb", "a\0b", "a\x1bb", "a\x7fb"):
        with pytest.raises(LocalProtocolError):
            command("RCPT", f"TO:<{bad}>")
    with pytest.raises(LocalProtocolError, match="SMTPUTF8"):
        command("RCPT", "TO:<jörg@example.test>")
    assert (
        command("RCPT", "TO:<jörg@example.test>", utf8=True)
        == "RCPT TO:<jörg@example.test>\r\n".encode()
    )


# -- the DATA encoder ----------------------------------------------------------------------


def reference(message: bytes) -> bytes:
    """The encoding by the book: normalise line ends, stuff dots, terminate."""
    lines = re.split(rb"\r\n|\r|\n", message)
    if lines and lines[-1] == b"":
        lines.pop()
    return b"".join((b"." + ln if ln.startswith(b".") else ln) + b"\r\n" for ln in lines) + b".\r\n"


def encode(chunks: list[bytes]) -> bytes:
    enc = DataEncoder()
    return b"".join(enc.feed(c) for c in chunks) + enc.finish()


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        (b"a\r\nb\r\n", b"a\r\nb\r\n.\r\n"),
        (b"a\r\nb", b"a\r\nb\r\n.\r\n"),
        (b".\r\n..x\r\n", b"..\r\n...x\r\n.\r\n"),
        (b"a\nb\rc\r\n", b"a\r\nb\r\nc\r\n.\r\n"),
        (b"", b".\r\n"),
        (b"x\r", b"x\r\n.\r\n"),
    ],
)
def test_data_encoder_examples(message: bytes, expected: bytes) -> None:
    assert encode([message]) == expected
    assert encode([message[i : i + 1] for i in range(len(message))]) == expected


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(st.sampled_from([b"a", b".", b"\r", b"\n", b"\r\n", b"..", b"x.y", b"\xc3\xa9"])),
    st.data(),
)
def test_data_encoder_is_chunking_independent(parts: list[bytes], data: st.DataObject) -> None:
    message = b"".join(parts)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(message)), max_size=8)))
    chunks = [message[a:b] for a, b in zip([0, *cuts], [*cuts, len(message)], strict=True)]
    out = encode(chunks)
    assert out == reference(message)
    body = out[: -len(b".\r\n")]
    assert b"\r\n.\r\n" not in b"\r\n" + body  # no line of a lone dot before the end
    assert out.count(b"\r") == out.count(b"\r\n") == out.count(b"\n")
