"""A message's MIME structure, computed once from its bytes, and what IMAP makes of it.

``analyze(raw)`` reads an RFC 5322 / MIME message (RFC 2045, RFC 2046) into a :class:`Structure`:
a frozen tree of :class:`Part` holding byte offsets into ``raw`` and the parsed MIME headers,
with the envelope of the message and of every attached message/rfc822 (or RFC 6532
message/global). The store caches it (``to_bytes`` / ``from_bytes``); FETCH, SEARCH, SORT and
THREAD then work from it and the raw bytes without parsing again.

Invariants:
- ``analyze`` never raises. Anything malformed still yields a structure: no Content-Type or an
  invalid one is text/plain; charset=us-ascii (RFC 2045 §5.2); a multipart without a boundary
  parameter or without a single delimiter line has one implicit part (its whole body, no
  header); a missing close delimiter ends the last part at the end of the enclosing body.
- Every part satisfies ``header_start <= body_start <= end``; the parts of a multipart lie in
  order, without overlap, inside its body; an attached message spans exactly its part's body.
- ``type == "multipart"`` exactly when ``children`` is non-empty; type message with subtype
  rfc822 or global exactly when ``message`` is set. Parts nested deeper than ``MAX_DEPTH``, and
  message/rfc822 parts with a transfer encoding other than 7bit/8bit/binary (RFC 2046 §5.2.1
  forbids one; its body cannot be read as a message), are treated as application/octet-stream.
- A header block ends at its first empty line (CRLF or bare LF). If no line before it is a
  header field (``name:``), the part has no header and its body starts at once (a message
  "with no headers at all"); lines that are no field (an mbox "From " line) are skipped.
- Every value works on the whole message in memory (``raw`` is bytes); the work is linear in
  the header sizes plus one ``bytes.find`` pass per multipart level over its body.
- Type, subtype, encoding and disposition type are stored lower-case; IMAP output upper-cases
  them and parameter names (as in RFC 3501's examples); parameter values are as given.
"""

from __future__ import annotations

import binascii
import functools
import json
import logging
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias

from mailwright.message.envelope import (
    FIELD_NAME,
    Address,
    Envelope,
    decode_base64,
    field_text,
    iter_fields,
    parse_addresses,
)

log = logging.getLogger("mailwright.message")

# Nesting beyond this (multiparts and attached messages together) is not parsed: such a part is
# opaque application/octet-stream. Legitimate mail nests a handful of levels.
MAX_DEPTH = 50
# At most this many parts per message (attached messages' parts included): beyond it, the rest
# of a multipart's body belongs to its last part and deeper structure is opaque. Bounds the
# time, memory and cached size of a hostile message; real mail has a few dozen at most.
MAX_PARTS = 5000
FORMAT_VERSION = 1

Params: TypeAlias = tuple[tuple[str, str], ...]
# An IMAP value as the encoder renders it: None = NIL, int = number, str/bytes = string,
# list = parenthesised list.
Value: TypeAlias = "int | str | bytes | list[Value] | None"

_TEXT_PLAIN_DEFAULT: Params = (("charset", "us-ascii"),)
_IDENTITY_CTE = frozenset({None, "7bit", "8bit", "binary"})
_EMBEDDED = frozenset({"rfc822", "global"})
_WANTED = frozenset(
    {
        b"content-type",
        b"content-transfer-encoding",
        b"content-id",
        b"content-description",
        b"content-disposition",
        b"content-language",
        b"content-location",
        b"content-md5",
        b"date",
        b"subject",
        b"from",
        b"sender",
        b"reply-to",
        b"to",
        b"cc",
        b"bcc",
        b"in-reply-to",
        b"message-id",
        b"references",
    }
)
_ANY_FIELD = re.compile(rb"^[!-9;-~]+[ \t]*:", re.MULTILINE)
_UPPER = str.maketrans("abcdefghijklmnopqrstuvwxyz", "ABCDEFGHIJKLMNOPQRSTUVWXYZ")


@dataclass(frozen=True, slots=True)
class Part:
    """One MIME entity (RFC 2045 §2.4): its header ``raw[header_start:body_start]`` (blank line
    included) and body ``raw[body_start:end]``.

    ``params`` and ``disposition_params`` keep the order and the names as written (RFC 2231
    sections such as ``filename*0*`` are not joined). ``encoding`` is the lower-cased
    Content-Transfer-Encoding token or None when absent (7bit, RFC 2045 §6.1). ``lines`` is set
    for text/* and attached messages. ``children`` are a multipart's parts; ``message`` is an
    attached message/rfc822 or message/global.
    """

    header_start: int
    body_start: int
    end: int
    type: str = "text"
    subtype: str = "plain"
    params: Params = ()
    content_id: str | None = None
    description: str | None = None
    encoding: str | None = None
    lines: int | None = None
    md5: str | None = None
    disposition: str | None = None
    disposition_params: Params = ()
    language: tuple[str, ...] = ()
    location: str | None = None
    children: tuple[Part, ...] = ()
    message: Structure | None = None

    @property
    def size(self) -> int:
        """The body's size in octets as stored, transfer encoding included (RFC 3501 §7.4.2)."""
        return self.end - self.body_start

    @property
    def mime_type(self) -> str:
        return f"{self.type}/{self.subtype}"

    def param(self, name: str) -> str | None:
        """The first Content-Type parameter called ``name`` (case-insensitive)."""
        key = name.lower()
        for k, v in self.params:
            if k.lower() == key:
                return v
        return None

    def walk(self) -> Iterable[Part]:
        """This part and every part below it, attached messages included, depth first."""
        yield self
        for child in self.children:
            yield from child.walk()
        if self.message is not None:
            yield from self.message.body.walk()


@dataclass(frozen=True, slots=True)
class Structure:
    """A message: its envelope, its body part (whose header is the message header) and its
    References header (unfolded, raw), which THREAD needs for every message."""

    envelope: Envelope
    body: Part
    references: str | None = None

    def to_bytes(self) -> bytes:
        """A compact, versioned serialisation (JSON) for the store; ``from_bytes`` inverts it."""
        return json.dumps(
            [FORMAT_VERSION, _dump_message(self)], ensure_ascii=False, separators=(",", ":")
        ).encode("utf-8")

    @classmethod
    def from_bytes(cls, data: bytes) -> Structure:
        """The structure ``to_bytes`` wrote. ValueError if ``data`` is not a serialisation of
        this format version (the caller then analyzes the message again)."""
        try:
            doc = json.loads(data)
            if not isinstance(doc, list) or len(doc) != 2 or doc[0] != FORMAT_VERSION:
                raise ValueError("not a structure of this format version")
            return _load_message(doc[1])
        except (TypeError, KeyError, IndexError, AttributeError, RecursionError) as exc:
            raise ValueError(f"malformed structure: {exc!r}") from None


# --- parsing -----------------------------------------------------------------------------------


def analyze(raw: bytes) -> Structure:
    """Parse ``raw`` (a whole message) once. Never raises; see the module invariants."""
    try:
        return _message(raw, 0, len(raw), 0, [MAX_PARTS])
    except Exception:
        # The boundary between untrusted bytes and delivery: a bug here must not lose mail.
        # The message is then one opaque part; the property tests keep this path unused.
        log.exception("structure.failed size=%d", len(raw))
        body = Part(0, 0, len(raw), type="application", subtype="octet-stream")
        return Structure(Envelope(), body)


def _header(raw: bytes, hs: int, end: int) -> tuple[int, dict[bytes, str]]:
    """The header block starting at ``hs``: where the body starts, and the first value of
    each field in ``_WANTED`` (unfolded text)."""
    if hs >= end:
        return end, {}
    c = raw[hs]
    if c == 10:
        return hs + 1, {}
    if c == 13 and raw.startswith(b"\r\n", hs, end):
        return hs + 2, {}
    # RFC 5322 §2.1: the header ends at the first empty line; bare LF is tolerated.
    crlf = raw.find(b"\n\r\n", hs, end)
    lf = raw.find(b"\n\n", hs, end if crlf < 0 else crlf + 1)
    if lf >= 0:
        blank, body = lf + 1, lf + 2
    elif crlf >= 0:
        blank, body = crlf + 1, crlf + 3
    else:
        blank = body = end
    nl = raw.find(b"\n", hs, end)
    if FIELD_NAME.match(raw, hs, end if nl < 0 else nl) is None and (
        _ANY_FIELD.search(raw, hs, blank) is None
    ):
        # Not one field before the empty line: no header at all, the body starts at once.
        # (A junk first line before real fields, like an mbox "From " line, is skipped.)
        return hs, {}
    found: dict[bytes, list[bytes]] = {}
    current: list[bytes] | None = None
    for line in raw[hs:blank].split(b"\n"):
        if not line:
            continue
        first = line[0]
        if first == 32 or first == 9:
            if current is not None:
                current.append(line)
            continue
        current = None
        colon = line.find(b":")
        if colon <= 0:
            continue
        name = line[:colon].rstrip(b" \t").lower()
        if name in _WANTED and name not in found:
            current = found[name] = [line[colon + 1 :]]
    return body, {k: field_text(b"\n".join(v)) for k, v in found.items()}


def _message(raw: bytes, start: int, end: int, depth: int, budget: list[int]) -> Structure:
    body, fields = _part(raw, start, end, depth, "text", "plain", budget)
    get = fields.get
    env = Envelope(
        date=get(b"date"),
        subject=get(b"subject"),
        from_=_addresses(get(b"from")),
        sender=_addresses(get(b"sender")),
        reply_to=_addresses(get(b"reply-to")),
        to=_addresses(get(b"to")),
        cc=_addresses(get(b"cc")),
        bcc=_addresses(get(b"bcc")),
        in_reply_to=get(b"in-reply-to"),
        message_id=get(b"message-id"),
    )
    return Structure(env, body, get(b"references"))


def _addresses(value: str | None) -> tuple[Address, ...]:
    return parse_addresses(value) if value else ()


def _part(
    raw: bytes, hs: int, end: int, depth: int, dtype: str, dsub: str, budget: list[int]
) -> tuple[Part, dict[bytes, str]]:
    """One entity at ``raw[hs:end]``; ``budget[0]`` is how many more parts may be made."""
    bs, fields = _header(raw, hs, end)
    get = fields.get
    ctype = get(b"content-type")
    parsed = _content_type(ctype) if ctype is not None else None
    if parsed is None:
        # RFC 2045 §5.2 (absent or invalid: text/plain us-ascii); RFC 2046 §5.1.5 (digest).
        mtype, msub = (dtype, dsub) if ctype is None else ("text", "plain")
        params = _TEXT_PLAIN_DEFAULT if mtype == "text" else ()
    else:
        mtype, msub, params = parsed
    cte = get(b"content-transfer-encoding")
    encoding = _token(cte) if cte is not None else None
    children: tuple[Part, ...] = ()
    message: Structure | None = None
    if mtype == "multipart" or (mtype == "message" and msub in _EMBEDDED):
        if (
            depth >= MAX_DEPTH
            or budget[0] <= 0
            or (mtype == "message" and encoding not in _IDENTITY_CTE)
        ):
            mtype, msub = "application", "octet-stream"
        elif mtype == "multipart":
            ranges = _split(raw, bs, end, _param(params, "boundary"), budget[0])
            budget[0] -= len(ranges)
            dt, ds = ("message", "rfc822") if msub == "digest" else ("text", "plain")
            children = tuple(_part(raw, s, e, depth + 1, dt, ds, budget)[0] for s, e in ranges)
        else:
            budget[0] -= 1
            message = _message(raw, bs, end, depth + 1, budget)
    lines = None
    if mtype == "text" or message is not None:
        lines = _count_lines(raw, bs, end)
    disposition: str | None = None
    disposition_params: Params = ()
    cd = get(b"content-disposition")
    if cd is not None:
        disposition, disposition_params = _disposition(cd)
    lang = get(b"content-language")
    part = Part(
        header_start=hs,
        body_start=bs,
        end=end,
        type=mtype,
        subtype=msub,
        params=params,
        content_id=get(b"content-id"),
        description=get(b"content-description"),
        encoding=encoding,
        lines=lines,
        md5=get(b"content-md5"),
        disposition=disposition,
        disposition_params=disposition_params,
        language=_languages(lang) if lang is not None else (),
        location=get(b"content-location"),
        children=children,
        message=message,
    )
    return part, fields


def _count_lines(raw: bytes, start: int, end: int) -> int:
    # Lines of the body as a reader counts them: a last line without a line break counts too.
    if end <= start:
        return 0
    n = raw.count(b"\n", start, end)
    return n if raw[end - 1] == 10 else n + 1


def _split(
    raw: bytes, bs: int, end: int, boundary: str | None, limit: int
) -> list[tuple[int, int]]:
    """The (start, end) of each body part of a multipart body ``raw[bs:end]`` (RFC 2046 §5.1.1).

    A delimiter is ``--boundary`` at the start of a line followed only by optional ``--`` (the
    close delimiter) and linear white space; the line break before it belongs to it. Nothing
    after the close delimiter (the epilogue) is a part; without one, the last part runs to
    ``end``. With no boundary or no delimiter, the whole body is the one part. The ``limit``-th
    part runs to ``end`` whatever delimiters follow.
    """
    ranges: list[tuple[int, int]] = []
    if boundary:
        delim = b"--" + boundary.encode("utf-8", "replace")
        pos = bs
        start = -1
        while True:
            i = raw.find(delim, pos, end)
            if i < 0:
                break
            pos = i + 1
            if i != bs and raw[i - 1] != 10:
                continue
            j = i + len(delim)
            close = raw.startswith(b"--", j, end)
            nl = raw.find(b"\n", j, end)
            line_end = end if nl < 0 else nl
            if raw[j + 2 if close else j : line_end].strip(b" \t\r"):
                continue  # "--boundaryX": a longer line, not this delimiter
            if start >= 0 and len(ranges) + 1 >= limit:
                break  # the last part allowed: it takes the rest
            if start >= 0:
                pe = i
                if pe > start and raw[pe - 1] == 10:
                    pe -= 1
                    if pe > start and raw[pe - 1] == 13:
                        pe -= 1
                ranges.append((start, pe))
            if close:
                start = -1
                break
            start = pos = end if nl < 0 else nl + 1
        if start >= 0:
            ranges.append((start, end))
    if not ranges:
        ranges.append((bs, end))
    return ranges


# --- MIME header values (RFC 2045 §5.1, §6.1; RFC 2183; RFC 3066; RFC 2557) -----------------

_COMMENT_OR_QUOTED = re.compile(r'"(?:[^"\\]|\\.?)*"?|\((?:[^()\\]|\\.?)*\)?', re.S)
_TYPE = re.compile(r'\s*([^\s/;()<>@,:\\"\[\]?=]+)\s*/\s*([^\s;()<>@,:\\"\[\]?=]+)\s*')
_DISP_TYPE = re.compile(r'\s*([^\s;()<>@,:\\"\[\]?=]+)\s*')
_PARAM_NAME = re.compile(r'[\s;]*([^\s=;"]*)\s*(=?)\s*')
_QUOTED_VALUE = re.compile(r'"((?:[^"\\]|\\.?)*)"?', re.S)
_QUOTED_PAIR = re.compile(r"\\(.)", re.S)


def _strip_comments(text: str) -> str:
    # RFC 2045 §5.1 and RFC 822: comments may appear between tokens; not inside quoted strings.
    if "(" not in text:
        return text
    return _COMMENT_OR_QUOTED.sub(lambda m: m.group() if m.group()[0] == '"' else " ", text)


# A pure memo: most parts of most messages say one of a few Content-Types.
@functools.lru_cache(maxsize=1024)
def _content_type(value: str) -> tuple[str, str, Params] | None:
    text = _strip_comments(value)
    m = _TYPE.match(text)
    if m is None:
        return None
    return m.group(1).lower(), m.group(2).lower(), _params(text, m.end())


@functools.lru_cache(maxsize=256)
def _disposition(value: str) -> tuple[str | None, Params]:
    text = _strip_comments(value)
    m = _DISP_TYPE.match(text)
    if m is None:
        return None, _params(text, 0)
    return m.group(1).lower(), _params(text, m.end())


def _params(text: str, pos: int) -> Params:
    """``; name=value`` pairs from ``pos`` (RFC 2045 §5.1), leniently: a value is a quoted string
    or everything up to the next ";"; a name without "=" is skipped."""
    out: list[tuple[str, str]] = []
    n = len(text)
    while pos < n:
        m = _PARAM_NAME.match(text, pos)
        if m is None:  # pragma: no cover - the pattern matches the empty string
            break
        name, eq = m.group(1), m.group(2)
        pos = m.end()
        if pos < n and text[pos] == '"':
            q = _QUOTED_VALUE.match(text, pos)
            if q is None:  # pragma: no cover - matches any quoted start
                break
            value = _QUOTED_PAIR.sub(r"\1", q.group(1))
            pos = q.end()
            semi = text.find(";", pos)
            pos = n if semi < 0 else semi
        else:
            semi = text.find(";", pos)
            value = text[pos : n if semi < 0 else semi].strip()
            pos = n if semi < 0 else semi
        # Each round ends at a ";" (which the next consumes) or at the end: always progress.
        if name and eq:
            out.append((name, value))
    return tuple(out)


def _param(params: Params, name: str) -> str | None:
    for k, v in params:
        if k.lower() == name:
            return v
    return None


def _token(value: str) -> str | None:
    text = _strip_comments(value).strip()
    token = text.split(None, 1)[0].lower() if text else ""
    return token or None


def _languages(value: str) -> tuple[str, ...]:
    # RFC 3282 §2: Content-Language is a comma-separated list of language tags.
    text = _strip_comments(value)
    return tuple(t for t in re.split(r"[\s,]+", text) if t)


# --- ENVELOPE and BODYSTRUCTURE (RFC 3501 §7.4.2, RFC 9051 §7.5.2) ----------------------------


class Packed(list[Value]):
    """A parenthesised list whose first ``run`` members are written with no space between them.

    RFC 3501 §9 (and RFC 9051 §9): a multipart body is ``"(" 1*body SP media-subtype ...``
    and an address list ``"(" 1*address ")"`` — adjacent lists, no SP. An encoder that honours
    this class writes the exact grammar; one that treats it as a plain list writes spaces, which
    lenient parsers accept.
    """

    __slots__ = ("run",)

    def __init__(self, items: Iterable[Value], run: int) -> None:
        super().__init__(items)
        self.run = run


def _upper(text: str) -> str:
    return text.translate(_UPPER)


def _address_list(addresses: Sequence[Address]) -> Value:
    if not addresses:
        return None
    return Packed(([a.name, a.adl, a.mailbox, a.host] for a in addresses), len(addresses))


# The public builders return list[Any]: the encoder's own value type (proto.imap, which this
# layer may not import) is wider than Value, and list is invariant, so list[Value] would not
# type-check as its argument.
def envelope(structure: Structure) -> list[Any]:
    """The ENVELOPE of ``structure`` as nested values (RFC 3501 §7.4.2): date, subject, from,
    sender, reply-to, to, cc, bcc, in-reply-to, message-id; sender and reply-to default to from.
    Address lists are :class:`Packed`."""
    env = structure.envelope
    return [
        env.date,
        env.subject,
        _address_list(env.from_),
        _address_list(env.addresses("sender")),
        _address_list(env.addresses("reply-to")),
        _address_list(env.to),
        _address_list(env.cc),
        _address_list(env.bcc),
        env.in_reply_to,
        env.message_id,
    ]


def _param_list(params: Params) -> Value:
    if not params:
        return None
    out: list[Value] = []
    for k, v in params:
        out.append(_upper(k))
        out.append(v)
    return out


def _extension(part: Part) -> list[Value]:
    """body-fld-dsp, body-fld-lang, body-fld-loc (RFC 3501 §7.4.2)."""
    dsp: Value = None
    if part.disposition is not None:
        dsp = [_upper(part.disposition), _param_list(part.disposition_params)]
    lang: Value = None
    if len(part.language) == 1:
        lang = part.language[0]
    elif part.language:
        lang = list(part.language)
    return [dsp, lang, part.location]


def _body(part: Part, extensible: bool) -> list[Value]:
    if part.children:
        out = Packed((_body(c, extensible) for c in part.children), len(part.children))
        out.append(_upper(part.subtype))
        if extensible:
            out.append(_param_list(part.params))
            out.extend(_extension(part))
        return out
    body: list[Value] = [
        _upper(part.type),
        _upper(part.subtype),
        _param_list(part.params),
        part.content_id,
        part.description,
        _upper(part.encoding) if part.encoding else "7BIT",
        part.size,
    ]
    if part.message is not None:
        body.append(envelope(part.message))
        body.append(_body(part.message.body, extensible))
        body.append(part.lines)
    elif part.lines is not None:
        body.append(part.lines)
    if extensible:
        body.append(part.md5)
        body.extend(_extension(part))
    return body


def bodystructure(structure: Structure, extensible: bool = True) -> list[Any]:
    """BODYSTRUCTURE (``extensible``) or BODY as nested values (RFC 3501 §7.4.2, RFC 9051
    §7.5.2). Multipart lists are :class:`Packed` (children adjacent). Type, subtype, encoding,
    disposition type and parameter names are upper-case; an absent encoding is "7BIT"."""
    return _body(structure.body, extensible)


# --- sections (RFC 3501 §6.4.5, RFC 9051 §6.4.5) ----------------------------------------------


def _into(body: Part, n: int) -> Part | None:
    """Part ``n`` of a message whose body is ``body``: a multipart's n-th part; a single-part
    message's part 1 is its body (RFC 3501 §6.4.5)."""
    if body.children:
        return body.children[n - 1] if n <= len(body.children) else None
    return body if n == 1 else None


def part_at(structure: Structure, part: Sequence[int]) -> Part | None:
    """The part that section numbers ``part`` name, or None. Numbers go through multiparts and
    into attached messages (a message/rfc822 part's ``n.1`` is the first part of the attached
    message's body)."""
    current: Part | None = None
    for n in part:
        if n < 1:
            return None
        if current is None:
            current = _into(structure.body, n)
        elif current.children:
            current = current.children[n - 1] if n <= len(current.children) else None
        elif current.message is not None:
            current = _into(current.message.body, n)
        else:
            return None
        if current is None:
            return None
    return current


def _message_at(structure: Structure, part: Sequence[int]) -> Structure | None:
    if not part:
        return structure
    found = part_at(structure, part)
    return found.message if found is not None else None


def _header_fields(raw: bytes, message: Structure, fields: Sequence[str], keep: bool) -> bytes:
    names = {f.strip().lower().encode("utf-8", "replace") for f in fields}
    head = message.body
    out: list[bytes] = []
    for name, fs, _, fe in iter_fields(raw, head.header_start, head.body_start):
        if (name in names) == keep:
            chunk = raw[fs:fe]
            out.append(chunk if chunk.endswith(b"\n") else chunk + b"\r\n")
    out.append(b"\r\n")
    return b"".join(out)


def section(
    raw: bytes,
    structure: Structure,
    part: tuple[int, ...],
    text: str | None,
    fields: tuple[str, ...] = (),
) -> bytes:
    """BODY[section] (RFC 3501 §6.4.5) of the message ``raw`` that ``structure`` describes.

    ``part`` is the section-part numbers; ``text`` is None, HEADER, HEADER.FIELDS,
    HEADER.FIELDS.NOT, TEXT or MIME (any case); ``fields`` the header field names.

    - ``()`` and None: the whole message. Numbers alone: that part's body (for a multipart, its
      whole body with delimiters; for message/rfc822, the attached message).
    - HEADER / TEXT: header (blank line included) or body of the message, or of the attached
      message when ``part`` names a message/rfc822 part.
    - HEADER.FIELDS (.NOT): the (non-)matching fields, byte for byte with their folding, in
      their original order, then CRLF.
    - MIME: the part's own header block; for a single-part message's part 1 that is the
      message header.

    A part that does not exist, or HEADER/TEXT on a part that is no message, gives b"" (the
    session may send it as "" or NIL). ValueError for an unknown ``text``.
    """
    key = text.upper() if text is not None else None
    if key is None:
        if not part:
            return raw
        found = part_at(structure, part)
        return raw[found.body_start : found.end] if found is not None else b""
    if key == "MIME":
        found = part_at(structure, part) if part else None
        return raw[found.header_start : found.body_start] if found is not None else b""
    if key not in ("HEADER", "TEXT", "HEADER.FIELDS", "HEADER.FIELDS.NOT"):
        raise ValueError(f"unknown section text {text!r}")
    message = _message_at(structure, part)
    if message is None:
        return b""
    body = message.body
    if key == "HEADER":
        return raw[body.header_start : body.body_start]
    if key == "TEXT":
        return raw[body.body_start : body.end]
    return _header_fields(raw, message, fields, key == "HEADER.FIELDS")


# --- BINARY (RFC 3516) -------------------------------------------------------------------------

_QP_TRAILING_WSP = re.compile(rb"[ \t]+(?=\r?\n|\Z)")


def decode_transfer(data: bytes, encoding: str | None) -> bytes | None:
    """``data`` with its Content-Transfer-Encoding removed (RFC 2045 §6), or None for an
    encoding we do not know. Decoding is lenient: bad base64 characters are skipped, a bad
    quoted-printable "=" is kept as it is."""
    if encoding in _IDENTITY_CTE:
        return data
    if encoding == "base64":
        return decode_base64(data)
    if encoding == "quoted-printable":
        # RFC 2045 §6.7 rule 3: trailing white space on a line was added in transport.
        return binascii.a2b_qp(_QP_TRAILING_WSP.sub(b"", data))
    return None


def binary(raw: bytes, structure: Structure, part: tuple[int, ...]) -> bytes | None:
    """BINARY[part] (RFC 3516 §4.2): the part's body with its transfer encoding removed.

    ``()`` is the whole message as it is. None when the encoding is unknown (the session
    answers NO [UNKNOWN-CTE]); b"" when the part does not exist."""
    if not part:
        return raw
    found = part_at(structure, part)
    if found is None:
        return b""
    return decode_transfer(raw[found.body_start : found.end], found.encoding)


def binary_size(raw: bytes, structure: Structure, part: tuple[int, ...]) -> int | None:
    """BINARY.SIZE[part] (RFC 3516 §4.2): the decoded size, or None for an unknown encoding."""
    if part:
        found = part_at(structure, part)
        if found is not None and found.encoding in _IDENTITY_CTE:
            return found.size  # no decoding needed to know it
    data = binary(raw, structure, part)
    return len(data) if data is not None else None


# --- serialisation -----------------------------------------------------------------------------


def _dump_addresses(addresses: tuple[Address, ...]) -> list[list[str | None]]:
    return [[a.name, a.adl, a.mailbox, a.host] for a in addresses]


def _dump_message(s: Structure) -> list[Any]:
    e = s.envelope
    env = [
        e.date,
        e.subject,
        _dump_addresses(e.from_),
        _dump_addresses(e.sender),
        _dump_addresses(e.reply_to),
        _dump_addresses(e.to),
        _dump_addresses(e.cc),
        _dump_addresses(e.bcc),
        e.in_reply_to,
        e.message_id,
    ]
    return [env, _dump_part(s.body), s.references]


def _dump_part(p: Part) -> list[Any]:
    return [
        p.header_start,
        p.body_start,
        p.end,
        p.type,
        p.subtype,
        [list(kv) for kv in p.params],
        p.content_id,
        p.description,
        p.encoding,
        p.lines,
        p.md5,
        p.disposition,
        [list(kv) for kv in p.disposition_params],
        list(p.language),
        p.location,
        [_dump_part(c) for c in p.children],
        _dump_message(p.message) if p.message is not None else None,
    ]


def _bad(v: Any) -> ValueError:
    return ValueError(f"unexpected value in a structure: {v!r:.60}")


def _opt_str(v: Any) -> str | None:
    if v is not None and type(v) is not str:
        raise _bad(v)
    return v


def _load_strs(v: Any) -> tuple[str, ...]:
    out = tuple(v)
    for x in out:
        if type(x) is not str:
            raise _bad(x)
    return out


def _load_params(v: Any) -> Params:
    if not v:
        return ()
    out = tuple((k, val) for k, val in v)
    for k, val in out:
        if type(k) is not str or type(val) is not str:
            raise _bad((k, val))
    return out


def _load_addresses(v: Any) -> tuple[Address, ...]:
    out = []
    for n, a, m, h in v:
        for x in (n, a, m, h):
            if x is not None and type(x) is not str:
                raise _bad(x)
        out.append(Address(n, a, m, h))
    return tuple(out)


def _load_message(v: Any) -> Structure:
    env, body, refs = v
    date, subject, frm, sender, reply_to, to, cc, bcc, irt, mid = env
    envelope_ = Envelope(
        _opt_str(date),
        _opt_str(subject),
        _load_addresses(frm),
        _load_addresses(sender),
        _load_addresses(reply_to),
        _load_addresses(to),
        _load_addresses(cc),
        _load_addresses(bcc),
        _opt_str(irt),
        _opt_str(mid),
    )
    return Structure(envelope_, _load_part(body), _opt_str(refs))


def _load_part(v: Any) -> Part:
    # Checked inline, not per field through helpers: this runs on every cached FETCH.
    (hs, bs, end, mtype, msub, params, cid, desc, enc, lines, md5, disp, dparams, lang, loc,
     children, message) = v  # fmt: skip
    if not (type(hs) is int and type(bs) is int and type(end) is int):
        raise _bad(v[:3])
    if type(mtype) is not str or type(msub) is not str:
        raise _bad(v[3:5])
    for x in (cid, desc, enc, md5, disp, loc):
        if x is not None and type(x) is not str:
            raise _bad(x)
    if lines is not None and type(lines) is not int:
        raise _bad(lines)
    return Part(
        hs,
        bs,
        end,
        mtype,
        msub,
        _load_params(params),
        cid,
        desc,
        enc,
        lines,
        md5,
        disp,
        _load_params(dparams),
        _load_strs(lang) if lang else (),
        loc,
        tuple(_load_part(c) for c in children) if children else (),
        _load_message(message) if message is not None else None,
    )
