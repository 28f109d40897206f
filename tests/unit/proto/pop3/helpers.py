"""Drive the sans-IO POP3 server machine in tests: feed bytes, answer every event."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from mailwright.proto.pop3 import replies
from mailwright.proto.pop3.events import (
    Auth,
    AuthResponse,
    Capa,
    Closed,
    Event,
    Invalid,
    List,
    NeedData,
    Pass,
    Quit,
    Retr,
    Stls,
    Top,
    Uidl,
    User,
)
from mailwright.proto.pop3.replies import Continuation, Pop3Reply, Response
from mailwright.proto.pop3.server import Limits, ServerConnection, encode_message

Body = bytes | list[str]
Answer = Callable[[Event], Response | tuple[Pop3Reply, Body]]

MESSAGE = b"Subject: hi\r\nFrom: a@b.example\r\n\r\n.first\r\nsecond\r\n..third\r\n"
LISTING = ["1 120", "2 200"]


def generic_answer(event: Event) -> Response | tuple[Pop3Reply, Body]:
    """A permissive driver: refusals as the machine says, success to every command, a
    challenge to AUTH, and a body to each command that takes one."""
    match event:
        case Invalid(reply=reply):
            return reply
        case User():
            return replies.USER_OK
        case Pass():
            return replies.LOGGED_IN
        case Auth():
            return Continuation("")
        case AuthResponse():
            return replies.AUTH_CANCELLED if event.cancelled else replies.LOGGED_IN
        case Stls():
            return replies.BEGIN_TLS
        case Quit():
            return replies.BYE
        case Capa():
            return replies.capa(user=True, stls=True, sasl=["PLAIN", "LOGIN"])
        case List(msg=None) | Uidl(msg=None):
            return replies.OK, LISTING
        case Retr():
            return replies.MESSAGE_FOLLOWS, MESSAGE
        case Top(lines=lines):
            return replies.MESSAGE_FOLLOWS, encode_message(MESSAGE, lines)
        case _:
            return replies.OK


def respond(conn: ServerConnection, answer: Response | tuple[Pop3Reply, Body]) -> bytes:
    if isinstance(answer, tuple):
        reply, body = answer
        if isinstance(body, bytes) and body.endswith(b".\r\n"):
            return conn.send(reply) + body  # already encoded (TOP)
        return conn.send_multiline(reply, body)
    return conn.send(answer)


def drive(
    conn: ServerConnection,
    data: bytes | Iterable[bytes],
    answer: Answer = generic_answer,
) -> tuple[list[Event], bytes]:
    """Feed ``data`` (one buffer, or a sequence of pieces) and answer every event.

    Returns the events (NEED_DATA left out, CLOSED kept) and the bytes the server wrote.
    ``b""`` as a piece (or as ``data``) is end of file.
    """
    pieces = [data] if isinstance(data, bytes) else list(data)
    events: list[Event] = []
    out = bytearray()
    for piece in pieces:
        conn.receive_data(piece)
        while True:
            event = conn.next_event()
            if isinstance(event, NeedData):
                break
            events.append(event)
            if isinstance(event, Closed):
                return events, bytes(out)
            out += respond(conn, answer(event))
    return events, bytes(out)


def run(
    data: bytes | Iterable[bytes],
    limits: Limits | None = None,
    answer: Answer = generic_answer,
    *,
    tls_active: bool = False,
) -> tuple[ServerConnection, list[Event], bytes]:
    conn = ServerConnection(limits, tls_active=tls_active)
    events, out = drive(conn, data, answer)
    return conn, events, out


def status_lines(out: bytes) -> list[str]:
    """The lines of ``out`` that start a response (+OK, -ERR or a continuation)."""
    return [
        line
        for line in out.decode("utf-8").split("\r\n")
        if line.startswith(("+OK", "-ERR", "+ ")) or line == "+"
    ]


def split(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


def bytewise(data: bytes) -> list[bytes]:
    return split(data, 1)


LOGIN = b"USER alice\r\nPASS secret\r\n"


def in_state(
    data: bytes, limits: Limits | None = None, *, tls_active: bool = False
) -> ServerConnection:
    """A connection after ``data`` was fed and answered generically."""
    conn = ServerConnection(limits, tls_active=tls_active)
    if data:
        drive(conn, data)
    return conn
