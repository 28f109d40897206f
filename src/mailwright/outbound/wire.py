"""The client side of the SMTP wire without I/O: reading replies, EHLO keywords, commands,
and the DATA encoder (RFC 5321 §4.2, §4.1.1.4, §4.5.2).

Invariants:
- a reply is only ever built from complete lines; a malformed or oversized one is a
  ``ReplyError`` (the peer misbehaved), never a guess;
- a command never carries CR, LF, NUL or another control character: each argument is
  checked here, whatever the caller believed about it;
- ``DataEncoder`` output is the same however its input is chunked, has CRLF line ends
  only, a "." doubled at the start of every line (RFC 5321 §4.5.2), and ends with
  CRLF "." CRLF.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from mailwright.core.errors import LocalProtocolError
from mailwright.core.reply import Reply

MAX_REPLY_LINE = 8192  # RFC 5321 §4.5.3.1.5 says 512; real servers send longer
MAX_REPLY_LINES = 500
_STATUS = re.compile(r"([245])\.(\d{1,3})\.(\d{1,3})(?: +|$)")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_LINE_END = re.compile(rb"\r\n|\r|\n")


class ReplyError(Exception):
    """The server sent something that is not an SMTP reply."""


class ReplyParser:
    """Bytes in, complete replies out. ``feed`` any chunking; ``next_reply`` until None."""

    def __init__(self, max_line: int = MAX_REPLY_LINE, max_lines: int = MAX_REPLY_LINES) -> None:
        self._buffer = bytearray()
        self._lines: list[tuple[int, str]] = []  # (code, text) of the reply being read
        self._max_line = max_line
        self._max_lines = max_lines

    def feed(self, data: bytes) -> None:
        self._buffer += data

    @property
    def buffered(self) -> int:
        """Octets received and not yet part of a returned reply."""
        return len(self._buffer) + sum(len(text) + 6 for _, text in self._lines)

    def discard(self) -> int:
        """Drop everything buffered (RFC 3207 §4.2: nothing read before TLS is kept)."""
        n = self.buffered
        self._buffer.clear()
        self._lines.clear()
        return n

    def next_reply(self) -> Reply | None:
        while True:
            end = self._buffer.find(b"\n")
            if end < 0:
                if len(self._buffer) > self._max_line:
                    raise ReplyError(f"reply line longer than {self._max_line} octets")
                return None
            if end > self._max_line:
                raise ReplyError(f"reply line longer than {self._max_line} octets")
            raw = bytes(self._buffer[:end]).rstrip(b"\r")
            del self._buffer[: end + 1]
            code, last, text = _split_line(raw)
            if self._lines and code != self._lines[0][0]:
                raise ReplyError(f"reply code changed within a reply: {raw[:40]!r}")
            self._lines.append((code, text))
            if len(self._lines) > self._max_lines:
                raise ReplyError(f"reply of more than {self._max_lines} lines")
            if last:
                lines = [t for _, t in self._lines]
                self._lines.clear()
                return make_reply(code, lines)


def _split_line(raw: bytes) -> tuple[int, bool, str]:
    head = raw[:3]
    if len(head) != 3 or not head.isdigit() or head[:1] not in b"2345":
        raise ReplyError(f"not an SMTP reply line: {raw[:40]!r}")
    sep = raw[3:4]
    if sep not in (b"", b" ", b"-"):
        raise ReplyError(f"not an SMTP reply line: {raw[:40]!r}")
    text = raw[4:].decode("utf-8", "replace")
    return int(head), sep != b"-", text


def make_reply(code: int, lines: list[str]) -> Reply:
    """A ``Reply`` with the RFC 3463 enhanced status taken off the front of each line
    (RFC 2034 §4: when the first line has one, each line repeats it)."""
    match = _STATUS.match(lines[0]) if lines else None
    if match is None or match.group(1) != str(code)[0]:
        return Reply(code, None, tuple(lines))
    status = ".".join(match.group(1, 2, 3))
    stripped = []
    for line in lines:
        m = _STATUS.match(line)
        stripped.append(line[m.end() :] if m and ".".join(m.group(1, 2, 3)) == status else line)
    return Reply(code, status, tuple(stripped))


def describe(reply: Reply) -> str:
    """One line for logs and DSNs: "550 5.1.1 No such user (second line)"."""
    status = f"{reply.status} " if reply.status else ""
    text = " ".join(line.strip() for line in reply.lines if line.strip())
    return f"{reply.code} {status}{text}".strip()


def ehlo_keywords(reply: Reply) -> dict[str, str]:
    """EHLO keywords (upper case) and their parameters (RFC 5321 §4.1.1.1)."""
    keywords: dict[str, str] = {}
    for line in reply.lines[1:]:
        keyword, _, params = line.strip().partition(" ")
        if keyword:
            keywords.setdefault(keyword.upper(), params.strip())
    return keywords


def command(verb: str, *args: str, utf8: bool = False) -> bytes:
    """One command line. Raises LocalProtocolError for text that could end the line early or
    smuggle another command: that is a bug of ours, never sent."""
    for arg in args:
        if _CONTROL.search(arg):
            raise LocalProtocolError(f"control character in an SMTP command argument: {arg!r}")
        if not utf8 and not arg.isascii():
            raise LocalProtocolError(f"non-ASCII SMTP command argument without SMTPUTF8: {arg!r}")
    return (" ".join((verb, *args)) + "\r\n").encode("utf-8")


@dataclass(slots=True)
class DataEncoder:
    """Message bytes → DATA bytes: CRLF line ends (a bare CR or LF becomes CRLF, RFC 5321
    §4.1.1.4) and dot-stuffing (§4.5.2), under any chunking."""

    _pending_cr: bool = False
    _line_start: bool = True

    def feed(self, chunk: bytes) -> bytes:
        if self._pending_cr:
            chunk = b"\r" + chunk
            self._pending_cr = False
        if chunk.endswith(b"\r"):
            # It may be the first half of a CRLF split across chunks: decide next time.
            chunk = chunk[:-1]
            self._pending_cr = True
        if not chunk:
            return b""
        crlf = chunk.count(b"\r\n")
        if chunk.count(b"\r") != crlf or chunk.count(b"\n") != crlf:
            chunk = _LINE_END.sub(b"\r\n", chunk)
        if self._line_start and chunk.startswith(b"."):
            chunk = b"." + chunk
        if b"\n." in chunk:
            chunk = chunk.replace(b"\r\n.", b"\r\n..")
        self._line_start = chunk.endswith(b"\n")
        return chunk

    def finish(self) -> bytes:
        """The end of the data: a CRLF if the message did not end a line, then "." CRLF."""
        tail = b""
        if self._pending_cr:
            self._pending_cr = False
            tail = b"\r\n"
        elif not self._line_start:
            tail = b"\r\n"
        self._line_start = True
        return tail + b".\r\n"
