"""FETCH data items (RFC 9051 §6.4.5 and §7.5.2, RFC 3516 BINARY, RFC 7162 MODSEQ).

ENVELOPE and BODYSTRUCTURE come from the cached structure; sections are slices of the
stored bytes located by it. A message is read from the store only for items that need
its bytes.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from mailwright.access.imap.content import Content
from mailwright.message import structure as st
from mailwright.proto.imap import command as c
from mailwright.proto.imap.response import Atom, Literal, Value, format_datetime


# Items whose fetching sets \Seen (RFC 9051 §6.4.5: BODY[...] without .PEEK, RFC822,
# RFC822.TEXT; BINARY[...] likewise, RFC 3516 §4.2).
def sets_seen(item: c.FetchItem) -> bool:
    if isinstance(item, c.BodySection | c.Binary):
        return not item.peek
    return isinstance(item, c.Rfc822 | c.Rfc822Text)


class NoSuchPart(Exception):
    """BINARY of a part with an unknown transfer encoding (RFC 3516 §4.3 UNKNOWN-CTE)."""


def _partial(data: bytes, partial: tuple[int, int] | None) -> bytes:
    if partial is None:
        return data
    start, length = partial
    return data[start : start + length]


# The instants a datetime can hold: an INTERNALDATE is Unix seconds, shown in UTC.
_FIRST = int(datetime(1, 1, 1, tzinfo=UTC).timestamp())
_LAST = int(datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC).timestamp())


def utc(seconds: int) -> datetime:
    """An INTERNALDATE (Unix seconds) as a UTC datetime. APPEND refuses dates whose
    instant is outside years 1 to 9999; one stored by other means is clamped, so reading
    it never fails."""
    return datetime.fromtimestamp(min(max(seconds, _FIRST), _LAST), UTC)


def date_time(seconds: int) -> str:
    """RFC 3501 §9 date-time of an INTERNALDATE: the same instant as APPEND gave, in UTC
    ("+0000"; the zone the client gave is not kept)."""
    return format_datetime(utc(seconds))


async def item_value(item: c.FetchItem, content: Content) -> Value:
    """The value of one content item (not FLAGS, UID, MODSEQ, INTERNALDATE, RFC822.SIZE,
    which the session answers from the view)."""
    match item:
        case c.Envelope():
            return _value(st.envelope(await content.structure()))
        case c.BodyStructure(extensible):
            return _value(st.bodystructure(await content.structure(), extensible))
        case c.Rfc822():
            return Literal(await content.raw())
        case c.Rfc822Header():
            raw, s = await content.raw(), await content.structure()
            return Literal(st.section(raw, s, (), "HEADER"))
        case c.Rfc822Text():
            raw, s = await content.raw(), await content.structure()
            return Literal(st.section(raw, s, (), "TEXT"))
        case c.BodySection(part, text, fields, partial):
            raw = await content.raw()
            if part or text is not None:  # the whole message needs no parsing
                raw = st.section(raw, await content.structure(), part, text, fields)
            return Literal(_partial(raw, partial))
        case c.Binary(part, partial):
            raw, s = await content.raw(), await content.structure()
            decoded = raw if not part else st.binary(raw, s, part)
            if decoded is None:
                raise NoSuchPart(str(part))
            data = _partial(decoded, partial)
            # RFC 9051 §7.5.2: literal8 only for content with NUL octets; many clients
            # (and IMAP4rev1 parsers) read nothing else.
            return Literal(data, binary=b"\x00" in data)
        case c.BinarySize(part):
            raw, s = await content.raw(), await content.structure()
            size = len(raw) if not part else st.binary_size(raw, s, part)
            if size is None:
                raise NoSuchPart(str(part))
            return size
    raise TypeError(f"not a content item: {item!r}")  # pragma: no cover


def _value(v: Any) -> Value:
    # The structure module builds plain lists, str, int and None: already encoder values.
    return v  # type: ignore[no-any-return]


def flag_atoms(flags: frozenset[str]) -> list[Value]:
    return [Atom(f) for f in sorted(flags)]
