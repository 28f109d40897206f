"""Events the IMAP server machine yields besides commands (``command.py``)."""

from __future__ import annotations

from dataclasses import dataclass, field

from mailwright.proto.imap.command import Command
from mailwright.proto.imap.response import Status


@dataclass(frozen=True, slots=True)
class NeedLiteral:
    """A literal ``{size}`` (``synchronizing``) or ``{size+}`` (RFC 7888) was announced.

    Answer ``accept_literal()`` (which returns the "+" continuation for a synchronizing
    one) or ``reject_literal(tagged NO/BAD)``. ``command`` is the verb ("LOGIN", "UID
    SEARCH"). ``append``: the literal is APPEND's message, which is streamed, never
    buffered: check its size (and quota) here. The machine has already checked the
    size of every other literal against its limits.
    """

    tag: str
    command: str
    size: int
    synchronizing: bool
    append: bool


@dataclass(frozen=True, slots=True)
class AppendData:
    """The next octets of the message being appended (at most ``Limits.append_chunk``)."""

    chunk: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class AppendEnd:
    """The message literal is complete. ``ok``: the command line ended there, so
    complete the APPEND (store, then send a tagged OK or NO). Otherwise more followed
    the literal (MULTIAPPEND, RFC 3502, is not supported): discard the message and send
    ``response`` (a tagged BAD)."""

    tag: str
    ok: bool = True
    response: Status | None = None


@dataclass(frozen=True, slots=True)
class Done:
    """The client ended IDLE with DONE (RFC 2177 §3): send the tagged OK."""

    tag: str


@dataclass(frozen=True, slots=True)
class AuthResponse:
    """One client line during AUTHENTICATE: the base64 text as sent, or None when the
    client cancelled with "*" (RFC 9051 §6.2.2). Decoding is the driver's."""

    data: bytes | None = field(repr=False)


@dataclass(frozen=True, slots=True)
class Invalid:
    """The machine refused input itself (syntax, state, limits): send ``response``
    (tagged BAD/NO, or untagged BAD when no tag could be read). ``tag`` is the command's
    tag, if any. With ``close`` the machine adds ``* BYE`` to that send and closes."""

    tag: str | None
    response: Status
    close: bool = False


@dataclass(frozen=True, slots=True)
class NeedData:
    """No complete event in the buffer; feed more bytes."""


@dataclass(frozen=True, slots=True)
class Closed:
    """The session is over (LOGOUT answered, BYE sent, or the peer went away)."""


NEED_DATA = NeedData()
CLOSED = Closed()

Event = (
    Command
    | NeedLiteral
    | AppendData
    | AppendEnd
    | Done
    | AuthResponse
    | Invalid
    | NeedData
    | Closed
)
