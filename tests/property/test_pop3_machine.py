"""The POP3 server machine and its body encoder under arbitrary input and chunking (hypothesis).

(a) ``next_event`` never raises, whatever bytes arrive in whatever pieces;
(b) the events, the reply bytes and the counters do not depend on how input is split;
(c) the message encoder's output does not depend on how the message is split, and
    un-stuffing it gives back the message (CRLF lines), and TOP gives a prefix of it.
"""

from __future__ import annotations

import itertools

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mailwright.proto.pop3.events import Event
from mailwright.proto.pop3.server import Limits, MessageEncoder, ServerConnection, encode_message
from tests.unit.proto.pop3.helpers import LOGIN, drive

SETTINGS = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)

# Pieces of protocol that make interesting sessions far more likely than random bytes.
FRAGMENTS = [
    b"USER alice\r\n",
    b"PASS secret\r\n",
    b"PASS two words\n",
    b"AUTH PLAIN\r\n",
    b"AUTH PLAIN AGFsaWNlAHNlY3JldA==\r\n",
    b"AUTH LOGIN\r\n",
    b"AGFsaWNlAHNlY3JldA==\r\n",
    b"*\r\n",
    b"CAPA\r\n",
    b"STAT\r\n",
    b"LIST\r\n",
    b"LIST 1\r\n",
    b"RETR 1\r\n",
    b"RETR 0\r\n",
    b"RETR x\r\n",
    b"DELE 1\r\n",
    b"TOP 1 0\r\n",
    b"TOP 1 99999999999\r\n",
    b"UIDL\r\n",
    b"UIDL 2\r\n",
    b"NOOP\r\n",
    b"RSET\r\n",
    b"STLS\r\n",
    b"QUIT\r\n",
    b"APOP a b\r\n",
    b"\r\n",
    b"\r",
    b"\n",
    b" ",
    b"\0",
    b"\xff",
    "ü".encode(),
    b"x" * 300,
]

fragments = st.lists(
    st.one_of(st.sampled_from(FRAGMENTS), st.binary(max_size=12)), max_size=40
).map(b"".join)
starts = st.sampled_from([b"", b"USER alice\r\n", LOGIN, b"AUTH PLAIN\r\n"])
inputs = st.one_of(
    st.tuples(starts, fragments).map(b"".join),
    st.tuples(starts, st.binary(max_size=300)).map(b"".join),
)
LIMITS = [
    Limits(),
    Limits(max_line=40, max_sasl_line=60, max_errors=5),
    Limits(max_line=8, max_sasl_line=8, max_errors=1000),
]
limits_st = st.sampled_from(LIMITS)
cuts_st = st.lists(st.integers(min_value=0), max_size=30)


def feed(data: bytes, cuts: list[int]) -> list[bytes]:
    """``data`` cut at the given offsets (taken modulo its length)."""
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in itertools.pairwise(points) if b > a]


def play(
    pieces: list[bytes], limits: Limits, tls_active: bool
) -> tuple[list[Event], bytes, ServerConnection]:
    conn = ServerConnection(limits, tls_active=tls_active)
    events, out = drive(conn, [*pieces, b""])
    return events, out, conn


@SETTINGS
@given(data=inputs, cuts=cuts_st, limits=limits_st, tls_active=st.booleans())
def test_never_raises(data: bytes, cuts: list[int], limits: Limits, tls_active: bool) -> None:
    events, _, conn = play(feed(data, cuts), limits, tls_active)
    assert events[-1] == conn.next_event()  # the session ended: EOF was fed


@SETTINGS
@given(data=inputs, cuts=cuts_st, limits=limits_st, tls_active=st.booleans())
def test_same_result_under_any_chunking(
    data: bytes, cuts: list[int], limits: Limits, tls_active: bool
) -> None:
    whole, out_whole, conn_whole = play([data], limits, tls_active)
    for pieces in (feed(data, cuts), [data[i : i + 1] for i in range(len(data))]):
        events, out, conn = play(pieces, limits, tls_active)
        assert events == whole
        assert out == out_whole
        assert conn.discarded_plaintext == conn_whole.discarded_plaintext
        assert conn.error_count == conn_whole.error_count
        assert conn.state is conn_whole.state


# -- the message encoder -----------------------------------------------------------------------

line_text = st.binary(max_size=60).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b""))
crlf_messages = st.lists(
    st.one_of(line_text, st.sampled_from([b"", b".", b"..", b". ", b".x", b"From: a"])),
    max_size=30,
).map(lambda lines: b"".join(line + b"\r\n" for line in lines))
any_messages = st.one_of(
    crlf_messages,
    st.binary(max_size=200),
    st.lists(st.sampled_from([b"\r", b"\n", b".", b"x", b"\r\n", b"\r\n\r\n"]), max_size=40).map(
        b"".join
    ),
)
body_lines_st = st.one_of(st.none(), st.integers(min_value=0, max_value=40))


def encode_pieces(pieces: list[bytes], body_lines: int | None) -> bytes:
    encoder = MessageEncoder(body_lines)
    return b"".join(encoder.feed(p) for p in pieces) + encoder.finish()


def unstuff(wire: bytes) -> bytes:
    """What a client reads (RFC 1939 §3): lines up to the "." line, one leading dot removed."""
    lines = wire.split(b"\r\n")
    assert lines[-1] == b"" and lines[-2] == b"."
    assert b"." not in lines[:-2]  # no early terminator
    body = [line[1:] if line.startswith(b".") else line for line in lines[:-2]]
    return b"".join(line + b"\r\n" for line in body)


@SETTINGS
@given(message=any_messages, cuts=cuts_st, body_lines=body_lines_st)
def test_encoder_same_output_under_any_chunking(
    message: bytes, cuts: list[int], body_lines: int | None
) -> None:
    whole = encode_message(message, body_lines)
    assert encode_pieces(feed(message, cuts), body_lines) == whole
    assert encode_pieces([message[i : i + 1] for i in range(len(message))], body_lines) == whole
    assert whole.endswith(b".\r\n")
    unstuff(whole)  # well framed whatever the input: one terminator, at the end


@SETTINGS
@given(message=crlf_messages, cuts=cuts_st)
def test_encoder_round_trips_crlf_messages(message: bytes, cuts: list[int]) -> None:
    assert unstuff(encode_pieces(feed(message, cuts), None)) == message


@SETTINGS
@given(message=crlf_messages, cuts=cuts_st, body_lines=st.integers(min_value=0, max_value=40))
def test_top_is_header_blank_line_and_body_lines(
    message: bytes, cuts: list[int], body_lines: int
) -> None:
    lines = message.split(b"\r\n")[:-1]
    if b"" in lines:
        blank = lines.index(b"")
        expected = lines[: blank + 1 + body_lines]
    else:
        expected = lines
    top = unstuff(encode_pieces(feed(message, cuts), body_lines))
    assert top == b"".join(line + b"\r\n" for line in expected)
