"""Delivery status notifications (RFC 3464) with the RFC 3461 DSN parameters, and xtext.

A DSN is a ``multipart/report; report-type=delivery-status`` message with three parts: a
human-readable explanation, the machine-readable ``message/delivery-status`` fields, and
the returned content — the original message (``message/rfc822``) or only its header
(``text/rfc822-headers``) as RET=FULL|HDRS asked (RFC 3461 §4.3). For a message that came
with SMTPUTF8 the RFC 6533 types are used instead (``message/global``,
``message/global-delivery-status``, ``message/global-headers``).

Invariants:
- every value that may have come from the network (a remote reply, an address, a host
  name, an ENVID) passes ``_field`` before it becomes header text: CR, LF, NUL and every
  other control character are gone, so no value can end a field, start a new one or
  break the MIME structure (this Python's ``email`` package predates the CVE-2024-6923
  fix, so none of this is left to it);
- the DSN is 7-bit unless ``smtputf8`` (then UTF-8 header text, RFC 6532) or
  ``eight_bit_ok`` (then an 8-bit returned body); an 8-bit original that cannot travel
  in the DSN is returned as its header only, and the text part says so;
- the original is read in chunks from a file (or taken as bytes): never held whole.
- The DSN's own envelope sender must be the null path (RFC 3461 §6.2, RFC 5321 §4.5.5),
  so that a DSN is never answered by another: ``ENVELOPE_SENDER``.
"""

from __future__ import annotations

import binascii
import io
import re
import secrets
import textwrap
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import BinaryIO, Literal

Action = Literal["failed", "delayed", "delivered", "relayed", "expanded"]
Ret = Literal["FULL", "HDRS"]

ENVELOPE_SENDER = ""  # the null reverse-path <> for every DSN
ACTIONS: tuple[Action, ...] = ("failed", "delayed", "delivered", "relayed", "expanded")
_STATUS = re.compile(r"[245]\.\d{1,3}\.\d{1,3}")
_CHUNK = 64 * 1024
_MAX_HEADER_SCAN = 1024 * 1024  # a header section longer than this is cut when returned
_MAX_DIAGNOSTIC = 2000  # characters of a remote reply kept in a DSN field
_MAX_WORD = 200  # a "word" longer than this cannot be folded; it is cut
_FOLD = 76


@dataclass(frozen=True, slots=True)
class RecipientStatus:
    """The per-recipient fields (RFC 3464 §2.3)."""

    final_recipient: str  # the address we tried (RCPT TO)
    action: Action
    status: str  # RFC 3463 "5.1.1"
    original_recipient: str | None = None  # the ORCPT, xtext-decoded: "rfc822;a@b"
    remote_mta: str | None = None  # the host that answered, by name
    diagnostic: str | None = None  # what it said: "550 5.1.1 No such user"
    diagnostic_type: str = "smtp"  # "smtp" for a remote reply; "x-local" for our own
    last_attempt: datetime | None = None
    will_retry_until: datetime | None = None  # for "delayed"

    def __post_init__(self) -> None:
        if self.action not in ACTIONS:
            raise ValueError(f"unknown DSN action {self.action!r}")
        if not _STATUS.fullmatch(self.status):
            raise ValueError(f"not an RFC 3463 status code: {self.status!r}")


@dataclass(frozen=True, slots=True)
class DeliveryReport:
    """One DSN: to whom, about which message, for which recipients."""

    reporting_mta: str  # this server's host name
    to: str  # the original envelope sender; the DSN goes there
    recipients: Sequence[RecipientStatus]
    envid: str | None = None  # RFC 3461 ENVID, xtext-decoded
    arrival_date: datetime | None = None
    # RFC 3461 §4.3; None (no RET given): the full message for a failure, else the header.
    ret: Ret | None = None
    smtputf8: bool = False  # the original came with SMTPUTF8: RFC 6533 types, UTF-8 text
    eight_bit_ok: bool = False  # the DSN may carry an 8-bit body (its path has 8BITMIME)
    max_full_size: int | None = 10 * 1024 * 1024  # above this, the header only

    def __post_init__(self) -> None:
        if not self.recipients:
            raise ValueError("a DSN reports on at least one recipient")
        if not self.to:
            raise ValueError("no DSN to the null sender (RFC 3461 §6.2)")


def notify_wants(sender: str, notify: Sequence[str], kind: str) -> bool:
    """RFC 3461 §4.1: does a sender want a DSN of ``kind`` (FAILURE, DELAY, SUCCESS) for a
    recipient with NOTIFY ``notify`` (empty: not given)? Without NOTIFY: failures and
    delays (our choice, which §4.1 allows), never success. Never to the null sender
    (RFC 5321 §4.5.5: a DSN is not answered by another)."""
    if not sender:
        return False
    if not notify:
        return kind in ("FAILURE", "DELAY")
    return kind in notify


def build_dsn(
    report: DeliveryReport,
    original: BinaryIO | bytes | None,
    *,
    date: datetime | None = None,
    message_id: str | None = None,
    boundary: str | None = None,
) -> bytes:
    """The DSN as bytes (CRLF lines). See ``write_dsn``."""
    out = io.BytesIO()
    write_dsn(out, report, original, date=date, message_id=message_id, boundary=boundary)
    return out.getvalue()


def write_dsn(
    out: BinaryIO,
    report: DeliveryReport,
    original: BinaryIO | bytes | None,
    *,
    date: datetime | None = None,
    message_id: str | None = None,
    boundary: str | None = None,
) -> None:
    """Write the DSN for ``report`` to ``out``. ``original`` is the message it is about
    (bytes, or a binary file that can seek: it is read more than once, first to look for
    8-bit data), returned whole or as its header as ``report.ret`` says."""
    utf8 = report.smtputf8
    source = _Source(original)
    scan = source.scan()
    if boundary is None:
        boundary = _new_boundary()
        while source.contains(boundary.encode("ascii")):
            boundary = _new_boundary()
    want_full = report.ret == "FULL" or (
        report.ret is None and any(r.action == "failed" for r in report.recipients)
    )
    returned, note = _returned_form(report, scan, want_full)

    host = _field(report.reporting_mta, False).replace(" ", "") or "localhost"
    when = date if date is not None else datetime.now(UTC)
    mid = _field(message_id, False).replace(" ", "") if message_id else ""
    mid = mid.strip("<>") or f"{secrets.token_hex(12)}@{host}"
    report_type = "global-delivery-status" if utf8 else "delivery-status"
    head = [
        f"From: Mail Delivery System <MAILER-DAEMON@{host}>",
        f"To: <{_field(report.to, utf8)}>",
        f"Subject: {_subject(report.recipients)}",
        f"Date: {_date(when)}",
        f"Message-ID: <{mid}>",
        "Auto-Submitted: auto-replied",  # RFC 3834 §5: nobody auto-replies to this
        "MIME-Version: 1.0",
        f'Content-Type: multipart/report; report-type={report_type}; boundary="{boundary}"',
    ]
    if utf8 or returned.eight_bit:
        head.append("Content-Transfer-Encoding: 8bit")
    out.write(_lines(head))
    out.write(b"\r\nThis is a MIME-encapsulated message: a delivery status notification.\r\n")

    # Part 1: for people.
    text = _human_text(report, host, note)
    fields = ["Content-Description: Notification"]
    if text.isascii():
        fields.append("Content-Type: text/plain; charset=us-ascii")
    else:  # only with smtputf8: a 7-bit DSN's text has been made ASCII
        fields += ["Content-Type: text/plain; charset=utf-8", "Content-Transfer-Encoding: 8bit"]
    out.write(_part_head(boundary, fields))
    out.write(text.encode("utf-8"))

    # Part 2: for programs (RFC 3464 §2.1).
    fields = ["Content-Description: Delivery report", f"Content-Type: message/{report_type}"]
    if utf8:
        fields.append("Content-Transfer-Encoding: 8bit")
    out.write(_part_head(boundary, fields))
    out.write(_status_fields(report, host).encode("utf-8"))

    # Part 3: what the sender sent, or its header (RFC 3461 §4.3).
    if returned.kind != "none":
        fields = [
            f"Content-Description: {returned.description}",
            f"Content-Type: {returned.content_type}",
            f"Content-Transfer-Encoding: {returned.encoding}",
        ]
        out.write(_part_head(boundary, fields))
        if returned.kind == "full":
            source.copy_all(out)
        elif returned.encoding == "quoted-printable":
            out.write(_qp_lines(source.header()))
        else:
            out.write(source.header())
    out.write(f"\r\n--{boundary}--\r\n".encode("ascii"))


def _lines(lines: list[str]) -> bytes:
    return "".join(f"{line}\r\n" for line in lines).encode("utf-8")


def _part_head(boundary: str, fields: list[str]) -> bytes:
    # The CRLF before "--" belongs to the delimiter (RFC 2046 §5.1.1): every part's
    # content ends with its own CRLF, and that one stays part of the content.
    return b"\r\n" + _lines([f"--{boundary}", *fields, ""])


# -- xtext (RFC 3461 §4) --------------------------------------------------------------------


def xtext_encode(text: str) -> str:
    """RFC 3461 §4 xtext: "+" and "=", controls, space and non-ASCII as +XX (UTF-8 octets)."""
    out = []
    for byte in text.encode("utf-8", "replace"):
        if 0x21 <= byte <= 0x7E and byte not in (0x2B, 0x3D):
            out.append(chr(byte))
        else:
            out.append(f"+{byte:02X}")
    return "".join(out)


def xtext_decode(text: str) -> str:
    """The inverse of ``xtext_encode``; ValueError for text that is not xtext."""
    raw = bytearray()
    i = 0
    while i < len(text):
        c = text[i]
        if c == "+":
            digits = text[i + 1 : i + 3]
            if len(digits) != 2 or any(d not in "0123456789ABCDEF" for d in digits):
                raise ValueError("xtext: '+' must be followed by two upper-case hex digits")
            raw.append(int(digits, 16))
            i += 3
            continue
        if not ("\x21" <= c <= "\x7e") or c == "=":
            raise ValueError(f"xtext: character {c!r} must be encoded")
        raw.append(ord(c))
        i += 1
    return raw.decode("utf-8", "replace")


# -- the fields ------------------------------------------------------------------------------

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff\u2028\u2029]+")


def _field(text: str | None, utf8: bool) -> str:
    """Header-safe text: no CR/LF/NUL or other controls, single spaces, and in a 7-bit DSN
    no non-ASCII (replaced by "?")."""
    if not text:
        return ""
    clean = _CONTROL.sub(" ", text)
    if not utf8 and not clean.isascii():
        clean = "".join(c if c.isascii() else "?" for c in clean)
    return " ".join(clean.split())


def _address(address: str, utf8: bool) -> str:
    """An address-type ";" address pair (RFC 3464 §2.3.2, RFC 6533 §3)."""
    clean = _field(address, True)
    if clean.isascii():
        return f"rfc822; {clean}"
    # RFC 6533 §3: utf-8-addr-unitext in a global DSN, utf-8-addr-xtext otherwise.
    out = []
    for c in clean:
        if c in "\\+=" or (not utf8 and not c.isascii()):
            out.append(f"\\x{{{ord(c):X}}}")
        else:
            out.append(c)
    return "utf-8; " + "".join(out)


def _original_recipient(orcpt: str, utf8: bool) -> str:
    kind, sep, addr = orcpt.partition(";")
    if not sep:
        return _address(orcpt, utf8)
    kind = _field(kind, False).replace(" ", "").lower() or "rfc822"
    if kind in ("rfc822", "utf-8"):
        return _address(addr, utf8)
    return f"{kind}; {_field(addr, utf8)}"


def _fold(name: str, value: str) -> str:
    """One field, folded at spaces (RFC 5322 §2.2.3) so no line is longer than ~78."""
    words = value.split(" ")
    words = [w if len(w) <= _MAX_WORD else w[: _MAX_WORD - 3] + "..." for w in words]
    lines = textwrap.wrap(
        f"{name}: {' '.join(words)}",
        width=_FOLD,
        subsequent_indent=" ",
        break_long_words=False,
        break_on_hyphens=False,
    )
    return "\r\n".join(lines) + "\r\n"


def _date(value: datetime) -> str:
    return format_datetime(_aware(value))


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _status_fields(report: DeliveryReport, host: str) -> str:
    utf8 = report.smtputf8
    out = [_fold("Reporting-MTA", f"dns; {host}")]
    if report.envid:
        out.append(_fold("Original-Envelope-Id", _field(report.envid, utf8).replace(" ", "")))
    if report.arrival_date is not None:
        out.append(_fold("Arrival-Date", _date(report.arrival_date)))
    for r in report.recipients:
        out.append("\r\n")  # a blank line starts each per-recipient block
        if r.original_recipient:
            out.append(_fold("Original-Recipient", _original_recipient(r.original_recipient, utf8)))
        out.append(_fold("Final-Recipient", _address(r.final_recipient, utf8)))
        out.append(_fold("Action", r.action))
        out.append(_fold("Status", r.status))
        remote = _field(r.remote_mta, utf8).replace(" ", "")
        if remote:
            out.append(_fold("Remote-MTA", f"dns; {remote}"))
        text = _field(r.diagnostic, utf8)[:_MAX_DIAGNOSTIC]
        if text:
            kind = _field(r.diagnostic_type, False).replace(" ", "") or "smtp"
            out.append(_fold("Diagnostic-Code", f"{kind}; {text}"))
        if r.last_attempt is not None:
            out.append(_fold("Last-Attempt-Date", _date(r.last_attempt)))
        if r.will_retry_until is not None:
            out.append(_fold("Will-Retry-Until", _date(r.will_retry_until)))
    return "".join(out)


# -- the text for people --------------------------------------------------------------------

_SUBJECTS = {
    "failed": "Undelivered Mail Returned to Sender",
    "delayed": "Delayed Mail (still being retried)",
}
_EXPLAIN: dict[str, str] = {
    "failed": "Your message could not be delivered to the recipients below. The mail "
    "system has given up on them; the reason for each follows.",
    "delayed": "Your message has not been delivered yet to the recipients below. The mail "
    "system keeps trying; there is no need to send it again.",
    "delivered": "Your message was delivered to the recipients below, as you asked to be told.",
    "relayed": "Your message was passed on to a mail system that sends no delivery "
    "notifications, so you will hear no more about the recipients below.",
    "expanded": "The recipients below are lists or aliases; your message was passed on to "
    "their members.",
}


def _subject(recipients: Sequence[RecipientStatus]) -> str:
    actions = {r.action for r in recipients}
    for action in ("failed", "delayed"):
        if action in actions:
            return _SUBJECTS[action]
    return "Successful Mail Delivery Report"


def _human_text(report: DeliveryReport, host: str, note: str) -> str:
    utf8 = report.smtputf8
    lines = [f"This is the mail system at {host}.", ""]
    for action in ACTIONS:
        group = [r for r in report.recipients if r.action == action]
        if not group:
            continue
        lines += [*textwrap.wrap(_EXPLAIN[action], 72), ""]
        for r in group:
            lines.append(f"<{_field(r.final_recipient, utf8)}>: {action} ({r.status})")
            remote = _field(r.remote_mta, utf8).replace(" ", "")
            if remote:
                lines.append(f"    remote host: {remote}")
            said = _field(r.diagnostic, utf8)[:_MAX_DIAGNOSTIC]
            if said:
                lines += textwrap.wrap(
                    said,
                    72,
                    initial_indent="    said: ",
                    subsequent_indent="    ",
                    break_on_hyphens=False,
                )
            if r.will_retry_until is not None:
                lines.append(f"    will retry until: {_date(r.will_retry_until)}")
            lines.append("")
    if note:
        lines += [*textwrap.wrap(note, 72), ""]
    # Every line is indented or our own words: none can start with "--" (a boundary).
    return "\r\n".join(lines)


# -- the returned content -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Returned:
    kind: Literal["full", "header", "none"]
    content_type: str = ""
    encoding: str = "7bit"
    description: str = ""
    eight_bit: bool = False


def _returned_form(report: DeliveryReport, scan: _Scan, want_full: bool) -> tuple[_Returned, str]:
    if scan.empty:
        return _Returned("none"), "The original message is not available."
    utf8 = report.smtputf8
    note = ""
    if want_full:
        too_big = report.max_full_size is not None and scan.size > report.max_full_size
        if too_big:
            note = "The message is too large to return whole; its header follows."
        elif not scan.eight_bit_header and not scan.eight_bit_body:
            return _Returned("full", "message/rfc822", "7bit", "Undelivered message"), ""
        elif utf8:
            # RFC 6533 §6.3: a message with UTF-8 header fields travels as message/global.
            kind = "message/global" if scan.eight_bit_header else "message/rfc822"
            return _Returned("full", kind, "8bit", "Undelivered message", True), ""
        elif report.eight_bit_ok and not scan.eight_bit_header:
            return _Returned("full", "message/rfc822", "8bit", "Undelivered message", True), ""
        else:
            note = (
                "The message contains 8-bit data that cannot be returned here; its header follows."
            )
    if not scan.eight_bit_header:
        return _Returned("header", "text/rfc822-headers", "7bit", "Message header"), note
    if utf8:
        return _Returned("header", "message/global-headers", "8bit", "Message header", True), note
    # 8-bit header bytes without SMTPUTF8: quoted-printable keeps this DSN 7-bit.
    return _Returned("header", "text/rfc822-headers", "quoted-printable", "Message header"), note


@dataclass(slots=True)
class _Scan:
    size: int = 0
    header_size: int = 0  # octets before the blank line (all of them if there is none)
    eight_bit_header: bool = False
    eight_bit_body: bool = False
    empty: bool = True


class _Source:
    """The original message: bytes, or a seekable binary file, read in chunks."""

    def __init__(self, original: BinaryIO | bytes | None) -> None:
        if isinstance(original, bytes):
            original = io.BytesIO(original)
        self._file = original
        self._header_size = 0

    def _chunks(self) -> Iterator[bytes]:
        if self._file is None:
            return
        self._file.seek(0)
        while chunk := self._file.read(_CHUNK):
            yield chunk

    def scan(self) -> _Scan:
        result = _Scan()
        f = self._file
        if f is None:
            return result
        f.seek(0)
        line_start = True  # the previous read ended a line
        while line := f.readline(_CHUNK):
            result.empty = False
            result.size += len(line)
            if line_start and line in (b"\r\n", b"\n"):
                break  # the blank line: the body follows
            result.header_size += len(line)
            result.eight_bit_header |= not line.isascii()
            line_start = line.endswith(b"\n")
        while chunk := f.read(_CHUNK):
            result.size += len(chunk)
            result.eight_bit_body |= not chunk.isascii()
        self._header_size = min(result.header_size, _MAX_HEADER_SCAN)
        return result

    def contains(self, needle: bytes) -> bool:
        carry = b""
        for chunk in self._chunks():
            data = carry + chunk
            if needle in data:
                return True
            carry = data[-len(needle) :]
        return False

    def copy_all(self, out: BinaryIO) -> None:
        normalizer = _CrlfNormalizer()
        for chunk in self._chunks():
            out.write(normalizer.feed(chunk))
        out.write(normalizer.finish())

    def header(self) -> bytes:
        """The header section, without the blank line, in CRLF lines."""
        if self._file is None:
            return b""
        self._file.seek(0)
        normalizer = _CrlfNormalizer()
        return normalizer.feed(self._file.read(self._header_size)) + normalizer.finish()


class _CrlfNormalizer:
    """Bare CR or LF → CRLF, and a CRLF at the end, under any chunking."""

    def __init__(self) -> None:
        self._pending_cr = False
        self._last = b"\n"

    def feed(self, chunk: bytes) -> bytes:
        if self._pending_cr:
            chunk = b"\r" + chunk
            self._pending_cr = False
        if chunk.endswith(b"\r"):
            chunk = chunk[:-1]
            self._pending_cr = True
        if chunk.count(b"\r") != chunk.count(b"\r\n") or chunk.count(b"\n") != chunk.count(b"\r\n"):
            chunk = _LINE_END.sub(b"\r\n", chunk)
        if chunk:
            self._last = chunk[-1:]
        return chunk

    def finish(self) -> bytes:
        if self._pending_cr:
            self._pending_cr = False
            self._last = b"\n"
            return b"\r\n"
        return b"" if self._last == b"\n" else b"\r\n"


_LINE_END = re.compile(rb"\r\n|\r|\n")


def _qp_lines(data: bytes) -> bytes:
    """Quoted-printable (RFC 2045 §6.7) of CRLF lines, keeping the line structure."""
    lines = data.split(b"\r\n")
    if lines and lines[-1] == b"":
        lines.pop()
    encoded = [binascii.b2a_qp(line, quotetabs=False, istext=False) for line in lines]
    # istext=False encodes CR and LF inside a line too; b2a_qp's soft breaks are "=\n".
    return b"".join(e.replace(b"=\n", b"=\r\n") + b"\r\n" for e in encoded)


def _new_boundary() -> str:
    # "=_" cannot occur in quoted-printable or base64 text; 128 random bits do the rest.
    return f"=_mailwright-dsn-{secrets.token_hex(16)}"
