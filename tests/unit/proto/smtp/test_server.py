"""The sans-IO SMTP server machine: parsing, sequencing, limits, DATA and BDAT streaming."""

from __future__ import annotations

import pytest

from mailwright.core.address import Address
from mailwright.core.errors import LocalProtocolError
from mailwright.core.reply import Reply
from mailwright.proto.smtp import replies
from mailwright.proto.smtp.events import (
    CLOSED,
    NEED_DATA,
    Bdat,
    Closed,
    Data,
    DataChunk,
    Ehlo,
    EndOfData,
    Event,
    Helo,
    Help,
    Invalid,
    MailFrom,
    Noop,
    Quit,
    RcptTo,
    Rset,
    StartTls,
    Vrfy,
)
from mailwright.proto.smtp.server import Limits, ServerConnection
from mailwright.proto.smtp.state import State, Verb, after_reply, check
from tests.unit.proto.smtp.helpers import (
    ENVELOPE,
    GREET,
    START_DATA,
    bytewise,
    codes,
    data_of,
    drive,
    generic_answer,
    in_state,
    merged,
    reply_lines,
    run,
    split,
)

BARE = replies.BARE_NEWLINE_DATA


def one(line: bytes, setup: bytes = GREET, limits: Limits | None = None) -> tuple[Event, bytes]:
    """The single event for ``line`` after ``setup``, and the reply the driver sent."""
    conn = in_state(setup, limits)
    events, out = drive(conn, line)
    assert len(events) == 1, events
    return events[0], out


def refused(line: bytes, setup: bytes = GREET, limits: Limits | None = None) -> Reply:
    event, _ = one(line, setup, limits)
    assert isinstance(event, Invalid), event
    return event.reply


def transaction(
    body: bytes, limits: Limits | None = None, pieces: int | None = None
) -> tuple[ServerConnection, list[Event], bytes]:
    data = START_DATA + body
    return run(data if pieces is None else split(data, pieces), limits)


# -- a whole session -----------------------------------------------------------


def test_full_session_events_and_replies() -> None:
    conn, events, out = run(
        START_DATA + b"Subject: hi\r\n\r\nbody\r\n.\r\nQUIT\r\n",
    )
    assert events == [
        Ehlo("client.example"),
        MailFrom(Address("a", "remote.test"), {}),
        RcptTo(Address("b", "example.test"), {}),
        Data(),
        DataChunk(b"Subject: hi\r\n\r\nbody\r\n"),
        EndOfData(None, last=True),
        Quit(),
        CLOSED,
    ]
    assert codes(out) == [250, 250, 250, 354, 250, 221]
    assert conn.state is State.CLOSED
    assert conn.next_event() is CLOSED


def test_greeting_is_unsolicited_and_leaves_state() -> None:
    conn = ServerConnection()
    greeting = Reply(220, None, "mx.example.test ESMTP mailwright")
    assert conn.send_unsolicited(greeting) == b"220 mx.example.test ESMTP mailwright\r\n"
    assert conn.state is State.CONNECTED
    assert conn.next_event() is NEED_DATA


def test_unsolicited_421_closes() -> None:
    conn = in_state(GREET)
    assert conn.send_unsolicited(replies.TIMEOUT).startswith(b"421 4.4.2 ")
    assert conn.state is State.CLOSED
    assert conn.next_event() is CLOSED


def test_multiline_reply_bytes() -> None:
    conn = ServerConnection()
    conn.receive_data(b"EHLO c\r\n")
    assert conn.next_event() == Ehlo("c")
    ehlo = Reply(250, None, ("mx.example.test", "PIPELINING", "SMTPUTF8"))
    assert conn.send(ehlo) == b"250-mx.example.test\r\n250-PIPELINING\r\n250 SMTPUTF8\r\n"
    assert conn.state is State.GREETED


def test_commands_are_case_insensitive() -> None:
    _, events, _ = run(b"ehlo c\r\nmail from:<a@b.example>\r\nrcpt to:<c@d.example>\r\nrset\r\n")
    assert [type(e) for e in events] == [Ehlo, MailFrom, RcptTo, Rset]


def test_pipelined_commands_answered_in_order() -> None:
    conn = ServerConnection()
    conn.receive_data(ENVELOPE + b"NOOP\r\n")
    seen = []
    while (event := conn.next_event()) is not NEED_DATA:
        seen.append(type(event))
        conn.send(generic_answer(event))
    assert seen == [Ehlo, MailFrom, RcptTo, Noop]


# -- misuse by the driver --------------------------------------------------------


def test_next_event_before_reply_is_local_error() -> None:
    conn = ServerConnection()
    conn.receive_data(b"NOOP\r\nNOOP\r\n")
    assert conn.next_event() == Noop()
    with pytest.raises(LocalProtocolError, match="NOOP"):
        conn.next_event()


def test_send_without_pending_command_is_local_error() -> None:
    with pytest.raises(LocalProtocolError):
        ServerConnection().send(replies.OK)


def test_tls_started_without_starttls_is_local_error() -> None:
    with pytest.raises(LocalProtocolError):
        in_state(GREET).tls_started()


# -- EHLO / HELO --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "event"),
    [
        (b"EHLO client.example\r\n", Ehlo("client.example")),
        (b"HELO client.example\r\n", Helo("client.example")),
        (b"EHLO [192.0.2.1]\r\n", Ehlo("[192.0.2.1]")),
        (b"EHLO   padded.example  \r\n", Ehlo("padded.example")),
        (b"eHlO x\r\n", Ehlo("x")),
    ],
)
def test_ehlo_helo_parse(line: bytes, event: Event) -> None:
    got, out = one(line, setup=b"")
    assert got == event
    assert out == b"250 2.0.0 Ok\r\n"


@pytest.mark.parametrize(
    "line", [b"EHLO\r\n", b"HELO\r\n", b"EHLO \r\n", b"EHLO a b\r\n", b"HELO a b\r\n"]
)
def test_ehlo_helo_need_one_hostname(line: bytes) -> None:
    reply = refused(line, setup=b"")
    assert (reply.code, reply.status) == (501, "5.5.4")


def test_ehlo_refused_by_driver_keeps_state() -> None:
    conn = ServerConnection()
    drive(conn, b"EHLO x\r\n", answer=lambda e: Reply(550, "5.7.1", "go away"))
    assert conn.state is State.CONNECTED


def test_ehlo_resets_transaction() -> None:
    conn = in_state(ENVELOPE + b"EHLO again\r\n")
    assert conn.state is State.GREETED
    assert not conn.in_transaction


# -- MAIL FROM ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("arg", "address", "params"),
    [
        (b"FROM:<user@example.test>", Address("user", "example.test"), {}),
        (b"from:<User@Example.TEST>", Address("User", "example.test"), {}),
        (b"FROM: <spaced@example.test>", Address("spaced", "example.test"), {}),
        (b"FROM:<>", None, {}),
        (b"FROM:<> BODY=8BITMIME", None, {"BODY": "8BITMIME"}),
        (b"FROM:<a@b.example> SIZE=1000", Address("a", "b.example"), {"SIZE": "1000"}),
        (b"FROM:<a@b.example> SIZE=0", Address("a", "b.example"), {"SIZE": "0"}),
        (b"FROM:<a@b.example> size=12", Address("a", "b.example"), {"SIZE": "12"}),
        (b"FROM:<a@b.example> BODY=7BIT", Address("a", "b.example"), {"BODY": "7BIT"}),
        (b"FROM:<a@b.example> body=8bitmime", Address("a", "b.example"), {"BODY": "8bitmime"}),
        (b"FROM:<a@b.example> SMTPUTF8", Address("a", "b.example"), {"SMTPUTF8": None}),
        (
            b"FROM:<a@b.example> SIZE=5 BODY=8BITMIME SMTPUTF8",
            Address("a", "b.example"),
            {"SIZE": "5", "BODY": "8BITMIME", "SMTPUTF8": None},
        ),
        (b"FROM:<a@b.example>   SIZE=5  ", Address("a", "b.example"), {"SIZE": "5"}),
        (b"FROM:<a@b.example>SIZE=5", Address("a", "b.example"), {"SIZE": "5"}),
        (b"FROM:<a@b.example> SIZE=" + b"9" * 20, Address("a", "b.example"), {"SIZE": "9" * 20}),
        # RFC 5321 §4.1.1.3 / Appendix C: a source route is accepted and ignored.
        (b"FROM:<@relay.example:a@b.example>", Address("a", "b.example"), {}),
        (b"FROM:<@r1.example,@r2.example:a@b.example>", Address("a", "b.example"), {}),
        # Quoted local parts, including the characters that end a path elsewhere.
        (b'FROM:<"john doe"@b.example>', Address('"john doe"', "b.example"), {}),
        (b'FROM:<"a>b"@b.example>', Address('"a>b"', "b.example"), {}),
        (b'FROM:<"a\\"b"@b.example>', Address('"a\\"b"', "b.example"), {}),
        (b'FROM:<"a@b"@b.example>', Address('"a@b"', "b.example"), {}),
        (b"FROM:<a@[192.0.2.1]>", Address("a", "[192.0.2.1]"), {}),
        (b"FROM:<a@[IPv6:2001:db8::1]>", Address("a", "[ipv6:2001:db8::1]"), {}),
    ],
)
def test_mail_from_parse(
    arg: bytes, address: Address | None, params: dict[str, str | None]
) -> None:
    event, out = one(b"MAIL " + arg + b"\r\n")
    assert event == MailFrom(address, params)
    assert out == b"250 2.0.0 Ok\r\n"


def test_mail_from_smtputf8_property() -> None:
    assert MailFrom(None, {"SMTPUTF8": None}).smtputf8
    assert not MailFrom(None, {}).smtputf8


def test_mail_from_utf8_with_smtputf8() -> None:
    line = "MAIL FROM:<jösé@exämple.test> SMTPUTF8\r\n".encode()
    event, _ = one(line)
    assert event == MailFrom(Address("jösé", "exämple.test"), {"SMTPUTF8": None})


def test_mail_from_utf8_without_smtputf8_refused() -> None:
    reply = refused("MAIL FROM:<jösé@example.test>\r\n".encode())
    assert (reply.code, reply.status) == (501, "5.1.7")
    assert "non-ASCII" in str(reply)


@pytest.mark.parametrize(
    ("arg", "code", "status", "text"),
    [
        (b"", 501, "5.5.4", "Syntax: FROM:<address>"),
        (b"TO:<a@b.example>", 501, "5.5.4", "Syntax: FROM:<address>"),
        (b"FROM:a@b.example", 501, "5.1.7", "address must be in <>"),
        (b"FROM:", 501, "5.1.7", "address must be in <>"),
        (b"FROM:<a@b.example", 501, "5.5.4", "missing >"),
        (b'FROM:<"a>b@b.example>', 501, "5.5.4", "missing >"),
        (b"FROM:<a@b.example> SIZE", 501, "5.5.4", "SIZE requires a number"),
        (b"FROM:<a@b.example> SIZE=abc", 501, "5.5.4", "SIZE requires a number"),
        (b"FROM:<a@b.example> SIZE=-1", 501, "5.5.4", "SIZE requires a number"),
        (b"FROM:<a@b.example> SIZE=" + b"9" * 21, 501, "5.5.4", "SIZE requires a number"),
        (b"FROM:<a@b.example> SIZE=1 SIZE=2", 501, "5.5.4", "Duplicate parameter: SIZE"),
        (b"FROM:<a@b.example> SIZE=1 size=2", 501, "5.5.4", "Duplicate parameter: SIZE"),
        (b"FROM:<a@b.example> =x", 501, "5.5.4", "Bad parameter syntax"),
        (b"FROM:<a@b.example> -X", 501, "5.5.4", "Bad parameter syntax"),
        (b"FROM:<a@b.example> X=", 501, "5.5.4", "Bad parameter syntax"),
        (b"FROM:<a@b.example> X=a=b", 501, "5.5.4", "Bad parameter syntax"),
        (b"FROM:<a@b.example> AUTH=<>", 555, "5.5.4", "Unsupported parameter: AUTH"),
        (b"FROM:<a@b.example> RET=FULL", 555, "5.5.4", "Unsupported parameter: RET"),
        (b"FROM:<a@b.example> BODY=BINARYMIME", 555, "5.5.4", "BODY must be 7BIT or 8BITMIME"),
        (b"FROM:<a@b.example> BODY", 555, "5.5.4", "BODY must be 7BIT or 8BITMIME"),
        (b"FROM:<a@b.example> SMTPUTF8=yes", 501, "5.5.4", "SMTPUTF8 takes no value"),
        (b"FROM:<a>", 501, "5.1.7", "local-part@domain"),
        (b"FROM:<@b.example>", 501, "5.1.7", "invalid source route"),
        (b"FROM:<@b.example,a@b.example>", 501, "5.1.7", "invalid source route"),
        (b"FROM:<@b..example:a@b.example>", 501, "5.1.7", "invalid source route"),
        (b"FROM:<a b@b.example>", 501, "5.1.7", "invalid local part"),
        (b"FROM:<a@b_c.example>", 501, "5.1.7", "invalid domain"),
        (b"FROM:<a@>", 501, "5.1.7", "invalid domain"),
    ],
)
def test_mail_from_refusals(arg: bytes, code: int, status: str, text: str) -> None:
    reply = refused(b"MAIL " + arg + b"\r\n")
    assert (reply.code, reply.status) == (code, status)
    assert text in str(reply)


@pytest.mark.parametrize("size", ["\u00b2", "\uff11\uff12", "\u0661"])
def test_mail_from_size_must_be_ascii_digits(size: str) -> None:
    # "²".isdigit() is True but int("²") raises: the driver must never see it.
    reply = refused(f"MAIL FROM:<a@b.example> SIZE={size}\r\n".encode())
    assert (reply.code, str(reply)) == (501, "501 5.5.4 SIZE requires a number")


def test_mail_from_body_must_be_ascii() -> None:
    # "8B\u0131TMIME".upper() == "8BITMIME" (dotless i)
    reply = refused("MAIL FROM:<a@b.example> BODY=8B\u0131TMIME\r\n".encode())
    assert reply.code == 555


def test_mail_path_length_limit() -> None:
    # RFC 5321 §4.5.3.1.3: a path is at most 256 octets including the brackets.
    domain = ".".join(["d" * 60] * 3) + ".example"  # 191 octets
    local = "l" * (256 - 2 - 1 - len(domain))
    ok, _ = one(f"MAIL FROM:<{local}@{domain}>\r\n".encode())
    assert ok == MailFrom(Address(local, domain), {})
    reply = refused(f"MAIL FROM:<{local}x@{domain}>\r\n".encode())
    assert (reply.code, reply.status) == (501, "5.1.7")
    assert "256" in str(reply)


def test_mail_local_part_length_limit() -> None:
    ok, _ = one(b"MAIL FROM:<" + b"l" * 64 + b"@b.example>\r\n")
    assert isinstance(ok, MailFrom)
    reply = refused(b"MAIL FROM:<" + b"l" * 65 + b"@b.example>\r\n")
    assert "64" in str(reply)


def test_mail_refused_by_driver_stays_greeted() -> None:
    conn = in_state(GREET)
    drive(conn, b"MAIL FROM:<a@b.example>\r\n", answer=lambda e: replies.RELAY_DENIED)
    assert conn.state is State.GREETED
    assert not conn.in_transaction


def test_mail_params_are_configurable() -> None:
    limits = Limits(mail_params=frozenset({"SIZE", "BODY", "SMTPUTF8", "RET", "ENVID"}))
    event, _ = one(b"MAIL FROM:<a@b.example> RET=HDRS ENVID=x+2By\r\n", limits=limits)
    assert event == MailFrom(Address("a", "b.example"), {"RET": "HDRS", "ENVID": "x+2By"})


# -- RCPT TO ------------------------------------------------------------------------

MAIL = GREET + b"MAIL FROM:<a@remote.test>\r\n"
MAIL_UTF8 = GREET + b"MAIL FROM:<a@remote.test> SMTPUTF8\r\n"


@pytest.mark.parametrize(
    ("arg", "address"),
    [
        (b"TO:<b@example.test>", Address("b", "example.test")),
        (b"to:<B@EXAMPLE.test>", Address("B", "example.test")),
        (b"TO: <b@example.test>", Address("b", "example.test")),
        (b"TO:<@hop.example:b@example.test>", Address("b", "example.test")),
        (b'TO:<"x>y"@example.test>', Address('"x>y"', "example.test")),
        (b"TO:<postmaster@example.test>", Address("postmaster", "example.test")),
    ],
)
def test_rcpt_to_parse(arg: bytes, address: Address) -> None:
    event, _ = one(b"RCPT " + arg + b"\r\n", setup=MAIL)
    assert event == RcptTo(address, {})


@pytest.mark.parametrize(
    ("arg", "code", "status", "text"),
    [
        (b"TO:<>", 501, "5.1.3", "null path not allowed"),
        (b"TO:b@example.test", 501, "5.1.3", "address must be in <>"),
        (b"FROM:<b@example.test>", 501, "5.5.4", "Syntax: TO:<address>"),
        (b"TO:<b@example.test", 501, "5.5.4", "missing >"),
        (b"TO:<b@example.test> NOTIFY=NEVER", 555, "5.5.4", "Unsupported parameter: NOTIFY"),
        (b"TO:<b@example.test> !", 501, "5.5.4", "Bad parameter syntax"),
        (b"TO:<" + b"l" * 65 + b"@example.test>", 501, "5.1.3", "64"),
    ],
)
def test_rcpt_to_refusals(arg: bytes, code: int, status: str, text: str) -> None:
    reply = refused(b"RCPT " + arg + b"\r\n", setup=MAIL)
    assert (reply.code, reply.status) == (code, status)
    assert text in str(reply)


def test_rcpt_utf8_needs_smtputf8_on_mail() -> None:
    line = "RCPT TO:<jörg@exämple.test>\r\n".encode()
    reply = refused(line, setup=MAIL)
    assert (reply.code, reply.status) == (501, "5.1.3")
    event, _ = one(line, setup=MAIL_UTF8)
    assert event == RcptTo(Address("jörg", "exämple.test"), {})


def test_smtputf8_does_not_outlive_its_transaction() -> None:
    line = "RCPT TO:<jörg@example.test>\r\n".encode()
    reply = refused(line, setup=MAIL_UTF8 + b"RSET\r\nMAIL FROM:<a@remote.test>\r\n")
    assert reply.code == 501


def test_rcpt_params_are_configurable() -> None:
    limits = Limits(rcpt_params=frozenset({"NOTIFY", "ORCPT"}))
    event, _ = one(
        b"RCPT TO:<b@example.test> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;b@example.test\r\n",
        setup=MAIL,
        limits=limits,
    )
    assert event == RcptTo(
        Address("b", "example.test"),
        {"NOTIFY": "SUCCESS,FAILURE", "ORCPT": "rfc822;b@example.test"},
    )


def test_rcpt_refused_by_driver_keeps_mail_state_and_counts() -> None:
    conn = in_state(MAIL)
    _, out = drive(conn, b"RCPT TO:<x@example.test>\r\n", answer=lambda e: replies.UNKNOWN_USER)
    assert out.startswith(b"550 5.1.1 ")
    assert conn.state is State.MAIL
    assert conn.error_count == 1


def test_several_recipients() -> None:
    conn = in_state(ENVELOPE + b"RCPT TO:<c@example.test>\r\n")
    assert conn.state is State.RCPT


# -- other commands ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "event"),
    [
        (b"RSET\r\n", Rset()),
        (b"NOOP\r\n", Noop()),
        # RFC 5321 §4.1.1.9: NOOP's parameter string is ignored.
        (b"NOOP anything at all\r\n", Noop()),
        (b"HELP\r\n", Help("")),
        (b"HELP MAIL\r\n", Help("MAIL")),
        (b"VRFY alice\r\n", Vrfy("alice")),
        ("VRFY jörg\r\n".encode(), Vrfy("jörg")),
        (b"STARTTLS\r\n", StartTls()),
    ],
)
def test_simple_commands(line: bytes, event: Event) -> None:
    got, _ = one(line)
    assert got == event


def test_quit() -> None:
    conn = in_state(GREET)
    events, out = drive(conn, b"QUIT\r\n")
    assert events == [Quit(), CLOSED]
    assert out == b"221 2.0.0 Bye\r\n"


@pytest.mark.parametrize(
    ("line", "setup"),
    [
        (b"RSET x\r\n", ENVELOPE),
        (b"QUIT now\r\n", ENVELOPE),
        (b"STARTTLS x\r\n", GREET),
        (b"DATA x\r\n", ENVELOPE),
        (b"VRFY\r\n", ENVELOPE),
    ],
)
def test_commands_refusing_arguments(line: bytes, setup: bytes) -> None:
    reply = refused(line, setup=setup)
    assert (reply.code, reply.status) == (501, "5.5.4")


def test_rset_returns_to_greeted() -> None:
    conn = in_state(ENVELOPE + b"RSET\r\n")
    assert conn.state is State.GREETED


def test_rset_before_ehlo_stays_connected() -> None:
    assert in_state(b"RSET\r\n").state is State.CONNECTED


def test_quit_closes_whatever_the_reply() -> None:
    conn = in_state(GREET)
    events, out = drive(conn, b"QUIT\r\nNOOP\r\n", answer=lambda e: replies.OK)
    assert events == [Quit(), CLOSED]
    assert out == b"250 2.0.0 Ok\r\n"


def test_421_reply_to_any_command_closes() -> None:
    conn = in_state(GREET)
    events, _ = drive(conn, b"NOOP\r\nNOOP\r\n", answer=lambda e: replies.SHUTTING_DOWN)
    assert events == [Noop(), CLOSED]
    assert conn.error_count == 0  # a 421 is not the client's error


@pytest.mark.parametrize(
    "line", [b"FOO\r\n", b"\r\n", b" NOOP\r\n", b"MAIL\tFROM:<a@b.example>\r\n", b"EHL0 x\r\n"]
)
def test_unknown_command(line: bytes) -> None:
    assert refused(line) == replies.SYNTAX_ERROR
    assert str(replies.SYNTAX_ERROR).startswith("500 5.5.2")


@pytest.mark.parametrize("verb", [b"EXPN", b"expn", b"TURN", b"ETRN", b"AUTH", b"XCLIENT"])
def test_not_implemented(verb: bytes) -> None:
    reply = refused(verb + b" x\r\n")
    assert reply == replies.NOT_IMPLEMENTED
    assert (reply.code, reply.status) == (502, "5.5.1")


def test_non_ascii_verb_is_unknown() -> None:
    # "MA\u0131L".upper() == "MAIL" (dotless i): it must not be read as MAIL.
    assert refused("MA\u0131L FROM:<a@b.example>\r\n".encode()) == replies.SYNTAX_ERROR


@pytest.mark.parametrize(
    "line",
    ["EHLO exämple.test\r\n".encode(), "NOOP ü\r\n".encode(), "HELP ü\r\n".encode()],
)
def test_non_ascii_outside_mail_rcpt_vrfy(line: bytes) -> None:
    assert refused(line) == replies.EIGHT_BIT_COMMAND


@pytest.mark.parametrize(
    "line", [b"NOOP \xff\r\n", b"\xc3(\r\n", b"MAIL FROM:<\xe9@b.example>\r\n"]
)
def test_invalid_utf8_command(line: bytes) -> None:
    assert refused(line) == replies.EIGHT_BIT_COMMAND


def test_refusal_does_not_change_state() -> None:
    conn = in_state(ENVELOPE + b"FOO\r\nMAIL FROM:<x@y.example>\r\n")
    assert conn.state is State.RCPT
    assert conn.error_count == 2


# -- sequencing (state.py) through the machine ------------------------------------------

SETUPS = {
    State.CONNECTED: b"",
    State.GREETED: GREET,
    State.MAIL: MAIL,
    State.RCPT: ENVELOPE,
    State.BDAT_MORE: ENVELOPE + b"BDAT 3\r\nabc",
}

COMMANDS = {
    "EHLO": (b"EHLO c\r\n", Ehlo),
    "HELO": (b"HELO c\r\n", Helo),
    "MAIL": (b"MAIL FROM:<x@y.example>\r\n", MailFrom),
    "RCPT": (b"RCPT TO:<x@y.example>\r\n", RcptTo),
    "DATA": (b"DATA\r\n", Data),
    "BDAT": (b"BDAT 0\r\n", Bdat),
    "RSET": (b"RSET\r\n", Rset),
    "NOOP": (b"NOOP\r\n", Noop),
    "QUIT": (b"QUIT\r\n", Quit),
    "HELP": (b"HELP\r\n", Help),
    "VRFY": (b"VRFY x\r\n", Vrfy),
    "STARTTLS": (b"STARTTLS\r\n", StartTls),
}

ALWAYS = {"EHLO", "HELO", "RSET", "NOOP", "QUIT", "HELP", "VRFY"}
ALLOWED = {
    State.CONNECTED: ALWAYS,
    State.GREETED: ALWAYS | {"MAIL", "STARTTLS"},
    State.MAIL: ALWAYS | {"RCPT"},
    State.RCPT: ALWAYS | {"RCPT", "DATA", "BDAT"},
    State.BDAT_MORE: {"BDAT", "RSET", "NOOP", "QUIT"},
}
REFUSALS = {
    State.CONNECTED: dict.fromkeys(
        ["MAIL", "RCPT", "DATA", "BDAT", "STARTTLS"], "Send HELO/EHLO first"
    ),
    State.GREETED: {
        "RCPT": "Need MAIL before RCPT",
        "DATA": "Need MAIL command",
        "BDAT": "Need MAIL command",
    },
    State.MAIL: {
        "MAIL": "Nested MAIL command",
        "DATA": "Need RCPT before DATA",
        "BDAT": "Need RCPT before DATA",
        "STARTTLS": "STARTTLS not allowed during a mail transaction",
    },
    State.RCPT: {
        "MAIL": "Nested MAIL command",
        "STARTTLS": "STARTTLS not allowed during a mail transaction",
    },
    State.BDAT_MORE: dict.fromkeys(
        ["EHLO", "HELO", "MAIL", "RCPT", "DATA", "HELP", "VRFY", "STARTTLS"],
        "Only BDAT, RSET, NOOP or QUIT may follow BDAT",
    ),
}


def test_sequence_tables_cover_every_pair() -> None:
    for state, allowed in ALLOWED.items():
        assert allowed | set(REFUSALS[state]) == set(COMMANDS), state
        assert not allowed & set(REFUSALS[state]), state


@pytest.mark.parametrize(
    ("state", "verb"),
    [(s, v) for s in SETUPS for v in COMMANDS],
    ids=[f"{s.value}-{v}" for s in SETUPS for v in COMMANDS],
)
def test_sequencing(state: State, verb: str) -> None:
    conn = in_state(SETUPS[state])
    assert conn.state is state
    line, kind = COMMANDS[verb]
    conn.receive_data(line)
    event = conn.next_event()
    if verb in ALLOWED[state]:
        assert isinstance(event, kind)
    else:
        assert event == Invalid(Reply(503, "5.5.1", REFUSALS[state][verb]))
        conn.send(event.reply)
        assert conn.state is state


# -- state.py's table, directly ---------------------------------------------------------

OK = replies.OK
FAIL = Reply(550, "5.7.1", "no")


@pytest.mark.parametrize("state", [State.DATA, State.BDAT, State.TLS, State.CLOSED])
@pytest.mark.parametrize("verb", [v for v in Verb if v is not Verb.END_OF_DATA])
def test_no_command_is_allowed_outside_command_states(state: State, verb: Verb) -> None:
    assert check(state, verb) == replies.BAD_SEQUENCE


# The machine never answers BDAT itself (the chunk's EndOfData is answered), so
# after_reply(..., Verb.BDAT, ...) has no row here.
@pytest.mark.parametrize(
    ("state", "verb", "reply", "last", "new"),
    [
        (State.GREETED, Verb.NOOP, replies.SERVICE_UNAVAILABLE, True, State.CLOSED),
        (State.RCPT, Verb.RCPT, replies.TOO_MANY_ERRORS, True, State.CLOSED),
        (State.GREETED, Verb.QUIT, replies.BYE, True, State.CLOSED),
        (State.GREETED, Verb.QUIT, FAIL, True, State.CLOSED),
        (State.CONNECTED, Verb.EHLO, OK, True, State.GREETED),
        (State.CONNECTED, Verb.HELO, FAIL, True, State.CONNECTED),
        (State.RCPT, Verb.EHLO, OK, True, State.GREETED),
        (State.CONNECTED, Verb.RSET, OK, True, State.CONNECTED),
        (State.RCPT, Verb.RSET, OK, True, State.GREETED),
        (State.BDAT_MORE, Verb.RSET, OK, True, State.GREETED),
        (State.GREETED, Verb.MAIL, OK, True, State.MAIL),
        (State.GREETED, Verb.MAIL, FAIL, True, State.GREETED),
        (State.MAIL, Verb.RCPT, OK, True, State.RCPT),
        (State.MAIL, Verb.RCPT, FAIL, True, State.MAIL),
        (State.RCPT, Verb.RCPT, FAIL, True, State.RCPT),
        (State.RCPT, Verb.DATA, replies.START_DATA, True, State.DATA),
        (State.RCPT, Verb.DATA, OK, True, State.RCPT),
        (State.RCPT, Verb.DATA, replies.NO_VALID_RECIPIENTS, True, State.RCPT),
        (State.DATA, Verb.END_OF_DATA, OK, True, State.GREETED),
        (State.DATA, Verb.END_OF_DATA, FAIL, True, State.GREETED),
        (State.BDAT, Verb.END_OF_DATA, OK, False, State.BDAT_MORE),
        (State.BDAT, Verb.END_OF_DATA, FAIL, False, State.GREETED),
        (State.BDAT, Verb.END_OF_DATA, OK, True, State.GREETED),
        (State.GREETED, Verb.STARTTLS, replies.READY_TLS, True, State.TLS),
        (State.GREETED, Verb.STARTTLS, replies.TLS_UNAVAILABLE, True, State.GREETED),
        (State.MAIL, Verb.NOOP, OK, True, State.MAIL),
        (State.RCPT, Verb.HELP, OK, True, State.RCPT),
        (State.GREETED, Verb.VRFY, replies.CANNOT_VRFY, True, State.GREETED),
    ],
)
def test_after_reply(state: State, verb: Verb, reply: Reply, last: bool, new: State) -> None:
    assert after_reply(state, verb, reply, last_chunk=last) is new


# -- command line limits and line endings ----------------------------------------------


def noop_line(total: int) -> bytes:
    """A NOOP command line of exactly ``total`` octets including CRLF."""
    return b"NOOP " + b"x" * (total - 7) + b"\r\n"


@pytest.mark.parametrize("feed", ["whole", "bytewise", "pieces"])
def test_line_length_limit(feed: str) -> None:
    data = noop_line(2048) + noop_line(2049) + b"NOOP\r\n" + noop_line(100_000) + b"NOOP\r\n"
    pieces = {"whole": [data], "bytewise": bytewise(data), "pieces": split(data, 1000)}[feed]
    _, events, out = run(pieces)
    assert events == [
        Noop(),
        Invalid(replies.LINE_TOO_LONG),
        Noop(),
        Invalid(replies.LINE_TOO_LONG),
        Noop(),
    ]
    assert codes(out) == [250, 500, 250, 500, 250]
    assert reply_lines(out)[1] == "500 5.5.2 Line too long"


def test_line_length_limit_is_configurable() -> None:
    limits = Limits(max_line=512)
    assert one(noop_line(512), limits=limits)[0] == Noop()
    assert refused(noop_line(513), limits=limits) == replies.LINE_TOO_LONG


def test_long_line_without_newline_is_discarded_as_it_arrives() -> None:
    conn = ServerConnection()
    for _ in range(1024):
        conn.receive_data(b"A" * 1024)
        assert conn.next_event() is NEED_DATA
        assert len(conn._buf) <= conn.limits.max_line + 1024
    events, _ = drive(conn, b"\r\nNOOP\r\n")
    assert events == [Invalid(replies.LINE_TOO_LONG), Noop()]


def test_overlong_line_split_between_cr_and_lf() -> None:
    _, events, _ = run([b"NOOP " + b"x" * 3000 + b"\r", b"\nNOOP\r\n"])
    assert events == [Invalid(replies.LINE_TOO_LONG), Noop()]


@pytest.mark.parametrize(
    "line", [b"NO\0OP\r\n", b"NOOP\0\r\n", b"\0\r\n", b"MAIL FROM:<a\0@b>\r\n"]
)
def test_nul_in_command(line: bytes) -> None:
    assert refused(line) == replies.NUL_IN_COMMAND


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"NOOP\nNOOP\r\n", [Invalid(replies.BARE_NEWLINE_COMMAND), Noop()]),
        (b"NOOP\rNOOP\r\n", [Invalid(replies.BARE_NEWLINE_COMMAND)]),
        (b"NOOP\r\rNOOP\r\n", [Invalid(replies.BARE_NEWLINE_COMMAND)]),
        (b"NOOP\r\r\nNOOP\r\n", [Invalid(replies.BARE_NEWLINE_COMMAND), Noop()]),
        (b"\nNOOP\r\n", [Invalid(replies.BARE_NEWLINE_COMMAND), Noop()]),
        (
            b"MAIL FROM:<a@b.example>\rRCPT TO:<c@d.example>\r\n",
            [Invalid(replies.BARE_NEWLINE_COMMAND)],
        ),
    ],
)
def test_bare_cr_lf_in_commands_refused(data: bytes, expected: list[Event]) -> None:
    for pieces in ([data], bytewise(data)):
        conn = in_state(GREET)
        events, _ = drive(conn, pieces)
        assert events == expected
    assert str(replies.BARE_NEWLINE_COMMAND).startswith("500 5.5.2")


NORMALIZE = Limits(normalize_bare_lf=True)


def test_bare_lf_normalised_when_configured() -> None:
    _, events, out = run(b"EHLO c\nMAIL FROM:<a@b.example>\nNOOP\r\n", NORMALIZE)
    assert events == [Ehlo("c"), MailFrom(Address("a", "b.example"), {}), Noop()]
    assert codes(out) == [250, 250, 250]


def test_bare_cr_still_refused_when_normalising() -> None:
    assert refused(b"NOOP\rX\n", limits=NORMALIZE) == replies.BARE_NEWLINE_COMMAND
    assert refused(b"NOOP\r\r\n", limits=NORMALIZE) == replies.BARE_NEWLINE_COMMAND


# -- DATA -------------------------------------------------------------------------------


def test_data_then_354_switches_state() -> None:
    conn = in_state(START_DATA)
    assert conn.state is State.DATA
    assert conn.in_transaction


def test_data_refused_by_driver_stays_in_rcpt() -> None:
    conn = in_state(ENVELOPE)
    events, _out = drive(conn, b"DATA\r\n.\r\n", answer=lambda e: replies.NO_VALID_RECIPIENTS)
    assert events == [Data(), Invalid(replies.SYNTAX_ERROR)]
    assert conn.state is State.RCPT


def test_empty_message() -> None:
    _, events, out = transaction(b".\r\n")
    assert events[-1] == EndOfData(None, last=True)
    assert data_of(events) == b""
    assert codes(out)[-1] == 250


@pytest.mark.parametrize(
    ("wire", "body"),
    [
        (b"a\r\n.\r\n", b"a\r\n"),
        (b"..\r\n.\r\n", b".\r\n"),
        (b"...\r\n.\r\n", b"..\r\n"),
        (b".x\r\n.\r\n", b"x\r\n"),
        (b"a\r\n..b\r\n.\r\n", b"a\r\n.b\r\n"),
        (b"a\r\n.. \r\n.\r\n", b"a\r\n. \r\n"),
        (b"a.b\r\n.\r\n", b"a.b\r\n"),
        (b"a\r\n \r\n.\r\n", b"a\r\n \r\n"),
        (b"\r\n\r\n.\r\n", b"\r\n\r\n"),
        (b"a\r\n.\r \r\n.\r\n", None),  # bare CR: refused, never an end
    ],
)
@pytest.mark.parametrize("piece", [None, 1, 2, 3, 7])
def test_dot_unstuffing(wire: bytes, body: bytes | None, piece: int | None) -> None:
    _, events, _ = transaction(wire, pieces=piece)
    end = events[-1]
    assert isinstance(end, EndOfData)
    if body is None:
        assert end.rejected == BARE
    else:
        assert end.rejected is None
        assert data_of(events) == body


def test_data_pipelined_after_end() -> None:
    _, events, out = transaction(b"one\r\n.\r\nMAIL FROM:<c@d.example>\r\n")
    assert events[-2:] == [EndOfData(None, last=True), MailFrom(Address("c", "d.example"), {})]
    assert codes(out) == [250, 250, 250, 354, 250, 250]


def test_second_transaction_on_same_connection() -> None:
    body = b"x\r\n.\r\n"
    tx = b"MAIL FROM:<a@remote.test>\r\nRCPT TO:<b@example.test>\r\nDATA\r\n" + body
    conn, events, _out = run(GREET + tx + tx)
    assert [e for e in events if isinstance(e, EndOfData)] == [EndOfData(None, True)] * 2
    assert conn.state is State.GREETED


def test_data_chunks_stream_without_waiting_for_the_end() -> None:
    conn = in_state(START_DATA)
    conn.receive_data(b"line one\r\nline tw")
    assert conn.next_event() == DataChunk(b"line one\r\n")
    assert conn.next_event() is NEED_DATA
    conn.receive_data(b"o\r\n.\r")
    assert conn.next_event() == DataChunk(b"line two\r\n")
    assert conn.next_event() is NEED_DATA
    conn.receive_data(b"\n")
    assert conn.next_event() == EndOfData(None, last=True)


SMUGGLING = [b"\n.\n", b"\r.\r", b"\n.\r\n", b"\r\n.\n", b"\r.\r\n", b"\r\n.\r"]


@pytest.mark.parametrize("marker", SMUGGLING, ids=repr)
@pytest.mark.parametrize("piece", [None, 1, 2, 3, 5, 11])
def test_smuggled_end_never_starts_a_second_transaction(marker: bytes, piece: int | None) -> None:
    smuggled = b"MAIL FROM:<evil@x.example>\r\nRCPT TO:<victim@example.test>\r\nDATA\r\nevil\r\n"
    body = b"hello" + marker + smuggled + b".\r\nQUIT\r\n"
    conn, events, out = transaction(body, pieces=piece)
    mails = [e for e in events if isinstance(e, MailFrom)]
    ends = [e for e in events if isinstance(e, EndOfData)]
    assert len(mails) == 1
    assert len(ends) == 1
    assert ends[0].rejected == BARE
    assert codes(out)[4] == 554
    assert conn.state is State.CLOSED


@pytest.mark.parametrize("marker", [b"\n.\n", b"\n.\r\n", b"\r\n.\n"], ids=repr)
@pytest.mark.parametrize("piece", [None, 1, 2, 3, 5])
def test_bare_lf_dot_line_rejects_and_closes(marker: bytes, piece: int | None) -> None:
    # the client thinks the message has ended: refuse it and hang up at once rather
    # than read whatever comes next as message content or as commands.
    conn, events, out = transaction(b"hello" + marker + b"QUIT\r\n", pieces=piece)
    assert [e for e in events if not isinstance(e, DataChunk)][-2:] == [
        EndOfData(BARE, last=True),
        CLOSED,
    ]
    assert reply_lines(out)[-1] == str(BARE)
    assert conn.state is State.CLOSED


@pytest.mark.parametrize("start", [b".\n", b"\n.\n", b"\n.\r\n", b"\r\n.\n"], ids=repr)
def test_bare_lf_dot_line_at_start_of_data(start: bytes) -> None:
    _conn, events, _ = transaction(start + b"QUIT\r\n")
    assert events[-2:] == [EndOfData(BARE, last=True), CLOSED]


@pytest.mark.parametrize("marker", [b"\r.\r", b"\r.\r\n", b"\r\n.\r"], ids=repr)
def test_bare_cr_dot_line_is_content_then_refused(marker: bytes) -> None:
    conn, events, _ = transaction(b"hello" + marker + b"more\r\n.\r\nNOOP\r\n")
    assert events[-2:] == [EndOfData(BARE, last=True), Noop()]
    assert conn.state is State.GREETED


@pytest.mark.parametrize("marker", [b"\n.\n", b"\n.\r\n", b"\r\n.\n"], ids=repr)
@pytest.mark.parametrize("piece", [None, 1, 2, 3, 5])
def test_normalize_mode_bare_lf_dot_is_content(marker: bytes, piece: int | None) -> None:
    # Postfix's "normalize": bare LF ends a line, but only CRLF.CRLF ends DATA.
    smuggled = b"MAIL FROM:<evil@x.example>\r\n"
    _conn, events, _ = transaction(
        b"hello" + marker + smuggled + b".\r\nQUIT\r\n", limits=NORMALIZE, pieces=piece
    )
    assert [type(e) for e in merged(events)][-5:] == [Data, DataChunk, EndOfData, Quit, Closed]
    assert [e for e in events if isinstance(e, EndOfData)] == [EndOfData(None, True)]
    assert data_of(events) == b"hello\r\n\r\n" + smuggled


@pytest.mark.parametrize("piece", [None, 1, 4])
def test_normalize_mode_data(piece: int | None) -> None:
    wire = b"a\nb\r\n..c\n..d\r\n.\r\n"
    _, events, _ = transaction(wire, limits=NORMALIZE, pieces=piece)
    assert events[-1] == EndOfData(None, True)
    assert data_of(events) == b"a\r\nb\r\n.c\r\n.d\r\n"


@pytest.mark.parametrize("piece", [None, 1, 4])
def test_normalize_mode_end_needs_crlf_before_the_dot(piece: int | None) -> None:
    wire = b"a\n.\r\nb\r\n.\r\n"
    _, events, _ = transaction(wire, limits=NORMALIZE, pieces=piece)
    assert [e for e in events if isinstance(e, EndOfData)] == [EndOfData(None, True)]
    assert data_of(events) == b"a\r\n\r\nb\r\n"


def test_normalize_mode_still_refuses_bare_cr() -> None:
    _, events, _ = transaction(b"a\rb\r\n.\r\n", limits=NORMALIZE)
    assert events[-1] == EndOfData(BARE, True)


@pytest.mark.parametrize("piece", [None, 1, 100, 4096])
def test_long_data_lines_stored_byte_exact(piece: int | None) -> None:
    body = b"x" * 999 + b"\r\n" + b"." + b"y" * 5000 + b"\r\n" + bytes(range(1, 10)) + b"\r\n"
    stuffed = body.replace(b"\r\n.", b"\r\n..")
    _, events, _ = transaction(stuffed + b".\r\n", pieces=piece)
    assert events[-1] == EndOfData(None, True)
    assert data_of(events) == body


def test_eight_bit_data_passes_through() -> None:
    body = "Grüße, 世界\r\n".encode() + b"\x80\xff\xfe\r\n"
    _, events, _ = transaction(body + b".\r\n")
    assert data_of(events) == body


@pytest.mark.parametrize("piece", [None, 1, 3, 64])
def test_data_line_length_limit(piece: int | None) -> None:
    limits = Limits(max_data_line=100)
    ok = b"a" * 100 + b"\r\n"
    _, events, _ = transaction(ok + b".\r\n", limits, pieces=piece)
    assert events[-1] == EndOfData(None, True)
    for long_line in (b"a" * 101 + b"\r\n", b"ok\r\n" + b"b" * 101 + b"\r\nok\r\n"):
        _, events, _out = transaction(long_line + b".\r\nNOOP\r\n", limits, pieces=piece)
        assert events[-2:] == [EndOfData(replies.DATA_LINE_TOO_LONG, True), Noop()]
        assert str(replies.DATA_LINE_TOO_LONG).startswith("554 5.6.0")
        assert not any(isinstance(e, DataChunk) and b"b" * 50 in e.data for e in events)


def test_data_line_length_limit_inside_a_big_region() -> None:
    limits = Limits(max_data_line=100)
    body = (b"short\r\n" * 20) + b"c" * 150 + b"\r\n" + b"short\r\n" * 20
    _, events, _ = transaction(body + b".\r\n", limits)
    assert events[-1] == EndOfData(replies.DATA_LINE_TOO_LONG, True)


def test_very_long_line_spills_and_is_refused() -> None:
    limits = Limits(max_data_line=100_000)
    body = b"." + b"z" * 200_000 + b"\r\n"
    conn = in_state(START_DATA, limits)
    events, _ = drive(conn, split(body + b".\r\n", 4096))
    assert events[-1] == EndOfData(replies.DATA_LINE_TOO_LONG, True)


def test_long_line_spill_keeps_content_exact() -> None:
    # more than the 64 KiB spill size, fed in pieces, with a CR at a piece boundary
    line = b"." + b"q" * 70_000
    wire = b"." + line + b"\r\n" + b"..tail\r\n.\r\n"
    pieces = [wire[:70_002], wire[70_002:70_003], wire[70_003:]]
    assert pieces[0].endswith(b"q") and pieces[1] == b"\r"
    conn = in_state(START_DATA)
    events, _ = drive(conn, pieces)
    assert events[-1] == EndOfData(None, True)
    assert data_of(events) == line + b"\r\n.tail\r\n"
    assert max(len(e.data) for e in events if isinstance(e, DataChunk)) < 70_002


@pytest.mark.parametrize("piece", [None, 4096])
def test_spilled_line_length_counts_raw_octets(piece: int | None) -> None:
    # a stuffed line of exactly max_data_line raw octets is fine, one more is not,
    # whether it arrives whole or spills in pieces
    limits = Limits(max_data_line=70_001)
    for extra, rejected in ((0, None), (1, replies.DATA_LINE_TOO_LONG)):
        wire = b".." + b"q" * (69_999 + extra) + b"\r\n.\r\n"
        conn = in_state(START_DATA, limits)
        events, _ = drive(conn, wire if piece is None else split(wire, piece))
        assert events[-1] == EndOfData(rejected, True)


def test_spill_holding_back_a_cr() -> None:
    conn = in_state(START_DATA)
    events, _ = drive(conn, [b"w" * 70_000 + b"\r", b"\n.\r\n"])
    assert events[-1] == EndOfData(None, True)
    assert data_of(events) == b"w" * 70_000 + b"\r\n"


@pytest.mark.parametrize(
    "pieces",
    [
        [b"v" * 70_000 + b"\rv", b"\r\n.\r\n"],
        [b"v" * 70_000 + b"\r\r", b"\n.\r\n"],
        [b"v" * 70_000 + b"\r\r", b"x\r\n.\r\n"],
    ],
)
def test_bare_cr_in_spilled_line(pieces: list[bytes]) -> None:
    conn = in_state(START_DATA)
    events, _ = drive(conn, pieces)
    assert events[-1] == EndOfData(BARE, True)


def test_spilled_line_does_not_start_a_line() -> None:
    # a dot after a spilled piece is inside the line: not unstuffed
    conn = in_state(START_DATA)
    events, _ = drive(conn, [b"u" * 70_000, b".x\r\n.\r\n"])
    assert data_of(events) == b"u" * 70_000 + b".x\r\n"


@pytest.mark.parametrize("piece", [None, 1, 7])
def test_message_size_limit(piece: int | None) -> None:
    limits = Limits(max_message_size=20)
    _, events, _ = transaction(b"a" * 18 + b"\r\n.\r\n", limits, pieces=piece)
    assert events[-1] == EndOfData(None, True)
    _, events, out = transaction(b"a" * 19 + b"\r\n.\r\nNOOP\r\n", limits, pieces=piece)
    assert events[-2:] == [EndOfData(replies.SIZE_EXCEEDED, True), Noop()]
    assert reply_lines(out)[-2].startswith("552 5.3.4 ")


def test_message_size_counts_unstuffed_bytes() -> None:
    limits = Limits(max_message_size=6)
    _, events, _ = transaction(b"....\r\n.\r\n", limits)
    assert events[-1] == EndOfData(None, True)
    assert data_of(events) == b"...\r\n"


@pytest.mark.parametrize("piece", [None, 1])
def test_nul_in_data(piece: int | None) -> None:
    _, events, _ = transaction(b"a\0b\r\n.\r\nNOOP\r\n", pieces=piece)
    assert events[-2:] == [EndOfData(replies.NUL_IN_DATA, True), Noop()]


@pytest.mark.parametrize(
    ("body", "rejected"),
    [
        (b"a\0\r\n" + b"x" * 30 + b"\r\nb\rc\r\n", BARE),
        (b"x" * 30 + b"\r\na\0\r\n", replies.NUL_IN_DATA),
        (b"a\r\n" * 10 + b"x" * 30 + b"\r\n", replies.DATA_LINE_TOO_LONG),
        (b"a\r\n" * 20, replies.SIZE_EXCEEDED),
    ],
)
@pytest.mark.parametrize("piece", [None, 1, 5])
def test_most_serious_data_error_wins_however_split(
    body: bytes, rejected: Reply, piece: int | None
) -> None:
    # the reply must not depend on which problem happened to be noticed first
    limits = Limits(max_message_size=30, max_data_line=20)
    _, events, _ = transaction(body + b".\r\n", limits, pieces=piece)
    assert events[-1] == EndOfData(rejected, True)


def test_no_data_chunks_after_an_error() -> None:
    conn = in_state(START_DATA)
    events, _ = drive(conn, [b"good\r\n", b"b\rad\r\n", b"later\r\n", b".\r\n"])
    assert [e for e in events if isinstance(e, DataChunk)] == [DataChunk(b"good\r\n")]
    assert events[-1] == EndOfData(BARE, True)


@pytest.mark.parametrize("piece", [None, 1])
def test_bare_lf_in_data_refused(piece: int | None) -> None:
    _, events, _ = transaction(b"a\nb\r\n.\r\nNOOP\r\n", pieces=piece)
    assert events[-2:] == [EndOfData(BARE, True), Noop()]


def test_rejected_data_returns_to_greeted() -> None:
    conn = in_state(START_DATA)
    _events, _out = drive(conn, b"x\r\n.\r\n", answer=lambda e: replies.MAILBOX_FULL)
    assert conn.state is State.GREETED


# -- BDAT (RFC 3030) ---------------------------------------------------------------------


def bdat(*chunks: bytes, last: bool = True) -> bytes:
    out = b""
    for i, chunk in enumerate(chunks):
        suffix = b" LAST" if last and i == len(chunks) - 1 else b""
        out += b"BDAT %d%s\r\n" % (len(chunk), suffix) + chunk
    return out


@pytest.mark.parametrize("piece", [None, 1, 2, 5])
def test_bdat_single_chunk(piece: int | None) -> None:
    data = ENVELOPE + bdat(b"Subject: x\r\n\r\nhi\r\n") + b"NOOP\r\n"
    conn, events, out = run(data if piece is None else split(data, piece))
    assert merged(events)[3:] == [
        Bdat(18, True),
        DataChunk(b"Subject: x\r\n\r\nhi\r\n"),
        EndOfData(None, True),
        Noop(),
    ]
    assert codes(out) == [250, 250, 250, 250, 250]
    assert conn.state is State.GREETED


def test_bdat_content_is_not_unstuffed() -> None:
    body = b"..a\r\n.\r\n"
    _, events, _ = run(ENVELOPE + bdat(body))
    assert data_of(events) == body


@pytest.mark.parametrize("piece", [None, 1, 3])
def test_bdat_multi_chunk(piece: int | None) -> None:
    data = ENVELOPE + bdat(b"one\r\n", b"two\r", b"\nthree\r\n") + b"QUIT\r\n"
    _conn, events, out = run(data if piece is None else split(data, piece))
    ends = [e for e in events if isinstance(e, EndOfData)]
    assert ends == [EndOfData(None, False), EndOfData(None, False), EndOfData(None, True)]
    assert [e for e in events if isinstance(e, Bdat)] == [
        Bdat(5, False),
        Bdat(4, False),
        Bdat(8, True),
    ]
    assert data_of(events) == b"one\r\ntwo\r\nthree\r\n"
    assert codes(out) == [250] * 6 + [221]


def test_bdat_more_state_between_chunks() -> None:
    conn = in_state(ENVELOPE + b"BDAT 2\r\nab")
    assert conn.state is State.BDAT_MORE
    assert conn.in_transaction
    drive(conn, b"RSET\r\n")
    assert conn.state is State.GREETED


def test_bdat_zero_last() -> None:
    _, events, _ = run(ENVELOPE + bdat(b"abc\r\n", b""))
    assert events[-3:] == [EndOfData(None, False), Bdat(0, True), EndOfData(None, True)]
    assert data_of(events) == b"abc\r\n"


def test_bdat_zero_not_last() -> None:
    conn = in_state(ENVELOPE + b"BDAT 0\r\n")
    assert conn.state is State.BDAT_MORE


def test_bdat_lowercase_last() -> None:
    event, _ = one(b"bdat 3 last\r\n", setup=ENVELOPE)
    assert event == Bdat(3, True)


@pytest.mark.parametrize(
    "line",
    [
        b"BDAT\r\n",
        b"BDAT x\r\n",
        b"BDAT -1\r\n",
        b"BDAT 1 2\r\n",
        b"BDAT 1 LAST x\r\n",
        b"BDAT " + b"9" * 21 + b"\r\n",
        b"BDAT 1 FIRST\r\n",
    ],
)
def test_bdat_syntax(line: bytes) -> None:
    reply = refused(line, setup=ENVELOPE)
    assert str(reply) == "501 5.5.4 Syntax: BDAT size [LAST]"


@pytest.mark.parametrize(
    ("setup", "text"),
    [
        (b"", "Send HELO/EHLO first"),
        (GREET, "Need MAIL command"),
        (MAIL, "Need RCPT before DATA"),
    ],
)
@pytest.mark.parametrize("piece", [None, 1, 4])
def test_bdat_refused_in_wrong_state_consumes_its_chunk(
    setup: bytes, text: str, piece: int | None
) -> None:
    # the chunk holds what looks like commands: none of it may be read as one.
    chunk = b"MAIL FROM:<x@y.example>\r\nQUIT\r\n"
    conn = in_state(setup)
    state = conn.state
    data = b"BDAT %d LAST\r\n" % len(chunk) + chunk + b"NOOP\r\n"
    events, _out = drive(conn, data if piece is None else split(data, piece))
    assert events == [Invalid(Reply(503, "5.5.1", text)), Noop()]
    assert conn.state is state


def test_bdat_refused_with_bad_syntax_cannot_skip() -> None:
    conn = in_state(GREET)
    events, _ = drive(conn, b"BDAT many\r\nNOOP\r\n")
    assert events == [Invalid(Reply(501, "5.5.4", "Syntax: BDAT size [LAST]")), Noop()]


def test_bdat_after_rejected_chunk_is_refused_but_consumed() -> None:
    limits = Limits(max_message_size=4)
    data = ENVELOPE + bdat(b"abcdef", b"QUIT\r\n") + b"NOOP\r\n"
    conn, events, _out = run(data, limits)
    assert [e for e in events if not isinstance(e, DataChunk)][3:] == [
        Bdat(6, False),
        EndOfData(replies.SIZE_EXCEEDED, False),
        Invalid(Reply(503, "5.5.1", "Need MAIL command")),
        Noop(),
    ]
    assert conn.state is State.GREETED


@pytest.mark.parametrize("piece", [None, 1])
def test_bdat_size_over_limit_across_chunks(piece: int | None) -> None:
    limits = Limits(max_message_size=10)
    data = ENVELOPE + bdat(b"12345", b"67890") + b"NOOP\r\n"
    _, events, _ = run(data if piece is None else split(data, piece), limits)
    assert events[-2:] == [EndOfData(None, True), Noop()]
    data = ENVELOPE + bdat(b"12345", b"678901") + b"NOOP\r\n"
    _, events, _ = run(data if piece is None else split(data, piece), limits)
    assert events[-2:] == [EndOfData(replies.SIZE_EXCEEDED, True), Noop()]


def test_bdat_huge_declared_size_is_consumed_until_close() -> None:
    limits = Limits(max_message_size=100)
    conn = in_state(ENVELOPE + b"BDAT 99999999999999999999 LAST\r\n", limits)
    for _ in range(10):
        conn.receive_data(b"QUIT\r\n" * 100)
        assert conn.next_event() is NEED_DATA
        assert len(conn._buf) == 0
    conn.receive_data(b"")
    assert conn.next_event() is CLOSED


@pytest.mark.parametrize(
    ("chunks", "rejected"),
    [
        ((b"a\r", b"\nb\r\n"), None),
        ((b"a\r", b"", b"\nb\r\n"), None),
        ((b"a\r", b"b\r\n"), BARE),
        ((b"a\r",), BARE),
        ((b"a\r", b""), BARE),
        ((b"a\nb\r\n",), BARE),
        ((b"a\r\n", b"\nb\r\n"), BARE),
        ((b"a\rb\r\n",), BARE),
        ((b"\r\r\n",), BARE),
        ((b"a\r", b"\r\n"), BARE),
        ((b"a\0\r\n",), replies.NUL_IN_DATA),
        ((b"\r\n", b"\r\n"), None),
    ],
)
@pytest.mark.parametrize("piece", [None, 1])
def test_bdat_line_endings_across_chunks(
    chunks: tuple[bytes, ...], rejected: Reply | None, piece: int | None
) -> None:
    data = ENVELOPE + bdat(*chunks) + b"NOOP\r\n"
    _, events, _ = run(data if piece is None else split(data, piece))
    assert events[-2:] == [EndOfData(rejected, True), Noop()]
    if rejected is None:
        assert data_of(events) == b"".join(chunks)


@pytest.mark.parametrize(
    ("chunks", "content"),
    [
        ((b"a\nb\n",), b"a\r\nb\r\n"),
        ((b"a", b"\nb\n"), b"a\r\nb\r\n"),
        ((b"a\r", b"\n\nb\r\n"), b"a\r\n\r\nb\r\n"),
        ((b"a\r", b"\nb\r\n"), b"a\r\nb\r\n"),
    ],
)
@pytest.mark.parametrize("piece", [None, 1])
def test_bdat_normalize_mode(chunks: tuple[bytes, ...], content: bytes, piece: int | None) -> None:
    data = ENVELOPE + bdat(*chunks)
    _, events, _ = run(data if piece is None else split(data, piece), NORMALIZE)
    assert events[-1] == EndOfData(None, True)
    assert data_of(events) == content


def test_bdat_normalize_mode_still_refuses_bare_cr() -> None:
    _, events, _ = run(ENVELOPE + bdat(b"a\rb\r\n"), NORMALIZE)
    assert events[-1] == EndOfData(BARE, True)


def test_bdat_new_message_resets_errors() -> None:
    data = ENVELOPE + bdat(b"a\r") + ENVELOPE[len(GREET) :] + bdat(b"ok\r\n")
    _, events, _ = run(data)
    ends = [e for e in events if isinstance(e, EndOfData)]
    assert ends == [EndOfData(BARE, True), EndOfData(None, True)]


def test_data_after_bdat_resets_state() -> None:
    data = ENVELOPE + bdat(b"a\0") + ENVELOPE[len(GREET) :] + b"DATA\r\nok\r\n.\r\n"
    _, events, _ = run(data)
    ends = [e for e in events if isinstance(e, EndOfData)]
    assert ends == [EndOfData(replies.NUL_IN_DATA, True), EndOfData(None, True)]


def test_eof_inside_bdat_chunk() -> None:
    conn = in_state(ENVELOPE + b"BDAT 10\r\nabc")
    events, _ = drive(conn, b"")
    assert events == [CLOSED]


# -- STARTTLS (RFC 3207) -------------------------------------------------------------


def test_starttls_discards_pipelined_plaintext() -> None:
    pipelined = b"MAIL FROM:<evil@x.example>\r\nRCPT TO:<v@example.test>\r\n"
    conn = in_state(GREET)
    events, out = drive(conn, b"STARTTLS\r\n" + pipelined)
    assert events == [StartTls()]
    assert out == replies.READY_TLS.to_bytes()
    assert conn.state is State.TLS
    assert conn.discarded_plaintext == len(pipelined)
    assert len(conn._buf) == 0
    # more plaintext before the handshake is dropped and counted too
    conn.receive_data(b"NOOP\r\n")
    assert conn.next_event() is NEED_DATA
    assert conn.discarded_plaintext == len(pipelined) + 6
    conn.tls_started()
    assert conn.state is State.CONNECTED
    events, out = drive(conn, b"MAIL FROM:<a@b.example>\r\nEHLO c\r\nNOOP\r\n")
    assert events == [Invalid(Reply(503, "5.5.1", "Send HELO/EHLO first")), Ehlo("c"), Noop()]


def test_starttls_without_pipelining_discards_nothing() -> None:
    conn = in_state(GREET + b"STARTTLS\r\n")
    assert conn.state is State.TLS
    assert conn.discarded_plaintext == 0


def test_starttls_refused_keeps_state_and_buffer() -> None:
    conn = in_state(GREET)
    events, _out = drive(conn, b"STARTTLS\r\nNOOP\r\n", answer=lambda e: replies.TLS_UNAVAILABLE)
    assert events[0] == StartTls()
    assert conn.state is State.GREETED
    assert conn.discarded_plaintext == 0
    assert len(events) == 2


def test_tls_started_resets_smtputf8() -> None:
    conn = in_state(GREET + b"MAIL FROM:<a@b.example> SMTPUTF8\r\nRSET\r\nSTARTTLS\r\n")
    conn.tls_started()
    assert not conn._smtputf8


def test_eof_while_waiting_for_tls_handshake() -> None:
    conn = in_state(GREET + b"STARTTLS\r\n")
    conn.receive_data(b"")
    assert conn.next_event() is CLOSED


# -- the error counter ------------------------------------------------------------------


def test_error_limit_appends_421_and_closes() -> None:
    limits = Limits(max_errors=3)
    conn = in_state(b"", limits)
    _, out = drive(conn, b"FOO\r\nFOO\r\n")
    assert conn.error_count == 2 and conn.state is State.CONNECTED
    events, out = drive(conn, b"FOO\r\nNOOP\r\n")
    assert events == [Invalid(replies.SYNTAX_ERROR), CLOSED]
    assert reply_lines(out) == [str(replies.SYNTAX_ERROR), str(replies.TOO_MANY_ERRORS)]
    assert conn.state is State.CLOSED


def test_default_error_limit_is_twenty() -> None:
    conn = ServerConnection()
    events, out = drive(conn, b"FOO\r\n" * 25)
    assert len(events) == 21 and events[-1] is CLOSED
    assert codes(out) == [500] * 20 + [421]


def test_driver_errors_count_too() -> None:
    limits = Limits(max_errors=2)
    conn = in_state(MAIL, limits)
    _events, out = drive(
        conn, b"RCPT TO:<x@example.test>\r\n" * 3, answer=lambda e: replies.UNKNOWN_USER
    )
    assert codes(out) == [550, 550, 421]
    assert conn.state is State.CLOSED


def test_error_limit_not_doubled_when_already_closing() -> None:
    limits = Limits(max_errors=1)
    conn = in_state(START_DATA, limits)
    events, out = drive(conn, b"x\n.\n")
    assert events[-2:] == [EndOfData(BARE, True), CLOSED]
    assert reply_lines(out)[-1] == str(BARE)


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


def test_positive_and_421_replies_do_not_count() -> None:
    conn = in_state(GREET + b"NOOP\r\n" * 5)
    assert conn.error_count == 0


# -- end of file ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "setup",
    [b"", GREET, ENVELOPE, START_DATA, START_DATA + b"partial line", b"NOOP", b"x" * 5000],
)
def test_eof_closes(setup: bytes) -> None:
    conn = in_state(setup)
    assert conn.state is not State.CLOSED
    conn.receive_data(b"")
    assert conn.next_event() is CLOSED
    assert conn.state is State.CLOSED
    assert conn.next_event() is CLOSED


def test_eof_after_complete_commands_still_yields_them() -> None:
    _, events, _ = run([b"EHLO c\r\nNOOP\r\n", b""])
    assert events == [Ehlo("c"), Noop(), CLOSED]


def test_data_after_close_is_ignored() -> None:
    conn = in_state(b"QUIT\r\n")
    conn.receive_data(b"x" * 10_000)
    assert len(conn._buf) == 0
    assert conn.next_event() is CLOSED
    assert isinstance(conn.next_event(), Closed)


# -- memory bounds ------------------------------------------------------------------------

BOUND = 70 * 1024


@pytest.mark.parametrize("feed", [1000, 65_536])
def test_buffer_bounded_during_large_data(feed: int) -> None:
    conn = in_state(START_DATA)
    line = b"0123456789" * 7 + b"\r\n"  # 72 octets
    block = line * (feed // len(line) + 1)
    block = block[:feed]
    total = 0
    received = 0
    while total < 30 * 1024 * 1024:
        conn.receive_data(block)
        total += len(block)
        while isinstance(event := conn.next_event(), DataChunk):
            received += len(event.data)
        assert event is NEED_DATA
        assert len(conn._buf) <= BOUND + feed
    conn.receive_data(b"\r\n.\r\n")
    while isinstance(event := conn.next_event(), DataChunk):
        received += len(event.data)
    assert isinstance(event, EndOfData)
    assert event.rejected == replies.SIZE_EXCEEDED  # 30 MB > 25 MB default
    assert received <= conn.limits.max_message_size + feed


@pytest.mark.parametrize("feed", [512, 4096])
def test_buffer_bounded_for_one_huge_data_line(feed: int) -> None:
    conn = in_state(START_DATA)
    for _ in range(1024 * 1024 // feed + 1):  # just over Limits.max_data_line
        conn.receive_data(b"L" * feed)
        while isinstance(conn.next_event(), DataChunk):
            pass
        assert len(conn._buf) <= BOUND + feed
    conn.receive_data(b"\r\n.\r\n")
    while isinstance(event := conn.next_event(), DataChunk):
        pass
    assert event == EndOfData(replies.DATA_LINE_TOO_LONG, True)


@pytest.mark.parametrize("feed", [7, 700, 4096])
def test_buffer_bounded_for_one_huge_command_line(feed: int) -> None:
    conn = ServerConnection()
    sent = 0
    while sent < 1024 * 1024:
        conn.receive_data(b"N" * feed)
        sent += feed
        assert conn.next_event() is NEED_DATA
        assert len(conn._buf) <= BOUND + feed
    events, _ = drive(conn, b"\r\nNOOP\r\n")
    assert events == [Invalid(replies.LINE_TOO_LONG), Noop()]


# -- whole, byte by byte and pipelined give the same result ---------------------------


SESSIONS = [
    START_DATA + b"a\r\n..b\r\n.\r\nQUIT\r\n",
    ENVELOPE + bdat(b"x\r", b"\ny") + b"NOOP\r\nQUIT\r\n",
    GREET + b"FOO\r\nMAIL FROM:<>\r\nRCPT TO:<\xc3\xa9@x.example>\r\nSTARTTLS\r\nRSET\r\n",
    START_DATA + b"hi\n.\nMAIL FROM:<a@b.example>\r\n",
    GREET + b"STARTTLS\r\nEHLO x\r\n",
]


@pytest.mark.parametrize("data", SESSIONS)
def test_same_result_under_any_chunking(data: bytes) -> None:
    _, whole, out_whole = run([data, b""])
    for pieces in (bytewise(data), split(data, 2), split(data, 3), split(data, 13)):
        _conn, events, out = run([*pieces, b""])
        assert merged(events) == merged(whole)
        assert out == out_whole
