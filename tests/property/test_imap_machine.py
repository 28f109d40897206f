"""The IMAP server machine under arbitrary input and chunking (hypothesis).

(a) ``next_event`` never raises, whatever bytes arrive in whatever pieces, with a driver
    that accepts some literals and refuses others, and turns on compression when asked;
(b) the events (adjacent ``AppendData`` joined), the output, the appended messages and
    the counters do not depend on how the input is split, plain or validly compressed
    (after a broken DEFLATE stream, how many of the octets just before the break are
    still read depends on the reads: that case is only checked not to raise);
(c) whenever the machine asks for more data, its receive buffer holds at most one
    command line (``max_line``), so a read adds at most one read to it.
"""

from __future__ import annotations

import itertools
import zlib

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mailwright.proto.imap.events import Closed, NeedData, NeedLiteral
from mailwright.proto.imap.server import Limits, ServerConnection
from tests.unit.proto.imap.helpers import LOGIN, SELECT, Driver, merged

SETTINGS = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)

FRAGMENTS = [
    b"a1 CAPABILITY\r\n",
    b"a2 LOGIN alice secret\r\n",
    b"a3 LOGIN {5}\r\nalice {6+}\r\nsecret\r\n",
    b"a4 AUTHENTICATE PLAIN\r\n",
    b"a5 AUTHENTICATE PLAIN AGFsaWNlAHNlY3JldA==\r\n",
    b"AGFsaWNlAHNlY3JldA==\r\n",
    b"*\r\n",
    b"a6 SELECT INBOX (CONDSTORE)\r\n",
    b"a7 EXAMINE {5+}\r\nINBOX\r\n",
    b"a8 FETCH 1:* (FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)]<0.10>)\r\n",
    b"a9 UID FETCH 1:* FLAGS (CHANGEDSINCE 5 VANISHED)\r\n",
    b"b1 SEARCH CHARSET UTF-8 OR FROM {3}\r\nabc NOT (SEEN UID 1:4)\r\n",
    b"b2 UID STORE 1 +FLAGS.SILENT (\\Seen)\r\n",
    b"b3 APPEND INBOX (\\Seen) {5}\r\nhello\r\n",
    b"b4 APPEND INBOX {3+}\r\nabc\r\n",
    b"b5 APPEND INBOX {3+}\r\nabc {2+}\r\nxy\r\n",
    b"b6 IDLE\r\n",
    b"DONE\r\n",
    b"b7 STARTTLS\r\n",
    b"b8 COMPRESS DEFLATE\r\n",
    b'b9 LIST "" %\r\n',
    b"c1 STATUS INBOX (MESSAGES UIDNEXT)\r\n",
    b"c2 CLOSE\r\n",
    b"c3 LOGOUT\r\n",
    b"c4 NOOP\r\n",
    b"c5 FOO {4+}\r\nabcd\r\n",
    b"c6 SEARCH " + b"(" * 20 + b"ALL" + b")" * 20 + b"\r\n",
    b'c7 ID ("name" NIL)\r\n',
    b"c8 ENABLE QRESYNC\r\n",
    b"{10}\r\n",
    b"{3+}\r\n",
    b"{99999999999999999999+}\r\n",
    b"\r\n",
    b"\r",
    b"\n",
    b" ",
    b'"',
    b"\\",
    b"(",
    b")",
    b"\0",
    b"\xff",
    "ü".encode(),
    b"x" * 120,
]

fragments = st.lists(
    st.one_of(st.sampled_from(FRAGMENTS), st.binary(max_size=12)), max_size=30
).map(b"".join)
starts = st.sampled_from([b"", LOGIN, SELECT, b"a4 AUTHENTICATE PLAIN\r\n", SELECT + b"i IDLE\r\n"])
plain_inputs = st.one_of(
    st.tuples(starts, fragments).map(b"".join),
    st.tuples(starts, st.binary(max_size=300)).map(b"".join),
)


def _deflate(data: bytes) -> bytes:
    compressor = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
    return compressor.compress(data) + compressor.flush(zlib.Z_SYNC_FLUSH)


# A compressed session: valid deflate of arbitrary commands, or that with junk after it.
COMPRESS = SELECT + b"z COMPRESS DEFLATE\r\n"
compressed_inputs = fragments.map(lambda clear: COMPRESS + _deflate(clear))
broken_inputs = st.tuples(fragments, st.binary(min_size=1, max_size=8)).map(
    lambda parts: COMPRESS + _deflate(parts[0]) + parts[1]
)
inputs = st.one_of(plain_inputs, compressed_inputs)

LIMITS = [
    Limits(),
    Limits(
        max_line=60,
        max_literal_unauth=8,
        max_literal=16,
        max_nesting=4,
        max_errors=6,
        max_literal_plus_unsync=4,
        append_chunk=3,
    ),
    Limits(max_line=12, max_errors=1000, append_chunk=1),
]
limits_st = st.sampled_from(LIMITS)
cuts_st = st.lists(st.integers(min_value=0), max_size=30)


def reject(event: NeedLiteral) -> bool:
    return event.size % 7 == 3


class BoundedDriver(Driver):
    def pump(self) -> bool:
        while True:
            event = self.conn.next_event()
            if isinstance(event, NeedData):
                assert len(self.conn._buf) <= self.conn.limits.max_line
                return False
            self.events.append(event)
            if isinstance(event, Closed):
                return True
            self.out += self.answer(event)


def feed(data: bytes, cuts: list[int]) -> list[bytes]:
    """``data`` cut at the given offsets (taken modulo its length)."""
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in itertools.pairwise(points) if b > a]


def play(pieces: list[bytes], limits: Limits, tls_active: bool) -> BoundedDriver:
    # COMPRESS is accepted only where the test feeds DEFLATE after it.
    conn = ServerConnection(limits, tls_active=tls_active)
    compress = b"".join(pieces).startswith(COMPRESS)
    driver = BoundedDriver(conn, reject=reject, compress=compress)
    driver.feed([*pieces, b""])
    return driver


@SETTINGS
@given(
    data=st.one_of(inputs, broken_inputs),
    cuts=cuts_st,
    limits=limits_st,
    tls_active=st.booleans(),
)
def test_never_raises(data: bytes, cuts: list[int], limits: Limits, tls_active: bool) -> None:
    driver = play(feed(data, cuts), limits, tls_active)
    assert isinstance(driver.events[-1], Closed)  # EOF was fed: the session ended
    assert driver.conn.next_event() == driver.events[-1]


@SETTINGS
@given(data=inputs, cuts=cuts_st, limits=limits_st, tls_active=st.booleans())
def test_same_result_under_any_chunking(
    data: bytes, cuts: list[int], limits: Limits, tls_active: bool
) -> None:
    whole = play([data], limits, tls_active)
    for pieces in (feed(data, cuts), [data[i : i + 1] for i in range(len(data))]):
        other = play(pieces, limits, tls_active)
        assert merged(other.events) == merged(whole.events)
        assert other.out == whole.out
        assert other.appended == whole.appended
        assert other.conn.discarded_plaintext == whole.conn.discarded_plaintext
        assert other.conn.error_count == whole.conn.error_count
        assert other.conn.state is whole.conn.state
