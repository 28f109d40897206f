"""IMAP commands as the parser yields them: frozen dataclasses, one per verb (RFC 9051 §6
and the extensions named at each), with FETCH items and the SEARCH key tree.

Every command carries its ``tag``. ``uid`` says the command came with the UID prefix
(RFC 9051 §6.4.9). Mailbox names are given as sent, except that "INBOX" in any case is
"INBOX" (RFC 9051 §5.1); a session that did not ENABLE IMAP4rev2 or UTF8=ACCEPT decodes
them with ``mutf7.decode`` (RFC 3501 §5.1.3). Passwords and SASL data never appear in a
``repr``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime

from mailwright.proto.imap.numset import SequenceSet

# -- FETCH items (RFC 9051 §6.4.5, RFC 3516 §4, RFC 7162 §3.1.4) ---------------------------


@dataclass(frozen=True, slots=True)
class Flags:
    @property
    def name(self) -> str:
        return "FLAGS"


@dataclass(frozen=True, slots=True)
class InternalDate:
    @property
    def name(self) -> str:
        return "INTERNALDATE"


@dataclass(frozen=True, slots=True)
class Rfc822Size:
    @property
    def name(self) -> str:
        return "RFC822.SIZE"


@dataclass(frozen=True, slots=True)
class Envelope:
    @property
    def name(self) -> str:
        return "ENVELOPE"


@dataclass(frozen=True, slots=True)
class BodyStructure:
    """BODYSTRUCTURE (``extensible``) or BODY: the same tree without extension data."""

    extensible: bool = True

    @property
    def name(self) -> str:
        return "BODYSTRUCTURE" if self.extensible else "BODY"


@dataclass(frozen=True, slots=True)
class Uid:
    @property
    def name(self) -> str:
        return "UID"


@dataclass(frozen=True, slots=True)
class ModSeq:
    """RFC 7162 §3.1.4.1: the value is sent as a list, ``MODSEQ (12)``."""

    @property
    def name(self) -> str:
        return "MODSEQ"


@dataclass(frozen=True, slots=True)
class Rfc822:
    """RFC822: the whole message, as BODY[] (sets \\Seen)."""

    @property
    def name(self) -> str:
        return "RFC822"


@dataclass(frozen=True, slots=True)
class Rfc822Header:
    """RFC822.HEADER: as BODY.PEEK[HEADER]."""

    @property
    def name(self) -> str:
        return "RFC822.HEADER"


@dataclass(frozen=True, slots=True)
class Rfc822Text:
    """RFC822.TEXT: as BODY[TEXT] (sets \\Seen)."""

    @property
    def name(self) -> str:
        return "RFC822.TEXT"


def _part(part: tuple[int, ...]) -> str:
    return ".".join(str(p) for p in part)


def _field_name(name: str) -> str:
    # A header-fld-name is an astring: bare when it can be an atom, quoted otherwise.
    if name and all(0x21 <= ord(c) <= 0x7E and c not in '(){%*"\\' for c in name):
        return name
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


@dataclass(frozen=True, slots=True)
class BodySection:
    """BODY[section]<partial> and BODY.PEEK[...] (RFC 9051 §6.4.5).

    ``part``: the MIME part numbers, () for the whole message. ``text``: None (the
    whole part), "HEADER", "HEADER.FIELDS", "HEADER.FIELDS.NOT", "TEXT" or "MIME".
    ``fields``: the header names for HEADER.FIELDS[.NOT], as sent. ``partial``:
    (origin, length). ``peek``: BODY.PEEK, which does not set \\Seen.
    """

    part: tuple[int, ...] = ()
    text: str | None = None
    fields: tuple[str, ...] = ()
    partial: tuple[int, int] | None = None
    peek: bool = False

    @property
    def section(self) -> str:
        spec = _part(self.part)
        if self.text is not None:
            spec = f"{spec}.{self.text}" if spec else self.text
        if self.fields:
            spec += " (" + " ".join(_field_name(f) for f in self.fields) + ")"
        return spec

    @property
    def name(self) -> str:
        # RFC 9051 §7.5.2: the response names BODY (never BODY.PEEK), and of a partial
        # fetch only its origin: BODY[]<0>.
        origin = "" if self.partial is None else f"<{self.partial[0]}>"
        return f"BODY[{self.section}]{origin}"


@dataclass(frozen=True, slots=True)
class Binary:
    """BINARY[part]<partial> and BINARY.PEEK (RFC 3516 §4.1): content-transfer-decoded."""

    part: tuple[int, ...] = ()
    partial: tuple[int, int] | None = None
    peek: bool = False

    @property
    def name(self) -> str:
        origin = "" if self.partial is None else f"<{self.partial[0]}>"
        return f"BINARY[{_part(self.part)}]{origin}"


@dataclass(frozen=True, slots=True)
class BinarySize:
    """BINARY.SIZE[part] (RFC 3516 §4.2)."""

    part: tuple[int, ...] = ()

    @property
    def name(self) -> str:
        return f"BINARY.SIZE[{_part(self.part)}]"


FetchItem = (
    Flags
    | InternalDate
    | Rfc822Size
    | Envelope
    | BodyStructure
    | Uid
    | ModSeq
    | Rfc822
    | Rfc822Header
    | Rfc822Text
    | BodySection
    | Binary
    | BinarySize
)

# RFC 9051 §6.4.5: the macros.
FAST: tuple[FetchItem, ...] = (Flags(), InternalDate(), Rfc822Size())
ALL: tuple[FetchItem, ...] = (*FAST, Envelope())
FULL: tuple[FetchItem, ...] = (*ALL, BodyStructure(extensible=False))


# -- SEARCH keys (RFC 9051 §6.4.4, RFC 7162 §3.1.5) -----------------------------------------


@dataclass(frozen=True, slots=True)
class All:
    pass


@dataclass(frozen=True, slots=True)
class FlagKey:
    """A system flag set (``present``) or not: ANSWERED/UNANSWERED, DELETED, DRAFT,
    FLAGGED, SEEN and their UN- forms. ``flag`` is "\\\\Answered" etc."""

    flag: str
    present: bool = True


@dataclass(frozen=True, slots=True)
class Keyword:
    """KEYWORD flag: the keyword is set."""

    keyword: str


@dataclass(frozen=True, slots=True)
class Unkeyword:
    """UNKEYWORD flag: the keyword is not set."""

    keyword: str


@dataclass(frozen=True, slots=True)
class New:
    """NEW: \\Recent and not \\Seen."""


@dataclass(frozen=True, slots=True)
class Old:
    """OLD: not \\Recent."""


@dataclass(frozen=True, slots=True)
class Recent:
    pass


@dataclass(frozen=True, slots=True)
class Header:
    """HEADER field value; FROM, TO, CC, BCC and SUBJECT are this too. ``field`` is
    lower-case ASCII; an empty ``value`` matches every message with the field."""

    field: str
    value: str


@dataclass(frozen=True, slots=True)
class Body:
    text: str


@dataclass(frozen=True, slots=True)
class Text:
    """TEXT: in the header or the body."""

    text: str


@dataclass(frozen=True, slots=True)
class Before:
    """Internal date (ignoring time and zone) before ``date``."""

    date: date


@dataclass(frozen=True, slots=True)
class On:
    date: date


@dataclass(frozen=True, slots=True)
class Since:
    date: date


@dataclass(frozen=True, slots=True)
class SentBefore:
    """Date: header (ignoring time and zone) before ``date``."""

    date: date


@dataclass(frozen=True, slots=True)
class SentOn:
    date: date


@dataclass(frozen=True, slots=True)
class SentSince:
    date: date


@dataclass(frozen=True, slots=True)
class Larger:
    size: int


@dataclass(frozen=True, slots=True)
class Smaller:
    size: int


@dataclass(frozen=True, slots=True)
class UidKey:
    set: SequenceSet


@dataclass(frozen=True, slots=True)
class SeqKey:
    set: SequenceSet


@dataclass(frozen=True, slots=True)
class ModSeqKey:
    """MODSEQ [entry-name entry-type] modseq (RFC 7162 §3.1.5): changed at or after
    ``modseq``. ``entry`` is the flag of "/flags/<flag>", ``entry_type`` "priv",
    "shared" or "all" (both None when not given)."""

    modseq: int
    entry: str | None = None
    entry_type: str | None = None


@dataclass(frozen=True, slots=True)
class Not:
    key: SearchKey


@dataclass(frozen=True, slots=True)
class Or:
    """Any of ``keys`` (two or more). A chain ``OR a OR b c`` is one ``Or((a, b, c))``,
    so that long alternatives do not nest deeply."""

    keys: tuple[SearchKey, ...]


@dataclass(frozen=True, slots=True)
class And:
    """Every one of ``keys``: a parenthesised list, or several keys in a row."""

    keys: tuple[SearchKey, ...]


SearchKey = (
    All
    | FlagKey
    | Keyword
    | Unkeyword
    | New
    | Old
    | Recent
    | Header
    | Body
    | Text
    | Before
    | On
    | Since
    | SentBefore
    | SentOn
    | SentSince
    | Larger
    | Smaller
    | UidKey
    | SeqKey
    | ModSeqKey
    | Not
    | Or
    | And
)


# -- commands ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Capability:
    tag: str


@dataclass(frozen=True, slots=True)
class Noop:
    tag: str


@dataclass(frozen=True, slots=True)
class Logout:
    tag: str


@dataclass(frozen=True, slots=True)
class StartTls:
    tag: str


@dataclass(frozen=True, slots=True)
class Authenticate:
    """AUTHENTICATE (RFC 9051 §6.2.2) with SASL-IR (RFC 4959 §3).

    ``mechanism`` is upper-cased. ``initial_response`` is the base64 text as sent, "="
    meaning an empty response, or None: decode it with
    ``sasl.mechanism.decode_response(..., initial=True)``.
    """

    tag: str
    mechanism: str
    initial_response: bytes | None = field(default=None, repr=False)


@dataclass(frozen=True, slots=True)
class Login:
    tag: str
    user: str
    password: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class Enable:
    """ENABLE (RFC 5161 §3.1); capability names upper-cased."""

    tag: str
    caps: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Id:
    """ID (RFC 2971 §3.1): None for NIL; keys as sent (compare case-insensitively)."""

    tag: str
    params: dict[str, str | None] | None


@dataclass(frozen=True, slots=True)
class QresyncParams:
    """SELECT's QRESYNC parameter (RFC 7162 §3.2.5): ``seq_match`` is (known sequence
    numbers, their UIDs)."""

    uidvalidity: int
    modseq: int
    known_uids: SequenceSet | None = None
    seq_match: tuple[SequenceSet, SequenceSet] | None = None


@dataclass(frozen=True, slots=True)
class Select:
    tag: str
    mailbox: str
    condstore: bool = False  # RFC 7162 §3.1.8
    qresync: QresyncParams | None = None


@dataclass(frozen=True, slots=True)
class Examine:
    tag: str
    mailbox: str
    condstore: bool = False
    qresync: QresyncParams | None = None


@dataclass(frozen=True, slots=True)
class Create:
    """CREATE, with RFC 6154 §3's ``(USE (\\Drafts ...))`` as ``special_use``."""

    tag: str
    mailbox: str
    special_use: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Delete:
    tag: str
    mailbox: str


@dataclass(frozen=True, slots=True)
class Rename:
    tag: str
    old: str
    new: str


@dataclass(frozen=True, slots=True)
class Subscribe:
    tag: str
    mailbox: str


@dataclass(frozen=True, slots=True)
class Unsubscribe:
    tag: str
    mailbox: str


@dataclass(frozen=True, slots=True)
class List:
    """LIST (RFC 9051 §6.3.9, LIST-EXTENDED RFC 5258, LIST-STATUS RFC 5819,
    SPECIAL-USE RFC 6154).

    ``selection``: SUBSCRIBED, REMOTE, RECURSIVEMATCH, SPECIAL-USE. ``returns``:
    SUBSCRIBED, CHILDREN, SPECIAL-USE, STATUS; ``status_items`` are STATUS's items.
    ``extended``: any of those, or several patterns, were given (RFC 5258 §3).
    ``reference`` and ``patterns`` are as sent (no INBOX folding).
    """

    tag: str
    reference: str
    patterns: tuple[str, ...]
    selection: frozenset[str] = frozenset()
    returns: frozenset[str] = frozenset()
    status_items: tuple[str, ...] = ()
    extended: bool = False


@dataclass(frozen=True, slots=True)
class Lsub:
    tag: str
    reference: str
    pattern: str


@dataclass(frozen=True, slots=True)
class Namespace:
    tag: str


@dataclass(frozen=True, slots=True)
class Status:
    """STATUS; ``items`` upper-cased: MESSAGES, RECENT, UIDNEXT, UIDVALIDITY, UNSEEN,
    DELETED, SIZE (RFC 9051), HIGHESTMODSEQ (RFC 7162), APPENDLIMIT (RFC 7889)."""

    tag: str
    mailbox: str
    items: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Append:
    """APPEND (RFC 9051 §6.3.12), yielded once the driver accepted the message literal:
    ``AppendData`` events follow, then ``AppendEnd``. ``flags`` as sent;
    ``internal_date`` is aware (its zone as given)."""

    tag: str
    mailbox: str
    flags: tuple[str, ...]
    internal_date: datetime | None
    size: int


@dataclass(frozen=True, slots=True)
class Check:
    tag: str


@dataclass(frozen=True, slots=True)
class Close:
    tag: str


@dataclass(frozen=True, slots=True)
class Unselect:
    tag: str


@dataclass(frozen=True, slots=True)
class Expunge:
    """EXPUNGE, or UID EXPUNGE (RFC 4315 §2.1) with ``uid_set``."""

    tag: str
    uid_set: SequenceSet | None = None


@dataclass(frozen=True, slots=True)
class Search:
    """SEARCH (RFC 9051 §6.4.4). ``charset`` upper-cased (US-ASCII or UTF-8) or None.
    ``return_opts``: None without RETURN (a ``* SEARCH`` answer); otherwise ESEARCH's
    options (RFC 4731 §3.1: MIN MAX ALL COUNT, RFC 5182: SAVE), where () means ALL."""

    tag: str
    uid: bool
    charset: str | None
    key: SearchKey
    return_opts: tuple[str, ...] | None = None


@dataclass(frozen=True, slots=True)
class Fetch:
    """FETCH; ``items`` with macros expanded, in the order sent, without duplicates.
    The UID of UID FETCH is the session's to add to each response (RFC 9051 §6.4.9).
    ``changedsince``/``vanished``: RFC 7162 §3.1.4.1 / §3.2.6 (vanished only with UID
    and CHANGEDSINCE)."""

    tag: str
    uid: bool
    set: SequenceSet
    items: tuple[FetchItem, ...]
    changedsince: int | None = None
    vanished: bool = False


@dataclass(frozen=True, slots=True)
class Store:
    """STORE: ``mode`` "" (replace), "+" (add) or "-" (remove); ``silent`` for
    FLAGS.SILENT; ``unchangedsince`` per RFC 7162 §3.1.3."""

    tag: str
    uid: bool
    set: SequenceSet
    mode: str
    silent: bool
    flags: tuple[str, ...]
    unchangedsince: int | None = None


@dataclass(frozen=True, slots=True)
class Copy:
    tag: str
    uid: bool
    set: SequenceSet
    mailbox: str


@dataclass(frozen=True, slots=True)
class Move:
    """MOVE (RFC 6851 §3)."""

    tag: str
    uid: bool
    set: SequenceSet
    mailbox: str


@dataclass(frozen=True, slots=True)
class Idle:
    """IDLE (RFC 2177): answer with ``send_continuation``; ``Done`` follows."""

    tag: str


@dataclass(frozen=True, slots=True)
class GetQuota:
    """GETQUOTA (RFC 9208 §4.2)."""

    tag: str
    root: str


@dataclass(frozen=True, slots=True)
class GetQuotaRoot:
    tag: str
    mailbox: str


@dataclass(frozen=True, slots=True)
class SetQuota:
    """SETQUOTA (RFC 9208 §4.1): (resource name upper-cased, limit) pairs."""

    tag: str
    root: str
    resources: tuple[tuple[str, int], ...]


@dataclass(frozen=True, slots=True)
class SortCriterion:
    """One sort key (RFC 5256 §3, RFC 5957): ARRIVAL, CC, DATE, FROM, SIZE, SUBJECT, TO,
    DISPLAYFROM, DISPLAYTO; ``reverse`` for REVERSE."""

    key: str
    reverse: bool = False


@dataclass(frozen=True, slots=True)
class Sort:
    """SORT (RFC 5256 §3); ``return_opts`` as for SEARCH (ESORT, RFC 5267 §3)."""

    tag: str
    uid: bool
    criteria: tuple[SortCriterion, ...]
    charset: str
    key: SearchKey
    return_opts: tuple[str, ...] | None = None


@dataclass(frozen=True, slots=True)
class Thread:
    """THREAD (RFC 5256 §3): ``algorithm`` REFERENCES or ORDEREDSUBJECT."""

    tag: str
    uid: bool
    algorithm: str
    charset: str
    key: SearchKey


@dataclass(frozen=True, slots=True)
class Compress:
    """COMPRESS (RFC 4978 §3); the machine only lets DEFLATE through."""

    tag: str
    mechanism: str


Command = (
    Capability
    | Noop
    | Logout
    | StartTls
    | Authenticate
    | Login
    | Enable
    | Id
    | Select
    | Examine
    | Create
    | Delete
    | Rename
    | Subscribe
    | Unsubscribe
    | List
    | Lsub
    | Namespace
    | Status
    | Append
    | Check
    | Close
    | Unselect
    | Expunge
    | Search
    | Fetch
    | Store
    | Copy
    | Move
    | Idle
    | GetQuota
    | GetQuotaRoot
    | SetQuota
    | Sort
    | Thread
    | Compress
)
