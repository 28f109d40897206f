"""IMAP responses: status responses, data responses, continuations, and the value encoder.

A response is a ``Status`` (``a1 OK [CODE] text``, ``* BYE text``) or a ``Data`` (``* ...``
values). Build them with ``tagged``, ``untagged_status``, ``untagged`` and the helpers
below, and send them through ``ServerConnection.send``: only the machine writes bytes
(compression, RFC 4978, is applied there).

The value encoder (``encode``) writes nested IMAP data (RFC 9051 §4):
``None`` -> NIL; ``int`` -> number; ``str``/``bytes`` -> a quoted string when short and
plain printable ASCII without quotes or backslashes, otherwise a literal ``{n}`` CRLF
octets (8-bit text, CR, LF, quotes: a literal is always exact); ``list``/``tuple`` ->
a parenthesised list; ``Atom`` -> sent bare (flags, keywords, item names);
``Literal`` -> always a literal (``~{n}`` literal8 with ``binary``, RFC 3516 §4.2).

Inside a response code (``Code``) a ``str`` is sent bare, since code arguments are atoms,
numbers and sequence sets (``[APPENDUID 38505 3955]``, ``[BADCHARSET (UTF-8 US-ASCII)]``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from mailwright.core.errors import LocalProtocolError

QUOTED_MAX = 1024  # longer strings go as literals: cheaper for client and server alike
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_QUOTE_UNSAFE = frozenset(b'"\\')


@dataclass(frozen=True, slots=True)
class Atom:
    """Text sent as it is: a flag (``\\Seen``), keyword, capability or item name.

    Printable US-ASCII and spaces only (``BODY[HEADER.FIELDS (DATE)]`` is one name).
    """

    text: str

    def __post_init__(self) -> None:
        if not self.text or not all("\x20" <= c <= "\x7e" for c in self.text):
            raise LocalProtocolError(f"not an atom: {self.text[:40]!r}")


@dataclass(frozen=True, slots=True)
class Literal:
    """Octets always sent as a literal; ``binary`` makes it literal8 (RFC 3516 §4.2)."""

    data: bytes
    binary: bool = False


Value = None | int | str | bytes | Atom | Literal | list["Value"] | tuple["Value", ...]


def encode(value: Value) -> bytes:
    """``value`` as IMAP data (see the module docstring)."""
    out = bytearray()
    _encode(out, value, bare=False)
    return bytes(out)


def _encode(out: bytearray, value: Value, *, bare: bool) -> None:
    if value is None:
        out += b"NIL"
    elif isinstance(value, bool):
        raise LocalProtocolError("a bool is no IMAP value")
    elif isinstance(value, int):
        if value < 0:
            raise LocalProtocolError(f"IMAP numbers are unsigned: {value}")
        out += str(value).encode("ascii")
    elif isinstance(value, str):
        if bare:
            _encode(out, Atom(value), bare=True)
        else:
            _string(out, value.encode("utf-8"))
    elif isinstance(value, bytes):
        _string(out, value)
    elif isinstance(value, Atom):
        if bare and "]" in value.text:
            raise LocalProtocolError(f"']' would end the response code: {value.text[:40]!r}")
        out += value.text.encode("ascii")
    elif isinstance(value, Literal):
        _literal(out, value.data, binary=value.binary)
    elif isinstance(value, list | tuple):
        # A list may say that its first ``run`` members are adjacent lists written with
        # no space between them (RFC 9051 §9: "(" 1*body SP media-subtype, "(" 1*address
        # ")"); message.structure marks its lists so.
        run = getattr(value, "run", 0)
        out += b"("
        for i, item in enumerate(value):
            if i and i >= run:
                out += b" "
            _encode(out, item, bare=bare)
        out += b")"
    else:
        raise LocalProtocolError(f"no IMAP encoding for {type(value).__name__}")


def _string(out: bytearray, data: bytes) -> None:
    # RFC 9051 §4.3: a quoted string holds no CR, LF or NUL; we also keep 8-bit text,
    # quotes and backslashes out of it, so what a client reads is always exact.
    if len(data) <= QUOTED_MAX and all(0x20 <= b <= 0x7E and b not in _QUOTE_UNSAFE for b in data):
        out += b'"' + data + b'"'
    else:
        _literal(out, data, binary=False)


def _literal(out: bytearray, data: bytes, *, binary: bool) -> None:
    out += b"~{" if binary else b"{"
    out += str(len(data)).encode("ascii") + b"}\r\n" + data


def _check_text(text: str) -> None:
    if "\r" in text or "\n" in text or "\0" in text:
        raise LocalProtocolError(f"CR, LF or NUL in response text: {text[:40]!r}")


# -- response codes (RFC 9051 §7.1, RFC 5530, RFC 4315, RFC 7162, RFC 4978, RFC 4469) ----


@dataclass(frozen=True, slots=True)
class Code:
    """A response code: ``[NAME args]``. Constants below; call one to add arguments:
    ``UIDNEXT(4392)``, ``PERMANENTFLAGS([Atom("\\\\Seen"), Atom("\\\\*")])``,
    ``COPYUID(38505, "304,319:320", "3956:3958")``."""

    name: str
    args: tuple[Value, ...] = ()

    def __post_init__(self) -> None:
        Atom(self.name)  # validates
        if " " in self.name or "]" in self.name:
            raise LocalProtocolError(f"invalid response code name {self.name!r}")

    def __call__(self, *args: Value) -> Code:
        return Code(self.name, args)

    def to_bytes(self) -> bytes:
        out = bytearray(b"[" + self.name.encode("ascii"))
        for arg in self.args:
            out += b" "
            _encode(out, arg, bare=True)
        out += b"]"
        return bytes(out)


ALERT = Code("ALERT")
BADCHARSET = Code("BADCHARSET")
CAPABILITY = Code("CAPABILITY")
PARSE = Code("PARSE")
PERMANENTFLAGS = Code("PERMANENTFLAGS")
READ_ONLY = Code("READ-ONLY")
READ_WRITE = Code("READ-WRITE")
TRYCREATE = Code("TRYCREATE")
UIDNEXT = Code("UIDNEXT")
UIDVALIDITY = Code("UIDVALIDITY")
UNSEEN = Code("UNSEEN")
APPENDUID = Code("APPENDUID")  # RFC 4315 §3
COPYUID = Code("COPYUID")
UIDNOTSTICKY = Code("UIDNOTSTICKY")
HIGHESTMODSEQ = Code("HIGHESTMODSEQ")  # RFC 7162 §3.1.2.1
NOMODSEQ = Code("NOMODSEQ")
MODIFIED = Code("MODIFIED")
CLOSED = Code("CLOSED")  # RFC 7162 §3.2.11
ALREADYEXISTS = Code("ALREADYEXISTS")  # RFC 5530 §3
NONEXISTENT = Code("NONEXISTENT")
AUTHENTICATIONFAILED = Code("AUTHENTICATIONFAILED")
AUTHORIZATIONFAILED = Code("AUTHORIZATIONFAILED")
CANNOT = Code("CANNOT")
INUSE = Code("INUSE")
LIMIT = Code("LIMIT")
OVERQUOTA = Code("OVERQUOTA")
SERVERBUG = Code("SERVERBUG")
UNAVAILABLE = Code("UNAVAILABLE")
CONTACTADMIN = Code("CONTACTADMIN")
NOPERM = Code("NOPERM")
EXPUNGEISSUED = Code("EXPUNGEISSUED")
EXPIRED = Code("EXPIRED")
PRIVACYREQUIRED = Code("PRIVACYREQUIRED")
UNKNOWN_CTE = Code("UNKNOWN-CTE")  # RFC 3516 §4.3
TOOBIG = Code("TOOBIG")  # RFC 4469 §5, used by RFC 7888 §4 for literals
COMPRESSIONACTIVE = Code("COMPRESSIONACTIVE")  # RFC 4978 §3
NOTSAVED = Code("NOTSAVED")  # RFC 5182 §2.4

SUPPORTED_CHARSETS = ("UTF-8", "US-ASCII")


# -- responses ---------------------------------------------------------------------------

_TAGGED = frozenset({"OK", "NO", "BAD"})
_UNTAGGED = frozenset({"OK", "NO", "BAD", "PREAUTH", "BYE"})
# RFC 3501 §9 requires text after a status (text = 1*TEXT-CHAR): used when none is given.
_DEFAULT_TEXT = {
    "OK": "Completed",
    "NO": "Failed",
    "BAD": "Invalid command",
    "PREAUTH": "Logged in",
    "BYE": "Logging out",
}


@dataclass(frozen=True, slots=True)
class Status:
    """A status response (RFC 9051 §7.1): tagged (``tag``) or untagged (``tag`` None)."""

    tag: str | None
    status: str
    text: str = ""
    code: Code | None = None

    def __post_init__(self) -> None:
        allowed = _UNTAGGED if self.tag is None else _TAGGED
        if self.status not in allowed:
            kind = "untagged" if self.tag is None else "tagged"
            raise LocalProtocolError(f"{self.status!r} is no {kind} status")
        if self.tag is not None and not _valid_tag(self.tag):
            raise LocalProtocolError(f"invalid tag {self.tag!r}")
        _check_text(self.text)
        if self.code is None and self.text.startswith("["):
            raise LocalProtocolError("text starting with '[' would read as a response code")

    def to_bytes(self) -> bytes:
        parts = [(self.tag or "*").encode("ascii"), self.status.encode("ascii")]
        if self.code is not None:
            parts.append(self.code.to_bytes())
        parts.append((self.text or _DEFAULT_TEXT[self.status]).encode("utf-8"))
        return b" ".join(parts) + b"\r\n"


@dataclass(frozen=True, slots=True)
class Data:
    """An untagged data response: ``*`` and the encoded values (``* 5 EXISTS``)."""

    values: tuple[Value, ...]

    def __post_init__(self) -> None:
        if not self.values:
            raise LocalProtocolError("an untagged response has data")

    def to_bytes(self) -> bytes:
        out = bytearray(b"*")
        for value in self.values:
            out += b" "
            _encode(out, value, bare=False)
        out += b"\r\n"
        return bytes(out)


@dataclass(frozen=True, slots=True)
class Continuation:
    """A continuation request (RFC 9051 §7.5): ``+`` text, or ``+`` base64 for SASL."""

    text: str | bytes = ""

    def __post_init__(self) -> None:
        text = self.text.decode("ascii", "replace") if isinstance(self.text, bytes) else self.text
        _check_text(text)

    def to_bytes(self) -> bytes:
        text = self.text if isinstance(self.text, bytes) else self.text.encode("utf-8")
        return b"+ " + text + b"\r\n"


@dataclass(frozen=True, slots=True)
class Encoded:
    """A response this module encoded whole where ``Data`` cannot express it (``thread``)."""

    data: bytes

    def __post_init__(self) -> None:
        if not self.data.startswith(b"* ") or not self.data.endswith(b"\r\n"):
            raise LocalProtocolError("an encoded response is one untagged line")

    def to_bytes(self) -> bytes:
        return self.data


Response = Status | Data | Encoded

LITERAL_CONTINUATION = Continuation("Ready for literal data")


def _valid_tag(tag: str) -> bool:
    # RFC 9051 §9: tag = 1*<any ASTRING-CHAR except "+">
    return bool(tag) and all(c in _TAG_CHARS for c in tag)


_TAG_CHARS = frozenset(chr(c) for c in range(0x21, 0x7F)) - frozenset('(){%*"\\+')


def tagged(tag: str, status: str, text: str = "", code: Code | None = None) -> Status:
    """``tag OK|NO|BAD [code] text``: the completion of the command tagged ``tag``."""
    return Status(tag, status, text, code)


def untagged_status(status: str, text: str = "", code: Code | None = None) -> Status:
    """``* OK|NO|BAD|PREAUTH|BYE [code] text``."""
    return Status(None, status, text, code)


def bye(text: str = "", code: Code | None = None) -> Status:
    return Status(None, "BYE", text, code)


def untagged(*values: Value) -> Data:
    """``*`` followed by ``values``: ``untagged(3, Atom("EXISTS"))``."""
    return Data(values)


def continuation(text: str | bytes = "") -> Continuation:
    return Continuation(text)


# -- data responses ----------------------------------------------------------------------


def _atoms(names: Iterable[str]) -> list[Value]:
    return [Atom(n) for n in names]


def capability(capabilities: Iterable[str]) -> Data:
    return Data((Atom("CAPABILITY"), *_atoms(capabilities)))


def capability_code(capabilities: Iterable[str]) -> Code:
    """``[CAPABILITY ...]`` for a greeting or a login's OK (RFC 9051 §7.1)."""
    return CAPABILITY(*capabilities)


def enabled(capabilities: Iterable[str]) -> Data:
    """RFC 5161 §3.2: ``* ENABLED`` with the extensions this ENABLE turned on."""
    return Data((Atom("ENABLED"), *_atoms(capabilities)))


def exists(count: int) -> Data:
    return Data((count, Atom("EXISTS")))


def recent(count: int) -> Data:
    return Data((count, Atom("RECENT")))


def expunge(seq: int) -> Data:
    return Data((seq, Atom("EXPUNGE")))


def vanished(uids: str, *, earlier: bool = False) -> Data:
    """RFC 7162 §3.2.10: ``* VANISHED [(EARLIER)] uid-set``."""
    head: tuple[Value, ...] = (Atom("VANISHED"),)
    if earlier:
        head += ([Atom("EARLIER")],)
    return Data((*head, Atom(uids)))


def flags(names: Iterable[str]) -> Data:
    return Data((Atom("FLAGS"), _atoms(names)))


def fetch(seq: int, items: Sequence[tuple[str, Value]]) -> Data:
    """``* seq FETCH (name value ...)``; names are sent bare (``FetchItem.name``)."""
    return Data((seq, Atom("FETCH"), _fetch_items(items)))


def _fetch_items(items: Sequence[tuple[str, Value]]) -> list[Value]:
    flat: list[Value] = []
    for name, value in items:
        flat += [Atom(name), value]
    return flat


def list_mailbox(
    attributes: Iterable[str],
    delimiter: str | None,
    name: str,
    extended: Sequence[Value] = (),
    *,
    verb: str = "LIST",
) -> Data:
    """``* LIST (\\HasNoChildren) "/" name [extended]`` (RFC 9051 §7.3.1); ``verb``
    "LSUB" for LSUB. ``extended`` is RFC 5258's mbox-list-extended items (CHILDINFO,
    OLDNAME), sent as one list when given."""
    values: tuple[Value, ...] = (Atom(verb), _atoms(attributes), delimiter, name)
    if extended:
        values += (list(extended),)
    return Data(values)


def status_data(mailbox: str, items: Sequence[tuple[str, int]]) -> Data:
    """``* STATUS mailbox (MESSAGES 2 UIDNEXT 9)`` (RFC 9051 §7.3.2)."""
    flat: list[Value] = []
    for name, number in items:
        flat += [Atom(name), number]
    return Data((Atom("STATUS"), mailbox, flat))


def search(numbers: Iterable[int], modseq: int | None = None, *, verb: str = "SEARCH") -> Data:
    """``* SEARCH 2 3 6`` (RFC 3501 §7.2.5), with ``(MODSEQ n)`` per RFC 7162 §3.1.5;
    ``verb`` "SORT" for RFC 5256's ``* SORT``."""
    values: tuple[Value, ...] = (Atom(verb), *numbers)
    if modseq is not None:
        values += ([Atom("MODSEQ"), modseq],)
    return Data(values)


def esearch(tag: str | None, uid: bool, items: Sequence[tuple[str, int | str]]) -> Data:
    """``* ESEARCH (TAG "a1") UID MIN 2 ALL 2:4`` (RFC 4731 §3.1, RFC 9051 §7.3.4).

    A ``str`` value is a sequence set and goes bare."""
    values: list[Value] = [Atom("ESEARCH")]
    if tag is not None:
        values.append([Atom("TAG"), tag])
    if uid:
        values.append(Atom("UID"))
    for name, value in items:
        values += [Atom(name), Atom(value) if isinstance(value, str) else value]
    return Data(tuple(values))


Namespace = Sequence[tuple[str, str | None]] | None


def namespace(personal: Namespace, other: Namespace, shared: Namespace) -> Data:
    """``* NAMESPACE (("" "/")) NIL NIL`` (RFC 2342 §5); each is None or (prefix, delimiter)s."""

    def one(spaces: Namespace) -> Value:
        return None if spaces is None else [[prefix, delim] for prefix, delim in spaces]

    return Data((Atom("NAMESPACE"), one(personal), one(other), one(shared)))


def id_response(params: Mapping[str, str | None] | None) -> Data:
    """``* ID ("name" "mailwright")`` or ``* ID NIL`` (RFC 2971 §3.2)."""
    if params is None:
        return Data((Atom("ID"), None))
    flat: list[Value] = []
    for key, value in params.items():
        flat += [key, value]
    return Data((Atom("ID"), flat))


def quota(root: str, resources: Sequence[tuple[str, int, int]]) -> Data:
    """``* QUOTA root (STORAGE 10 512)`` (RFC 9208 §5.1): (name, usage, limit) each."""
    flat: list[Value] = []
    for name, usage, limit in resources:
        flat += [Atom(name), usage, limit]
    return Data((Atom("QUOTA"), root, flat))


def quotaroot(mailbox: str, roots: Iterable[str]) -> Data:
    return Data((Atom("QUOTAROOT"), mailbox, *roots))


Thread = Sequence["int | Thread"]


def thread(threads: Sequence[Thread]) -> Encoded:
    """The ``* THREAD`` response (RFC 5256 §4).

    Each thread is a list of message numbers, the last elements of which may be
    sub-threads (lists) that branch from the last number: ``[2]``, ``[3, 6, [4, 23], [44,
    7, 96]]``; or, for a thread whose first message is missing (REFERENCES' dummy), only
    sub-threads: ``[[3], [5]]``. Sub-threads come two or more at a time (a single one
    continues the list of numbers instead). RFC 5256 §4 writes sibling lists without
    spaces between them.
    """
    out = bytearray(b"* THREAD")
    if threads:
        out += b" "
    for one in threads:
        _thread(out, one)
    return Encoded(bytes(out + b"\r\n"))


class _ThreadFrame:
    """One thread list being written: where ``_thread`` is in it."""

    __slots__ = ("items", "nested", "next", "previous")

    def __init__(self, items: Thread) -> None:
        self.items = items
        self.next = 0
        self.previous: int | None = None  # the last number written; 0 after a sub-thread
        self.nested = 0


def _thread(out: bytearray, thread: Thread) -> None:
    # RFC 5256 §4: thread-list = "(" (thread-members / thread-nested) ")";
    # thread-members = nz-number *(SP nz-number) [SP thread-nested]; thread-nested =
    # 2*thread-list, the lists following each other without a space. A loop, not
    # recursion: threads may nest deeper than Python's recursion limit.
    out += b"("
    stack = [_ThreadFrame(thread)]
    while stack:
        frame = stack[-1]
        if frame.next == len(frame.items):
            if frame.previous is None:
                raise LocalProtocolError("an empty thread")
            if frame.nested == 1:
                raise LocalProtocolError("a single sub-thread continues its parent's numbers")
            out += b")"
            stack.pop()
            continue
        item = frame.items[frame.next]
        frame.next += 1
        if isinstance(item, int):
            if item < 1:
                raise LocalProtocolError(f"{item} is no message number")
            if frame.previous == 0:
                raise LocalProtocolError("message numbers come before the sub-threads")
            out += b"" if frame.previous is None else b" "
            out += str(item).encode("ascii")
            frame.previous = item
        else:
            if frame.previous is not None and frame.previous > 0:
                out += b" "
            frame.previous = 0
            frame.nested += 1
            out += b"("
            stack.append(_ThreadFrame(item))


def format_datetime(when: datetime) -> str:
    """An INTERNALDATE value, ``"17-Jul-1996 02:44:25 -0700"`` (RFC 9051 §9 date-time);
    a naive ``when`` is taken as UTC."""
    offset = when.utcoffset() or timedelta(0)
    minutes = int(offset.total_seconds()) // 60
    sign = "-" if minutes < 0 else "+"
    hours, mins = divmod(abs(minutes), 60)
    return (
        f"{when.day:02d}-{_MONTHS[when.month - 1]}-{when.year:04d} "
        f"{when.hour:02d}:{when.minute:02d}:{when.second:02d} {sign}{hours:02d}{mins:02d}"
    )


def fetch_literal_head(
    seq: int, items: Sequence[tuple[str, Value]], name: str, size: int, *, binary: bool = False
) -> bytes:
    """``* seq FETCH (items... name {size}`` CRLF: the start of a streamed FETCH response.

    The ``size`` octets follow (``ServerConnection.send_fetch_chunk``), then
    ``fetch_literal_tail``."""
    out = bytearray(b"* ")
    out += str(seq).encode("ascii") + b" FETCH ("
    for name_, value in items:
        out += Atom(name_).text.encode("ascii") + b" "
        _encode(out, value, bare=False)
        out += b" "
    out += Atom(name).text.encode("ascii") + b" "
    out += (b"~{" if binary else b"{") + str(size).encode("ascii") + b"}\r\n"
    return bytes(out)


def fetch_literal_tail(items: Sequence[tuple[str, Value]] = ()) -> bytes:
    """The items after a streamed literal, and the end of the FETCH response."""
    out = bytearray()
    for name, value in items:
        out += b" " + Atom(name).text.encode("ascii") + b" "
        _encode(out, value, bare=False)
    return bytes(out + b")\r\n")
