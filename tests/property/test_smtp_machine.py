"""The SMTP server machine under arbitrary input and arbitrary chunking (hypothesis).

(a) it never raises, whatever bytes arrive in whatever pieces;
(b) the events, the data and the reply bytes do not depend on how input is split;
(c) a body sent dot-stuffed through DATA comes back exactly.

Half the limits enable AUTH (RFC 4954) and the DSN parameters (RFC 3461), answered by the
helpers' pretend SASL server, so SASL exchanges are played under any chunking too.
"""

from __future__ import annotations

import dataclasses
import itertools

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mailwright.proto.smtp.events import Closed, DataChunk, EndOfData, Event
from mailwright.proto.smtp.server import (
    AUTH_MAIL_PARAM,
    BASE_MAIL_PARAMS,
    DSN_MAIL_PARAMS,
    DSN_RCPT_PARAMS,
    Limits,
    ServerConnection,
)
from tests.unit.proto.smtp.helpers import (
    ENVELOPE,
    GREET,
    START_DATA,
    data_of,
    drive,
    merged,
)

SETTINGS = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)

# Pieces of protocol that make interesting sessions far more likely than random bytes.
FRAGMENTS = [
    b"EHLO c\r\n",
    b"HELO c\r\n",
    b"MAIL FROM:<a@b.example>\r\n",
    b"MAIL FROM:<> SMTPUTF8 SIZE=10\r\n",
    "MAIL FROM:<jö@b.example> SMTPUTF8\r\n".encode(),
    b"RCPT TO:<c@d.example>\r\n",
    "RCPT TO:<jö@d.example>\r\n".encode(),
    b"DATA\r\n",
    b"BDAT 0 LAST\r\n",
    b"BDAT 3\r\n",
    b"BDAT 5 LAST\r\n",
    b"BDAT x\r\n",
    b"RSET\r\n",
    b"NOOP\r\n",
    b"STARTTLS\r\n",
    b"VRFY x\r\n",
    b"HELP\r\n",
    b"QUIT\r\n",
    b"EXPN x\r\n",
    b"AUTH PLAIN\r\n",
    b"AUTH PLAIN AHUAcA==\r\n",
    b"AUTH LOGIN\r\n",
    b"AUTH LOGIN dQ==\r\n",
    b"AUTH CRAM-MD5\r\n",
    b"AUTH PLAIN !\r\n",
    b"AHUAcA==\r\n",
    b"dQ==\r\n",
    b"cA==\r\n",
    b"*\r\n",
    b"MAIL FROM:<> RET=hdrs ENVID=a+2Bb AUTH=<>\r\n",
    b"MAIL FROM:<a@b.example> AUTH=a+0D\r\n",
    b"RCPT TO:<c@d.example> NOTIFY=SUCCESS,DELAY ORCPT=rfc822;c@d.example\r\n",
    b"RCPT TO:<c@d.example> NOTIFY=NEVER,DELAY\r\n",
    b"\r\n.\r\n",
    b".\r\n",
    b"..\r\n",
    b"\r\n",
    b"\r",
    b"\n",
    b"\n.\n",
    b"\r.\r",
    b"\n.\r\n",
    b"\r\n.\n",
    b".",
    b"\0",
    b"\xff",
    "ü".encode(),
    b"x" * 300,
]

fragments = st.lists(
    st.one_of(st.sampled_from(FRAGMENTS), st.binary(max_size=12)), max_size=40
).map(b"".join)
# Most of the interest is inside a transaction: start there often.
starts = st.sampled_from(
    [
        b"",
        GREET,
        ENVELOPE,
        START_DATA,
        START_DATA,
        ENVELOPE + b"BDAT 20\r\n",
        GREET + b"AUTH LOGIN\r\n",
        GREET + b"AUTH LOGIN\r\ndQ==\r\n",
    ]
)
inputs = st.one_of(
    st.tuples(starts, fragments).map(b"".join),
    st.tuples(starts, st.binary(max_size=300)).map(b"".join),
)


def auth_on(limits: Limits) -> Limits:
    """``limits`` with AUTH and every parameter the machine checks enabled."""
    return dataclasses.replace(
        limits,
        auth=True,
        mail_params=BASE_MAIL_PARAMS | DSN_MAIL_PARAMS | {AUTH_MAIL_PARAM},
        rcpt_params=DSN_RCPT_PARAMS,
    )


LIMITS = [
    Limits(),
    Limits(normalize_bare_lf=True),
    Limits(max_line=64, max_message_size=200, max_data_line=40, max_errors=8),
    Limits(max_line=64, max_message_size=200, max_data_line=40, normalize_bare_lf=True),
    auth_on(Limits()),
    auth_on(Limits(normalize_bare_lf=True)),
    auth_on(Limits(max_line=64, max_auth_line=20, max_errors=8)),
    auth_on(Limits(max_line=32, max_auth_line=64, normalize_bare_lf=True)),
]
limits_st = st.sampled_from(LIMITS)


def feed(data: bytes, cuts: list[int]) -> list[bytes]:
    """``data`` cut at the given offsets (taken modulo its length)."""
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in itertools.pairwise(points) if b > a]


def play(pieces: list[bytes], limits: Limits) -> tuple[list[Event], bytes, ServerConnection]:
    conn = ServerConnection(limits)
    events, out = drive(conn, [*pieces, b""])
    return events, out, conn


def canonical(events: list[Event]) -> list[Event]:
    """Events with DataChunks merged; the chunks of a rejected or unfinished message dropped.

    How much of a message streams out before a problem is noticed depends on how the
    bytes arrived; the driver discards it all when EndOfData carries ``rejected`` or
    the peer goes away before the end.
    """
    result = merged(events)
    out: list[Event] = []
    for i, event in enumerate(result):
        following = result[i + 1] if i + 1 < len(result) else None
        discarded = isinstance(following, Closed) or (
            isinstance(following, EndOfData) and following.rejected is not None
        )
        if isinstance(event, DataChunk) and discarded:
            continue
        out.append(event)
    return out


@SETTINGS
@given(data=inputs, cuts=st.lists(st.integers(min_value=0), max_size=30), limits=limits_st)
def test_never_raises(data: bytes, cuts: list[int], limits: Limits) -> None:
    events, _, conn = play(feed(data, cuts), limits)
    assert events[-1] == conn.next_event()  # the session ended: EOF was fed


@SETTINGS
@given(data=inputs, cuts=st.lists(st.integers(min_value=0), max_size=30), limits=limits_st)
def test_same_result_under_any_chunking(data: bytes, cuts: list[int], limits: Limits) -> None:
    whole, out_whole, conn_whole = play([data], limits)
    for pieces in (feed(data, cuts), [data[i : i + 1] for i in range(len(data))]):
        events, out, conn = play(pieces, limits)
        assert canonical(events) == canonical(whole)
        assert out == out_whole
        assert conn.discarded_plaintext == conn_whole.discarded_plaintext
        assert conn.error_count == conn_whole.error_count
        assert conn.authenticated == conn_whole.authenticated


line_text = st.binary(max_size=80).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b""))
bodies = st.lists(
    st.one_of(line_text, st.sampled_from([b"", b".", b"..", b". ", b".x", b"\0"])),
    max_size=30,
).map(lambda lines: b"".join(line + b"\r\n" for line in lines))


@SETTINGS
@given(body=bodies, cuts=st.lists(st.integers(min_value=0), max_size=20))
def test_dot_stuffed_body_round_trips(body: bytes, cuts: list[int]) -> None:
    stuffed = b"." + body if body.startswith(b".") else body
    stuffed = stuffed.replace(b"\r\n.", b"\r\n..")
    conn = ServerConnection()
    drive(conn, START_DATA)
    events, out = drive(conn, feed(stuffed + b".\r\nNOOP\r\n", cuts))
    end = [e for e in events if isinstance(e, EndOfData)]
    assert len(end) == 1
    if b"\0" in body:
        assert end[0].rejected is not None
    else:
        assert end[0].rejected is None
        assert data_of(events) == body
    assert out.endswith(b"250 2.0.0 Ok\r\n")
