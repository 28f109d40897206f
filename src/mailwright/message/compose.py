"""A MIME message built from a structured sending request (the HTTP API's :class:`Draft`).

``compose(draft, hostname=..., queue_id=...)`` returns the whole message as bytes: the top-level
header fields in a fixed order (From, To, Cc, Reply-To, Subject, Date, Message-ID, MIME-Version,
the server's own fields, the caller's fields, then the Content-* fields of the top part), and a
body of text/plain, text/html, multipart/alternative (RFC 2046 §5.1.4), multipart/related
(RFC 2387) and multipart/mixed (RFC 2046 §5.1.3) as the draft needs.

Invariants of the output:
- every line ends in CRLF, there is no bare CR or LF, no line is longer than 998 octets
  (RFC 5322 §2.1.1), and the message ends with CRLF;
- bodies are 7bit, quoted-printable or base64, never 8bit, so the message survives relays
  without 8BITMIME (RFC 6152);
- header values are ASCII, anything else in RFC 2047 encoded words, unless an address is
  non-ASCII (:func:`needs_smtputf8`): then plain values may be raw UTF-8 (RFC 6532 §3.2) and the
  message must travel with SMTPUTF8 (RFC 6531);
- every string that becomes a header is checked here for CR, LF and NUL before the ``email``
  package sees it (Python 3.11.7's predates the CVE-2024-6923 fix), and the top-level header
  lines are encoded and folded by this module, not by the library; the library writes only the
  Content-* fields and the body tree, whose boundaries its generator picks at random and checks
  against the parts' text;
- a text or html part decodes back to its input with line ends made CRLF and a last line end
  added if missing (RFC 5322 §2.3: a body is lines); attachments decode back byte for byte.
"""

from __future__ import annotations

import base64
import io
import math
import re
import time
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email import policy as email_policy
from email.errors import MessageDefect, NonASCIILocalPartDefect
from email.generator import BytesGenerator
from email.headerregistry import Group
from email.message import EmailMessage
from email.utils import format_datetime

from mailwright.core.address import Address, AddressError
from mailwright.core.errors import MailwrightError
from mailwright.message.fixup import new_message_id

# RFC 5322 §2.1.1: a line is at most 998 octets, excluding the CRLF.
MAX_LINE = 998
# RFC 2047 §2: a line holding an encoded word is at most 76 characters (under RFC 5322's 78).
FOLD_WIDTH = 76
# RFC 2047 §2: an encoded word is at most 75 characters.
MAX_ENCODED_WORD = 75
MAX_FIELD_NAME = 76
MAX_FILENAME = 255  # what common file systems keep
MAX_CONTENT_ID = 250
# A raw word must fit on a line of its own after the longest field name and ": ".
_MAX_RAW_PIECE = MAX_LINE - MAX_FIELD_NAME - 2

PROTECTED_HEADERS = frozenset(
    {
        "from",
        "to",
        "cc",
        "bcc",
        "reply-to",
        "subject",
        "date",
        "message-id",
        "mime-version",
        "content-type",
        "content-transfer-encoding",
        "content-disposition",
        "content-id",
        "return-path",
        "received",
        "dkim-signature",
        "sender",
        "authentication-results",
        "list-unsubscribe",
        "list-unsubscribe-post",
    }
)
# Resent-* (RFC 5322 §3.6.6) and ARC-* (RFC 8617) are trace fields only relays write; the
# X-Mailwright-* fields are the server's own, which a caller must not be able to forge.
PROTECTED_PREFIXES = ("resent-", "arc-", "x-mailwright-")

# RFC 5322 §3.6.8: field-name = 1*ftext, printable US-ASCII except ":".
_FIELD_NAME = re.compile(r"[\x21-\x39\x3b-\x7e]+")
_BREAKS = re.compile(r"[\r\n\x00]")
# RFC 2045 §5.1: token = 1*<any CHAR except SPACE, CTLs, or tspecials>.
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`{|}~0-9A-Za-z]+")
# Content-ID values (RFC 2392) as used in cid: URLs: atext, "." and "@".
_CONTENT_ID = re.compile(r"[A-Za-z0-9!#$%&'*+\-/=?^_`{|}~.@]+")
_ATOM = re.compile(r"[A-Za-z0-9!#$%&'*+\-/=?^_`{|}~]+")
_ATOM_UTF8 = re.compile(r"[A-Za-z0-9!#$%&'*+\-/=?^_`{|}~\u0080-\U0010ffff]+")
_DOT_ATOM_TEXT = r"[A-Za-z0-9!#$%&'*+\-/=?^_`{|}~]+(?:\.[A-Za-z0-9!#$%&'*+\-/=?^_`{|}~]+)*"
# RFC 5322 §3.6.4: msg-id = "<" id-left "@" id-right ">" (without the obsolete forms).
_MSG_ID = re.compile(rf"<{_DOT_ATOM_TEXT}@(?:{_DOT_ATOM_TEXT}|\[[\x21-\x5a\x5e-\x7e]*\])>")
_LINE_END = re.compile(r"\r\n|\r|\n")
# A word of a header value with the white space before it: a fold goes before such a piece.
_PIECE = re.compile(r"[ \t]*[^ \t]+")
# Characters that never stand unencoded in a header: controls and anything str.splitlines()
# treats as a line end, which the email package (and other software) would break a line at.
_NOT_RAW = frozenset({"Cc", "Cs", "Zl", "Zp"})
# RFC 2047 §5 (3): the characters a "Q" encoded word may carry literally in a phrase; the same
# set is safe in unstructured text.
_Q_LITERAL = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789!*+-/")
# RFC 2045 §6.7: quoted-printable carries printable ASCII except "=" literally (white space too,
# except at the end of a line); the rest as =XX.
_QP = tuple(
    chr(b) if (33 <= b <= 126 and b != 61) or b in (9, 32) else f"={b:02X}" for b in range(256)
)
_QP_WIDTH = 76  # RFC 2045 §6.7 (5): encoded lines are at most 76 characters

# Content-* fields and the body tree; the top-level fields are written by this module.
_POLICY = email_policy.SMTP
_PARSE = email_policy.default


class ComposeError(MailwrightError):
    """The draft cannot become a message; ``field`` names the part of the request at fault
    (``from``, ``to.0``, ``headers.X-Foo``, ``attachments.2.content_id``, ...)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


@dataclass(frozen=True, slots=True)
class Attachment:
    filename: str
    content: bytes
    content_type: str = "application/octet-stream"
    # Content-Disposition inline; with a content_id and an html body it goes into a
    # multipart/related beside the html (RFC 2387), referenced there as cid:<content_id>.
    inline: bool = False
    content_id: str | None = None  # without angle brackets


@dataclass(frozen=True, slots=True)
class Draft:
    sender: str  # "ann@example.test" or "Ann Example <ann@example.test>"
    to: tuple[str, ...] = ()
    cc: tuple[str, ...] = ()
    reply_to: tuple[str, ...] = ()
    subject: str = ""
    text: str | None = None
    html: str | None = None
    attachments: tuple[Attachment, ...] = ()
    # The caller's own fields, each checked by check_header.
    headers: tuple[tuple[str, str], ...] = ()
    # Fields the server adds (List-Unsubscribe, X-Mailwright-...): trusted names, but CR, LF
    # and NUL are refused all the same.
    system_headers: tuple[tuple[str, str], ...] = ()
    message_id: str = ""  # "<left@right>"; empty: a new one
    date: float | None = None  # Unix time; None: now


def check_header(name: str, value: str, field: str = "headers") -> None:
    """Refuse a custom header field the caller may not set: a name that is not an RFC 5322
    §3.6.8 field-name or is longer than 76 characters, a value with CR, LF or NUL (header
    injection) or longer than 998 octets, or a field the server writes itself."""
    _check_field(name, value, field, protect=True)


def parse_mailbox(text: str, field: str) -> tuple[str, str]:
    """``"Name <addr>"`` or ``"addr"`` as (display name, addr-spec); exactly one mailbox.

    The local part may be UTF-8 (RFC 6531) and so may the domain (kept as given). The library
    parses; the result is checked here: no defects but a non-ASCII local part, no group, an
    addr-spec that is a valid RFC 5321 mailbox, no CR, LF or NUL in the decoded display name.
    """
    _refuse_breaks(text, field)
    _utf8(text, field)
    if not text.strip():
        raise ComposeError(field, "an address is required")
    try:
        parsed = _PARSE.header_factory("to", text)
    except Exception as exc:  # boundary: 3.11's header parser raises IndexError, ValueError
        # and more on malformed input (IndexError for "a@"); any failure means "not a mailbox".
        raise ComposeError(field, "not a valid address") from exc
    groups: tuple[Group, ...] = parsed.groups
    defects: tuple[MessageDefect, ...] = parsed.defects
    if len(groups) != 1 or groups[0].display_name is not None or len(groups[0].addresses) != 1:
        raise ComposeError(field, "must be exactly one mailbox")
    mailbox = groups[0].addresses[0]
    if not mailbox.username:
        raise ComposeError(field, "the address has an empty local part")
    if not mailbox.domain:
        raise ComposeError(field, "the address has no domain")
    if any(not isinstance(defect, NonASCIILocalPartDefect) for defect in defects):
        raise ComposeError(field, "not a valid address")
    display, spec = mailbox.display_name, mailbox.addr_spec
    # Encoded words in the input are decoded by the parser: check what came out of them.
    _refuse_breaks(display, field)
    try:
        Address.parse(spec, utf8=True)
    except AddressError as exc:
        raise ComposeError(field, f"not a valid address: {exc}") from None
    return display, spec


def needs_smtputf8(draft: Draft) -> bool:
    """Whether the message has a non-ASCII address in a header field (local part or domain),
    so must be sent with SMTPUTF8 (RFC 6531 §3.4). Non-ASCII display names, subjects and
    custom values never need it: they are written as encoded words. Raises ComposeError for
    an invalid address, as compose does."""
    return any(not spec.isascii() for _, spec in _all_mailboxes(draft))


def compose(draft: Draft, *, hostname: str, queue_id: str) -> bytes:
    """The message for ``draft``, with CRLF line ends. ``hostname`` and ``queue_id`` make the
    Message-ID when the draft has none (RFC 6409 §8.3)."""
    sender = parse_mailbox(draft.sender, "from")
    to = _mailbox_list(draft.to, "to")
    cc = _mailbox_list(draft.cc, "cc")
    reply_to = _mailbox_list(draft.reply_to, "reply_to")
    utf8 = any(not spec.isascii() for _, spec in (sender, *to, *cc, *reply_to))
    _refuse_breaks(draft.subject, "subject")
    _utf8(draft.subject, "subject")
    message_id = draft.message_id or new_message_id(hostname, queue_id)
    if len(message_id) > MAX_LINE - len("Message-ID: ") or not _MSG_ID.fullmatch(message_id):
        raise ComposeError("message_id", "not a valid msg-id (RFC 5322 §3.6.4)")
    date = _date(draft.date)
    for name, value in draft.system_headers:
        _check_field(name, value, "system_headers", protect=False)
    for name, value in draft.headers:
        check_header(name, value)
    body = _body(draft)

    fields: list[tuple[str, str]] = [("From", _mailboxes("From", [sender], utf8))]
    if to:
        fields.append(("To", _mailboxes("To", to, utf8)))
    if cc:
        fields.append(("Cc", _mailboxes("Cc", cc, utf8)))
    if reply_to:
        fields.append(("Reply-To", _mailboxes("Reply-To", reply_to, utf8)))
    fields += [
        ("Subject", _unstructured("Subject", draft.subject, utf8)),
        ("Date", date),
        ("Message-ID", message_id),
        ("MIME-Version", "1.0"),
    ]
    fields += [(n, _unstructured(n, v, utf8)) for n, v in draft.system_headers]
    fields += [(n, _unstructured(n, v, utf8)) for n, v in draft.headers]
    head = "".join(f"{name}: {value}\r\n" if value else f"{name}:\r\n" for name, value in fields)

    out = io.BytesIO()
    out.write(head.encode("utf-8"))  # ASCII unless utf8: see _unstructured and _mailboxes
    # The generator writes the top part's Content-* fields, the blank line and the body.
    BytesGenerator(out, policy=_POLICY).flatten(body)
    return out.getvalue()


# --- checks -----------------------------------------------------------------------------------


def _refuse_breaks(text: str, field: str) -> None:
    if _BREAKS.search(text):
        raise ComposeError(field, "CR, LF and NUL are not allowed here")


def _utf8(text: str, field: str) -> bytes:
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate, as JSON's "\ud800" decodes to
        raise ComposeError(field, "not valid Unicode text") from None


def _check_field(name: str, value: str, field: str, *, protect: bool) -> None:
    valid_name = bool(_FIELD_NAME.fullmatch(name)) and len(name) <= MAX_FIELD_NAME
    # An invalid name goes into the error's field path escaped, never with a raw line break.
    path = f"{field}.{name if valid_name else name.encode('unicode_escape').decode('ascii')}"
    if not name:
        raise ComposeError(path, "a field name is required")
    if not valid_name:
        raise ComposeError(
            path, "not a valid field name (RFC 5322 §3.6.8: 1 to 76 printable ASCII, no colon)"
        )
    lower = name.lower()
    if protect and (lower in PROTECTED_HEADERS or lower.startswith(PROTECTED_PREFIXES)):
        raise ComposeError(path, "this field is set by the server")
    _refuse_breaks(value, path)
    if len(_utf8(value, path)) > MAX_LINE:
        raise ComposeError(path, "the value is longer than 998 octets")


def _mailbox_list(items: Iterable[str], field: str) -> list[tuple[str, str]]:
    return [parse_mailbox(text, f"{field}.{i}") for i, text in enumerate(items)]


def _all_mailboxes(draft: Draft) -> list[tuple[str, str]]:
    return [
        parse_mailbox(draft.sender, "from"),
        *_mailbox_list(draft.to, "to"),
        *_mailbox_list(draft.cc, "cc"),
        *_mailbox_list(draft.reply_to, "reply_to"),
    ]


def _date(when: float | None) -> str:
    try:
        moment = datetime.fromtimestamp(time.time() if when is None else when, UTC)
    except (OverflowError, OSError, ValueError):  # NaN, infinity, beyond year 9999
        raise ComposeError("date", "not a valid time") from None
    return format_datetime(moment)  # RFC 5322 §3.3 date-time, +0000


def _content_type(text: str, field: str) -> tuple[str, str]:
    maintype, slash, subtype = text.partition("/")
    if not (slash and _TOKEN.fullmatch(maintype) and _TOKEN.fullmatch(subtype)):
        raise ComposeError(field, "must be type/subtype (RFC 2045 §5.1), without parameters")
    maintype, subtype = maintype.lower(), subtype.lower()
    # RFC 2046 §5.1.1 and §5.2.1: a multipart has no body of its own to encode, and
    # message/rfc822 may not be base64 encoded.
    if maintype in ("multipart", "message"):
        raise ComposeError(field, f"{maintype}/* cannot be sent as an attachment")
    return maintype, subtype


def _check_filename(name: str, field: str) -> None:
    if not name:
        raise ComposeError(field, "a file name is required")
    if any(unicodedata.category(c) in _NOT_RAW for c in name):
        raise ComposeError(field, "control characters (CR, LF, NUL, ...) are not allowed")
    if "/" in name or "\\" in name or name in (".", ".."):
        raise ComposeError(field, "a file name, not a path")
    if name != name.strip():
        raise ComposeError(field, "must not begin or end with white space")
    if len(name) > MAX_FILENAME:
        raise ComposeError(field, f"longer than {MAX_FILENAME} characters")


def _check_content_id(cid: str, field: str) -> None:
    if len(cid) > MAX_CONTENT_ID or not _CONTENT_ID.fullmatch(cid):
        raise ComposeError(
            field, "must be like left@right: ASCII letters, digits and !#$%&'*+-/=?^_`{|}~.@"
        )


# --- header values ----------------------------------------------------------------------------


def _printable(value: str, utf8: bool) -> bool:
    """Whether ``value`` may stand unencoded: printable (UTF-8 only in an SMTPUTF8 message) and
    without "=?", which a reader would take for the start of an encoded word."""
    return (
        "=?" not in value
        and (utf8 or value.isascii())
        and all(c == "\t" or unicodedata.category(c) not in _NOT_RAW for c in value)
    )


def _short_pieces(pieces: Sequence[str]) -> bool:
    """Whether every piece fits on a line of its own."""
    return all(len(p.encode("utf-8")) <= _MAX_RAW_PIECE for p in pieces)


def _raw_ok(value: str, utf8: bool) -> bool:
    """Whether an unstructured ``value`` may be written as it is: printable, no white space at
    either end (parsers strip it), every word short enough for a line of its own."""
    return (
        value[0] not in " \t"
        and value[-1] not in " \t"
        and _printable(value, utf8)
        and _short_pieces(_PIECE.findall(value))
    )


def _encoded_words(text: str, first_room: int) -> list[str]:
    """``text`` as RFC 2047 encoded words in UTF-8: "Q" or "B", whichever is shorter; each
    word at most 75 characters (the first at most ``first_room`` if it can hold a character)
    and holding whole characters (RFC 2047 §5)."""
    chars = [c.encode("utf-8") for c in text]
    q_cost = [sum(1 if b in _Q_LITERAL or b == 0x20 else 3 for b in c) for c in chars]
    b_size = 4 * math.ceil(sum(map(len, chars)) / 3)
    use_q = sum(q_cost) <= b_size
    words: list[str] = []
    chunk = bytearray()
    cost = 0  # the chunk's encoded length ("Q": running sum; "B": from its byte count)
    room = first_room
    for raw, q in zip(chars, q_cost, strict=True):
        grown = cost + q if use_q else 4 * math.ceil((len(chunk) + len(raw)) / 3)
        if chunk and len("=?utf-8?q??=") + grown > room:
            words.append(_encoded_word(bytes(chunk), use_q))
            chunk.clear()
            room = MAX_ENCODED_WORD
            grown = q if use_q else 4 * math.ceil(len(raw) / 3)
        chunk += raw
        cost = grown
    words.append(_encoded_word(bytes(chunk), use_q))
    return words


def _encoded_word(data: bytes, q: bool) -> str:
    if not q:
        return f"=?utf-8?b?{base64.b64encode(data).decode('ascii')}?="
    text = "".join(chr(b) if b in _Q_LITERAL else "_" if b == 0x20 else f"={b:02X}" for b in data)
    return f"=?utf-8?q?{text}?="


def _fold(name: str, pieces: Sequence[str]) -> str:
    """Join ``pieces`` (every one after the first starting with white space) into lines of at
    most 76 octets where they fit, folding before a piece (RFC 5322 §3.2.2)."""
    lines: list[str] = []
    line = ""
    used = len(name) + 2
    for piece in pieces:
        size = len(piece.encode("utf-8"))
        if line and used + size > FOLD_WIDTH:
            lines.append(line)
            line, used = piece, size
        else:
            line += piece
            used += size
    lines.append(line)
    return "\r\n".join(lines)


def _unstructured(name: str, value: str, utf8: bool) -> str:
    """An unstructured value (RFC 5322 §3.2.5): as it is where that is safe, else encoded
    words (RFC 2047 §5 (1)), which also keep its exact white space."""
    if not value:
        return ""
    if _raw_ok(value, utf8):
        return _fold(name, _PIECE.findall(value))
    words = _encoded_words(value, FOLD_WIDTH - len(name) - 2)
    return _fold(name, [words[0], *(" " + w for w in words[1:])])


def _phrase(display: str, utf8: bool, first_room: int) -> list[str]:
    """A display name as pieces for _fold: atoms, a quoted string, or atoms and encoded words
    (RFC 5322 §3.2.5 phrase; RFC 2047 §5 (3))."""
    words = display.split(" ")
    atom = _ATOM_UTF8 if utf8 else _ATOM
    if _raw_ok(display, utf8) and all(atom.fullmatch(w) for w in words):
        return [words[0], *(" " + w for w in words[1:])]
    # RFC 5322 §3.2.4: a quoted string keeps its white space, and FWS may fold it.
    quoted = _PIECE.findall('"' + display.replace("\\", "\\\\").replace('"', '\\"') + '"')
    if _printable(display, utf8) and _short_pieces(quoted):
        return quoted
    if "\t" in display or not all(words):  # only encoded words keep odd white space exactly
        encoded = _encoded_words(display, first_room)
        return [encoded[0], *(" " + w for w in encoded[1:])]
    # Only the words that need it are encoded, a run of them together: white space between two
    # encoded words is no part of the text (RFC 2047 §6.2), and some decoders (Python's phrase
    # parser among them) keep it all the same, so there should be as few such joints as can be.
    pieces: list[str] = []
    run: list[str] = []
    for word in words:
        if atom.fullmatch(word) and "=?" not in word and len(word) <= FOLD_WIDTH:
            pieces += _encoded_run(run, first_room if not pieces else MAX_ENCODED_WORD)
            pieces.append(word)
        else:
            run.append(word)
    pieces += _encoded_run(run, first_room if not pieces else MAX_ENCODED_WORD)
    return [pieces[0], *(" " + p for p in pieces[1:])]


def _encoded_run(run: list[str], first_room: int) -> list[str]:
    """The words in ``run`` as encoded words (none for an empty run); empties ``run``."""
    if not run:
        return []
    words = _encoded_words(" ".join(run), first_room)
    run.clear()
    return words


def _mailboxes(name: str, boxes: Sequence[tuple[str, str]], utf8: bool) -> str:
    """A mailbox-list (RFC 5322 §3.4), folded between its words."""
    pieces: list[str] = []
    for i, (display, spec) in enumerate(boxes):
        lead = " " if pieces else ""
        if display:
            room = MAX_ENCODED_WORD if pieces else FOLD_WIDTH - len(name) - 2
            words = _phrase(display, utf8, room)
            pieces += [lead + words[0], *words[1:], f" <{spec}>"]
        else:
            pieces.append(lead + spec)
        if i < len(boxes) - 1:
            pieces[-1] += ","
    return _fold(name, pieces)


# --- body -------------------------------------------------------------------------------------


def _body(draft: Draft) -> EmailMessage:
    """The top part: its Content-* fields and the body tree."""
    cids: set[str] = set()
    types: list[tuple[str, str]] = []
    for i, att in enumerate(draft.attachments):
        types.append(_content_type(att.content_type, f"attachments.{i}.content_type"))
        _check_filename(att.filename, f"attachments.{i}.filename")
        if att.content_id is not None:
            _check_content_id(att.content_id, f"attachments.{i}.content_id")
            if att.content_id in cids:
                raise ComposeError(f"attachments.{i}.content_id", "used by another attachment")
            cids.add(att.content_id)
    if draft.text is None and draft.html is None and not draft.attachments:
        raise ComposeError("text", "a message needs text, html or an attachment")
    text = None if draft.text is None else _text_part("plain", draft.text, "text")
    html = None if draft.html is None else _text_part("html", draft.html, "html")

    # Inline parts with a Content-ID sit beside the html they illustrate (RFC 2387); without
    # html nothing refers to them, so they go with the other attachments.
    related: list[EmailMessage] = []
    mixed: list[EmailMessage] = []
    for att, (maintype, subtype) in zip(draft.attachments, types, strict=True):
        part = _attachment_part(att, maintype, subtype)
        (related if html is not None and att.inline and att.content_id else mixed).append(part)
    if html is not None and related:
        html = _multipart("related", [html, *related], '; type="text/html"')
    if text is not None and html is not None:
        # RFC 2046 §5.1.4: in increasing order of preference, the richest last.
        main: EmailMessage | None = _multipart("alternative", [text, html])
    else:
        main = text if text is not None else html
    if main is not None and not mixed:
        return main
    return _multipart("mixed", [main, *mixed] if main is not None else mixed)


def _new_part() -> EmailMessage:
    return EmailMessage(policy=_POLICY)


def _multipart(subtype: str, parts: Sequence[EmailMessage], params: str = "") -> EmailMessage:
    # No boundary parameter: the generator picks one that none of the parts contains.
    top = _new_part()
    top["Content-Type"] = f"multipart/{subtype}{params}"
    for part in parts:
        top.attach(part)
    return top


def _text_part(subtype: str, text: str, field: str) -> EmailMessage:
    data = _utf8(_LINE_END.sub("\r\n", text), field)
    if data and not data.endswith(b"\r\n"):
        data += b"\r\n"
    lines = data.split(b"\r\n")
    # RFC 2045 §2.7: 7bit data is ASCII without NUL in lines of at most 998 octets.
    if data.isascii() and b"\x00" not in data and all(len(x) <= MAX_LINE for x in lines):
        cte, payload = "7bit", data.decode("ascii")
    else:
        cte, payload = "quoted-printable", "\r\n".join(_qp_line(x) for x in lines)
    part = _new_part()
    part["Content-Type"] = f'text/{subtype}; charset="utf-8"'
    part["Content-Transfer-Encoding"] = cte
    part.set_payload(payload)
    return part


def _qp_line(line: bytes) -> str:
    """One line in quoted-printable (RFC 2045 §6.7), soft line breaks keeping it within 76
    characters; white space at its end encoded (rule 3)."""
    tokens = [_QP[b] for b in line]
    if line and line[-1] in (0x09, 0x20):
        tokens[-1] = f"={line[-1]:02X}"
    pieces: list[str] = []
    current: list[str] = []
    width = 0
    for token in tokens:
        if width + len(token) > _QP_WIDTH - 1:  # room for the "=" of a soft line break
            pieces.append("".join(current) + "=")
            current, width = [], 0
        current.append(token)
        width += len(token)
    pieces.append("".join(current))
    return "\r\n".join(pieces)


def _attachment_part(att: Attachment, maintype: str, subtype: str) -> EmailMessage:
    part = _new_part()
    # base64 in lines of 76 characters (the policy's 78 rounded down to whole quanta); the
    # library encodes a non-ASCII filename per RFC 2231.
    part.set_content(
        att.content,
        maintype,
        subtype,
        cte="base64",
        disposition="inline" if att.inline else "attachment",
        filename=att.filename,
        cid=None if att.content_id is None else f"<{att.content_id}>",
    )
    # EmailMessage.set_content adds MIME-Version, which belongs in the top-level header only
    # (RFC 2045 §4); the top-level one is written with the other top-level fields.
    del part["MIME-Version"]
    return part
