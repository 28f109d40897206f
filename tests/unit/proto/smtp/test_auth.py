"""SMTP AUTH in the sans-IO machine (RFC 4954): the command, its sequencing and the
SASL exchange lines. Mechanisms themselves are the driver's business."""

from __future__ import annotations

import pytest

from mailwright.core.reply import Reply
from mailwright.proto.smtp import replies
from mailwright.proto.smtp.events import (
    CLOSED,
    NEED_DATA,
    Auth,
    AuthResponse,
    Ehlo,
    Event,
    Invalid,
    MailFrom,
    Noop,
    Quit,
    Rset,
    StartTls,
)
from mailwright.proto.smtp.server import Limits, ServerConnection
from mailwright.proto.smtp.state import State, Verb, after_reply, authenticates, check
from tests.unit.proto.smtp.helpers import (
    CHALLENGE_EMPTY,
    CHALLENGE_PASSWORD,
    CHALLENGE_USER,
    ENVELOPE,
    GREET,
    LOGIN_PASSWORD,
    LOGIN_USER,
    PLAIN_OK,
    bytewise,
    codes,
    drive,
    in_state,
    reply_lines,
    run,
    split,
)

AUTH = Limits(auth=True)
MAIL = GREET + b"MAIL FROM:<a@remote.test>\r\n"
PLAIN = b"AUTH PLAIN " + PLAIN_OK.encode() + b"\r\n"
LOGIN = b"AUTH LOGIN\r\n" + LOGIN_USER.encode() + b"\r\n" + LOGIN_PASSWORD.encode() + b"\r\n"


def events_after(
    data: bytes, setup: bytes = GREET, limits: Limits = AUTH
) -> tuple[ServerConnection, list[Event], bytes]:
    conn = in_state(setup, limits)
    events, out = drive(conn, data)
    return conn, events, out


def waiting_for_response(limits: Limits = AUTH) -> ServerConnection:
    """A connection that sent 334 to AUTH PLAIN and waits for the response line."""
    conn = in_state(GREET + b"AUTH PLAIN\r\n", limits)
    assert conn.state is State.AUTH
    return conn


# -- the command -------------------------------------------------------------------------


@pytest.mark.parametrize("line", [b"AUTH PLAIN\r\n", PLAIN, b"auth login\r\n"])
def test_auth_not_implemented_unless_enabled(line: bytes) -> None:
    conn, events, out = events_after(line, limits=Limits())
    assert events == [Invalid(replies.NOT_IMPLEMENTED)]
    assert out.startswith(b"502 5.5.1 ")
    assert conn.state is State.GREETED


@pytest.mark.parametrize(
    ("line", "event"),
    [
        (b"AUTH PLAIN\r\n", Auth("PLAIN", None)),
        (b"auth plain AHUAcA==\r\n", Auth("PLAIN", "AHUAcA==")),
        (b"AUTH PLAIN =\r\n", Auth("PLAIN", "=")),
        (b"AUTH PLAIN   AHUAcA==  \r\n", Auth("PLAIN", "AHUAcA==")),
        (b"Auth Scram-SHA-256\r\n", Auth("SCRAM-SHA-256", None)),
        (b"AUTH X_MECH-2 abc+/09=\r\n", Auth("X_MECH-2", "abc+/09=")),
        (b"AUTH " + b"M" * 20 + b"\r\n", Auth("M" * 20, None)),
    ],
)
def test_auth_parse(line: bytes, event: Auth) -> None:
    conn = in_state(GREET, AUTH)
    conn.receive_data(line)
    assert conn.next_event() == event


@pytest.mark.parametrize(
    "line",
    [
        b"AUTH\r\n",
        b"AUTH \r\n",
        b"AUTH " + b"M" * 21 + b"\r\n",
        b"AUTH PL.AIN\r\n",
        b"AUTH PLAIN abc def\r\n",
        b"AUTH PLAIN abc!\r\n",
        b"AUTH PLAIN a-b\r\n",
        b"AUTH PLAIN\tabc\r\n",
    ],
)
def test_auth_syntax_errors(line: bytes) -> None:
    conn, events, out = events_after(line)
    assert events == [Invalid(replies.AUTH_SYNTAX)]
    assert out == b"501 5.5.4 Syntax: AUTH mechanism [initial-response]\r\n"
    assert conn.state is State.GREETED
    assert conn.error_count == 1


def test_auth_with_non_ascii_is_refused_as_a_command() -> None:
    _, events, _ = events_after("AUTH PLAİN\r\n".encode())
    assert events == [Invalid(replies.EIGHT_BIT_COMMAND)]


def test_credentials_stay_out_of_reprs() -> None:
    assert "AHUAcA" not in repr(Auth("PLAIN", "AHUAcA=="))
    assert "secret" not in repr(AuthResponse("secret"))


# -- sequencing ----------------------------------------------------------------------------

SEQ_AUTH = "AUTH not permitted during a mail transaction"


@pytest.mark.parametrize(
    ("setup", "text"),
    [
        (b"", "Send HELO/EHLO first"),
        (MAIL, SEQ_AUTH),
        (ENVELOPE, SEQ_AUTH),
        (ENVELOPE + b"BDAT 3\r\nabc", "Only BDAT, RSET, NOOP or QUIT may follow BDAT"),
        (GREET + PLAIN, "Already authenticated"),
        (GREET + PLAIN + b"MAIL FROM:<a@b.example>\r\n", SEQ_AUTH),
    ],
)
def test_auth_sequencing(setup: bytes, text: str) -> None:
    conn = in_state(setup, AUTH)
    before = conn.state
    conn.receive_data(b"AUTH PLAIN\r\n")
    event = conn.next_event()
    assert event == Invalid(Reply(503, "5.5.1", text))
    conn.send(event.reply)
    assert conn.state is before


def test_auth_allowed_again_after_a_failure() -> None:
    conn, events, out = events_after(b"AUTH PLAIN AAAA\r\n" + PLAIN)
    assert events == [Auth("PLAIN", "AAAA"), Auth("PLAIN", PLAIN_OK)]
    assert codes(out) == [535, 235]
    assert conn.authenticated
    assert conn.error_count == 1


@pytest.mark.parametrize(
    ("state", "authenticated", "verb", "refusal"),
    [
        (State.GREETED, False, Verb.AUTH, None),
        (State.GREETED, True, Verb.AUTH, Reply(503, "5.5.1", "Already authenticated")),
        (State.GREETED, True, Verb.MAIL, None),
        (State.CONNECTED, True, Verb.EHLO, None),
        (State.CONNECTED, False, Verb.AUTH, Reply(503, "5.5.1", "Send HELO/EHLO first")),
        (State.MAIL, True, Verb.AUTH, Reply(503, "5.5.1", SEQ_AUTH)),
        (State.RCPT, False, Verb.AUTH, Reply(503, "5.5.1", SEQ_AUTH)),
        (State.AUTH, False, Verb.AUTH, replies.BAD_SEQUENCE),
        (State.AUTH, False, Verb.QUIT, replies.BAD_SEQUENCE),
    ],
)
def test_check_table(state: State, authenticated: bool, verb: Verb, refusal: Reply | None) -> None:
    assert check(state, verb, authenticated=authenticated) == refusal


CHALLENGE = Reply(334, None, "")


@pytest.mark.parametrize(
    ("state", "reply", "new"),
    [
        (State.GREETED, CHALLENGE, State.AUTH),
        (State.GREETED, replies.AUTH_OK, State.GREETED),
        (State.GREETED, replies.AUTH_MECHANISM_UNKNOWN, State.GREETED),
        (State.AUTH, CHALLENGE, State.AUTH),
        (State.AUTH, replies.AUTH_OK, State.GREETED),
        (State.AUTH, replies.AUTH_CANCELLED, State.GREETED),
        (State.AUTH, replies.AUTH_LINE_TOO_LONG, State.GREETED),
        (State.AUTH, replies.SERVICE_UNAVAILABLE, State.CLOSED),
        (State.GREETED, replies.SERVICE_UNAVAILABLE, State.CLOSED),
    ],
)
def test_after_reply_to_auth(state: State, reply: Reply, new: State) -> None:
    assert after_reply(state, Verb.AUTH, reply) is new


@pytest.mark.parametrize(
    ("verb", "reply", "result"),
    [
        (Verb.AUTH, replies.AUTH_OK, True),
        (Verb.AUTH, Reply(235, None, "ok"), True),
        (Verb.AUTH, CHALLENGE, False),
        (Verb.AUTH, replies.AUTH_INVALID, False),
        (Verb.NOOP, Reply(235, "2.7.0", "odd"), False),
    ],
)
def test_authenticates(verb: Verb, reply: Reply, result: bool) -> None:
    assert authenticates(verb, reply) is result


# -- the SASL exchange ---------------------------------------------------------------------


def test_initial_response_authenticates_at_once() -> None:
    conn, events, out = events_after(PLAIN)
    assert events == [Auth("PLAIN", PLAIN_OK)]
    assert out == b"235 2.7.0 Authentication successful\r\n"
    assert conn.state is State.GREETED
    assert conn.authenticated


def test_not_authenticated_before_auth() -> None:
    assert not in_state(GREET, AUTH).authenticated


def test_empty_challenge_then_response() -> None:
    conn = in_state(GREET, AUTH)
    conn.receive_data(b"AUTH PLAIN\r\n")
    assert conn.next_event() == Auth("PLAIN", None)
    assert conn.send(CHALLENGE_EMPTY) == b"334\r\n"
    states = [conn.state]
    assert conn.next_event() is NEED_DATA
    conn.receive_data(PLAIN_OK.encode() + b"\r\n")
    assert conn.next_event() == AuthResponse(PLAIN_OK)
    conn.send(replies.AUTH_OK)
    assert [*states, conn.state] == [State.AUTH, State.GREETED]
    assert conn.authenticated


def test_multi_step_login_exchange() -> None:
    conn, events, out = events_after(LOGIN + b"NOOP\r\n")
    assert events == [
        Auth("LOGIN", None),
        AuthResponse(LOGIN_USER),
        AuthResponse(LOGIN_PASSWORD),
        Noop(),
    ]
    assert reply_lines(out) == [
        "334 VXNlcm5hbWU6",
        "334 UGFzc3dvcmQ6",
        "235 2.7.0 Authentication successful",
        "250 2.0.0 Ok",
    ]
    assert conn.authenticated
    assert conn.error_count == 0


def test_login_with_initial_response() -> None:
    _, events, out = events_after(b"AUTH LOGIN dQ==\r\ncA==\r\n")
    assert events == [Auth("LOGIN", "dQ=="), AuthResponse("cA==")]
    assert out == CHALLENGE_PASSWORD.to_bytes() + replies.AUTH_OK.to_bytes()


def test_wrong_credentials_back_to_greeted_and_counted() -> None:
    conn, events, out = events_after(b"AUTH LOGIN\r\ndQ==\r\neA==\r\n")
    assert events[-1] == AuthResponse("eA==")
    assert codes(out) == [334, 334, 535]
    assert conn.state is State.GREETED
    assert not conn.authenticated
    assert conn.error_count == 1


def test_cancel_is_passed_on() -> None:
    conn, events, out = events_after(b"AUTH LOGIN\r\n*\r\nNOOP\r\n")
    assert events == [Auth("LOGIN", None), AuthResponse("*"), Noop()]
    assert codes(out) == [334, 501, 250]
    assert conn.state is State.GREETED
    assert not conn.authenticated
    assert conn.error_count == 1


@pytest.mark.parametrize(
    ("line", "data"),
    [(b"\r\n", ""), (b"QUIT\r\n", "QUIT"), (b"MAIL FROM:<a@b>\r\n", "MAIL FROM:<a@b>")],
)
def test_response_line_is_never_a_command(line: bytes, data: str) -> None:
    conn = waiting_for_response()
    events, _ = drive(conn, line)
    assert events == [AuthResponse(data)]
    assert conn.state is State.GREETED


def test_pipelined_exchange_and_commands_in_one_read() -> None:
    data = LOGIN + b"MAIL FROM:<a@remote.test>\r\nQUIT\r\n"
    conn, events, out = run(GREET + data, AUTH)
    assert [type(e) for e in events] == [
        Ehlo,
        Auth,
        AuthResponse,
        AuthResponse,
        MailFrom,
        Quit,
        type(CLOSED),
    ]
    assert codes(out) == [250, 334, 334, 235, 250, 221]
    assert conn.authenticated


def test_next_event_waits_for_the_challenge_to_be_sent() -> None:
    conn = in_state(GREET, AUTH)
    conn.receive_data(b"AUTH LOGIN\r\ndQ==\r\n")
    assert conn.next_event() == Auth("LOGIN", None)
    conn.send(CHALLENGE_USER)
    assert conn.next_event() == AuthResponse("dQ==")


def test_response_after_a_refused_auth_is_a_command() -> None:
    # No 334: the line after AUTH is read as a command again.
    _conn, events, out = events_after(b"AUTH CRAM-MD5\r\ndQ==\r\n")
    assert events == [Auth("CRAM-MD5", None), Invalid(replies.SYNTAX_ERROR)]
    assert codes(out) == [504, 500]


@pytest.mark.parametrize("reply_to", ["auth", "response"])
def test_421_closes_during_exchange(reply_to: str) -> None:
    conn = in_state(GREET, AUTH)
    conn.receive_data(b"AUTH LOGIN\r\ndQ==\r\nNOOP\r\n")
    conn.next_event()
    if reply_to == "response":
        conn.send(CHALLENGE_USER)
        assert conn.next_event() == AuthResponse("dQ==")
    assert conn.send(replies.SHUTTING_DOWN).startswith(b"421 ")
    assert conn.state is State.CLOSED
    assert conn.next_event() is CLOSED


def test_eof_during_exchange_closes() -> None:
    conn = waiting_for_response()
    conn.receive_data(b"dQ=")
    conn.receive_data(b"")
    assert conn.next_event() is CLOSED
    assert not conn.authenticated


def test_error_limit_counts_failed_auth() -> None:
    data = b"AUTH LOGIN\r\n*\r\nAUTH PLAIN AAAA\r\nNOOP\r\n"
    conn, _, _ = events_after(data)
    assert conn.error_count == 2
    conn, events, out = events_after(data, limits=Limits(auth=True, max_errors=2))
    assert codes(out) == [334, 501, 535, 421]
    assert conn.state is State.CLOSED
    assert events[-1] is CLOSED


# -- response line limits and line endings -------------------------------------------------


@pytest.mark.parametrize("feed", ["whole", "bytewise", "pieces"])
def test_response_line_length_limit(feed: str) -> None:
    limit = AUTH.max_auth_line
    fits = b"A" * (limit - 2) + b"\r\n"
    over = b"A" * (limit - 1) + b"\r\n"
    for line, expected in ((fits, AuthResponse("A" * (limit - 2))), (over, None)):
        conn = waiting_for_response()
        data = line + b"NOOP\r\n"
        pieces = {"whole": [data], "bytewise": bytewise(data), "pieces": split(data, 4000)}
        events, out = drive(conn, pieces[feed])
        if expected is not None:
            assert events == [expected, Noop()]
            continue
        assert events == [Invalid(replies.AUTH_LINE_TOO_LONG), Noop()]
        assert reply_lines(out)[0] == "500 5.5.6 Authentication exchange line too long"
        assert conn.state is State.GREETED
        assert conn.error_count == 1  # the 334 is no error; the 500 is


def test_response_line_may_exceed_the_command_limit() -> None:
    conn = waiting_for_response(Limits(auth=True, max_line=64))
    events, _ = drive(conn, b"B" * 1000 + b"\r\n")
    assert events == [AuthResponse("B" * 1000)]


def test_response_line_limit_is_configurable() -> None:
    conn = waiting_for_response(Limits(auth=True, max_auth_line=10))
    events, _ = drive(conn, b"12345678\r\n")
    assert events == [AuthResponse("12345678")]
    conn = waiting_for_response(Limits(auth=True, max_auth_line=10))
    events, _ = drive(conn, b"123456789\r\n")
    assert events == [Invalid(replies.AUTH_LINE_TOO_LONG)]


@pytest.mark.parametrize("piece", [1, 700, 4096])
def test_buffer_bounded_for_one_huge_response_line(piece: int) -> None:
    limits = Limits(auth=True, max_auth_line=1000)
    conn = waiting_for_response(limits)
    for _ in range(50_000 // piece + 1):
        conn.receive_data(b"A" * piece)
        assert conn.next_event() is NEED_DATA
        assert len(conn._buf) <= limits.max_auth_line + piece
    conn.receive_data(b"\r\nNOOP\r\n")
    assert conn.next_event() == Invalid(replies.AUTH_LINE_TOO_LONG)
    conn.send(replies.AUTH_LINE_TOO_LONG)
    assert conn.next_event() == Noop()


def test_overlong_response_split_between_cr_and_lf() -> None:
    conn = waiting_for_response(Limits(auth=True, max_auth_line=10))
    events, _ = drive(conn, [b"A" * 20 + b"\r", b"\nNOOP\r\n"])
    assert events == [Invalid(replies.AUTH_LINE_TOO_LONG), Noop()]


@pytest.mark.parametrize(
    ("line", "refusal"),
    [
        (b"dQ==\n", replies.AUTH_BARE_NEWLINE),
        (b"d\rQ==\r\n", replies.AUTH_BARE_NEWLINE),
        (b"dQ==\r\r\n", replies.AUTH_BARE_NEWLINE),
        (b"d\0Q==\r\n", replies.AUTH_NUL),
        ("dé\r\n".encode(), replies.AUTH_EIGHT_BIT),
        (b"\xff\r\n", replies.AUTH_EIGHT_BIT),
    ],
)
def test_bad_response_lines_end_the_exchange(line: bytes, refusal: Reply) -> None:
    conn = waiting_for_response()
    events, out = drive(conn, line + b"NOOP\r\n")
    assert events == [Invalid(refusal), Noop()]
    assert out.startswith(b"501 5.5.2 ")
    assert conn.state is State.GREETED
    assert not conn.authenticated


def test_bare_lf_response_normalised_when_configured() -> None:
    conn = waiting_for_response(Limits(auth=True, normalize_bare_lf=True))
    events, _ = drive(conn, b"AHUAcA==\n")
    assert events == [AuthResponse("AHUAcA==")]
    assert conn.authenticated


# -- how long authentication lasts -----------------------------------------------------------


def test_rset_and_ehlo_keep_authentication() -> None:
    conn, events, _out = events_after(PLAIN + b"RSET\r\nEHLO again\r\nAUTH PLAIN\r\n")
    assert events[1:3] == [Rset(), Ehlo("again")]
    assert conn.authenticated
    assert events[-1] == Invalid(Reply(503, "5.5.1", "Already authenticated"))


def test_tls_handshake_ends_authentication() -> None:
    conn, events, _ = events_after(PLAIN + b"STARTTLS\r\n")
    assert events == [Auth("PLAIN", PLAIN_OK), StartTls()]
    assert conn.authenticated
    conn.tls_started()
    assert not conn.authenticated
    events, out = drive(conn, b"EHLO c\r\n" + PLAIN)
    assert codes(out) == [250, 235]
    assert conn.authenticated


@pytest.mark.parametrize("data", [PLAIN + b"NOOP\r\n", LOGIN + b"QUIT\r\n", GREET + PLAIN])
def test_same_result_under_any_chunking(data: bytes) -> None:
    _, whole, out_whole = run([GREET + data, b""], AUTH)
    for size in (1, 2, 3, 7):
        _conn, events, out = run([*split(GREET + data, size), b""], AUTH)
        assert events == whole
        assert out == out_whole
