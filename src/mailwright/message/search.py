"""What SEARCH compares against (RFC 9051 §6.4.4, RFC 3501 §6.4.4), from a message's bytes and
its :class:`~mailwright.message.structure.Structure`.

Text is decoded for matching: RFC 2047 encoded words, transfer encodings and charsets, all
lossy and never raising. Work on a body is bounded (``BODY_TEXT_LIMIT`` characters), so a huge
attachment costs no more than a small one. Matching is a substring test under Unicode
case folding (RFC 9051 §6.4.4: "case-insensitive" for every string key).
"""

from __future__ import annotations

import html
import re
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

from mailwright.message.envelope import decode_charset, decode_words, field_text, iter_fields
from mailwright.message.structure import Part, Structure, decode_transfer

# The most decoded body text SEARCH BODY/TEXT looks at per message.
BODY_TEXT_LIMIT = 1024 * 1024


def fold(text: str) -> str:
    """The form in which two strings are compared: Unicode case folding."""
    return text.casefold()


def contains(text: str, needle: str) -> bool:
    """RFC 9051 §6.4.4: a string key matches when it is a substring of the text, ignoring case.
    An empty key matches everything."""
    return fold(needle) in fold(text)


def header_values(raw: bytes, structure: Structure, name: str) -> list[str]:
    """Every value of the header field ``name`` (any case) of the message, in order: unfolded,
    encoded words decoded (SEARCH HEADER, RFC 9051 §6.4.4)."""
    key = name.strip().lower().encode("utf-8", "replace")
    head = structure.body
    return [
        decode_words(field_text(raw[vs:fe]))
        for fname, _, vs, fe in iter_fields(raw, head.header_start, head.body_start)
        if fname == key
    ]


def header_text(raw: bytes, structure: Structure) -> str:
    """The whole message header as decoded text, one ``Name: value`` line per field (for
    SEARCH TEXT, which looks at the header too)."""
    head = structure.body
    lines = []
    for name, fs, vs, fe in iter_fields(raw, head.header_start, head.body_start):
        if name:
            label = raw[fs:vs].decode("utf-8", "replace")
            lines.append(label + " " + decode_words(field_text(raw[vs:fe])))
        else:
            lines.append(field_text(raw[fs:fe]))
    return "\n".join(lines)


def address_text(structure: Structure, field: str) -> str:
    """The addresses of ``field`` (from, sender, reply-to, to, cc, bcc) as text to match
    SEARCH FROM/TO/CC/BCC against: ``Name <mailbox@host>``, comma separated, names decoded,
    groups as ``Group: ... ;``. Sender and reply-to default to from (RFC 3501 §7.4.2)."""
    out: list[str] = []
    for a in structure.envelope.addresses(field):
        if a.is_group_end:
            out.append(";")
            continue
        if a.is_group_start:
            out.append(decode_words(a.mailbox or "") + ":")
            continue
        spec = a.mailbox or ""
        if a.host:
            spec += "@" + a.host
        if a.name:
            out.append(f"{decode_words(a.name)} <{spec}>")
        else:
            out.append(spec)
    return ", ".join(out)


def sent_date(structure: Structure) -> datetime | None:
    """The Date header as an aware datetime (SEARCH SENT*, SORT DATE), or None when absent or
    unreadable. A date without a zone ("-0000", RFC 5322 §3.3) is taken as UTC."""
    value = structure.envelope.date
    if not value:
        return None
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


_BLOCK_TAG = re.compile(
    r"</?(?:br|p|div|tr|td|th|li|h[1-6]|table|blockquote|hr)\b[^<>]*>", re.IGNORECASE
)
_TAG = re.compile(r"<[^<>]*>")


def _without_scripts(text: str) -> str:
    # Linear even for unclosed <script>s (a regex with .*? would be quadratic).
    lower = text.lower()
    out: list[str] = []
    pos = 0
    n = len(text)
    while pos < n:
        found = [(i, tag) for tag in ("script", "style") if (i := lower.find("<" + tag, pos)) >= 0]
        if not found:
            out.append(text[pos:])
            break
        i, tag = min(found)
        out.append(text[pos:i])
        close = lower.find("</" + tag, i)
        gt = lower.find(">", close) if close >= 0 else -1
        pos = n if gt < 0 else gt + 1
    return "".join(out)


def html_text(markup: str) -> str:
    """Rough text of HTML for matching: scripts and styles dropped, tags removed, entities
    decoded."""
    text = _BLOCK_TAG.sub(" ", _without_scripts(markup))
    return html.unescape(_TAG.sub("", text))


def part_text(raw: bytes, part: Part, limit: int = BODY_TEXT_LIMIT) -> str:
    """The decoded text of one text/* part, lines ending in LF: at most ``limit`` characters.
    An unknown transfer encoding is read as it is."""
    encoded = raw[part.body_start : min(part.end, part.body_start + 2 * limit + 8)]
    data = decode_transfer(encoded, part.encoding)
    if data is None:
        data = encoded
    text = decode_charset(data[: 4 * limit], part.param("charset"))
    if "\r" in text:
        text = text.replace("\r\n", "\n")
    if part.subtype == "html":
        text = html_text(text)
    return text[:limit]


def body_text(raw: bytes, structure: Structure, limit: int = BODY_TEXT_LIMIT) -> str:
    """The decoded text of every text/* part (attached messages' included), in order, one
    newline between parts, at most ``limit`` characters (SEARCH BODY)."""
    out: list[str] = []
    budget = limit
    for part in structure.body.walk():
        if budget <= 0:
            break
        if part.type != "text":
            continue
        text = part_text(raw, part, budget)
        out.append(text)
        budget -= len(text) + 1
    return "\n".join(out)[:limit]
