"""Events the POP3 server machine yields: one per client command or SASL response line."""

from __future__ import annotations

from dataclasses import dataclass, field

from mailwright.proto.pop3.replies import Pop3Reply


@dataclass(frozen=True, slots=True)
class User:
    name: str


@dataclass(frozen=True, slots=True)
class Pass:
    # RFC 1939 §7: the rest of the line after "PASS ", spaces included.
    password: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class Auth:
    """AUTH (RFC 5034 §4). ``mechanism`` is upper-cased; ``initial`` is the base64 initial
    response as sent ("=" means an empty one), None when the client sent none."""

    mechanism: str
    initial: str | None = field(default=None, repr=False)  # PLAIN's carries the password


@dataclass(frozen=True, slots=True)
class AuthResponse:
    """One client line during a SASL exchange: base64 text, or "*" to cancel (RFC 5034 §4)."""

    data: str = field(repr=False)

    @property
    def cancelled(self) -> bool:
        return self.data == "*"


@dataclass(frozen=True, slots=True)
class Capa:
    pass


@dataclass(frozen=True, slots=True)
class Stat:
    pass


@dataclass(frozen=True, slots=True)
class List:
    msg: int | None = None  # None: the whole scan listing (multi-line)


@dataclass(frozen=True, slots=True)
class Retr:
    msg: int


@dataclass(frozen=True, slots=True)
class Dele:
    msg: int


@dataclass(frozen=True, slots=True)
class Noop:
    pass


@dataclass(frozen=True, slots=True)
class Rset:
    pass


@dataclass(frozen=True, slots=True)
class Top:
    msg: int
    lines: int  # body lines after the header and its blank line; 0 is valid


@dataclass(frozen=True, slots=True)
class Uidl:
    msg: int | None = None  # None: the whole unique-id listing (multi-line)


@dataclass(frozen=True, slots=True)
class Quit:
    """QUIT. Sent in TRANSACTION the machine is already in UPDATE when this is yielded:
    the driver removes the messages marked deleted, then answers (RFC 1939 §6)."""


@dataclass(frozen=True, slots=True)
class Stls:
    pass


@dataclass(frozen=True, slots=True)
class Invalid:
    """The machine refused a line itself (syntax, sequence, limits): send ``reply``."""

    reply: Pop3Reply


@dataclass(frozen=True, slots=True)
class NeedData:
    """No complete event in the buffer; feed more bytes."""


@dataclass(frozen=True, slots=True)
class Closed:
    """The session is over (QUIT answered, too many errors, a closing notice, or the peer
    went away). A peer that goes away without QUIT never reaches UPDATE: nothing it
    marked deleted may be removed (RFC 1939 §6)."""


NEED_DATA = NeedData()
CLOSED = Closed()

Command = (
    User
    | Pass
    | Auth
    | AuthResponse
    | Capa
    | Stat
    | List
    | Retr
    | Dele
    | Noop
    | Rset
    | Top
    | Uidl
    | Quit
    | Stls
)
Event = Command | Invalid | NeedData | Closed
