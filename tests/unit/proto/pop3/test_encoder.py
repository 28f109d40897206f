"""Multi-line message bodies: dot-stuffing, line ends, TOP, any chunking (RFC 1939 §3, §7)."""

from __future__ import annotations

import pytest

from mailwright.core.errors import LocalProtocolError
from mailwright.proto.pop3.server import MessageEncoder, encode_message
from tests.unit.proto.pop3.helpers import bytewise, split

MESSAGE = (
    b"From: a@b.example\r\n"
    b"Subject: dots\r\n"
    b"\r\n"
    b".starts with a dot\r\n"
    b"..two dots\r\n"
    b".\r\n"
    b"plain\r\n"
    b"x.y\r\n"
)
STUFFED = (
    b"From: a@b.example\r\n"
    b"Subject: dots\r\n"
    b"\r\n"
    b"..starts with a dot\r\n"
    b"...two dots\r\n"
    b"..\r\n"
    b"plain\r\n"
    b"x.y\r\n"
    b".\r\n"
)


def encode_in(pieces: list[bytes], body_lines: int | None = None) -> bytes:
    encoder = MessageEncoder(body_lines)
    return b"".join(encoder.feed(p) for p in pieces) + encoder.finish()


def unstuff(wire: bytes) -> bytes:
    assert wire.endswith(b"\r\n.\r\n") or wire == b".\r\n"
    body = wire[:-3]
    lines = body.split(b"\r\n")
    return b"\r\n".join(line[1:] if line.startswith(b".") else line for line in lines)


@pytest.mark.parametrize("size", [None, 1, 2, 3, 7, 19, 20, 21])
def test_retr_stuffs_lines_under_any_split(size: int | None) -> None:
    pieces = [MESSAGE] if size is None else split(MESSAGE, size)
    assert encode_in(pieces) == STUFFED
    assert unstuff(STUFFED) == MESSAGE


@pytest.mark.parametrize(
    ("message", "wire"),
    [
        (b"", b".\r\n"),
        (b"\r\n", b"\r\n.\r\n"),
        (b".", b"..\r\n.\r\n"),
        (b".\r\n", b"..\r\n.\r\n"),
        (b"no line end", b"no line end\r\n.\r\n"),
        (b"ends in CR\r", b"ends in CR\r\n.\r\n"),
        (b"a\r\n.b", b"a\r\n..b\r\n.\r\n"),
        # a bare LF is sent as CRLF, so a client splitting at LF sees every dot stuffed
        (b"a\n.b\n", b"a\r\n..b\r\n.\r\n"),
        (b"\n.\n", b"\r\n..\r\n.\r\n"),
        (b"a\r\r\n", b"a\r\r\n.\r\n"),  # a bare CR stays as it is
        (b"a\rb\r\n", b"a\rb\r\n.\r\n"),
        (b"\r.\r\n", b"\r.\r\n.\r\n"),  # not a line start: CR alone ends no line
    ],
)
def test_line_ends(message: bytes, wire: bytes) -> None:
    assert encode_message(message) == wire
    assert encode_in(bytewise(message)) == wire


@pytest.mark.parametrize(
    "pieces",
    [
        [b"a\r", b"\n.b\r\n"],  # split between CR and LF, a dot after
        [b"a\r\n", b".b\r\n"],  # split right after a line end
        [b"a\r", b"\n", b".", b"b\r\n"],
        [b"", b"a\r\n", b"", b".b\r\n", b""],  # empty pieces
    ],
)
def test_awkward_splits(pieces: list[bytes]) -> None:
    assert encode_in(pieces) == b"a\r\n..b\r\n.\r\n"


def test_cr_split_from_bare_lf_is_not_doubled() -> None:
    assert encode_in([b"a\r", b"\n\n"]) == b"a\r\n\r\n.\r\n"


@pytest.mark.parametrize(
    ("lines", "wire"),
    [
        (0, b"From: a@b.example\r\nSubject: dots\r\n\r\n.\r\n"),
        (1, b"From: a@b.example\r\nSubject: dots\r\n\r\n..starts with a dot\r\n.\r\n"),
        (
            3,
            b"From: a@b.example\r\nSubject: dots\r\n\r\n..starts with a dot\r\n...two dots\r\n..\r\n.\r\n",
        ),
        (5, STUFFED),
        (6, STUFFED),
        (2**31 - 1, STUFFED),
    ],
)
@pytest.mark.parametrize("size", [None, 1, 2, 5])
def test_top(lines: int, wire: bytes, size: int | None) -> None:
    pieces = [MESSAGE] if size is None else split(MESSAGE, size)
    assert encode_in(pieces, lines) == wire


@pytest.mark.parametrize(
    ("message", "lines", "wire"),
    [
        # no blank line: the whole message is header
        (b"A: b\r\nC: d\r\n", 0, b"A: b\r\nC: d\r\n.\r\n"),
        (b"A: b\r\nC: d", 3, b"A: b\r\nC: d\r\n.\r\n"),
        # a message that starts with its blank line has an empty header
        (b"\r\nbody1\r\nbody2\r\n", 1, b"\r\nbody1\r\n.\r\n"),
        (b"\r\nbody1\r\nbody2\r\n", 0, b"\r\n.\r\n"),
        # bare LF lines count like CRLF lines
        (b"A: b\n\nl1\nl2\n", 1, b"A: b\r\n\r\nl1\r\n.\r\n"),
        # a body line without its line end at the very end
        (b"A: b\r\n\r\nl1", 2, b"A: b\r\n\r\nl1\r\n.\r\n"),
        # a "\r\r\n" line is not blank
        (b"A: b\r\r\nC: d\r\n\r\nl1\r\n", 0, b"A: b\r\r\nC: d\r\n\r\n.\r\n"),
        (b"", 5, b".\r\n"),
    ],
)
def test_top_edges(message: bytes, lines: int, wire: bytes) -> None:
    assert encode_message(message, lines) == wire
    assert encode_in(bytewise(message), lines) == wire


def test_top_done_stops_reading() -> None:
    encoder = MessageEncoder(1)
    assert not encoder.done
    out = encoder.feed(b"A: b\r\n\r\nl1\r\nl2\r\n")
    assert encoder.done
    assert out == b"A: b\r\n\r\nl1\r\n"
    assert encoder.feed(b".more\r\n") == b""
    assert encoder.finish() == b".\r\n"


def test_retr_is_never_done() -> None:
    encoder = MessageEncoder()
    encoder.feed(MESSAGE)
    assert not encoder.done


def test_feed_after_finish_is_local_error() -> None:
    encoder = MessageEncoder()
    encoder.finish()
    with pytest.raises(LocalProtocolError):
        encoder.feed(b"x")
    with pytest.raises(LocalProtocolError):
        encoder.finish()
