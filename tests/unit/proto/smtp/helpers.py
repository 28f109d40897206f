"""Drive the sans-IO SMTP server machine in tests: feed bytes, answer every event."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from mailwright.core.reply import Reply
from mailwright.proto.smtp import replies
from mailwright.proto.smtp.events import (
    Auth,
    AuthResponse,
    Bdat,
    Closed,
    Data,
    DataChunk,
    EndOfData,
    Event,
    Invalid,
    NeedData,
    Quit,
    StartTls,
)
from mailwright.proto.smtp.server import Limits, ServerConnection

Answer = Callable[[Event], Reply]

# A pretend SASL server with one user "u", password "p", answering from the event alone:
# PLAIN takes "\0u\0p" (as the initial response or after an empty challenge); LOGIN asks
# for the user name, then the password.
PLAIN_OK = "AHUAcA=="  # base64 of "\0u\0p"
LOGIN_USER = "dQ=="  # base64 of "u"
LOGIN_PASSWORD = "cA=="  # base64 of "p"
CHALLENGE_EMPTY = Reply(334, None, "")
CHALLENGE_USER = Reply(334, None, "VXNlcm5hbWU6")  # "Username:"
CHALLENGE_PASSWORD = Reply(334, None, "UGFzc3dvcmQ6")  # "Password:"


def auth_answer(event: Auth | AuthResponse) -> Reply:
    match event:
        case Auth(mechanism="PLAIN", initial=None):
            return CHALLENGE_EMPTY
        case Auth(mechanism="PLAIN", initial=initial):
            return replies.AUTH_OK if initial == PLAIN_OK else replies.AUTH_INVALID
        case Auth(mechanism="LOGIN", initial=initial):
            return CHALLENGE_USER if initial is None else CHALLENGE_PASSWORD
        case Auth():
            return replies.AUTH_MECHANISM_UNKNOWN
        case AuthResponse(data="*"):
            return replies.AUTH_CANCELLED
        case AuthResponse(data=data) if data in (PLAIN_OK, LOGIN_PASSWORD):
            return replies.AUTH_OK
        case AuthResponse(data=data) if data == LOGIN_USER:
            return CHALLENGE_PASSWORD
    return replies.AUTH_INVALID


def generic_answer(event: Event) -> Reply:
    """A permissive driver: refusals as the machine says, 354 to DATA, 250 to the rest."""
    match event:
        case Invalid(reply=reply):
            return reply
        case Auth() | AuthResponse():
            return auth_answer(event)
        case EndOfData(rejected=rejected):
            return rejected or replies.OK
        case Data():
            return replies.START_DATA
        case Quit():
            return replies.BYE
        case StartTls():
            return replies.READY_TLS
        case _:
            return replies.OK


def needs_reply(event: Event) -> bool:
    return not isinstance(event, DataChunk | Bdat | NeedData | Closed)


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
            if needs_reply(event):
                out += conn.send(answer(event))
    return events, bytes(out)


def run(
    data: bytes | Iterable[bytes],
    limits: Limits | None = None,
    answer: Answer = generic_answer,
) -> tuple[ServerConnection, list[Event], bytes]:
    conn = ServerConnection(limits)
    events, out = drive(conn, data, answer)
    return conn, events, out


def reply_lines(out: bytes) -> list[str]:
    return out.decode("utf-8").split("\r\n")[:-1]


def codes(out: bytes) -> list[int]:
    return [int(line[:3]) for line in reply_lines(out)]


def data_of(events: Iterable[Event]) -> bytes:
    return b"".join(e.data for e in events if isinstance(e, DataChunk))


def merged(events: Iterable[Event]) -> list[Event]:
    """Consecutive DataChunks joined into one (chunk boundaries depend on reads)."""
    result: list[Event] = []
    for event in events:
        if isinstance(event, DataChunk) and result and isinstance(result[-1], DataChunk):
            result[-1] = DataChunk(result[-1].data + event.data)
        else:
            result.append(event)
    return result


def split(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


def bytewise(data: bytes) -> list[bytes]:
    return split(data, 1)


GREET = b"EHLO client.example\r\n"
ENVELOPE = GREET + b"MAIL FROM:<a@remote.test>\r\nRCPT TO:<b@example.test>\r\n"
START_DATA = ENVELOPE + b"DATA\r\n"


def in_state(data: bytes, limits: Limits | None = None) -> ServerConnection:
    """A connection after ``data`` was fed and answered generically."""
    conn = ServerConnection(limits)
    if data:
        drive(conn, data)
    return conn
