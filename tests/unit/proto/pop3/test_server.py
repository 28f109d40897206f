"""The sans-IO POP3 server machine: parsing, sequencing, SASL lines, STLS, limits."""

from __future__ import annotations

import pytest

from mailwright.core.errors import LocalProtocolError
from mailwright.proto.pop3 import replies
from mailwright.proto.pop3.events import (
    CLOSED,
    NEED_DATA,
    Auth,
    AuthResponse,
    Capa,
    Closed,
    Dele,
    Event,
    Invalid,
    List,
    Noop,
    Pass,
    Quit,
    Retr,
    Rset,
    Stat,
    Stls,
    Top,
    Uidl,
    User,
)
from mailwright.proto.pop3.replies import Continuation, Pop3Reply
from mailwright.proto.pop3.server import MAX_NUMBER, Limits, ServerConnection
from mailwright.proto.pop3.state import State
from tests.unit.proto.pop3.helpers import (
    LISTING,
    LOGIN,
    MESSAGE,
    bytewise,
    drive,
    generic_answer,
    in_state,
    run,
    split,
    status_lines,
)


def one(line: bytes, setup: bytes = LOGIN, limits: Limits | None = None) -> tuple[Event, bytes]:
    """The single event for ``line`` after ``setup``, and what the driver sent."""
    conn = in_state(setup, limits)
    events, out = drive(conn, line)
    assert len(events) == 1, events
    return events[0], out


def refused(line: bytes, setup: bytes = LOGIN, limits: Limits | None = None) -> Pop3Reply:
    event, _ = one(line, setup, limits)
    assert isinstance(event, Invalid), event
    return event.reply


# -- a whole session -------------------------------------------------------------------


def test_full_session_events_and_replies() -> None:
    conn, events, out = run(
        b"CAPA\r\nUSER alice\r\nPASS secret\r\nSTAT\r\nLIST\r\nRETR 1\r\nDELE 1\r\nQUIT\r\n"
    )
    assert events == [
        Capa(),
        User("alice"),
        Pass("secret"),
        Stat(),
        List(),
        Retr(1),
        Dele(1),
        Quit(),
        CLOSED,
    ]
    assert status_lines(out) == [
        "+OK Capability list follows",
        "+OK Send PASS",
        "+OK Logged in",
        "+OK",
        "+OK",
        "+OK Message follows",
        "+OK",
        "+OK Bye",
    ]
    assert b"\r\n..first\r\n" in out
    assert conn.state is State.CLOSED
    assert conn.next_event() is CLOSED


def test_greeting_is_unsolicited_and_leaves_state() -> None:
    conn = ServerConnection()
    greeting = replies.GREETING.with_text("pop.example.test POP3 ready")
    assert conn.send_unsolicited(greeting) == b"+OK pop.example.test POP3 ready\r\n"
    assert conn.state is State.AUTHORIZATION
    assert conn.next_event() is NEED_DATA


def test_unsolicited_err_closes() -> None:
    conn = in_state(LOGIN)
    assert conn.send_unsolicited(replies.TIMEOUT) == b"-ERR Autologout: idle for too long\r\n"
    assert conn.state is State.CLOSED
    assert conn.next_event() is CLOSED
    assert conn.error_count == 0  # a notice of ours is not the client's error


def test_unsolicited_err_drops_a_pending_command() -> None:
    conn = in_state(b"USER alice\r\n")
    conn.receive_data(b"PASS x\r\n")
    assert conn.next_event() == Pass("x")
    assert conn.send_unsolicited(replies.SHUTTING_DOWN).startswith(b"-ERR [SYS/TEMP] ")
    assert conn.next_event() is CLOSED
    assert conn.user is None


def test_pipelined_commands_answered_in_order() -> None:
    # RFC 2449 §6.6: PIPELINING
    conn = ServerConnection()
    conn.receive_data(LOGIN + b"STAT\r\nNOOP\r\n")
    seen = []
    while (event := conn.next_event()) is not NEED_DATA:
        seen.append(type(event))
        reply = generic_answer(event)
        assert not isinstance(reply, tuple)
        conn.send(reply)
    assert seen == [User, Pass, Stat, Noop]


# -- misuse by the driver ----------------------------------------------------------------


def test_next_event_before_reply_is_local_error() -> None:
    conn = ServerConnection()
    conn.receive_data(b"CAPA\r\nCAPA\r\n")
    assert conn.next_event() == Capa()
    with pytest.raises(LocalProtocolError, match="CAPA"):
        conn.next_event()


def test_send_without_pending_command_is_local_error() -> None:
    with pytest.raises(LocalProtocolError):
        ServerConnection().send(replies.OK)


def test_send_multiline_without_pending_command_is_local_error() -> None:
    with pytest.raises(LocalProtocolError):
        ServerConnection().send_multiline(replies.OK, [])


def test_tls_started_without_stls_is_local_error() -> None:
    with pytest.raises(LocalProtocolError):
        ServerConnection().tls_started()


@pytest.mark.parametrize("line", [b"CAPA\r\n", b"USER a\r\n", b"NOOP\r\n"])
def test_continuation_only_answers_auth(line: bytes) -> None:
    conn = in_state(b"" if line != b"NOOP\r\n" else LOGIN)
    conn.receive_data(line)
    conn.next_event()
    state = conn.state
    with pytest.raises(LocalProtocolError, match="continuation"):
        conn.send(Continuation("x"))
    assert conn.state is state
    assert conn.send(replies.OK) == b"+OK\r\n"  # still pending: the misuse changed nothing


@pytest.mark.parametrize(
    ("setup", "line"),
    [
        (LOGIN, b"STAT\r\n"),
        (LOGIN, b"LIST 1\r\n"),
        (LOGIN, b"UIDL 1\r\n"),
        (LOGIN, b"DELE 1\r\n"),
        (b"", b"USER a\r\n"),
        (b"", b"FOO\r\n"),
    ],
)
def test_body_only_where_a_command_takes_one(setup: bytes, line: bytes) -> None:
    conn = in_state(setup)
    conn.receive_data(line)
    conn.next_event()
    with pytest.raises(LocalProtocolError, match="multi-line"):
        conn.send(Pop3Reply(True, "x", ("a",)))
    with pytest.raises(LocalProtocolError, match="multi-line"):
        conn.send_multiline(replies.OK, ["a"])
    assert conn.send(Pop3Reply(False, "no")) == b"-ERR no\r\n"


@pytest.mark.parametrize(
    "reply", [Pop3Reply(False, "no such message"), Pop3Reply(True, "x", ("a",))]
)
def test_send_multiline_takes_plain_ok(reply: Pop3Reply) -> None:
    conn = in_state(LOGIN + b"RETR 1\r\n")
    conn.receive_data(b"RETR 1\r\n")
    assert conn.next_event() == Retr(1)
    with pytest.raises(LocalProtocolError, match="send_multiline"):
        conn.send_multiline(reply, b"x\r\n")


# -- multi-line responses -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "event"),
    [
        (b"CAPA\r\n", Capa()),
        (b"LIST\r\n", List()),
        (b"UIDL\r\n", Uidl()),
        (b"RETR 1\r\n", Retr(1)),
        (b"TOP 1 0\r\n", Top(1, 0)),
    ],
)
def test_multiline_commands(line: bytes, event: Event) -> None:
    conn = in_state(LOGIN)
    conn.receive_data(line)
    assert conn.next_event() == event
    out = conn.send_multiline(replies.OK, [".a", "b", ""])
    assert out == b"+OK\r\n..a\r\nb\r\n\r\n.\r\n"


def test_bad_body_line_changes_nothing() -> None:
    conn = in_state(LOGIN)
    conn.receive_data(b"UIDL\r\n")
    assert conn.next_event() == Uidl()
    with pytest.raises(LocalProtocolError):
        conn.send(Pop3Reply(True, "", ("1 a\r\n.",)))
    with pytest.raises(LocalProtocolError):
        conn.send_multiline(replies.OK, ["1 a\n"])
    assert conn.send(replies.OK) == b"+OK\r\n"  # still pending


def test_send_with_lines_renders_the_body() -> None:
    conn = in_state(LOGIN + b"UIDL\r\n")
    conn.receive_data(b"UIDL\r\n")
    assert conn.next_event() == Uidl()
    out = conn.send(Pop3Reply(True, "", ("1 abc", "2 .def")))
    assert out == b"+OK\r\n1 abc\r\n2 .def\r\n.\r\n"


def test_send_multiline_with_a_message() -> None:
    conn = in_state(LOGIN)
    conn.receive_data(b"RETR 1\r\n")
    assert conn.next_event() == Retr(1)
    out = conn.send_multiline(replies.MESSAGE_FOLLOWS, b"A: b\r\n\r\n.x\r\nend")
    assert out == b"+OK Message follows\r\nA: b\r\n\r\n..x\r\nend\r\n.\r\n"


def test_send_multiline_with_bytes_lines() -> None:
    conn = in_state(LOGIN)
    conn.receive_data(b"LIST\r\n")
    conn.next_event()
    assert conn.send_multiline(replies.OK, [b"1 2", ".."]) == b"+OK\r\n1 2\r\n...\r\n.\r\n"


def test_listing_and_message_through_the_helper() -> None:
    _, _, out = run(LOGIN + b"LIST\r\nTOP 1 1\r\n")
    assert b"+OK\r\n" + "\r\n".join(LISTING).encode() + b"\r\n.\r\n" in out
    header = MESSAGE.split(b"\r\n\r\n")[0]
    assert out.endswith(b"+OK Message follows\r\n" + header + b"\r\n\r\n..first\r\n.\r\n")


# -- parsing ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "event"),
    [
        (b"STAT\r\n", Stat()),
        (b"stat\r\n", Stat()),
        (b"StAt\r\n", Stat()),
        (b"STAT \r\n", Stat()),
        (b"STAT   \r\n", Stat()),
        (b"STAT\n", Stat()),  # bare LF accepted
        (b"LIST\r\n", List()),
        (b"LIST 1\r\n", List(1)),
        (b"list  7 \r\n", List(7)),
        (b"LIST 0001\r\n", List(1)),
        (b"LIST 2147483647\r\n", List(MAX_NUMBER)),
        (b"RETR 3\r\n", Retr(3)),
        (b"DELE 4\r\n", Dele(4)),
        (b"NOOP\r\n", Noop()),
        (b"RSET\r\n", Rset()),
        (b"TOP 1 0\r\n", Top(1, 0)),
        (b"TOP 2 10\r\n", Top(2, 10)),
        (b"TOP  2   10 \r\n", Top(2, 10)),
        (b"TOP 2 2147483647\r\n", Top(2, MAX_NUMBER)),
        (b"TOP 2 " + b"0" * 30 + b"5\r\n", Top(2, 5)),
        (b"UIDL\r\n", Uidl()),
        (b"UIDL 9\r\n", Uidl(9)),
        (b"CAPA\r\n", Capa()),
    ],
)
def test_transaction_commands_parse(line: bytes, event: Event) -> None:
    got, _ = one(line)
    assert got == event


@pytest.mark.parametrize(
    ("line", "event"),
    [
        (b"USER alice\r\n", User("alice")),
        (b"user  alice@example.test \r\n", User("alice@example.test")),
        ("USER jörg@exämple.test\r\n".encode(), User("jörg@exämple.test")),
        (b"AUTH PLAIN\r\n", Auth("PLAIN")),
        (b"auth plain AGEAYg==\r\n", Auth("PLAIN", "AGEAYg==")),
        (b"AUTH PLAIN =\r\n", Auth("PLAIN", "=")),
        (b"AUTH x-Oauth_2\r\n", Auth("X-OAUTH_2")),
        (b"AUTH " + b"M" * 20 + b"\r\n", Auth("M" * 20)),
        (b"STLS\r\n", Stls()),
        (b"CAPA\r\n", Capa()),
    ],
)
def test_authorization_commands_parse(line: bytes, event: Event) -> None:
    got, _ = one(line, setup=b"")
    assert got == event


@pytest.mark.parametrize(
    ("line", "password"),
    [
        (b"PASS secret\r\n", "secret"),
        # RFC 1939 §7: PASS has one argument, so spaces are part of the password.
        (b"PASS two words\r\n", "two words"),
        (b"PASS  lead and trail \r\n", " lead and trail "),
        (b"PASS  \r\n", " "),
        ("PASS pässwörd\r\n".encode(), "pässwörd"),
    ],
)
def test_pass_takes_the_rest_of_the_line(line: bytes, password: str) -> None:
    got, _ = one(line, setup=b"USER alice\r\n")
    assert got == Pass(password)


def test_passwords_never_in_repr() -> None:
    assert "hunter2" not in repr(Pass("hunter2"))
    assert "hunter2" not in repr(Auth("PLAIN", "aHVudGVyMg==hunter2"))
    assert "hunter2" not in repr(AuthResponse("hunter2"))
    assert repr(Auth("PLAIN", "x")) == "Auth(mechanism='PLAIN')"


@pytest.mark.parametrize(
    ("line", "setup", "text"),
    [
        (b"USER\r\n", b"", "Syntax: USER name"),
        (b"USER \r\n", b"", "Syntax: USER name"),
        (b"USER a b\r\n", b"", "Syntax: USER name"),
        (b"PASS\r\n", b"USER a\r\n", "Syntax: PASS password"),
        (b"PASS \r\n", b"USER a\r\n", "Syntax: PASS password"),
        (b"AUTH\r\n", b"", "Syntax: AUTH mechanism [initial-response]"),
        (b"AUTH  \r\n", b"", "Syntax: AUTH mechanism [initial-response]"),
        (b"AUTH PLAIN a b\r\n", b"", "Syntax: AUTH mechanism [initial-response]"),
        (b"AUTH " + b"M" * 21 + b"\r\n", b"", "Invalid SASL mechanism name"),
        (b"AUTH PL@IN\r\n", b"", "Invalid SASL mechanism name"),
        ("AUTH PLA\u0131N\r\n".encode(), b"", "Invalid SASL mechanism name"),
        (b"LIST 1 2\r\n", LOGIN, "Syntax: LIST [msg]"),
        (b"UIDL 1 2\r\n", LOGIN, "Syntax: UIDL [msg]"),
        (b"RETR\r\n", LOGIN, "Syntax: RETR msg"),
        (b"RETR 1 2\r\n", LOGIN, "Syntax: RETR msg"),
        (b"DELE\r\n", LOGIN, "Syntax: DELE msg"),
        (b"TOP 1\r\n", LOGIN, "Syntax: TOP msg lines"),
        (b"TOP\r\n", LOGIN, "Syntax: TOP msg lines"),
        (b"TOP 1 2 3\r\n", LOGIN, "Syntax: TOP msg lines"),
        (b"STAT x\r\n", LOGIN, "Syntax: STAT takes no arguments"),
        (b"NOOP x\r\n", LOGIN, "Syntax: NOOP takes no arguments"),
        (b"RSET x\r\n", LOGIN, "Syntax: RSET takes no arguments"),
        (b"QUIT now\r\n", LOGIN, "Syntax: QUIT takes no arguments"),
        (b"CAPA x\r\n", b"", "Syntax: CAPA takes no arguments"),
        (b"STLS x\r\n", b"", "Syntax: STLS takes no arguments"),
    ],
)
def test_syntax_errors(line: bytes, setup: bytes, text: str) -> None:
    reply = refused(line, setup)
    assert reply == Pop3Reply(False, text)


@pytest.mark.parametrize("verb", [b"LIST", b"UIDL", b"RETR", b"DELE", b"TOP"])
@pytest.mark.parametrize(
    ("arg", "reply"),
    [
        (b"x", replies.BAD_MESSAGE_NUMBER),
        (b"-1", replies.BAD_MESSAGE_NUMBER),
        (b"+1", replies.BAD_MESSAGE_NUMBER),
        (b"1.0", replies.BAD_MESSAGE_NUMBER),
        (b"0x1", replies.BAD_MESSAGE_NUMBER),
        ("\u00b2".encode(), replies.BAD_MESSAGE_NUMBER),  # "²".isdigit() is True
        ("\uff11".encode(), replies.BAD_MESSAGE_NUMBER),  # fullwidth one
        (b"0", replies.NO_SUCH_MESSAGE),
        (b"000", replies.NO_SUCH_MESSAGE),
        (b"2147483648", replies.NO_SUCH_MESSAGE),
        (b"99999999999", replies.NO_SUCH_MESSAGE),
        (b"9" * 5000, replies.NO_SUCH_MESSAGE),  # longer than int()'s digit limit
    ],
)
def test_message_numbers(verb: bytes, arg: bytes, reply: Pop3Reply) -> None:
    extra = b" 1" if verb == b"TOP" else b""
    assert refused(verb + b" " + arg + extra + b"\r\n", limits=Limits(max_line=9000)) == reply


@pytest.mark.parametrize("arg", [b"x", b"-1", b"2147483648", b"9" * 40, "\u00b3".encode()])
def test_top_line_count(arg: bytes) -> None:
    assert refused(b"TOP 1 " + arg + b"\r\n") == replies.BAD_LINE_COUNT


def test_top_checks_the_message_number_first() -> None:
    assert refused(b"TOP x y\r\n") == replies.BAD_MESSAGE_NUMBER


@pytest.mark.parametrize(
    "line", [b"FOO\r\n", b"\r\n", b"\n", b" STAT\r\n", b"STAT\tx\r\n", b"STA\r\n", b"RETR1\r\n"]
)
def test_unknown_command(line: bytes) -> None:
    assert refused(line) == replies.UNKNOWN_COMMAND


@pytest.mark.parametrize("line", [b"APOP alice c4c9334bac560ecc979e58001b3e22fb\r\n", b"LAST\r\n"])
def test_not_supported(line: bytes) -> None:
    assert refused(line, setup=b"") == replies.NOT_SUPPORTED


@pytest.mark.parametrize("line", ["L\u0131ST\r\n", "U\u017fER alice\r\n", "LA\u017fT\r\n"])
def test_non_ascii_verb_is_unknown(line: str) -> None:
    # "L\u0131ST".upper() == "LIST" (dotless i), "U\u017fER".upper() == "USER" (long s)
    assert line.split(" ")[0].strip().upper().isascii()
    assert refused(line.encode(), setup=b"") == replies.UNKNOWN_COMMAND


@pytest.mark.parametrize("line", [b"USER \xff\r\n", b"\xc3(\r\n", b"PASS \xe9t\xe9\r\n"])
def test_invalid_utf8(line: bytes) -> None:
    assert refused(line, setup=b"USER a\r\n") == replies.NOT_UTF8


@pytest.mark.parametrize("line", [b"USER a\0b\r\n", b"\0\r\n", b"PASS x\0\r\n"])
def test_nul_refused(line: bytes) -> None:
    assert refused(line, setup=b"USER a\r\n") == replies.NUL_IN_COMMAND


@pytest.mark.parametrize("line", [b"USER a\rb\r\n", b"STAT\r\r\n", b"\rSTAT\r\n", b"STAT\r\rx\n"])
def test_bare_cr_refused(line: bytes) -> None:
    assert refused(line, setup=b"") == replies.BAD_LINE_ENDING


def test_bare_lf_lines_are_commands() -> None:
    _, events, out = run(b"USER alice\nPASS secret\nSTAT\r\nQUIT\n")
    assert events == [User("alice"), Pass("secret"), Stat(), Quit(), CLOSED]
    assert status_lines(out)[-1] == "+OK Bye"


def test_refusal_does_not_change_state() -> None:
    conn = in_state(LOGIN + b"FOO\r\nUSER x\r\n")
    assert conn.state is State.TRANSACTION
    assert conn.error_count == 2


# -- sequencing (state.py) through the machine --------------------------------------------

SETUPS = {
    State.AUTHORIZATION: b"",
    State.USER: b"USER alice\r\n",
    State.TRANSACTION: LOGIN,
}
COMMANDS = {
    "USER": (b"USER bob\r\n", User("bob")),
    "PASS": (b"PASS pw\r\n", Pass("pw")),
    "AUTH": (b"AUTH PLAIN\r\n", Auth("PLAIN")),
    "CAPA": (b"CAPA\r\n", Capa()),
    "STAT": (b"STAT\r\n", Stat()),
    "LIST": (b"LIST\r\n", List()),
    "RETR": (b"RETR 1\r\n", Retr(1)),
    "DELE": (b"DELE 1\r\n", Dele(1)),
    "NOOP": (b"NOOP\r\n", Noop()),
    "RSET": (b"RSET\r\n", Rset()),
    "TOP": (b"TOP 1 1\r\n", Top(1, 1)),
    "UIDL": (b"UIDL\r\n", Uidl()),
    "QUIT": (b"QUIT\r\n", Quit()),
    "STLS": (b"STLS\r\n", Stls()),
}
MAILDROP = {"STAT", "LIST", "RETR", "DELE", "NOOP", "RSET", "TOP", "UIDL"}
ALLOWED = {
    State.AUTHORIZATION: {"USER", "AUTH", "CAPA", "QUIT", "STLS"},
    State.USER: {"PASS", "USER", "CAPA", "QUIT"},
    State.TRANSACTION: MAILDROP | {"CAPA", "QUIT"},
}
REFUSALS = {
    State.AUTHORIZATION: {"PASS": replies.SEND_USER_FIRST}
    | dict.fromkeys(MAILDROP, replies.NOT_AUTHENTICATED),
    State.USER: {"AUTH": replies.SEND_PASS, "STLS": replies.SEND_PASS}
    | dict.fromkeys(MAILDROP, replies.NOT_AUTHENTICATED),
    State.TRANSACTION: dict.fromkeys(["USER", "PASS", "AUTH"], replies.ALREADY_AUTHENTICATED)
    | {"STLS": replies.STLS_AFTER_LOGIN},
}


def test_sequence_tables_cover_every_pair() -> None:
    for state, allowed in ALLOWED.items():
        assert allowed | set(REFUSALS[state]) == set(COMMANDS), state
        assert not allowed & set(REFUSALS[state]), state


@pytest.mark.parametrize("tls_active", [False, True])
@pytest.mark.parametrize(
    ("state", "verb"),
    [(s, v) for s in SETUPS for v in COMMANDS],
    ids=[f"{s.value}-{v}" for s in SETUPS for v in COMMANDS],
)
def test_sequencing(state: State, verb: str, tls_active: bool) -> None:
    conn = in_state(SETUPS[state], tls_active=tls_active)
    assert conn.state is state
    line, expected = COMMANDS[verb]
    conn.receive_data(line)
    event = conn.next_event()
    if verb == "STLS" and state is State.AUTHORIZATION and tls_active:
        # RFC 2595 §4: once TLS is on (STLS done, or port 995) STLS is refused.
        assert event == Invalid(replies.TLS_ACTIVE)
    elif verb in ALLOWED[state]:
        assert event == expected
    else:
        assert event == Invalid(REFUSALS[state][verb])
        conn.send(event.reply)
        assert conn.state is state


def test_lines_in_sasl_state_are_responses_not_commands() -> None:
    conn = in_state(b"AUTH PLAIN\r\n")
    assert conn.state is State.SASL
    for line in (b"QUIT", b"USER x", b"*", b"", b"AGFsaWNlAHNlY3JldA==", b"not base64!"):
        conn.receive_data(line + b"\r\n")
        event = conn.next_event()
        assert event == AuthResponse(line.decode())
        conn.send(Continuation(""))
        assert conn.state is State.SASL


# -- USER / PASS (RFC 1939 §7) -------------------------------------------------------------


def test_user_is_remembered_until_pass_is_answered() -> None:
    conn = in_state(b"USER alice\r\n")
    assert conn.state is State.USER and conn.user == "alice"
    conn.receive_data(b"CAPA\r\nPASS pw\r\n")
    assert conn.next_event() == Capa()
    conn.send(replies.capa(user=True, stls=False))
    assert conn.user == "alice"
    assert conn.next_event() == Pass("pw")
    assert conn.user == "alice"  # the driver reads it now
    conn.send(replies.LOGGED_IN)
    assert conn.state is State.TRANSACTION and conn.user is None
    assert conn.authenticated


def test_second_user_replaces_the_first() -> None:
    conn = in_state(b"USER alice\r\nUSER bob\r\n")
    assert conn.state is State.USER and conn.user == "bob"


def test_refused_user_starts_over() -> None:
    conn = in_state(b"USER alice\r\n")
    drive(conn, b"USER bob\r\n", answer=lambda e: replies.TLS_REQUIRED)
    assert conn.state is State.AUTHORIZATION and conn.user is None


def test_user_refused_by_the_machine_keeps_the_accepted_name() -> None:
    conn = in_state(b"USER alice\r\nUSER a b\r\nRETR 1\r\n")
    assert conn.state is State.USER and conn.user == "alice"


def test_refused_pass_starts_over() -> None:
    conn = in_state(b"USER alice\r\n")
    _, out = drive(conn, b"PASS wrong\r\n", answer=lambda e: replies.AUTH_FAILED)
    assert out == b"-ERR [AUTH] Authentication failed\r\n"
    assert conn.state is State.AUTHORIZATION and conn.user is None
    assert not conn.authenticated
    events, _ = drive(conn, b"PASS again\r\n")
    assert events == [Invalid(replies.SEND_USER_FIRST)]


def test_pass_refused_in_use() -> None:
    conn = in_state(b"USER alice\r\n")
    _, out = drive(conn, b"PASS pw\r\n", answer=lambda e: replies.IN_USE)
    assert out.startswith(b"-ERR [IN-USE] ")
    assert conn.state is State.AUTHORIZATION


# -- AUTH (RFC 5034) -------------------------------------------------------------------------


def test_auth_exchange() -> None:
    conn = ServerConnection()
    conn.receive_data(b"AUTH LOGIN\r\n")
    assert conn.next_event() == Auth("LOGIN", None)
    assert conn.send(Continuation("VXNlcm5hbWU6")) == b"+ VXNlcm5hbWU6\r\n"
    assert conn.state is State.SASL
    conn.receive_data(b"YWxpY2U=\r\n")
    assert conn.next_event() == AuthResponse("YWxpY2U=")
    assert conn.send(Continuation("UGFzc3dvcmQ6")) == b"+ UGFzc3dvcmQ6\r\n"
    conn.receive_data(b"c2VjcmV0\r\nSTAT\r\n")
    assert conn.next_event() == AuthResponse("c2VjcmV0")
    assert conn.send(replies.LOGGED_IN) == b"+OK Logged in\r\n"
    assert conn.state is State.TRANSACTION
    assert conn.next_event() == Stat()


def test_auth_with_initial_response_succeeding_at_once() -> None:
    conn = in_state(b"AUTH PLAIN AGFsaWNlAHNlY3JldA==\r\n", tls_active=True)
    assert conn.state is State.SASL  # the helper answered with a continuation
    conn = ServerConnection()
    drive(conn, b"AUTH PLAIN AGFsaWNlAHNlY3JldA==\r\n", answer=lambda e: replies.LOGGED_IN)
    assert conn.state is State.TRANSACTION


def test_auth_cancelled() -> None:
    conn = in_state(b"AUTH PLAIN\r\n")
    events, out = drive(conn, b"*\r\nCAPA\r\n")
    assert events[0] == AuthResponse("*") and events[0].cancelled
    assert status_lines(out)[0] == "-ERR Authentication cancelled"
    assert events[1] == Capa()
    assert conn.state is State.AUTHORIZATION
    assert not AuthResponse("=").cancelled


@pytest.mark.parametrize("mechanism", [b"FOO", b"CRAM-MD5"])
def test_auth_refused_by_driver_stays_in_authorization(mechanism: bytes) -> None:
    conn = ServerConnection()
    drive(conn, b"AUTH " + mechanism + b"\r\n", answer=lambda e: replies.UNKNOWN_MECHANISM)
    assert conn.state is State.AUTHORIZATION


@pytest.mark.parametrize(
    ("line", "reply"),
    [
        ("ü\r\n".encode(), replies.AUTH_FAILED),
        (b"\xff\r\n", replies.AUTH_FAILED),
        (b"AA\0A\r\n", replies.NUL_IN_COMMAND),
        (b"AA\rA\r\n", replies.BAD_LINE_ENDING),
        (b"A" * 8191 + b"\r\n", replies.LINE_TOO_LONG),
    ],
)
def test_bad_sasl_line_fails_the_exchange(line: bytes, reply: Pop3Reply) -> None:
    conn = in_state(b"AUTH PLAIN\r\n")
    events, _ = drive(conn, line + b"STAT\r\n")
    assert events == [Invalid(reply), Invalid(replies.NOT_AUTHENTICATED)]
    assert conn.state is State.AUTHORIZATION


def test_sasl_lines_may_be_longer_than_commands() -> None:
    conn = in_state(b"AUTH PLAIN\r\n")
    response = b"A" * 8188
    events, _ = drive(conn, response + b"\r\n")
    assert events == [AuthResponse(response.decode())]
    assert refused(b"NOOP " + b"x" * 1020 + b"\r\n") == replies.LINE_TOO_LONG


def test_sasl_limit_applies_to_lines_read_in_sasl_state_only() -> None:
    data = b"AUTH PLAIN\r\n" + b"A" * 3000 + b"\r\n" + b"NOOP " + b"x" * 3000 + b"\r\n"
    for pieces in ([data], split(data, 700), bytewise(data)):
        _, events, _ = run(pieces)
        assert events == [
            Auth("PLAIN"),
            AuthResponse("A" * 3000),
            Invalid(replies.LINE_TOO_LONG),
        ]


# -- QUIT and UPDATE (RFC 1939 §6) ------------------------------------------------------------


def test_quit_in_authorization_closes() -> None:
    conn = in_state(b"USER a\r\n")
    events, out = drive(conn, b"QUIT\r\nSTAT\r\n")
    assert events == [Quit(), CLOSED]
    assert out == b"+OK Bye\r\n"


def test_quit_in_transaction_enters_update() -> None:
    conn = in_state(LOGIN + b"DELE 1\r\n")
    conn.receive_data(b"QUIT\r\nSTAT\r\n")
    assert conn.next_event() == Quit()
    assert conn.state is State.UPDATE
    assert conn.authenticated
    conn.receive_data(b"x" * 10_000)  # nothing will read it
    assert len(conn._buf) == len(b"STAT\r\n")
    assert conn.send(replies.BYE) == b"+OK Bye\r\n"
    assert conn.state is State.CLOSED
    assert conn.next_event() is CLOSED


def test_quit_answered_err_still_closes() -> None:
    conn = in_state(LOGIN)
    events, out = drive(conn, b"QUIT\r\n", answer=lambda e: replies.NOT_ALL_REMOVED)
    assert events == [Quit(), CLOSED]
    assert out == b"-ERR [SYS/TEMP] Some deleted messages not removed\r\n"


# -- STLS (RFC 2595 §4) ---------------------------------------------------------------------


def test_stls_discards_pipelined_plaintext() -> None:
    pipelined = b"USER evil\r\nPASS x\r\n"
    conn = ServerConnection()
    events, out = drive(conn, b"STLS\r\n" + pipelined)
    assert events == [Stls()]
    assert out == b"+OK Begin TLS negotiation\r\n"
    assert conn.state is State.TLS
    assert conn.discarded_plaintext == len(pipelined)
    assert len(conn._buf) == 0
    # more plaintext before the handshake is dropped and counted too
    conn.receive_data(b"STAT\r\n")
    assert conn.next_event() is NEED_DATA
    assert conn.discarded_plaintext == len(pipelined) + 6
    conn.tls_started()
    assert conn.state is State.AUTHORIZATION and conn.tls_active
    events, _ = drive(conn, b"PASS x\r\nSTLS\r\nUSER alice\r\n")
    assert events == [
        Invalid(replies.SEND_USER_FIRST),
        Invalid(replies.TLS_ACTIVE),
        User("alice"),
    ]


def test_stls_without_pipelining_discards_nothing() -> None:
    conn = in_state(b"CAPA\r\nSTLS\r\n")
    assert conn.state is State.TLS
    assert conn.discarded_plaintext == 0


def test_stls_refused_keeps_state_and_buffer() -> None:
    conn = ServerConnection()
    events, _ = drive(conn, b"STLS\r\nUSER a\r\n", answer=lambda e: replies.TLS_UNAVAILABLE)
    assert events == [Stls(), User("a")]
    assert conn.discarded_plaintext == 0
    assert conn.state is State.AUTHORIZATION


def test_eof_while_waiting_for_tls_handshake() -> None:
    conn = in_state(b"STLS\r\n")
    conn.receive_data(b"")
    assert conn.next_event() is CLOSED


def test_implicit_tls_refuses_stls() -> None:
    conn = ServerConnection(tls_active=True)
    events, _ = drive(conn, b"STLS\r\n")
    assert events == [Invalid(replies.TLS_ACTIVE)]


# -- the error counter ------------------------------------------------------------------------


def test_error_limit_appends_err_and_closes() -> None:
    conn = in_state(b"", Limits(max_errors=3))
    drive(conn, b"FOO\r\nFOO\r\n")
    assert conn.error_count == 2 and conn.state is State.AUTHORIZATION
    events, out = drive(conn, b"FOO\r\nCAPA\r\n")
    assert events == [Invalid(replies.UNKNOWN_COMMAND), CLOSED]
    assert out == b"-ERR Unknown command\r\n-ERR Too many errors\r\n"
    assert conn.state is State.CLOSED


def test_default_error_limit_is_ten() -> None:
    conn = ServerConnection()
    events, out = drive(conn, b"FOO\r\n" * 15)
    assert len(events) == 11 and events[-1] is CLOSED
    assert status_lines(out) == ["-ERR Unknown command"] * 10 + ["-ERR Too many errors"]


def test_driver_errors_count_too() -> None:
    conn = in_state(LOGIN, Limits(max_errors=2))
    _, out = drive(conn, b"RETR 9\r\n" * 3, answer=lambda e: replies.NO_SUCH_MESSAGE)
    assert status_lines(out) == [
        "-ERR No such message",
        "-ERR No such message",
        "-ERR Too many errors",
    ]
    assert conn.state is State.CLOSED


def test_error_limit_not_added_when_already_closing() -> None:
    conn = in_state(b"", Limits(max_errors=1))
    events, out = drive(conn, b"QUIT\r\n", answer=lambda e: replies.NOT_ALL_REMOVED)
    assert events == [Quit(), CLOSED]
    assert status_lines(out) == [str(replies.NOT_ALL_REMOVED)]


def test_continuations_and_positive_replies_do_not_count() -> None:
    conn = in_state(b"AUTH PLAIN\r\nAAAA\r\n" + b"STAT\r\n" * 3)
    assert conn.error_count == 0


def test_should_delay_after_half_the_errors() -> None:
    conn = ServerConnection(Limits(max_errors=6))
    for count in range(3):
        assert conn.error_count == count
        assert not conn.should_delay
        drive(conn, b"FOO\r\n")
    assert conn.should_delay


@pytest.mark.parametrize("max_errors", [0, 1])
def test_should_delay_never_before_an_error(max_errors: int) -> None:
    assert not ServerConnection(Limits(max_errors=max_errors)).should_delay


# -- line limits ------------------------------------------------------------------------------


def noop_line(total: int, end: bytes = b"\r\n") -> bytes:
    """A NOOP line of exactly ``total`` octets, line end included."""
    return b"NOOP " + b"x" * (total - 5 - len(end)) + end


@pytest.mark.parametrize("feed", ["whole", "bytewise", "pieces"])
def test_line_length_limit(feed: str) -> None:
    data = (
        noop_line(1024)
        + noop_line(1025)
        + noop_line(1024, b"\n")
        + noop_line(1025, b"\n")
        + b"STAT\r\n"
        + noop_line(100_000)
        + b"STAT\r\n"
    )
    pieces = {"whole": [data], "bytewise": bytewise(data), "pieces": split(data, 1000)}[feed]
    _, events, _ = run([LOGIN, *pieces])
    too_long = Invalid(replies.LINE_TOO_LONG)
    syntax = Invalid(Pop3Reply(False, "Syntax: NOOP takes no arguments"))
    assert events[2:] == [syntax, too_long, syntax, too_long, Stat(), too_long, Stat()]


def test_line_length_limit_is_configurable() -> None:
    limits = Limits(max_line=12)
    assert one(b"CAPA       \r\n", b"", limits)[0] == Invalid(replies.LINE_TOO_LONG)
    assert one(b"CAPA      \r\n", b"", limits)[0] == Capa()


def test_long_line_without_newline_is_discarded_as_it_arrives() -> None:
    conn = ServerConnection()
    for _ in range(1024):
        conn.receive_data(b"A" * 1024)
        assert conn.next_event() is NEED_DATA
        assert len(conn._buf) <= conn.limits.max_line + 1024
    events, _ = drive(conn, b"\r\nCAPA\r\n")
    assert events == [Invalid(replies.LINE_TOO_LONG), Capa()]


def test_too_long_line_in_user_state_keeps_the_state() -> None:
    conn = in_state(b"USER alice\r\n" + noop_line(2000))
    assert conn.state is State.USER and conn.error_count == 1


# -- end of file ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "setup", [b"", b"USER a\r\n", LOGIN, b"AUTH PLAIN\r\n", b"partial", b"x" * 5000]
)
def test_eof_closes(setup: bytes) -> None:
    conn = in_state(setup)
    assert conn.state is not State.CLOSED
    conn.receive_data(b"")
    assert conn.next_event() is CLOSED
    assert conn.state is State.CLOSED
    assert conn.next_event() is CLOSED


def test_eof_after_complete_commands_still_yields_them() -> None:
    _, events, _ = run([LOGIN + b"STAT\r\nDELE 1\r\npartial", b""])
    assert events == [User("alice"), Pass("secret"), Stat(), Dele(1), CLOSED]


def test_data_after_close_is_ignored() -> None:
    conn = in_state(b"QUIT\r\n")
    conn.receive_data(b"x" * 10_000)
    assert len(conn._buf) == 0
    assert conn.next_event() is CLOSED
    assert isinstance(conn.next_event(), Closed)


# -- whole, byte by byte and pipelined give the same result ---------------------------------

SESSIONS = [
    LOGIN + b"STAT\r\nLIST\r\nRETR 1\r\nTOP 1 1\r\nUIDL\r\nDELE 1\r\nRSET\r\nQUIT\r\n",
    b"CAPA\r\nAUTH PLAIN\r\nAGFsaWNlAHNlY3JldA==\r\nSTAT\r\nQUIT\r\n",
    b"AUTH LOGIN\r\n*\r\nUSER a\nPASS b c\nRETR x\r\nRETR 0\r\nFOO\r\nQUIT\r\n",
    b"STLS\r\nUSER a\r\nPASS b\r\n",
    b"USER \xff\r\nUSER a\0\r\nSTAT\r\r\n" + noop_line(3000) + b"QUIT\r\n",
]


@pytest.mark.parametrize("data", SESSIONS)
def test_same_result_under_any_chunking(data: bytes) -> None:
    whole_conn, whole, out_whole = run([data, b""])
    for pieces in (bytewise(data), split(data, 2), split(data, 3), split(data, 13)):
        conn, events, out = run([*pieces, b""])
        assert events == whole
        assert out == out_whole
        assert conn.discarded_plaintext == whole_conn.discarded_plaintext
