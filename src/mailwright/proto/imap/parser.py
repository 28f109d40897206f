"""The IMAP command grammar (RFC 9051 §9, RFC 3501 §9, and the extensions named below).

The machine (``server.py``) frames a command: its lines, with each literal's octets
taken out and kept apart. This module parses such a framed command into a ``command``
dataclass, or raises ``ParseError`` with the text of the tagged BAD (or NO) to send.

A framed command is ``segments`` (the command's text, split where literals stood, each
literal's ``{n}`` header removed) and ``literals`` (their octets): segment 0, literal 0,
segment 1, ... A literal may stand only where the grammar allows a string.

Invariants:
- only ``ParseError`` leaves this module for bad input;
- the work is linear in the command's size, and recursion is bounded by
  ``max_nesting`` (every parenthesised list, NOT and OR opens a level; a chain
  ``OR a OR b c`` is one level);
- strings that become names or text are valid UTF-8 without NUL (RFC 9051 §4.3: NUL
  is never part of a string).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, timezone

from mailwright.proto.imap import command as cmd
from mailwright.proto.imap import response
from mailwright.proto.imap.numset import SequenceSet, SequenceSetError
from mailwright.proto.imap.state import Verb

MAX_NUMBER = 2**32 - 1  # RFC 9051 §9 number: unsigned 32-bit
MAX_NUMBER64 = 2**63 - 1  # RFC 9051 §9 number64, RFC 7162 §7 mod-sequence-value

_SP = 0x20
_LPAREN = 0x28
_RPAREN = 0x29
_DQUOTE = 0x22
_BACKSLASH = 0x5C
_DIGITS = frozenset(b"0123456789")
_SEQ_CHARS = frozenset(b"0123456789:*,$")
# RFC 9051 §9: ATOM-CHAR is any CHAR except atom-specials: "(" ")" "{" SP CTL "%" "*"
# DQUOTE "\" "]". Octets >= 0x80 are accepted in atoms too: clients send UTF-8 mailbox
# names that way, and the text is checked as UTF-8 where it is used.
_ATOM_CHARS = frozenset(range(0x21, 0x100)) - frozenset(b'(){%*"\\]\x7f')
_ASTRING_CHARS = _ATOM_CHARS | {ord("]")}  # ASTRING-CHAR adds resp-specials
_LIST_CHARS = _ASTRING_CHARS | {ord("%"), ord("*")}  # list-char adds list-wildcards
_TAG_CHARS = frozenset(range(0x21, 0x7F)) - frozenset(b'(){%*"\\+')
_NAME_CHARS = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789")
_FETCH_NAME_CHARS = _NAME_CHARS | {ord(".")}
_MONTHS = {
    m: i + 1
    for i, m in enumerate(
        ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"]
    )
}
_MECHANISM = re.compile(rb"[A-Za-z0-9_-]{1,20}")
_BASE64 = re.compile(rb"(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?")
_DATE_TIME = re.compile(
    rb'"([ \d]\d)-([A-Za-z]{3})-(\d{4}) (\d\d):(\d\d):(\d\d) ([+-])(\d\d)(\d\d)"'
)


class ParseError(Exception):
    """The command is malformed (or names what we do not support): send
    ``tagged(tag, status, text, code)``."""

    def __init__(self, text: str, status: str = "BAD", code: response.Code | None = None):
        super().__init__(text)
        self.text = text
        self.status = status
        self.code = code


# -- the start of a command: tag and verb ------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Start:
    """A command line's tag and verb; ``pos``: where its arguments start (at the SP)."""

    tag: str
    verb: Verb
    pos: int


@dataclass(frozen=True, slots=True)
class BadStart:
    """The start of a line is no command; ``tag`` None when no tag could be read."""

    tag: str | None
    text: str


_VERBS = {v.value: v for v in Verb}


def valid_tag(raw: bytes) -> bool:
    return bool(raw) and all(b in _TAG_CHARS for b in raw)


def tag_of(line: bytes) -> str | None:
    """The tag a line starts with, if it is a valid one (RFC 9051 §9 tag)."""
    raw = line.split(b" ", 1)[0]
    return raw.decode("ascii") if valid_tag(raw) else None


def parse_start(segment: bytes) -> Start | BadStart:
    """Tag and verb at the start of a command's first segment."""
    raw_tag, sp, rest = segment.partition(b" ")
    if not valid_tag(raw_tag):
        return BadStart(None, "Invalid tag" if raw_tag else "Missing tag")
    tag = raw_tag.decode("ascii")
    if not sp:
        return BadStart(tag, "Missing command")
    name, pos = _word(rest, 0)
    if not name:
        return BadStart(tag, "Missing command")
    if name == "UID":
        if not rest.startswith(b" ", pos):
            return BadStart(tag, "UID needs a command: COPY, MOVE, FETCH, STORE, SEARCH, ...")
        sub, pos = _word(rest, pos + 1)
        name = f"UID {sub}"
    verb = _VERBS.get(name)
    if verb is None:
        return BadStart(tag, f"Unknown command {name.strip()[:40]}")
    return Start(tag, verb, len(raw_tag) + 1 + pos)


def _word(data: bytes, pos: int) -> tuple[str, int]:
    """An upper-cased run of ASCII letters and digits at ``pos``, and where it ends."""
    end = pos
    while end < len(data) and data[end] in _NAME_CHARS:
        end += 1
    return data[pos:end].decode("ascii").upper(), end


# -- the cursor over a framed command ----------------------------------------------------------


class _Cursor:
    __slots__ = ("depth", "i", "lits", "max_depth", "pending", "pos", "segs")

    def __init__(
        self,
        segs: list[bytes],
        lits: list[bytes],
        pos: int,
        max_depth: int,
        *,
        pending: bool = False,
    ) -> None:
        self.segs = segs
        self.lits = lits
        self.i = 0
        self.pos = pos
        self.depth = 0
        self.max_depth = max_depth
        self.pending = pending  # the last segment is followed by a literal not yet read

    @property
    def seg(self) -> bytes:
        return self.segs[self.i]

    def peek(self) -> int:
        """The next octet of the current segment, or -1 at its end."""
        seg = self.segs[self.i]
        return seg[self.pos] if self.pos < len(seg) else -1

    def at_segment_end(self) -> bool:
        return self.pos >= len(self.segs[self.i])

    def at_literal(self) -> bool:
        return self.at_segment_end() and self.i < len(self.lits)

    def at_pending(self) -> bool:
        return self.pending and self.at_segment_end() and self.i == len(self.segs) - 1

    def at_end(self) -> bool:
        return self.at_segment_end() and self.i == len(self.segs) - 1 and not self.pending

    def take_literal(self) -> bytes:
        data = self.lits[self.i]
        self.i += 1
        self.pos = 0
        return data

    def take_while(self, chars: frozenset[int]) -> bytes:
        seg = self.segs[self.i]
        start = pos = self.pos
        while pos < len(seg) and seg[pos] in chars:
            pos += 1
        self.pos = pos
        return seg[start:pos]

    def accept(self, octet: int) -> bool:
        if self.peek() == octet:
            self.pos += 1
            return True
        return False

    def expect(self, octet: int, what: str) -> None:
        if not self.accept(octet):
            raise ParseError(f"expected {what}{self._where()}")

    def sp(self) -> None:
        self.expect(_SP, "a space")

    def enter(self) -> None:
        self.depth += 1
        if self.depth > self.max_depth:
            raise ParseError(f"nested more than {self.max_depth} levels deep")

    def leave(self) -> None:
        self.depth -= 1

    def peek_word(self, word: bytes) -> bool:
        """Whether the next octets are ``word`` (any case) followed by a space."""
        seg = self.segs[self.i]
        end = self.pos + len(word)
        return seg[self.pos : end].upper() == word and seg[end : end + 1] == b" "

    def _where(self) -> str:
        if self.at_literal() or self.at_pending():
            return ", found a literal"
        if self.at_segment_end():
            return ", found the end of the line"
        shown = self.seg[self.pos : self.pos + 10].decode("ascii", "replace")
        return f" at {shown!r}"

    def end(self) -> None:
        if not self.at_end():
            raise ParseError(f"unexpected argument{self._where()}")


# -- tokens (RFC 9051 §9) ------------------------------------------------------------------------


def _atom(c: _Cursor, what: str = "an atom") -> bytes:
    raw = c.take_while(_ATOM_CHARS)
    if not raw:
        raise ParseError(f"expected {what}{c._where()}")
    return raw


def _keyword(c: _Cursor, what: str) -> str:
    """An atom, upper-cased, as the name of an option or key."""
    raw = _atom(c, what)
    if not raw.isascii():
        raise ParseError(f"expected {what}{c._where()}")
    return raw.decode("ascii").upper()


def _quoted(c: _Cursor) -> bytes:
    seg = c.seg
    pos = c.pos + 1  # after the opening DQUOTE
    out = bytearray()
    while pos < len(seg):
        octet = seg[pos]
        if octet == _DQUOTE:
            c.pos = pos + 1
            return bytes(out)
        if octet == _BACKSLASH:
            pos += 1
            # RFC 9051 §9: only quoted-specials may be escaped.
            if pos >= len(seg) or seg[pos] not in (_DQUOTE, _BACKSLASH):
                raise ParseError("invalid escape in a quoted string")
            octet = seg[pos]
        elif octet in (0, 0x0A, 0x0D):
            raise ParseError("invalid character in a quoted string")
        out.append(octet)
        pos += 1
    raise ParseError("unterminated quoted string")


def _string(c: _Cursor) -> bytes:
    if c.at_literal():
        return c.take_literal()
    if c.peek() == _DQUOTE:
        return _quoted(c)
    raise ParseError(f"expected a string{c._where()}")


def _astring(c: _Cursor) -> bytes:
    if c.at_literal() or c.peek() == _DQUOTE:
        return _string(c)
    raw = c.take_while(_ASTRING_CHARS)
    if not raw:
        raise ParseError(f"expected a string{c._where()}")
    return raw


def _nstring(c: _Cursor) -> bytes | None:
    seg = c.seg
    end = c.pos + 3
    if seg[c.pos : end].upper() == b"NIL" and seg[end : end + 1] not in _ASTRING_BYTES:
        c.pos = end
        return None
    return _string(c)


_ASTRING_BYTES = frozenset(bytes([b]) for b in _ASTRING_CHARS)


def _text(raw: bytes, what: str, *, multiline: bool = False) -> str:
    """``raw`` as UTF-8 text. NUL is never allowed (RFC 9051 §4.3); CR and LF only in
    search text: names, passwords and ID values end up in logs and headers."""
    if b"\0" in raw:
        raise ParseError(f"NUL in {what}")
    if not multiline and (b"\r" in raw or b"\n" in raw):
        raise ParseError(f"CR or LF in {what}")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ParseError(f"{what} is not valid UTF-8") from None


def _number(c: _Cursor, limit: int = MAX_NUMBER, what: str = "a number") -> int:
    raw = c.take_while(_DIGITS)
    if not raw:
        raise ParseError(f"expected {what}{c._where()}")
    digits = raw.lstrip(b"0")
    if len(digits) > len(str(limit)) or int(raw) > limit:
        raise ParseError(f"{what} out of range")
    return int(raw)


def _nz_number(c: _Cursor, what: str = "a number") -> int:
    if c.peek() == ord("0"):
        raise ParseError(f"expected {what} without a leading zero")
    return _number(c, what=what)


def _mailbox(c: _Cursor) -> str:
    name = _text(_astring(c), "the mailbox name")
    # RFC 9051 §5.1: INBOX is case-insensitive.
    return "INBOX" if name.upper() == "INBOX" else name


def _sequence_set(c: _Cursor) -> SequenceSet:
    raw = c.take_while(_SEQ_CHARS)
    if not raw:
        raise ParseError(f"expected a sequence set{c._where()}")
    try:
        return SequenceSet.parse(raw.decode("ascii"))
    except SequenceSetError as exc:
        raise ParseError(str(exc)) from None


def _flag(c: _Cursor) -> str:
    # RFC 9051 §9: flag = "\" atom (system flags, flag-extension) / atom (keyword).
    backslash = c.accept(_BACKSLASH)
    raw = _atom(c, "a flag")
    if not raw.isascii():
        raise ParseError("a flag is US-ASCII")
    return ("\\" if backslash else "") + raw.decode("ascii")


def _flag_list(c: _Cursor) -> tuple[str, ...]:
    c.expect(_LPAREN, "a flag list")
    flags: list[str] = []
    if not c.accept(_RPAREN):
        flags.append(_flag(c))
        while c.accept(_SP):
            flags.append(_flag(c))
        c.expect(_RPAREN, "')'")
    return tuple(flags)


def _date(c: _Cursor) -> date:
    # RFC 9051 §9: date = date-text / DQUOTE date-text DQUOTE; date-day = 1*2DIGIT.
    quoted = c.accept(_DQUOTE)
    raw = c.take_while(_ATOM_CHARS)
    if quoted:
        c.expect(_DQUOTE, "'\"'")
    match = re.fullmatch(rb"(\d{1,2})-([A-Za-z]{3})-(\d{4})", raw)
    month = _MONTHS.get(match.group(2).upper().decode("ascii")) if match else None
    if match is None or month is None:
        raise ParseError("expected a date like 1-Feb-2024")
    try:
        return date(int(match.group(3)), month, int(match.group(1)))
    except ValueError:
        raise ParseError("no such date") from None


def _date_time(c: _Cursor) -> datetime:
    # RFC 9051 §9 date-time: "dd-Mon-yyyy hh:mm:ss +zzzz", the day padded with SP or 0.
    match = _DATE_TIME.match(c.seg, c.pos)
    month = _MONTHS.get(match.group(2).upper().decode("ascii")) if match else None
    if match is None or month is None:
        raise ParseError('expected a date-time like "01-Feb-2024 10:00:00 +0000"')
    day, _, year, hh, mm, ss, sign, zh, zm = match.groups()
    # zone = ("+" / "-") 4DIGIT: hours and minutes (RFC 9051 §9), so minutes are under 60.
    offset = timedelta(hours=int(zh), minutes=int(zm)) * (-1 if sign == b"-" else 1)
    try:
        if int(zm) >= 60:
            raise ValueError("zone minutes")
        when = datetime(
            int(year), month, int(day), int(hh), int(mm), int(ss), tzinfo=timezone(offset)
        )
        # The same instant in UTC must be a date too (not in year 0 or 10000): the
        # message's INTERNALDATE is kept and written back in UTC.
        when.astimezone(UTC)
    except (ValueError, OverflowError):
        raise ParseError("no such date-time") from None
    c.pos = match.end()
    return when


def _parenthesised(c: _Cursor, item: Callable[[_Cursor], str], what: str) -> tuple[str, ...]:
    """``"(" item *(SP item) ")"``, at least one item."""
    c.expect(_LPAREN, f"'(' before {what}")
    items = [item(c)]
    while c.accept(_SP):
        items.append(item(c))
    c.expect(_RPAREN, "')'")
    return tuple(items)


def _options(c: _Cursor, allowed: frozenset[str], what: str) -> tuple[str, ...]:
    """``"(" [option *(SP option)] ")"`` of known keywords, without duplicates."""
    c.expect(_LPAREN, f"'(' before {what}")
    found: list[str] = []
    if not c.accept(_RPAREN):
        while True:
            option = _keyword(c, what)
            if option not in allowed:
                raise ParseError(f"unknown {what} {option}")
            if option not in found:
                found.append(option)
            if not c.accept(_SP):
                break
        c.expect(_RPAREN, "')'")
    return tuple(found)


# -- commands ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AppendHead:
    mailbox: str
    flags: tuple[str, ...]
    internal_date: datetime | None


def parse_append_head(
    segs: list[bytes], lits: list[bytes], pos: int, max_nesting: int
) -> AppendHead | None:
    """What precedes a literal announced in an APPEND command (RFC 9051 §6.3.12):
    None if that literal is the mailbox name, else the head before the message literal
    (``ParseError`` if it is malformed, or asks for CATENATE or UTF8 forms)."""
    c = _Cursor(segs, lits, pos, max_nesting, pending=True)
    c.sp()
    if c.at_pending():
        return None
    mailbox = _mailbox(c)
    c.sp()
    flags: tuple[str, ...] = ()
    when = None
    if c.peek() == _LPAREN:
        flags = _flag_list(c)
        c.sp()
    if c.peek() == _DQUOTE:
        when = _date_time(c)
        c.sp()
    if not c.at_pending():
        raise ParseError(f"expected the message literal{c._where()}")
    return AppendHead(mailbox, flags, when)


def parse_command(
    tag: str, verb: Verb, segs: list[bytes], lits: list[bytes], pos: int, max_nesting: int
) -> cmd.Command:
    """The command ``verb`` whose arguments start at ``pos`` of segment 0."""
    c = _Cursor(segs, lits, pos, max_nesting)
    uid = verb.value.startswith("UID ")
    parsed = _PARSERS[verb](c, tag, uid)
    c.end()
    return parsed


def _no_args(factory: Callable[[str], cmd.Command]) -> Callable[[_Cursor, str, bool], cmd.Command]:
    def parse(c: _Cursor, tag: str, uid: bool) -> cmd.Command:
        return factory(tag)

    return parse


def _mailbox_only(
    factory: Callable[[str, str], cmd.Command],
) -> Callable[[_Cursor, str, bool], cmd.Command]:
    def parse(c: _Cursor, tag: str, uid: bool) -> cmd.Command:
        c.sp()
        return factory(tag, _mailbox(c))

    return parse


def _authenticate(c: _Cursor, tag: str, uid: bool) -> cmd.Command:
    c.sp()
    mechanism = c.take_while(_ATOM_CHARS)
    if not _MECHANISM.fullmatch(mechanism):
        raise ParseError("invalid SASL mechanism name")
    initial = None
    if c.accept(_SP):
        # RFC 4959 §3: base64, or "=" for an empty initial response.
        initial = c.take_while(_ATOM_CHARS | {ord("=")})
        if initial != b"=" and not (initial and _BASE64.fullmatch(initial)):
            raise ParseError("the initial response is not base64")
    return cmd.Authenticate(tag, mechanism.decode("ascii").upper(), initial)


def _login(c: _Cursor, tag: str, uid: bool) -> cmd.Command:
    c.sp()
    user = _text(_astring(c), "the user name")
    c.sp()
    password = _text(_astring(c), "the password")
    return cmd.Login(tag, user, password)


def _enable(c: _Cursor, tag: str, uid: bool) -> cmd.Command:
    caps = []
    c.sp()
    caps.append(_keyword(c, "a capability"))
    while c.accept(_SP):
        caps.append(_keyword(c, "a capability"))
    return cmd.Enable(tag, tuple(caps))


# RFC 2971 §3.3: at most 30 pairs; fields up to 30 octets, values up to 1024.
_ID_MAX_PAIRS = 30
_ID_MAX_FIELD = 30
_ID_MAX_VALUE = 1024


def _id(c: _Cursor, tag: str, uid: bool) -> cmd.Command:
    c.sp()
    if c.peek() != _LPAREN:
        if _nstring(c) is not None:
            raise ParseError("expected a parameter list or NIL")
        return cmd.Id(tag, None)
    c.pos += 1
    params: dict[str, str | None] = {}
    if not c.accept(_RPAREN):
        while True:
            key = _text(_string(c), "an ID field")
            c.sp()
            raw = _nstring(c)
            value = None if raw is None else _text(raw, "an ID value")
            if len(key.encode()) > _ID_MAX_FIELD or len(raw or b"") > _ID_MAX_VALUE:
                raise ParseError("ID field or value too long (RFC 2971 §3.3)")
            params[key] = value
            if len(params) > _ID_MAX_PAIRS:
                raise ParseError("more than 30 ID fields (RFC 2971 §3.3)")
            if not c.accept(_SP):
                break
        c.expect(_RPAREN, "')'")
    return cmd.Id(tag, params)


def _select_params(c: _Cursor) -> tuple[bool, cmd.QresyncParams | None]:
    condstore = False
    qresync = None
    if not c.accept(_SP):
        return condstore, qresync
    c.expect(_LPAREN, "'(' before SELECT parameters")
    while True:
        name = _keyword(c, "a SELECT parameter")
        if name == "CONDSTORE":  # RFC 7162 §3.1.8
            condstore = True
        elif name == "QRESYNC":  # RFC 7162 §3.2.5
            c.sp()
            qresync = _qresync(c)
        else:
            raise ParseError(f"unknown SELECT parameter {name}")
        if not c.accept(_SP):
            break
    c.expect(_RPAREN, "')'")
    return condstore, qresync


def _known_set(c: _Cursor, what: str) -> SequenceSet:
    found = _sequence_set(c)
    if found.saved or found.has_star:
        raise ParseError(f"{what} may not hold '*' or '$'")  # RFC 7162 §7 known-uids
    return found


def _qresync(c: _Cursor) -> cmd.QresyncParams:
    c.expect(_LPAREN, "'(' before QRESYNC parameters")
    uidvalidity = _nz_number(c, "a UIDVALIDITY")
    c.sp()
    modseq = _number(c, MAX_NUMBER64, "a mod-sequence")
    known = None
    match = None
    if c.accept(_SP):
        if c.peek() != _LPAREN:
            known = _known_set(c, "known UIDs")
            if c.accept(_SP):
                match = _seq_match(c)
        else:
            match = _seq_match(c)
    c.expect(_RPAREN, "')'")
    return cmd.QresyncParams(uidvalidity, modseq, known, match)


def _seq_match(c: _Cursor) -> tuple[SequenceSet, SequenceSet]:
    c.expect(_LPAREN, "'('")
    seqs = _known_set(c, "known sequence numbers")
    c.sp()
    uids = _known_set(c, "known UIDs")
    c.expect(_RPAREN, "')'")
    return seqs, uids


def _select(c: _Cursor, tag: str, uid: bool) -> cmd.Command:
    c.sp()
    mailbox = _mailbox(c)
    condstore, qresync = _select_params(c)
    return cmd.Select(tag, mailbox, condstore, qresync)


def _examine(c: _Cursor, tag: str, uid: bool) -> cmd.Command:
    c.sp()
    mailbox = _mailbox(c)
    condstore, qresync = _select_params(c)
    return cmd.Examine(tag, mailbox, condstore, qresync)


def _create(c: _Cursor, tag: str, uid: bool) -> cmd.Command:
    c.sp()
    mailbox = _mailbox(c)
    special: tuple[str, ...] = ()
    if c.accept(_SP):
        # RFC 4466 §2.2 create-params; RFC 6154 §3: USE (special-use attributes).
        c.expect(_LPAREN, "'(' before CREATE parameters")
        if _keyword(c, "a CREATE parameter") != "USE":
            raise ParseError("the only CREATE parameter is USE")
        c.sp()
        special = _parenthesised(c, _flag, "special-use attributes")
        c.expect(_RPAREN, "')'")
    return cmd.Create(tag, mailbox, special)


def _rename(c: _Cursor, tag: str, uid: bool) -> cmd.Command:
    c.sp()
    old = _mailbox(c)
    c.sp()
    return cmd.Rename(tag, old, _mailbox(c))


_LIST_SELECT = frozenset({"SUBSCRIBED", "REMOTE", "RECURSIVEMATCH", "SPECIAL-USE"})
_LIST_RETURN = frozenset({"SUBSCRIBED", "CHILDREN", "SPECIAL-USE", "STATUS"})
STATUS_ITEMS = frozenset(
    {
        "MESSAGES",
        "RECENT",
        "UIDNEXT",
        "UIDVALIDITY",
        "UNSEEN",
        "DELETED",  # RFC 9051 §6.3.11
        "SIZE",
        "HIGHESTMODSEQ",  # RFC 7162 §3.1.6
        "APPENDLIMIT",  # RFC 7889 §4
    }
)


def _list_mailbox(c: _Cursor) -> str:
    if c.at_literal() or c.peek() == _DQUOTE:
        raw = _string(c)
    else:
        raw = c.take_while(_LIST_CHARS)
        if not raw:
            raise ParseError(f"expected a mailbox pattern{c._where()}")
    return _text(raw, "the mailbox pattern")


def _status_item(c: _Cursor) -> str:
    item = _keyword(c, "a STATUS item")
    if item not in STATUS_ITEMS:
        raise ParseError(f"unknown STATUS item {item}")
    return item


def _list(c: _Cursor, tag: str, uid: bool) -> cmd.Command:
    c.sp()
    selection: tuple[str, ...] = ()
    extended = False
    if c.peek() == _LPAREN:
        # RFC 5258 §3: list-select-opts.
        selection = _options(c, _LIST_SELECT, "LIST selection option")
        # RFC 5258 §3: RECURSIVEMATCH alone is an error (it modifies another option).
        if "RECURSIVEMATCH" in selection and not set(selection) - {"RECURSIVEMATCH", "REMOTE"}:
            raise ParseError("RECURSIVEMATCH needs another selection option")
        extended = True
        c.sp()
    reference = _text(_astring(c), "the reference")
    c.sp()
    if c.peek() == _LPAREN:
        patterns = _parenthesised(c, _list_mailbox, "patterns")
        extended = True
    else:
        patterns = (_list_mailbox(c),)
    returns: tuple[str, ...] = ()
    status_items: tuple[str, ...] = ()
    if c.accept(_SP):
        if _keyword(c, "RETURN") != "RETURN":
            raise ParseError("expected RETURN")
        c.sp()
        c.expect(_LPAREN, "'(' before LIST return options")
        found: list[str] = []
        if not c.accept(_RPAREN):
            while True:
                option = _keyword(c, "a LIST return option")
                if option not in _LIST_RETURN:
                    raise ParseError(f"unknown LIST return option {option}")
                if option == "STATUS":  # RFC 5819 §2
                    c.sp()
                    status_items = _parenthesised(c, _status_item, "STATUS items")
                if option not in found:
                    found.append(option)
                if not c.accept(_SP):
                    break
            c.expect(_RPAREN, "')'")
        returns = tuple(found)
        extended = True
    return cmd.List(
        tag, reference, patterns, frozenset(selection), frozenset(returns), status_items, extended
    )


def _lsub(c: _Cursor, tag: str, uid: bool) -> cmd.Command:
    c.sp()
    reference = _text(_astring(c), "the reference")
    c.sp()
    return cmd.Lsub(tag, reference, _list_mailbox(c))


def _status(c: _Cursor, tag: str, uid: bool) -> cmd.Command:
    c.sp()
    mailbox = _mailbox(c)
    c.sp()
    return cmd.Status(tag, mailbox, _parenthesised(c, _status_item, "STATUS items"))


def _expunge(c: _Cursor, tag: str, uid: bool) -> cmd.Command:
    if not uid:
        return cmd.Expunge(tag)
    c.sp()  # RFC 4315 §2.1: UID EXPUNGE sequence-set
    return cmd.Expunge(tag, _sequence_set(c))


# -- SEARCH (RFC 9051 §6.4.4, RFC 4731, RFC 5182, RFC 7162 §3.1.5) ---------------------------------

_SEARCH_RETURN = frozenset({"MIN", "MAX", "ALL", "COUNT", "SAVE"})
_SORT_RETURN = frozenset({"MIN", "MAX", "ALL", "COUNT"})  # RFC 5267 §3
_CHARSETS = frozenset(response.SUPPORTED_CHARSETS)
_SYSTEM_FLAGS = {
    "ANSWERED": ("\\Answered", True),
    "DELETED": ("\\Deleted", True),
    "DRAFT": ("\\Draft", True),
    "FLAGGED": ("\\Flagged", True),
    "SEEN": ("\\Seen", True),
    "UNANSWERED": ("\\Answered", False),
    "UNDELETED": ("\\Deleted", False),
    "UNDRAFT": ("\\Draft", False),
    "UNFLAGGED": ("\\Flagged", False),
    "UNSEEN": ("\\Seen", False),
}
_SIMPLE_KEYS: dict[str, cmd.SearchKey] = {
    "ALL": cmd.All(),
    "NEW": cmd.New(),
    "OLD": cmd.Old(),
    "RECENT": cmd.Recent(),
}
_HEADER_KEYS = {"FROM": "from", "TO": "to", "CC": "cc", "BCC": "bcc", "SUBJECT": "subject"}
_DATE_KEYS: dict[str, Callable[[date], cmd.SearchKey]] = {
    "BEFORE": cmd.Before,
    "ON": cmd.On,
    "SINCE": cmd.Since,
    "SENTBEFORE": cmd.SentBefore,
    "SENTON": cmd.SentOn,
    "SENTSINCE": cmd.SentSince,
}
_ENTRY_TYPES = frozenset({"PRIV", "SHARED", "ALL"})
_ARGUMENT_KEYS = frozenset(
    {*_HEADER_KEYS, *_DATE_KEYS, "HEADER", "BODY", "TEXT", "KEYWORD", "UNKEYWORD"}
    | {"LARGER", "SMALLER", "UID", "MODSEQ"}
)


def _charset(c: _Cursor) -> str:
    raw = _astring(c)
    name = raw.decode("ascii", "replace").upper()
    if name not in _CHARSETS:
        # RFC 9051 §6.4.4: NO with the charsets we support.
        raise ParseError(
            "Unsupported charset",
            status="NO",
            code=response.BADCHARSET(list(response.SUPPORTED_CHARSETS)),
        )
    return name


def _return_opts(c: _Cursor, allowed: frozenset[str]) -> tuple[str, ...] | None:
    """``RETURN (opts)`` SP, if the next word is RETURN."""
    if not c.peek_word(b"RETURN"):
        return None
    c.pos += len("RETURN ")
    opts = _options(c, allowed, "RETURN option")
    c.sp()
    return opts


def _search_text(c: _Cursor) -> str:
    return _text(_astring(c), "the search text", multiline=True)


def _search_keys(c: _Cursor) -> cmd.SearchKey:
    """``search-key *(SP search-key)``: one key, or And of several."""
    keys = [_search_key(c)]
    while c.accept(_SP):
        keys.append(_search_key(c))
    return keys[0] if len(keys) == 1 else cmd.And(tuple(keys))


def _search_key(c: _Cursor) -> cmd.SearchKey:
    octet = c.peek()
    if octet == _LPAREN:
        c.pos += 1
        c.enter()
        key = _search_keys(c)
        c.expect(_RPAREN, "')'")
        c.leave()
        return key
    if octet in _SEQ_CHARS:
        return cmd.SeqKey(_sequence_set(c))
    name = _keyword(c, "a search key")
    if name in _SIMPLE_KEYS:
        return _SIMPLE_KEYS[name]
    if name in _SYSTEM_FLAGS:
        flag, present = _SYSTEM_FLAGS[name]
        return cmd.FlagKey(flag, present)
    if name == "NOT":
        c.sp()
        c.enter()
        key = _search_key(c)
        c.leave()
        return cmd.Not(key)
    if name == "OR":
        return _or(c)
    if name not in _ARGUMENT_KEYS:
        raise ParseError(f"unknown search key {name[:40]}")
    c.sp()
    if name in _HEADER_KEYS:
        return cmd.Header(_HEADER_KEYS[name], _search_text(c))
    if name in _DATE_KEYS:
        return _DATE_KEYS[name](_date(c))
    match name:
        case "HEADER":
            field = _search_text(c)
            if not field or not all(0x21 <= ord(ch) <= 0x7E and ch != ":" for ch in field):
                raise ParseError("invalid header field name")
            c.sp()
            return cmd.Header(field.lower(), _search_text(c))
        case "BODY":
            return cmd.Body(_search_text(c))
        case "TEXT":
            return cmd.Text(_search_text(c))
        case "KEYWORD":
            return cmd.Keyword(_flag(c))
        case "UNKEYWORD":
            return cmd.Unkeyword(_flag(c))
        case "LARGER":
            return cmd.Larger(_number(c, MAX_NUMBER64))
        case "SMALLER":
            return cmd.Smaller(_number(c, MAX_NUMBER64))
        case "UID":
            return cmd.UidKey(_sequence_set(c))
        case _:
            return _modseq_key(c)


def _or(c: _Cursor) -> cmd.SearchKey:
    # RFC 9051 §6.4.4: OR search-key1 search-key2. The right-hand chain is read in a
    # loop, so "OR a OR b OR c d" costs one nesting level.
    c.enter()
    keys: list[cmd.SearchKey] = []
    while True:
        c.sp()
        left = _search_key(c)
        keys.extend(left.keys if isinstance(left, cmd.Or) else (left,))
        c.sp()
        if c.peek_word(b"OR"):
            c.pos += 2
            continue
        right = _search_key(c)
        keys.extend(right.keys if isinstance(right, cmd.Or) else (right,))
        break
    c.leave()
    return cmd.Or(tuple(keys))


def _modseq_key(c: _Cursor) -> cmd.SearchKey:
    # RFC 7162 §3.1.5: MODSEQ [SP entry-name SP entry-type-req] SP mod-sequence-valzer,
    # entry-name = DQUOTE "/flags/" attr-flag DQUOTE.
    entry = entry_type = None
    if c.peek() == _DQUOTE:
        name = _text(_quoted(c), "the entry name")
        if not name.lower().startswith("/flags/") or len(name) == len("/flags/"):
            raise ParseError('the MODSEQ entry name is "/flags/<flag>"')
        entry = name[len("/flags/") :]
        c.sp()
        kind = _keyword(c, "an entry type")
        if kind not in _ENTRY_TYPES:
            raise ParseError("the MODSEQ entry type is priv, shared or all")
        entry_type = kind.lower()
        c.sp()
    return cmd.ModSeqKey(_number(c, MAX_NUMBER64, "a mod-sequence"), entry, entry_type)


def _search(c: _Cursor, tag: str, uid: bool) -> cmd.Command:
    c.sp()
    opts = _return_opts(c, _SEARCH_RETURN)
    charset = None
    if c.peek_word(b"CHARSET"):
        c.pos += len("CHARSET ")
        charset = _charset(c)
        c.sp()
    return cmd.Search(tag, uid, charset, _search_keys(c), opts)


_SORT_KEYS = frozenset(
    {"ARRIVAL", "CC", "DATE", "FROM", "SIZE", "SUBJECT", "TO", "DISPLAYFROM", "DISPLAYTO"}
)
_THREAD_ALGORITHMS = frozenset({"REFERENCES", "ORDEREDSUBJECT"})


def _sort_criterion(c: _Cursor) -> cmd.SortCriterion:
    reverse = False
    key = _keyword(c, "a sort key")
    if key == "REVERSE":
        reverse = True
        c.sp()
        key = _keyword(c, "a sort key")
    if key not in _SORT_KEYS:
        raise ParseError(f"unknown sort key {key[:40]}")
    return cmd.SortCriterion(key, reverse)


def _sort(c: _Cursor, tag: str, uid: bool) -> cmd.Command:
    c.sp()
    opts = _return_opts(c, _SORT_RETURN)
    c.expect(_LPAREN, "'(' before the sort criteria")
    criteria = [_sort_criterion(c)]
    while c.accept(_SP):
        criteria.append(_sort_criterion(c))
    c.expect(_RPAREN, "')'")
    c.sp()
    charset = _charset(c)  # RFC 5256 §3: SORT and THREAD always name the charset
    c.sp()
    return cmd.Sort(tag, uid, tuple(criteria), charset, _search_keys(c), opts)


def _thread(c: _Cursor, tag: str, uid: bool) -> cmd.Command:
    c.sp()
    algorithm = _keyword(c, "a threading algorithm")
    if algorithm not in _THREAD_ALGORITHMS:
        raise ParseError(f"unsupported threading algorithm {algorithm[:40]}")
    c.sp()
    charset = _charset(c)
    c.sp()
    return cmd.Thread(tag, uid, algorithm, charset, _search_keys(c))


# -- FETCH (RFC 9051 §6.4.5, RFC 3516 §4, RFC 7162 §3.1.4 and §3.2.6) ------------------------------

_FETCH_SIMPLE: dict[str, cmd.FetchItem] = {
    "FLAGS": cmd.Flags(),
    "INTERNALDATE": cmd.InternalDate(),
    "RFC822.SIZE": cmd.Rfc822Size(),
    "ENVELOPE": cmd.Envelope(),
    "BODYSTRUCTURE": cmd.BodyStructure(extensible=True),
    "UID": cmd.Uid(),
    "MODSEQ": cmd.ModSeq(),
    "RFC822": cmd.Rfc822(),
    "RFC822.HEADER": cmd.Rfc822Header(),
    "RFC822.TEXT": cmd.Rfc822Text(),
}
_FETCH_MACROS = {"ALL": cmd.ALL, "FAST": cmd.FAST, "FULL": cmd.FULL}
_SECTION_TEXT = frozenset({"HEADER", "HEADER.FIELDS", "HEADER.FIELDS.NOT", "TEXT", "MIME"})


def _part_numbers(c: _Cursor) -> tuple[int, ...]:
    """section-part: nz-number *("." nz-number); stops before "." + a non-digit."""
    part = [_nz_number(c, "a part number")]
    while c.peek() == ord(".") and c.seg[c.pos + 1 : c.pos + 2].isdigit():
        c.pos += 1
        part.append(_nz_number(c, "a part number"))
    return tuple(part)


def _header_field(c: _Cursor) -> str:
    field = _text(_astring(c), "a header field name")
    if not all(0x21 <= ord(ch) <= 0x7E and ch != ":" for ch in field):
        raise ParseError("invalid header field name")
    return field


def _body_section(c: _Cursor, peek: bool) -> cmd.BodySection:
    c.expect(ord("["), "'['")
    part: tuple[int, ...] = ()
    text = None
    fields: tuple[str, ...] = ()
    if c.peek() in _DIGITS:
        part = _part_numbers(c)
        if c.accept(ord(".")):
            text = c.take_while(_FETCH_NAME_CHARS).decode("ascii").upper()
            if text not in _SECTION_TEXT:
                raise ParseError(f"unknown section {text[:40]}")
    elif c.peek() != ord("]"):
        text = c.take_while(_FETCH_NAME_CHARS).decode("ascii").upper()
        # RFC 9051 §9: MIME only follows a part number.
        if text not in _SECTION_TEXT - {"MIME"}:
            raise ParseError(f"unknown section {text[:40]}")
    if text in ("HEADER.FIELDS", "HEADER.FIELDS.NOT"):
        c.sp()
        fields = _parenthesised(c, _header_field, "header field names")
    c.expect(ord("]"), "']'")
    return cmd.BodySection(part, text, fields, _partial(c), peek)


def _partial(c: _Cursor) -> tuple[int, int] | None:
    # RFC 9051 §9: partial = "<" number64 "." nz-number64 ">"
    if not c.accept(ord("<")):
        return None
    origin = _number(c, MAX_NUMBER64, "a partial origin")
    c.expect(ord("."), "'.'")
    if c.peek() == ord("0"):
        raise ParseError("a partial length is not zero")
    length = _number(c, MAX_NUMBER64, "a partial length")
    c.expect(ord(">"), "'>'")
    return origin, length


def _binary_part(c: _Cursor) -> tuple[int, ...]:
    c.expect(ord("["), "'['")
    part = () if c.peek() == ord("]") else _part_numbers(c)
    c.expect(ord("]"), "']'")
    return part


def _fetch_att(c: _Cursor, *, in_list: bool) -> tuple[cmd.FetchItem, ...]:
    name = c.take_while(_FETCH_NAME_CHARS).decode("ascii").upper()
    bracket = c.peek() == ord("[")
    if not bracket:
        if name in _FETCH_SIMPLE:
            return (_FETCH_SIMPLE[name],)
        if name == "BODY":
            return (cmd.BodyStructure(extensible=False),)
        if name in _FETCH_MACROS:
            # RFC 9051 §9 fetch: a macro stands alone, never inside a list.
            if in_list:
                raise ParseError(f"{name} is a macro: it cannot be in a list")
            return _FETCH_MACROS[name]
    elif name in ("BODY", "BODY.PEEK"):
        return (_body_section(c, peek=name == "BODY.PEEK"),)
    elif name in ("BINARY", "BINARY.PEEK"):
        part = _binary_part(c)
        return (cmd.Binary(part, _partial(c), peek=name == "BINARY.PEEK"),)
    elif name == "BINARY.SIZE":
        return (cmd.BinarySize(_binary_part(c)),)
    if not name:
        raise ParseError(f"expected a FETCH item{c._where()}")
    raise ParseError(f"unknown FETCH item {name[:40]}")


def _fetch_items(c: _Cursor) -> tuple[cmd.FetchItem, ...]:
    items: list[cmd.FetchItem] = []
    if c.accept(_LPAREN):
        items += _fetch_att(c, in_list=True)
        while c.accept(_SP):
            items += _fetch_att(c, in_list=True)
        c.expect(_RPAREN, "')'")
    else:
        items += _fetch_att(c, in_list=False)
    return tuple(dict.fromkeys(items))  # duplicates once, in the order first asked


def _fetch(c: _Cursor, tag: str, uid: bool) -> cmd.Command:
    c.sp()
    seqset = _sequence_set(c)
    c.sp()
    items = _fetch_items(c)
    changedsince = None
    vanished = False
    if c.accept(_SP):
        # RFC 4466 §2.4 fetch-modifiers; RFC 7162 §3.1.4.1 CHANGEDSINCE, §3.2.6 VANISHED.
        c.expect(_LPAREN, "'(' before FETCH modifiers")
        while True:
            name = _keyword(c, "a FETCH modifier")
            if name == "CHANGEDSINCE":
                c.sp()
                changedsince = _number(c, MAX_NUMBER64, "a mod-sequence")
            elif name == "VANISHED":
                vanished = True
            else:
                raise ParseError(f"unknown FETCH modifier {name[:40]}")
            if not c.accept(_SP):
                break
        c.expect(_RPAREN, "')'")
        if vanished and (not uid or changedsince is None):
            # RFC 7162 §3.2.6: VANISHED only in UID FETCH, together with CHANGEDSINCE.
            raise ParseError("VANISHED needs UID FETCH and CHANGEDSINCE")
    return cmd.Fetch(tag, uid, seqset, items, changedsince, vanished)


# -- STORE, COPY, MOVE ------------------------------------------------------------------------------


def _store(c: _Cursor, tag: str, uid: bool) -> cmd.Command:
    c.sp()
    seqset = _sequence_set(c)
    c.sp()
    unchangedsince = None
    if c.accept(_LPAREN):
        # RFC 7162 §3.1.3: store-modifier UNCHANGEDSINCE mod-sequence-valzer.
        if _keyword(c, "a STORE modifier") != "UNCHANGEDSINCE":
            raise ParseError("the only STORE modifier is UNCHANGEDSINCE")
        c.sp()
        unchangedsince = _number(c, MAX_NUMBER64, "a mod-sequence")
        c.expect(_RPAREN, "')'")
        c.sp()
    mode = ""
    if c.peek() in (ord("+"), ord("-")):
        mode = chr(c.peek())
        c.pos += 1
    item = c.take_while(_FETCH_NAME_CHARS).decode("ascii").upper()
    if item not in ("FLAGS", "FLAGS.SILENT"):
        raise ParseError("expected FLAGS, +FLAGS or -FLAGS, with .SILENT or not")
    c.sp()
    if c.peek() == _LPAREN:
        flags = _flag_list(c)
    else:
        found = [_flag(c)]
        while c.accept(_SP):
            found.append(_flag(c))
        flags = tuple(found)
    return cmd.Store(tag, uid, seqset, mode, item == "FLAGS.SILENT", flags, unchangedsince)


def _copy_or_move(
    factory: Callable[[str, bool, SequenceSet, str], cmd.Command],
) -> Callable[[_Cursor, str, bool], cmd.Command]:
    def parse(c: _Cursor, tag: str, uid: bool) -> cmd.Command:
        c.sp()
        seqset = _sequence_set(c)
        c.sp()
        return factory(tag, uid, seqset, _mailbox(c))

    return parse


# -- quota (RFC 9208 §4), COMPRESS (RFC 4978) ---------------------------------------------------------


def _getquota(c: _Cursor, tag: str, uid: bool) -> cmd.Command:
    c.sp()
    return cmd.GetQuota(tag, _text(_astring(c), "the quota root"))


def _setquota(c: _Cursor, tag: str, uid: bool) -> cmd.Command:
    c.sp()
    root = _text(_astring(c), "the quota root")
    c.sp()
    c.expect(_LPAREN, "'(' before quota resources")
    resources: list[tuple[str, int]] = []
    if not c.accept(_RPAREN):
        while True:
            name = _keyword(c, "a quota resource")
            c.sp()
            resources.append((name, _number(c, MAX_NUMBER64, "a quota limit")))
            if not c.accept(_SP):
                break
        c.expect(_RPAREN, "')'")
    return cmd.SetQuota(tag, root, tuple(resources))


def _compress(c: _Cursor, tag: str, uid: bool) -> cmd.Command:
    c.sp()
    mechanism = _keyword(c, "a compression mechanism")
    if mechanism != "DEFLATE":
        raise ParseError(f"unsupported compression mechanism {mechanism[:40]}")
    return cmd.Compress(tag, mechanism)


def _append(c: _Cursor, tag: str, uid: bool) -> cmd.Command:
    # The machine streams APPEND's literal and never calls this; an APPEND line that
    # ends without a literal has no message.
    raise ParseError("APPEND needs the message as a literal")


_PARSERS: dict[Verb, Callable[[_Cursor, str, bool], cmd.Command]] = {
    Verb.CAPABILITY: _no_args(cmd.Capability),
    Verb.NOOP: _no_args(cmd.Noop),
    Verb.LOGOUT: _no_args(cmd.Logout),
    Verb.ID: _id,
    Verb.STARTTLS: _no_args(cmd.StartTls),
    Verb.AUTHENTICATE: _authenticate,
    Verb.LOGIN: _login,
    Verb.ENABLE: _enable,
    Verb.SELECT: _select,
    Verb.EXAMINE: _examine,
    Verb.CREATE: _create,
    Verb.DELETE: _mailbox_only(cmd.Delete),
    Verb.RENAME: _rename,
    Verb.SUBSCRIBE: _mailbox_only(cmd.Subscribe),
    Verb.UNSUBSCRIBE: _mailbox_only(cmd.Unsubscribe),
    Verb.LIST: _list,
    Verb.LSUB: _lsub,
    Verb.NAMESPACE: _no_args(cmd.Namespace),
    Verb.STATUS: _status,
    Verb.APPEND: _append,
    Verb.IDLE: _no_args(cmd.Idle),
    Verb.GETQUOTA: _getquota,
    Verb.GETQUOTAROOT: _mailbox_only(cmd.GetQuotaRoot),
    Verb.SETQUOTA: _setquota,
    Verb.COMPRESS: _compress,
    Verb.CHECK: _no_args(cmd.Check),
    Verb.CLOSE: _no_args(cmd.Close),
    Verb.UNSELECT: _no_args(cmd.Unselect),
    Verb.EXPUNGE: _expunge,
    Verb.UID_EXPUNGE: _expunge,
    Verb.SEARCH: _search,
    Verb.UID_SEARCH: _search,
    Verb.FETCH: _fetch,
    Verb.UID_FETCH: _fetch,
    Verb.STORE: _store,
    Verb.UID_STORE: _store,
    Verb.COPY: _copy_or_move(cmd.Copy),
    Verb.UID_COPY: _copy_or_move(cmd.Copy),
    Verb.MOVE: _copy_or_move(cmd.Move),
    Verb.UID_MOVE: _copy_or_move(cmd.Move),
    Verb.SORT: _sort,
    Verb.UID_SORT: _sort,
    Verb.THREAD: _thread,
    Verb.UID_THREAD: _thread,
}
