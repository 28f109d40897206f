"""Events the SMTP server machine yields: one per client command, plus the data stream."""

from __future__ import annotations

from dataclasses import dataclass, field

from mailwright.core.address import Address
from mailwright.core.reply import Reply


@dataclass(frozen=True, slots=True)
class Ehlo:
    hostname: str


@dataclass(frozen=True, slots=True)
class Helo:
    hostname: str


@dataclass(frozen=True, slots=True)
class MailFrom:
    address: Address | None  # None is the null reverse-path <>
    params: dict[str, str | None] = field(default_factory=dict)

    @property
    def smtputf8(self) -> bool:
        return "SMTPUTF8" in self.params


@dataclass(frozen=True, slots=True)
class RcptTo:
    address: Address
    params: dict[str, str | None] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Data:
    pass


@dataclass(frozen=True, slots=True)
class Bdat:
    size: int
    last: bool


@dataclass(frozen=True, slots=True)
class DataChunk:
    """Message content, dot-unstuffed, in order. Never a whole message at once."""

    data: bytes


@dataclass(frozen=True, slots=True)
class EndOfData:
    """End of DATA (CRLF.CRLF) or of one BDAT chunk.

    ``rejected`` is set when the machine already knows the content is refused
    (too big, bare CR/LF, NUL, over-long line); the driver must send it and store nothing.
    ``last`` is False only after a non-final BDAT chunk.
    """

    rejected: Reply | None = None
    last: bool = True


@dataclass(frozen=True, slots=True)
class Rset:
    pass


@dataclass(frozen=True, slots=True)
class Noop:
    pass


@dataclass(frozen=True, slots=True)
class Quit:
    pass


@dataclass(frozen=True, slots=True)
class Help:
    topic: str


@dataclass(frozen=True, slots=True)
class Vrfy:
    argument: str


@dataclass(frozen=True, slots=True)
class StartTls:
    pass


@dataclass(frozen=True, slots=True)
class Auth:
    """AUTH (RFC 4954 §4). ``mechanism`` is upper-cased; ``initial`` is the initial
    response as sent (base64 characters, or "=" for an empty one), not decoded.

    Answer 334 with a challenge to read one more line (an ``AuthResponse``), 235 when
    the client is authenticated, or a refusal.
    """

    mechanism: str
    initial: str | None = field(default=None, repr=False)  # credentials: kept out of logs


@dataclass(frozen=True, slots=True)
class AuthResponse:
    """One client line of a SASL exchange, after a 334 (RFC 4954 §4), without its CRLF.

    Not decoded and not checked for base64: "*" (the client cancels) comes as it is.
    Answered like ``Auth``.
    """

    data: str = field(repr=False)  # credentials: kept out of logs


@dataclass(frozen=True, slots=True)
class Invalid:
    """The machine refused a line itself (syntax, sequence, limits): send ``reply``."""

    reply: Reply


@dataclass(frozen=True, slots=True)
class NeedData:
    """No complete event in the buffer; feed more bytes."""


@dataclass(frozen=True, slots=True)
class Closed:
    """The session is over (QUIT answered, too many errors, or the peer went away)."""


NEED_DATA = NeedData()
CLOSED = Closed()

Command = (
    Ehlo
    | Helo
    | MailFrom
    | RcptTo
    | Data
    | Bdat
    | Rset
    | Noop
    | Quit
    | Help
    | Vrfy
    | StartTls
    | Auth
)
Event = Command | AuthResponse | DataChunk | EndOfData | Invalid | NeedData | Closed
