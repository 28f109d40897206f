"""Header fields, RFC 2047 encoded words and RFC 5322 addresses: what an ENVELOPE is made of.

Everything here reads; nothing re-serialises a header (this Python's ``email`` package predates
the CVE-2024-6923 fix, and we never need it to write). Invariants: no function raises on any
input; header text is decoded as UTF-8 (RFC 6532) with U+FFFD for invalid bytes, and no value
handed out contains CR, LF or NUL.
"""

from __future__ import annotations

import binascii
import re
from dataclasses import dataclass

# A field name is printable US-ASCII except ":" (RFC 5322 §2.2); obs-optional allows WSP before
# the colon (RFC 5322 §4.5).
FIELD_NAME = re.compile(rb"([!-9;-~]+)[ \t]*:")


@dataclass(frozen=True, slots=True)
class Address:
    """One RFC 3501 §7.4.2 address structure.

    Group syntax (RFC 3501 §7.4.2): ``host`` None with a ``mailbox`` starts a group (the mailbox
    is the group name); all four None ends it. A mailbox without a domain has ``host`` "" so it is
    never mistaken for a group marker.
    """

    name: str | None
    adl: str | None
    mailbox: str | None
    host: str | None

    @property
    def is_group_start(self) -> bool:
        return self.host is None and self.mailbox is not None

    @property
    def is_group_end(self) -> bool:
        return self.host is None and self.mailbox is None


GROUP_END = Address(None, None, None, None)


@dataclass(frozen=True, slots=True)
class Envelope:
    """The RFC 3501 §7.4.2 envelope fields as found: strings are the unfolded raw header values
    (encoded words left as they are); an absent header is None (or no addresses).

    ``sender`` and ``reply_to`` are what the headers say; :meth:`addresses` applies the RFC's
    default to ``from_``.
    """

    date: str | None = None
    subject: str | None = None
    from_: tuple[Address, ...] = ()
    sender: tuple[Address, ...] = ()
    reply_to: tuple[Address, ...] = ()
    to: tuple[Address, ...] = ()
    cc: tuple[Address, ...] = ()
    bcc: tuple[Address, ...] = ()
    in_reply_to: str | None = None
    message_id: str | None = None

    def addresses(self, field: str) -> tuple[Address, ...]:
        """The addresses of ``field`` (from, sender, reply-to, to, cc, bcc; any case).

        RFC 3501 §7.4.2: an absent or empty Sender or Reply-To takes the value of From.
        """
        key = field.lower()
        if key == "from":
            return self.from_
        if key == "sender":
            return self.sender or self.from_
        if key in ("reply-to", "reply_to"):
            return self.reply_to or self.from_
        if key == "to":
            return self.to
        if key == "cc":
            return self.cc
        if key == "bcc":
            return self.bcc
        return ()


# --- header fields ---------------------------------------------------------------------------


def field_text(value: bytes) -> str:
    """An unfolded header value as text: RFC 5322 §2.2.3 unfolding removes the line breaks only
    (the WSP that follows them stays); UTF-8 per RFC 6532; stray CR and NUL become U+FFFD and
    SP, leading and trailing WSP is dropped."""
    if b"\r" in value:
        value = value.replace(b"\r\n", b"").replace(b"\r", b" ")
    if b"\n" in value:
        value = value.replace(b"\n", b"")
    text = value.decode("utf-8", "replace").strip(" \t")
    if "\x00" in text:
        text = text.replace("\x00", "\ufffd")
    return text


def iter_fields(raw: bytes, start: int, end: int) -> list[tuple[bytes, int, int, int]]:
    """The fields of the header block ``raw[start:end]``, in order, up to its blank line.

    Each is ``(lower-case name, field start, value start, field end)``; the field's bytes are
    ``raw[field start:field end]`` with its folding and line breaks as in the original. A line
    that is no field (no name and colon) is kept as a field named b"" so that nothing between
    ``start`` and the blank line is lost.
    """
    out: list[tuple[bytes, int, int, int]] = []
    name = b""
    fs = vs = -1
    pos = start
    while pos < end:
        nl = raw.find(b"\n", pos, end)
        le = end if nl < 0 else nl + 1
        c = raw[pos]
        if c == 10 or (c == 13 and raw.startswith(b"\r\n", pos, end)):
            break  # the blank line that ends the header (RFC 5322 §2.1)
        if (c == 32 or c == 9) and fs >= 0:
            pos = le  # RFC 5322 §2.2.3: a folded continuation of the current field
            continue
        if fs >= 0:
            out.append((name, fs, vs, pos))
        m = FIELD_NAME.match(raw, pos, le)
        if m is None:
            name, fs, vs = b"", pos, pos
        else:
            name, fs, vs = m.group(1).lower(), pos, m.end()
        pos = le
    if fs >= 0:
        out.append((name, fs, vs, pos))
    return out


# --- RFC 2047 encoded words --------------------------------------------------------------------

_ENCODED_WORD = re.compile(r"=\?([^?\s]+)\?([bBqQ])\?([^?\s]*)\?=")
_B64_ALPHABET = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")
_NOT_B64 = bytes(b for b in range(256) if b not in _B64_ALPHABET)


def decode_base64(data: bytes) -> bytes:
    """Lenient base64 (RFC 2045 §6.8): characters outside the alphabet are ignored, as the RFC
    says a decoder must; padding is recomputed, a dangling sixth bit group dropped."""
    clean = data.translate(None, _NOT_B64)
    extra = len(clean) % 4
    if extra == 1:
        clean = clean[:-1]
    elif extra:
        clean += b"=" * (4 - extra)
    return binascii.a2b_base64(clean)


def decode_charset(data: bytes, charset: str | None) -> str:
    """``data`` as text in ``charset``, lossy: unknown charsets and us-ascii read as UTF-8 (the
    usual truth of mislabelled mail), undecodable bytes become U+FFFD."""
    name = (charset or "").strip().strip('"').lower()
    if name in ("", "us-ascii", "ascii", "utf-8", "utf8", "unknown-8bit", "x-unknown"):
        return data.decode("utf-8", "replace")
    try:
        return data.decode(name, "replace")
    except (LookupError, ValueError):
        # LookupError: no such codec, or not a text codec (base64, rot13); ValueError
        # (UnicodeError): a codec without error handlers (idna).
        return data.decode("utf-8", "replace")


def _word_bytes(encoding: str, text: str) -> bytes:
    data = text.encode("utf-8", "replace")
    if encoding in "bB":
        return decode_base64(data)
    # RFC 2047 §4.2: "_" is SP, "=XX" an octet; a2b_qp leaves a bad "=" as it is.
    return binascii.a2b_qp(data, header=True)


def decode_words(text: str) -> str:
    """Decode the RFC 2047 encoded words in ``text``; other text is left as it is.

    RFC 2047 §6.2: white space between adjacent encoded words is dropped. Adjacent words in one
    charset are joined before decoding, so a character split across two words survives. The
    RFC 2231 §5 language suffix (``utf-8*en``) is ignored. Lossy, never raises.
    """
    if "=?" not in text:
        return text
    out: list[str] = []
    pos = 0
    pending = b""
    pending_charset: str | None = None
    for m in _ENCODED_WORD.finditer(text):
        gap = text[pos : m.start()]
        charset = m.group(1).split("*", 1)[0].lower()
        adjacent = pending_charset is not None and not gap.strip(" \t\r\n")
        if not (adjacent and charset == pending_charset):
            if pending_charset is not None:
                out.append(decode_charset(pending, pending_charset))
                pending = b""
            if not adjacent:
                out.append(gap)
        pending += _word_bytes(m.group(2), m.group(3))
        pending_charset = charset
        pos = m.end()
    if pending_charset is not None:
        out.append(decode_charset(pending, pending_charset))
    out.append(text[pos:])
    return "".join(out)


# --- RFC 5322 §3.4 addresses -------------------------------------------------------------------

# Tokens: an atom here is any run without white space or specials; "." stays inside atoms
# (obs-phrase allows it in display names, and it joins local-part and domain pieces anyway).
_TOKEN = re.compile(r'[ \t\r\n]+|(["(\[<>@,;:])|([^ \t\r\n"(\[<>@,;:]+)')
_QUOTED = re.compile(r'(?:[^"\\]|\\.?)*', re.S)
_LITERAL = re.compile(r"(?:[^\]\\]|\\.?)*\]?", re.S)
_QUOTED_PAIR = re.compile(r"\\(.)", re.S)
# RFC 5322 §3.2.3 dot-atom, with RFC 6532 UTF-8 allowed in atext.
_DOT_ATOM = re.compile(
    r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~\-\x80-\U0010ffff]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~\-\x80-\U0010ffff]+)*"
)

# Token kinds: "a" atom, "q" quoted string (content unescaped), "l" domain literal (as written),
# "c" comment (content), or the special character itself.
_Token = tuple[str, str]


def _comment(text: str, pos: int) -> tuple[str, int]:
    """The comment opening at ``text[pos]`` ("("): its content and the index after it.
    RFC 5322 §3.2.2: comments nest and take quoted pairs; an unclosed one runs to the end."""
    depth = 0
    out: list[str] = []
    i = pos
    n = len(text)
    while i < n:
        ch = text[i]
        if ch == "\\" and i + 1 < n:
            out.append(text[i + 1])
            i += 2
            continue
        i += 1
        if ch == "(":
            depth += 1
            if depth == 1:
                continue
        elif ch == ")":
            depth -= 1
            if depth == 0:
                break
        out.append(ch)
    return "".join(out), i


def _tokens(text: str) -> list[_Token]:
    toks: list[_Token] = []
    pos = 0
    n = len(text)
    while pos < n:
        m = _TOKEN.match(text, pos)
        if m is None:  # pragma: no cover - the pattern matches every character
            break
        special, atom = m.group(1), m.group(2)
        if atom is not None:
            toks.append(("a", atom))
            pos = m.end()
        elif special is None:
            pos = m.end()  # white space
        elif special == '"':
            q = _QUOTED.match(text, pos + 1)
            end = q.end() if q else pos + 1
            toks.append(("q", _QUOTED_PAIR.sub(r"\1", text[pos + 1 : end])))
            pos = end + 1 if end < n and text[end] == '"' else end
        elif special == "(":
            content, pos = _comment(text, pos)
            toks.append(("c", content.strip()))
        elif special == "[":
            lit = _LITERAL.match(text, pos + 1)
            end = lit.end() if lit else pos + 1
            toks.append(("l", text[pos:end]))
            pos = end
        else:
            toks.append((special, special))
            pos = m.end()
    return toks


def _local_word(kind: str, value: str) -> str:
    if kind == "q" and not _DOT_ATOM.fullmatch(value):
        # Kept quoted so that mailbox "@" host is still an address (RFC 5322 §3.4.1).
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return value


def _phrase(words: list[_Token]) -> str | None:
    text = " ".join(v for k, v in words if k != "c")
    return text or None


def _first_comment(words: list[_Token]) -> str | None:
    for k, v in words:
        if k == "c" and v:
            return v
    return None


class _AddressParser:
    """Lenient RFC 5322 §3.4 address-list (with RFC 6854 groups and §4.4 obs-route)."""

    def __init__(self, text: str) -> None:
        self.toks = _tokens(text)
        self.i = 0
        self.out: list[Address] = []
        self.in_group = False

    def parse(self) -> tuple[Address, ...]:
        toks = self.toks
        n = len(toks)
        while self.i < n:
            kind = toks[self.i][0]
            if kind in (",", ">", ":"):
                self.i += 1
                continue
            if kind == ";":
                self._end_group()
                self.i += 1
                continue
            self._address()
        self._end_group()
        return tuple(self.out)

    def _end_group(self) -> None:
        if self.in_group:
            self.out.append(GROUP_END)
            self.in_group = False

    def _words(self) -> list[_Token]:
        toks = self.toks
        start = self.i
        while self.i < len(toks) and toks[self.i][0] in "aqlc":
            self.i += 1
        return toks[start : self.i]

    def _address(self) -> None:
        words = self._words()
        special = self.toks[self.i][0] if self.i < len(self.toks) else ""
        if special == ":" and not self.in_group:
            self.i += 1
            self.out.append(Address(None, None, _phrase(words) or "", None))
            self.in_group = True
            return
        if special == "<":
            self.i += 1
            self._angle(_phrase(words))
            return
        if special == "@":
            self.i += 1
            plain = [w for w in words if w[0] != "c"]
            local = _local_word(*plain[-1]) if plain else ""
            host_words = self._words()
            name = _phrase(plain[:-1]) or _first_comment(words + host_words)
            host = "".join(v for k, v in host_words if k != "c")
            self.out.append(Address(name, None, local, host))
            return
        # A phrase with no address (a bare word, or junk before "," or ";"): kept as a mailbox
        # without a domain. Comments alone make nothing.
        text = _phrase(words)
        if text is not None:
            self.out.append(Address(None, None, text, ""))

    def _angle(self, name: str | None) -> None:
        """After "<": [obs-route ":"] addr-spec ">" (RFC 5322 §3.4, §4.4)."""
        toks = self.toks
        start = self.i
        while self.i < len(toks) and toks[self.i][0] not in (">", ";"):
            self.i += 1
        inner = [t for t in toks[start : self.i] if t[0] != "c"]
        if self.i < len(toks) and toks[self.i][0] == ">":
            self.i += 1
        adl = None
        if inner and inner[0][0] == "@":
            # obs-route: "@a,@b:" before the addr-spec.
            colon = next((j for j, t in enumerate(inner) if t[0] == ":"), len(inner))
            adl = "".join(v for _, v in inner[:colon]) or None
            inner = inner[colon + 1 :]
        at = next((j for j, t in enumerate(inner) if t[0] == "@"), -1)
        if at < 0:
            local = "".join(_local_word(k, v) for k, v in inner)
            host = ""
        else:
            local = "".join(_local_word(k, v) for k, v in inner[:at])
            host = "".join(v for _, v in inner[at + 1 :])
        self.out.append(Address(name, adl, local, host))


# The everyday forms, ``Name <a@b>``, ``"Name" <a@b>``, ``<a@b>`` and ``a@b``, comma separated:
# matched whole by one pattern so the tokenizer only runs for anything else. It must give what
# the full parser gives (tests/property/test_message_structure.py checks).
_ADDR_CHARS = r'[^\s"(),:;<>@\[\\\]]+'
_SIMPLE_ADDRESS = re.compile(
    r'[ \t]*(?:(?:"([^"\\]*)"|([^"(),:;<>@\[\\\]\r\n]*?))[ \t]*'
    rf"<({_ADDR_CHARS})@({_ADDR_CHARS})>|({_ADDR_CHARS})@({_ADDR_CHARS}))[ \t]*(?:,|\Z)"
)
_SPACES = re.compile(r"[ \t]+")


def _simple_addresses(text: str) -> tuple[Address, ...] | None:
    out: list[Address] = []
    pos = 0
    n = len(text)
    while pos < n:
        m = _SIMPLE_ADDRESS.match(text, pos)
        if m is None or m.end() == pos:
            return None
        quoted, phrase, local, host, bare_local, bare_host = m.groups()
        if bare_local is not None:
            out.append(Address(None, None, bare_local, bare_host))
        else:
            name = quoted if quoted is not None else _SPACES.sub(" ", phrase)
            out.append(Address(name or None, None, local, host))
        pos = m.end()
    return tuple(out)


def parse_addresses(text: str) -> tuple[Address, ...]:
    """The addresses of an address-list header value, in order, as RFC 3501 §7.4.2 wants them.

    Names are the phrase with quoted strings unquoted and words joined by one space (encoded
    words left as they are); an addr-spec without a phrase takes its comment as the name (the
    old ``user@host (Real Name)`` form). Local parts that need quoting stay quoted.
    """
    simple = _simple_addresses(text)
    if simple is not None:
        return simple
    return _AddressParser(text).parse()
