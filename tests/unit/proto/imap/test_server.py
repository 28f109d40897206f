"""The sans-IO IMAP server machine: framing, literals, APPEND streaming, IDLE,
AUTHENTICATE, STARTTLS, COMPRESS, limits, errors, and misuse by the driver."""

from __future__ import annotations

import zlib

import pytest

from mailwright.core.errors import LocalProtocolError
from mailwright.proto.imap import command as c
from mailwright.proto.imap import response as r
from mailwright.proto.imap.events import (
    CLOSED,
    NEED_DATA,
    AppendData,
    AppendEnd,
    AuthResponse,
    Done,
    Event,
    Invalid,
    NeedLiteral,
)
from mailwright.proto.imap.server import Limits, ServerConnection, _inflate_until_error
from mailwright.proto.imap.state import Mode, State
from tests.unit.proto.imap.helpers import (
    LOGIN,
    SELECT,
    Driver,
    bytewise,
    lines,
    merged,
    run,
    split,
)


def after(setup: bytes, limits: Limits | None = None, **kwargs: bool) -> ServerConnection:
    """A connection after ``setup`` was fed and answered generically."""
    conn = ServerConnection(limits, **kwargs)
    if setup:
        Driver(conn).feed(setup)
    return conn


def same_everywhere(data: bytes, limits: Limits | None = None, **kwargs: bool) -> Driver:
    """Run ``data`` whole, byte by byte and in 7-octet pieces: the same events and output."""
    whole = run(data, limits, **kwargs)  # type: ignore[arg-type]
    for pieces in (bytewise(data), split(data, 7)):
        other = run(pieces, limits, **kwargs)  # type: ignore[arg-type]
        assert merged(other.events) == merged(whole.events)
        assert other.out == whole.out
        assert other.appended == whole.appended
        assert other.conn.state is whole.conn.state
        assert other.conn.error_count == whole.conn.error_count
    return whole


# -- a whole session ------------------------------------------------------------------------


def test_session() -> None:
    conn = ServerConnection()
    assert conn.send_unsolicited(r.untagged_status("OK", "IMAP4rev2 ready")) == (
        b"* OK IMAP4rev2 ready\r\n"
    )
    d = Driver(conn)
    d.feed(
        b"a1 CAPABILITY\r\na2 LOGIN alice secret\r\na3 SELECT INBOX\r\n"
        b"a4 FETCH 1 FLAGS\r\na5 CLOSE\r\na6 LOGOUT\r\n"
    )
    assert [type(e).__name__ for e in d.events] == [
        "Capability",
        "Login",
        "Select",
        "Fetch",
        "Close",
        "Logout",
        "Closed",
    ]
    assert lines(d.out) == [
        "a1 OK Completed",
        "a2 OK LOGIN completed",
        "* 2 EXISTS",
        "a3 OK [READ-WRITE] Selected",
        "* 1 FETCH (FLAGS ())",
        "a4 OK FETCH completed",
        "a5 OK Closed",
        "* BYE Bye",
        "a6 OK LOGOUT completed",
    ]
    assert conn.state is State.CLOSED
    assert conn.next_event() is CLOSED
    conn.receive_data(b"a7 NOOP\r\n")  # ignored
    assert conn.next_event() is CLOSED


def test_states_follow_the_driver() -> None:
    conn = ServerConnection()
    assert conn.state is State.NOT_AUTHENTICATED and not conn.logged_in
    conn.authenticated()
    assert conn.state is State.AUTHENTICATED and conn.logged_in
    conn.selected(read_only=True)
    assert conn.state is State.SELECTED and conn.read_only
    conn.selected(read_only=False)
    assert not conn.read_only
    conn.unselected()
    assert conn.state is State.AUTHENTICATED
    with pytest.raises(LocalProtocolError):
        conn.authenticated()
    conn.logout()
    assert conn.state is State.LOGOUT
    assert conn.next_event() is CLOSED  # nothing pending: the session is over


def test_pipelined_commands_in_order() -> None:
    d = same_everywhere(LOGIN + b"b NOOP\r\nc NOOP\n\r\n\nd NOOP\r\n")
    assert [getattr(e, "tag", None) for e in d.events] == ["a0", "b", "c", "d"]


def test_bare_lf_ends_a_line() -> None:
    d = run(b"a NOOP\nb NOOP\r\n")
    assert d.events == [c.Noop("a"), c.Noop("b")]


def test_empty_lines_are_ignored() -> None:
    d = run(b"\r\n\n\r\na NOOP\r\n")
    assert d.events == [c.Noop("a")]
    assert d.conn.error_count == 0


def test_end_of_input_closes() -> None:
    d = run([b"a NO", b""])
    assert d.events == [CLOSED]
    assert d.conn.state is State.CLOSED


def test_greeting_preauth_and_bye() -> None:
    conn = ServerConnection()
    assert conn.send_unsolicited(r.untagged_status("PREAUTH", "hi")) == b"* PREAUTH hi\r\n"
    assert conn.state is State.NOT_AUTHENTICATED  # the driver says so: authenticated()
    conn.receive_data(b"a NOOP\r\n")
    assert conn.next_event() == c.Noop("a")
    assert conn.send_unsolicited(r.bye("Server shutting down")) == b"* BYE Server shutting down\r\n"
    assert conn.next_event() is CLOSED
    assert conn.error_count == 0


@pytest.mark.parametrize(
    "resp", [r.tagged("a", "OK"), r.untagged_status("NO"), r.untagged_status("BAD")]
)
def test_unsolicited_is_greeting_or_bye(resp: r.Status) -> None:
    with pytest.raises(LocalProtocolError):
        ServerConnection().send_unsolicited(resp)


# -- refusals ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "setup", "wire"),
    [
        (b"\r", b"", b"* BAD Invalid tag\r\n"),
        (b" NOOP", b"", b"* BAD Missing tag\r\n"),
        (b"a+b NOOP", b"", b"* BAD Invalid tag\r\n"),
        (b"a1", b"", b"a1 BAD Missing command\r\n"),
        (b"a1 HELO x", b"", b"a1 BAD Unknown command HELO\r\n"),
        (
            b"a1 FETCH 1 FLAGS",
            b"",
            b"a1 BAD FETCH not allowed in the not authenticated state: log in first\r\n",
        ),
        (
            b"a1 FETCH 1 FLAGS",
            LOGIN,
            b"a1 BAD FETCH not allowed in the authenticated state: select a mailbox first\r\n",
        ),
        (
            b"a1 LOGIN a b",
            LOGIN,
            b"a1 BAD LOGIN not allowed in the authenticated state: already authenticated\r\n",
        ),
        (
            b"a1 ENABLE X",
            SELECT,
            b"a1 BAD ENABLE not allowed in the selected state: only before a mailbox is selected\r\n",
        ),
        (b"a1 STARTTLS", b"", None),
        (b"a1 NOOP x", b"", b"a1 BAD Syntax error in NOOP: unexpected argument at ' x'\r\n"),
    ],
)
def test_refusals(line: bytes, setup: bytes, wire: bytes | None) -> None:
    conn = after(setup, tls_active=True)
    d = Driver(conn)
    d.feed(line + b"\r\n")
    assert len(d.events) == 1 and isinstance(d.events[0], Invalid)
    if wire is None:
        wire = b"a1 BAD TLS is already active\r\n"
    assert d.out == wire
    assert conn.error_count == 1


def test_compress_twice_is_no() -> None:
    conn = after(LOGIN)
    d = Driver(conn)
    d.feed(b"z COMPRESS DEFLATE\r\n")
    d.feed(zlib.compress(b"y COMPRESS DEFLATE\r\n")[2:-4])
    # RFC 4978 §3
    assert d.events[-1] == Invalid(
        "y", r.tagged("y", "NO", "Compression is already active", r.COMPRESSIONACTIVE)
    )
    assert conn.error_count == 0


def test_too_many_errors_closes() -> None:
    limits = Limits(max_errors=3)
    d = same_everywhere(b"a FOO\r\nb FOO\r\nc NOOP\r\nd FOO\r\ne NOOP\r\n", limits)
    assert lines(d.out)[-2:] == ["d BAD Unknown command FOO", "* BYE Too many errors"]
    assert d.events[-1] is CLOSED
    assert d.conn.error_count == 3


def test_should_delay_past_half_the_cap() -> None:
    conn = after(b"a FOO\r\n", Limits(max_errors=4))
    assert not conn.should_delay
    Driver(conn).feed(b"b FOO\r\n")
    assert conn.should_delay


def test_driver_bad_counts_too() -> None:
    conn = after(b"", Limits(max_errors=1))
    conn.receive_data(b"a NOOP\r\n")
    assert conn.next_event() == c.Noop("a")
    out = conn.send(r.tagged("a", "BAD", "I do not like it"))
    assert out == b"a BAD I do not like it\r\n* BYE Too many errors\r\n"
    assert conn.next_event() is CLOSED


def test_no_does_not_count() -> None:
    conn = after(b"")
    conn.receive_data(b"a NOOP\r\n")
    conn.next_event()
    conn.send(r.tagged("a", "NO", "no"))
    assert conn.error_count == 0


# -- line limits -------------------------------------------------------------------------------


def test_line_too_long_is_refused_and_skipped() -> None:
    limits = Limits(max_line=40)
    data = b"a1 LOGIN " + b"x" * 100 + b" y\r\nb NOOP\r\n"
    d = same_everywhere(data, limits)
    assert lines(d.out) == ["a1 BAD Command line too long", "b OK Completed"]


def test_line_too_long_without_tag() -> None:
    d = same_everywhere(b"x" * 100 + b"\r\nb NOOP\r\n", Limits(max_line=40))
    assert lines(d.out) == ["* BAD Command line too long", "b OK Completed"]


def test_line_too_long_after_a_literal() -> None:
    data = b"a1 LOGIN {5}\r\nalice " + b"p" * 100 + b"\r\nb NOOP\r\n"
    d = same_everywhere(data, Limits(max_line=60))
    assert lines(d.out)[-2:] == ["a1 BAD Command line too long", "b OK Completed"]


def test_line_too_long_swallows_its_literal() -> None:
    data = LOGIN + b"a1 SEARCH " + b"x" * 100 + b" {5+}\r\nb NOOP\r\nc NOOP\r\n"
    d = same_everywhere(data, Limits(max_line=60))
    assert lines(d.out)[-2:] == ["a1 BAD Command line too long", "c OK Completed"]


def test_line_too_long_with_huge_literal_before_login_closes() -> None:
    data = b"a1 LOGIN " + b"x" * 100 + b" {5000+}\r\n" + b"z" * 5000
    d = same_everywhere(data, Limits(max_line=60))
    assert lines(d.out)[-3:] == [
        "a1 BAD Command line too long",
        "* BAD [TOOBIG] Literal too large",
        "* BYE Closing connection",
    ]
    assert d.events[-1] is CLOSED


def test_receive_buffer_is_bounded() -> None:
    limits = Limits(max_line=1000)
    conn = ServerConnection(limits)
    d = Driver(conn)
    for _ in range(100):
        d.feed(b"y" * 300)
        assert len(conn._buf) <= limits.max_line + 300
    d.feed(b"\r\na NOOP\r\n")
    assert lines(d.out) == ["* BAD Command line too long", "a OK Completed"]


# -- literals ----------------------------------------------------------------------------------


def test_synchronizing_literal() -> None:
    conn = ServerConnection()
    conn.receive_data(b"a1 LOGIN {5}\r\n")
    event = conn.next_event()
    assert event == NeedLiteral("a1", "LOGIN", 5, True, False)
    with pytest.raises(LocalProtocolError, match="accept_literal"):
        conn.next_event()
    assert conn.accept_literal() == b"+ Ready for literal data\r\n"
    assert conn.next_event() is NEED_DATA
    conn.receive_data(b"al")
    assert conn.next_event() is NEED_DATA
    conn.receive_data(b"ice {6+}\r\nsec")
    assert conn.next_event() == NeedLiteral("a1", "LOGIN", 6, False, False)
    assert conn.accept_literal() == b""
    conn.receive_data(b"ret\r\n")
    assert conn.next_event() == c.Login("a1", "alice", "secret")


def test_literal_in_the_middle_of_search() -> None:
    d = same_everywhere(
        SELECT + b"a SEARCH CHARSET UTF-8 SUBJECT {5}\r\n\xc3\xbcber FROM {1+}\r\nx\r\n"
    )
    assert d.events[-1] == c.Search(
        "a", False, "UTF-8", c.And((c.Header("subject", "über"), c.Header("from", "x")))
    )


def test_literal_header_inside_quotes_is_text() -> None:
    d = run(b'a LOGIN alice "pw{5}"\r\n')
    assert d.events == [c.Login("a", "alice", "pw{5}")]
    d = run(b'a LOGIN alice "x\\" {5}"\r\n')
    assert d.events == [c.Login("a", "alice", 'x" {5}')]


def test_escaped_quote_before_a_literal_header() -> None:
    d = run(b'a LOGIN "a\\\\b" {2+}\r\npw\r\n')
    assert d.events[-1] == c.Login("a", "a\\b", "pw")


def test_unterminated_quote_before_a_literal_header() -> None:
    d = run(b'a LOGIN "alice {5}\r\n')
    assert lines(d.out) == ["a BAD Syntax error in LOGIN: unterminated quoted string"]


@pytest.mark.parametrize(
    "line", [b"a LOGIN x{", b"a LOGIN }", b"a LOGIN {}", b"a LOGIN {+}", b"a LOGIN {1a}"]
)
def test_not_literal_headers(line: bytes) -> None:
    d = run(line + b"\r\n")
    assert isinstance(d.events[0], Invalid)


def test_reject_synchronizing_literal() -> None:
    conn = ServerConnection()
    conn.receive_data(b"a1 LOGIN {5}\r\nb NOOP\r\n")
    assert isinstance(conn.next_event(), NeedLiteral)
    out = conn.reject_literal(r.tagged("a1", "NO", "Not now"))
    assert out == b"a1 NO Not now\r\n"
    assert conn.next_event() == c.Noop("b")  # the client sent no literal: it waited
    assert conn.error_count == 0


def test_reject_non_synchronizing_literal_swallows_it() -> None:
    d = same_everywhere(
        b"a1 LOGIN {5+}\r\nNOOP! {3+}\r\nx\r\n\r\nb NOOP\r\n", reject=lambda e: True
    )
    assert lines(d.out) == ["a1 NO [TOOBIG] Too big", "b OK Completed"]


def test_reject_literal_misuse() -> None:
    conn = ServerConnection()
    with pytest.raises(LocalProtocolError):
        conn.reject_literal(r.tagged("a", "NO"))
    with pytest.raises(LocalProtocolError):
        conn.accept_literal()
    conn.receive_data(b"a LOGIN {5}\r\n")
    conn.next_event()
    for wrong in (r.tagged("b", "NO"), r.tagged("a", "OK"), r.untagged_status("NO")):
        with pytest.raises(LocalProtocolError):
            conn.reject_literal(wrong)
    with pytest.raises(LocalProtocolError):
        conn.send(r.tagged("a", "NO"))  # a literal is refused with reject_literal
    assert conn.reject_literal(r.tagged("a", "BAD", "No")) == b"a BAD No\r\n"
    assert conn.error_count == 1


def test_reject_literal_can_reach_the_error_cap() -> None:
    conn = ServerConnection(Limits(max_errors=1))
    conn.receive_data(b"a LOGIN {5}\r\n")
    conn.next_event()
    assert (
        conn.reject_literal(r.tagged("a", "BAD", "No")) == b"a BAD No\r\n* BYE Too many errors\r\n"
    )
    assert conn.next_event() is CLOSED


def test_literal_limits_before_login() -> None:
    limits = Limits(max_literal_unauth=10, max_literal_plus_unsync=4)
    # synchronizing: refused before the client sends it
    d = same_everywhere(b"a LOGIN {11}\r\nb NOOP\r\n", limits)
    assert lines(d.out) == ["a BAD [TOOBIG] Literal too large", "b OK Completed"]
    # the budget is per command
    d = same_everywhere(b"a LOGIN {6}\r\nalice1 {5}\r\nb NOOP\r\n", limits)
    assert lines(d.out) == [
        "+ Ready for literal data",
        "a BAD [TOOBIG] Literal too large",
        "b OK Completed",
    ]
    # non-synchronizing over LITERAL-'s limit: TOOBIG, then BYE (RFC 7888 §4)
    d = same_everywhere(b"a LOGIN {5+}\r\nalice x\r\nb NOOP\r\n", limits)
    assert lines(d.out) == ["a BAD [TOOBIG] Literal too large", "* BYE Closing connection"]
    assert d.events[-1] is CLOSED
    d = same_everywhere(b"a LOGIN {4+}\r\nalic x\r\nb NOOP\r\n", limits)
    assert d.events[1] == c.Login("a", "alic", "x")


def test_literal_limits_after_login() -> None:
    limits = Limits(max_literal=10)
    d = same_everywhere(SELECT + b"a SEARCH TEXT {11+}\r\n01234567890\r\nb NOOP\r\n", limits)
    assert lines(d.out)[-2:] == ["a BAD [TOOBIG] Literal too large", "* BYE Closing connection"]
    d = same_everywhere(SELECT + b"a SEARCH TEXT {10+}\r\n0123456789\r\nb NOOP\r\n", limits)
    assert isinstance(d.events[-2], c.Search)


def test_absurd_literal_size() -> None:
    d = run(b"a LOGIN {99999999999999999999999}\r\nb NOOP\r\n")
    assert lines(d.out) == ["a BAD [TOOBIG] Literal too large", "b OK Completed"]
    d = run(b"a LOGIN {99999999999999999999999+}\r\n")
    assert lines(d.out)[-1] == "* BYE Closing connection"


def test_refused_command_swallows_its_non_synchronizing_literal() -> None:
    d = same_everywhere(b"a FOO {3+}\r\nabc\r\nb NOOP\r\n")
    assert lines(d.out) == ["a BAD Unknown command FOO", "b OK Completed"]
    # a state error is found before the literal is asked for
    d = same_everywhere(b"a SELECT {5}\r\n")
    assert lines(d.out) == ["a BAD SELECT not allowed in the not authenticated state: log in first"]
    assert not any(isinstance(e, NeedLiteral) for e in d.events)
    d = same_everywhere(b"{3+}\r\nabc\r\nb NOOP\r\n")
    assert lines(d.out) == ["* BAD Missing tag", "b OK Completed"]
    d = same_everywhere(b"a FOO {5000+}\r\n")
    assert lines(d.out) == ["a BAD [TOOBIG] Literal too large", "* BYE Closing connection"]


def test_absurd_literal_size_of_a_refused_command() -> None:
    d = run(LOGIN + b"a FOO {99999999999999999999999+}\r\nb NOOP\r\n")
    assert lines(d.out)[-2:] == ["a BAD [TOOBIG] Literal too large", "* BYE Closing connection"]


def test_discarding_after_login_swallows_any_size() -> None:
    data = LOGIN + b"a FOO {20000+}\r\n" + b"x" * 20000 + b" {3+}\r\nabc\r\nb NOOP\r\n"
    d = same_everywhere(data)
    assert lines(d.out)[-2:] == ["a BAD Unknown command FOO", "b OK Completed"]


def test_literal_nul_in_a_password_is_refused() -> None:
    d = run(b"a LOGIN alice {3+}\r\na\0b\r\n")
    assert lines(d.out) == ["a BAD Syntax error in LOGIN: NUL in the password"]


# -- APPEND -------------------------------------------------------------------------------------

MESSAGE = b"From: a@b.example\r\nSubject: hi\r\n\r\nbody\r\n"


def test_append_streams() -> None:
    data = LOGIN + b"a APPEND INBOX (\\Seen $Work) {%d}\r\n" % len(MESSAGE) + MESSAGE + b"\r\n"
    d = same_everywhere(data)
    assert d.appended == [MESSAGE]
    events = merged(d.events[1:])
    assert events == [
        NeedLiteral("a", "APPEND", len(MESSAGE), True, True),
        c.Append("a", "INBOX", ("\\Seen", "$Work"), None, len(MESSAGE)),
        AppendData(MESSAGE),
        AppendEnd("a"),
    ]
    assert lines(d.out)[-2:] == ["+ Ready for literal data", "a OK APPEND completed"]


def test_append_mode_and_chunks() -> None:
    conn = after(LOGIN, Limits(append_chunk=4))
    conn.receive_data(b"a APPEND box {10+}\r\n0123456789\r\n")
    assert conn.next_event() == NeedLiteral("a", "APPEND", 10, False, True)
    assert conn.accept_literal() == b""
    assert conn.mode is Mode.APPEND
    assert isinstance(conn.next_event(), c.Append)
    chunks = [conn.next_event(), conn.next_event(), conn.next_event()]
    assert chunks == [AppendData(b"0123"), AppendData(b"4567"), AppendData(b"89")]
    assert conn.next_event() == AppendEnd("a")
    assert conn.mode is Mode.COMMAND
    assert (
        conn.send(r.tagged("a", "OK", "done", r.APPENDUID(1, 2)))
        == b"a OK [APPENDUID 1 2] done\r\n"
    )


def test_append_empty_message() -> None:
    d = same_everywhere(LOGIN + b"a APPEND INBOX {0+}\r\n\r\n")
    assert d.appended == [b""]


def test_append_mailbox_as_literal() -> None:
    d = same_everywhere(LOGIN + b"a APPEND {5+}\r\nDraft {3+}\r\nabc\r\n")
    assert d.events[1] == NeedLiteral("a", "APPEND", 5, False, False)
    assert d.events[2] == NeedLiteral("a", "APPEND", 3, False, True)
    assert d.events[3] == c.Append("a", "Draft", (), None, 3)


def test_append_literal_rejected() -> None:
    data = LOGIN + b"a APPEND INBOX {20+}\r\n" + b"m" * 20 + b"\r\nb NOOP\r\n"
    d = same_everywhere(data, reject=lambda e: e.append)
    assert lines(d.out)[-2:] == ["a NO [TOOBIG] Too big", "b OK Completed"]
    assert d.appended == []


def test_multiappend_is_refused_and_swallowed() -> None:
    data = LOGIN + b"a APPEND INBOX {3+}\r\nabc {3+}\r\ndef\r\nb NOOP\r\n"
    d = same_everywhere(data)
    assert (
        AppendEnd(
            "a",
            ok=False,
            response=r.tagged(
                "a", "BAD", "Only one message per APPEND (MULTIAPPEND is not supported)"
            ),
        )
        in d.events
    )
    assert d.appended == []
    assert lines(d.out)[-1] == "b OK Completed"


def test_multiappend_with_synchronizing_literal() -> None:
    d = same_everywhere(LOGIN + b"a APPEND INBOX {3+}\r\nabc {3}\r\nb NOOP\r\n")
    assert lines(d.out)[-2:] == [
        "a BAD Only one message per APPEND (MULTIAPPEND is not supported)",
        "b OK Completed",
    ]


def test_append_tail_too_long() -> None:
    data = LOGIN + b"a APPEND INBOX {3+}\r\nabc" + b" " * 200 + b"\r\nb NOOP\r\n"
    d = same_everywhere(data, Limits(max_line=100))
    assert lines(d.out)[-2:] == ["a BAD Command line too long", "b OK Completed"]


def test_append_before_login_is_refused_without_reading_the_message() -> None:
    d = same_everywhere(b"a APPEND INBOX {3+}\r\nabc\r\nb NOOP\r\n")
    assert lines(d.out) == [
        "a BAD APPEND not allowed in the not authenticated state: log in first",
        "b OK Completed",
    ]


def test_append_head_error_swallows_the_message() -> None:
    d = same_everywhere(LOGIN + b"a APPEND INBOX (\\Seen {3+}\r\nabc\r\nb NOOP\r\n")
    assert lines(d.out)[-2:] == [
        "a BAD Syntax error in APPEND: expected a flag, found a literal",
        "b OK Completed",
    ]


def test_append_absurd_size() -> None:
    d = run(LOGIN + b"a APPEND INBOX {99999999999999999999}\r\nb NOOP\r\n")
    assert lines(d.out)[-2:] == ["a BAD [TOOBIG] Literal too large", "b OK Completed"]


@pytest.mark.parametrize("at", ["start", "data", "tail"])
def test_driver_aborts_append_midway(at: str) -> None:
    conn = after(LOGIN)
    conn.receive_data(b"a APPEND INBOX {6+}\r\nabc")
    conn.next_event()
    conn.accept_literal()
    if at != "start":
        assert isinstance(conn.next_event(), c.Append)
        assert conn.next_event() == AppendData(b"abc")
    if at == "tail":
        conn.receive_data(b"def")
        assert conn.next_event() == AppendData(b"def")
    out = conn.send(r.tagged("a", "NO", "Over quota", r.OVERQUOTA))
    assert out == b"a NO [OVERQUOTA] Over quota\r\n"
    assert conn.mode is Mode.COMMAND
    conn.receive_data(b"" if at == "tail" else b"def")
    conn.receive_data(b" ignored {2+}\r\nxy\r\nb NOOP\r\n")
    assert conn.next_event() == c.Noop("b")


# -- IDLE -----------------------------------------------------------------------------------------


def test_idle() -> None:
    conn = after(SELECT)
    conn.receive_data(b"i IDLE\r\n")
    assert conn.next_event() == c.Idle("i")
    assert conn.send_continuation("idling") == b"+ idling\r\n"
    assert conn.mode is Mode.IDLE
    assert conn.next_event() is NEED_DATA
    assert conn.send(r.exists(3)) == b"* 3 EXISTS\r\n"  # updates while idling
    with pytest.raises(LocalProtocolError, match="client is sending"):
        conn.send(r.tagged("i", "OK"))
    conn.receive_data(b"done\r\nb NOOP\r\n")
    assert conn.next_event() == Done("i")
    assert conn.send(r.tagged("i", "OK", "IDLE terminated")) == b"i OK IDLE terminated\r\n"
    assert conn.mode is Mode.COMMAND
    assert conn.next_event() == c.Noop("b")


def test_idle_other_line_ends_it_with_bad() -> None:
    d = same_everywhere(SELECT + b"i IDLE\r\nb NOOP\r\nc NOOP\r\n")
    assert d.events[-2] == Invalid("i", r.tagged("i", "BAD", "Expected DONE to end IDLE"))
    assert lines(d.out)[-2:] == ["i BAD Expected DONE to end IDLE", "c OK Completed"]


def test_idle_too_long_line() -> None:
    d = same_everywhere(
        SELECT + b"i IDLE\r\n" + b"D" * 100 + b" {3+}\r\nc NOOP\r\n", Limits(max_line=50)
    )
    assert lines(d.out)[-2:] == ["i BAD Expected DONE to end IDLE", "c OK Completed"]


def test_idle_refused() -> None:
    conn = after(LOGIN)
    conn.receive_data(b"i IDLE\r\n")
    conn.next_event()
    assert conn.send(r.tagged("i", "NO", "Not now")) == b"i NO Not now\r\n"
    assert conn.mode is Mode.COMMAND


def test_bye_during_idle_closes() -> None:
    conn = after(SELECT)
    conn.receive_data(b"i IDLE\r\n")
    conn.next_event()
    conn.send_continuation("idling")
    assert conn.send(r.bye("Autologout")) == b"* BYE Autologout\r\n"
    assert conn.state is State.LOGOUT
    assert conn.next_event() is CLOSED


# -- AUTHENTICATE -----------------------------------------------------------------------------------


def test_authenticate_exchange() -> None:
    conn = ServerConnection()
    conn.receive_data(b"a AUTHENTICATE LOGIN\r\n")
    assert conn.next_event() == c.Authenticate("a", "LOGIN")
    assert conn.send_continuation(b"VXNlcm5hbWU6") == b"+ VXNlcm5hbWU6\r\n"
    assert conn.mode is Mode.AUTHENTICATE
    conn.receive_data(b"YWxpY2U=\r\n")
    assert conn.next_event() == AuthResponse(b"YWxpY2U=")
    assert conn.send_continuation(b"UGFzc3dvcmQ6") == b"+ UGFzc3dvcmQ6\r\n"
    conn.receive_data(b"c2VjcmV0\r\n")
    assert conn.next_event() == AuthResponse(b"c2VjcmV0")
    conn.authenticated()
    assert conn.send(r.tagged("a", "OK", "Logged in")) == b"a OK Logged in\r\n"
    assert conn.mode is Mode.COMMAND and conn.state is State.AUTHENTICATED


def test_authenticate_cancel_and_empty() -> None:
    d = same_everywhere(b"a AUTHENTICATE PLAIN\r\n*\r\nb AUTHENTICATE PLAIN\r\n\r\n")
    assert AuthResponse(None) in d.events and AuthResponse(b"") in d.events
    assert "hunter" not in repr(AuthResponse(b"hunter"))


def test_authenticate_line_too_long() -> None:
    d = same_everywhere(
        b"a AUTHENTICATE PLAIN\r\n" + b"A" * 100 + b"\r\nb NOOP\r\n", Limits(max_line=50)
    )
    assert lines(d.out) == ["+ ", "a BAD SASL response too long", "b OK Completed"]


def test_continuation_misuse() -> None:
    conn = ServerConnection()
    with pytest.raises(LocalProtocolError):
        conn.send_continuation()
    conn.receive_data(b"a NOOP\r\nb FOO\r\n")
    conn.next_event()
    with pytest.raises(LocalProtocolError, match="no continuation for NOOP"):
        conn.send_continuation()
    conn.send(r.tagged("a", "OK"))
    conn.next_event()
    with pytest.raises(LocalProtocolError):
        conn.send_continuation()  # an Invalid is answered with its response


# -- STARTTLS -----------------------------------------------------------------------------------------


def test_starttls_discards_pipelined_plaintext() -> None:
    conn = ServerConnection()
    conn.receive_data(b"a STARTTLS\r\nb LOGIN evil x\r\n")
    assert conn.next_event() == c.StartTls("a")
    assert conn.send(r.tagged("a", "OK", "Begin TLS")) == b"a OK Begin TLS\r\n"
    assert conn.mode is Mode.TLS
    assert conn.discarded_plaintext == len(b"b LOGIN evil x\r\n")
    conn.receive_data(b"c NOOP\r\n")  # still plaintext: the handshake has not happened
    assert conn.discarded_plaintext == len(b"b LOGIN evil x\r\nc NOOP\r\n")
    assert conn.next_event() is NEED_DATA
    conn.tls_started()
    assert conn.tls_active and conn.mode is Mode.COMMAND
    conn.receive_data(b"d STARTTLS\r\n")
    event = conn.next_event()
    assert isinstance(event, Invalid) and event.response.text == "TLS is already active"


def test_starttls_refused_keeps_reading() -> None:
    conn = ServerConnection()
    conn.receive_data(b"a STARTTLS\r\nb NOOP\r\n")
    conn.next_event()
    conn.send(r.tagged("a", "NO", "No certificate"))
    assert conn.next_event() == c.Noop("b")


def test_eof_during_tls_handshake() -> None:
    conn = after(b"a STARTTLS\r\n")
    conn.receive_data(b"")
    assert conn.next_event() is CLOSED


def test_tls_started_without_starttls() -> None:
    with pytest.raises(LocalProtocolError):
        ServerConnection().tls_started()


# -- COMPRESS ------------------------------------------------------------------------------------------


def deflate(data: bytes) -> bytes:
    compressor = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
    return compressor.compress(data) + compressor.flush(zlib.Z_SYNC_FLUSH)


def inflate(data: bytes) -> bytes:
    return zlib.decompressobj(-zlib.MAX_WBITS).decompress(data)


def test_compress() -> None:
    conn = after(LOGIN)
    payload = deflate(b"b NOOP\r\nc SELECT INBOX\r\n")
    conn.receive_data(b"a COMPRESS DEFLATE\r\n" + payload[:5])
    assert conn.next_event() == c.Compress("a", "DEFLATE")
    assert conn.send(r.tagged("a", "OK", "DEFLATE active")) == b"a OK DEFLATE active\r\n"
    assert conn.mode is Mode.COMPRESS
    conn.receive_data(payload[5:])
    assert conn.next_event() is NEED_DATA  # nothing is read before compress_started()
    conn.compress_started()
    assert conn.compressing
    assert conn.next_event() == c.Noop("b")
    decompressor = zlib.decompressobj(-zlib.MAX_WBITS)
    assert decompressor.decompress(conn.send(r.tagged("b", "OK", "x"))) == b"b OK x\r\n"
    assert conn.next_event() == c.Select("c", "INBOX")
    conn.selected(False)
    out = conn.send(r.exists(1), r.tagged("c", "OK", "y"))
    assert decompressor.decompress(out) == b"* 1 EXISTS\r\nc OK y\r\n"
    assert conn.send() == b""


def test_compressed_session_is_independent_of_chunking() -> None:
    clear = b"b NOOP\r\nc APPEND INBOX {5+}\r\nhello\r\nd LOGOUT\r\n"
    data = LOGIN + b"a COMPRESS DEFLATE\r\n" + deflate(clear)
    d = same_everywhere(data)
    assert d.appended == [b"hello"]
    assert d.events[-1] is CLOSED


def test_compression_bomb_is_inflated_stepwise() -> None:
    conn = after(LOGIN + b"a COMPRESS DEFLATE\r\n", Limits(append_chunk=1024, max_line=4096))
    conn.receive_data(deflate(b"b APPEND INBOX {1000000+}\r\n" + b"\0" * 1_000_000 + b"\r\n"))
    events: list[Event] = []
    while not isinstance(event := conn.next_event(), AppendEnd):
        if isinstance(event, NeedLiteral):
            conn.accept_literal()
        assert len(conn._buf) <= 4096 + 1024
        events.append(event)
    events.append(event)
    assert sum(len(e.chunk) for e in events if isinstance(e, AppendData)) == 1_000_000
    assert isinstance(events[-1], AppendEnd)


@pytest.mark.parametrize(
    "junk",
    [
        deflate(b"b NOOP\r\nc NO") + b"\xff" * 8,  # an invalid block after good data
        zlib.compress(b"b NOOP\r\n"),  # a zlib header is no raw deflate
        deflate(b"b NOOP\r\n")
        + zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS).flush(zlib.Z_FINISH)
        + b"more",  # data after the end of the stream
    ],
)
def test_broken_compressed_input_closes(junk: bytes) -> None:
    d = same_everywhere(LOGIN + b"a COMPRESS DEFLATE\r\n" + junk)
    assert d.events[-2] == Invalid(None, r.untagged_status("BAD", "Invalid compressed data"), True)
    assert d.events[-1] is CLOSED
    tail = inflate(bytes(d.out).split(b"a OK DEFLATE active\r\n", 1)[1])
    assert tail.endswith(b"* BAD Invalid compressed data\r\n* BYE Closing connection\r\n")


def test_inflate_until_error_on_good_data() -> None:
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    assert _inflate_until_error(inflater, deflate(b"all of it")) == b"all of it"


def test_compress_started_without_compress() -> None:
    with pytest.raises(LocalProtocolError):
        ServerConnection().compress_started()


# -- streaming FETCH --------------------------------------------------------------------------------


def test_fetch_streams_a_literal() -> None:
    conn = after(SELECT)
    conn.receive_data(b"f UID FETCH 5 BODY.PEEK[]\r\n")
    event = conn.next_event()
    assert isinstance(event, c.Fetch)
    item = event.items[0]
    out = conn.send_fetch_start(1, [("UID", 5)], item.name, 10)
    assert out == b"* 1 FETCH (UID 5 BODY[] {10}\r\n"
    with pytest.raises(LocalProtocolError):
        conn.send(r.tagged("f", "OK"))
    with pytest.raises(LocalProtocolError):
        conn.send_fetch_start(2, [], "BODY[]", 1)
    with pytest.raises(LocalProtocolError):
        conn.send_fetch_end()
    assert conn.send_fetch_chunk(b"01234") == b"01234"
    with pytest.raises(LocalProtocolError):
        conn.send_fetch_chunk(b"012345")
    assert conn.send_fetch_chunk(b"56789") == b"56789"
    assert conn.send_fetch_end([("FLAGS", [r.Atom("\\Seen")])]) == b" FLAGS (\\Seen))\r\n"
    assert conn.send(r.tagged("f", "OK", "done")) == b"f OK done\r\n"


def test_fetch_stream_misuse() -> None:
    conn = ServerConnection()
    with pytest.raises(LocalProtocolError):
        conn.send_fetch_chunk(b"x")
    with pytest.raises(LocalProtocolError):
        conn.send_fetch_end()
    with pytest.raises(LocalProtocolError):
        conn.send_fetch_start(1, [], "BODY[]", -1)


def test_fetch_stream_is_compressed() -> None:
    conn = after(SELECT + b"z COMPRESS DEFLATE\r\n")
    decompressor = zlib.decompressobj(-zlib.MAX_WBITS)
    out = conn.send_fetch_start(1, [], "BINARY[]", 3, binary=True)
    out += conn.send_fetch_chunk(b"\0\1\2") + conn.send_fetch_end()
    assert decompressor.decompress(out) == b"* 1 FETCH (BINARY[] ~{3}\r\n\0\1\2)\r\n"


# -- misuse by the driver -----------------------------------------------------------------------------


def test_next_event_before_the_response() -> None:
    conn = ServerConnection()
    conn.receive_data(b"a NOOP\r\nb NOOP\r\n")
    assert conn.next_event() == c.Noop("a")
    with pytest.raises(LocalProtocolError, match="a NOOP"):
        conn.next_event()
    conn.send(r.untagged_status("OK", "still waiting"))
    with pytest.raises(LocalProtocolError):
        conn.next_event()
    conn.send(r.tagged("a", "OK"))
    assert conn.next_event() == c.Noop("b")


def test_next_event_before_the_response_to_invalid() -> None:
    conn = ServerConnection()
    conn.receive_data(b"a FOO\r\n NOOP\r\n")
    assert isinstance(conn.next_event(), Invalid)
    with pytest.raises(LocalProtocolError, match="a refused command"):
        conn.next_event()
    conn.send(r.tagged("a", "BAD", "x"))
    event = conn.next_event()
    assert isinstance(event, Invalid) and event.tag is None
    with pytest.raises(LocalProtocolError, match=r"\* a refused command"):
        conn.next_event()
    assert conn.send(r.untagged_status("BAD", "x")) == b"* BAD x\r\n"
    assert conn.next_event() is NEED_DATA


def test_send_checks_before_it_changes_anything() -> None:
    conn = ServerConnection()
    conn.receive_data(b"a NOOP\r\n")
    conn.next_event()
    for wrong in [
        (r.tagged("a", "BAD"), r.tagged("a", "OK")),
        (r.untagged_status("BAD", "x"), r.tagged("b", "OK")),
    ]:
        with pytest.raises(LocalProtocolError):
            conn.send(*wrong)
    assert conn.error_count == 0
    assert conn.send(r.tagged("a", "OK")) == b"a OK Completed\r\n"


def test_two_untagged_bads_complete_one_invalid() -> None:
    conn = ServerConnection()
    conn.receive_data(b" x\r\n")
    conn.next_event()
    with pytest.raises(LocalProtocolError, match="one command at most"):
        conn.send(r.untagged_status("BAD", "x"), r.untagged_status("BAD", "y"))


def test_tagged_response_for_no_command() -> None:
    conn = ServerConnection()
    with pytest.raises(LocalProtocolError, match="no command tagged 'a'"):
        conn.send(r.tagged("a", "OK"))
    conn.receive_data(b"a NOOP\r\n")
    conn.next_event()
    with pytest.raises(LocalProtocolError, match="no command tagged 'b'"):
        conn.send(r.tagged("b", "OK"))


def test_untagged_bad_is_just_a_response_when_nothing_waits_for_it() -> None:
    conn = ServerConnection()
    assert conn.send(r.untagged_status("BAD", "hmm")) == b"* BAD hmm\r\n"
    assert conn.error_count == 1
    assert (
        conn.send(r.untagged(1, r.Atom("EXISTS")), r.thread([[1]]))
        == b"* 1 EXISTS\r\n* THREAD (1)\r\n"
    )


def test_bye_without_command_closes() -> None:
    conn = ServerConnection()
    assert conn.send(r.bye("Go away")) == b"* BYE Go away\r\n"
    assert conn.state is State.CLOSED
