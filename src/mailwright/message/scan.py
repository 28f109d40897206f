"""A streaming scanner that checks a message's structure as its bytes arrive.

It enforces the header-block size, the MIME nesting depth and (optionally) ASCII-only
headers without holding more than one line in memory. Invariants: ``feed`` accepts any
chunking of the same bytes and reaches the same verdict; after the first problem the
scanner only counts.
"""

from __future__ import annotations

import re

_BOUNDARY = re.compile(rb'boundary\s*=\s*(?:"([^"\r\n]{1,200})"|([^\s;"]{1,200}))', re.IGNORECASE)
_MAX_HEADER_LINE = 64 * 1024


class MessageProblem(Exception):
    """What is wrong with the message: ``kind`` is header_size, mime_depth or eight_bit_header."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(detail)
        self.kind = kind


class MessageScanner:
    def __init__(self, *, max_header_size: int, max_mime_depth: int, ascii_headers: bool) -> None:
        self._max_header = max_header_size
        self._max_depth = max_mime_depth
        self._ascii = ascii_headers
        self._partial = b""
        self._in_header = True  # in some part's header block
        self._header_size = 0  # of the top-level header block
        self._top = True  # still in the top-level header
        self._content_type = b""  # unfolded Content-Type of the current header block
        self._in_ct = False
        self._boundaries: list[bytes] = []
        self.problem: MessageProblem | None = None
        self.header_bytes = b""  # the top-level header block, kept up to the size limit

    def feed(self, data: bytes) -> None:
        if self.problem is not None:
            return
        data = self._partial + data
        lines = data.split(b"\n")
        self._partial = lines.pop()
        if len(self._partial) > _MAX_HEADER_LINE and self._in_header:
            self._line(self._partial)  # a header line this long is checked as it is
            self._partial = b""
        for line in lines:
            self._line(line + b"\n")
            if self.problem is not None:
                return

    def close(self) -> None:
        if self._partial and self.problem is None:
            self._line(self._partial)
        self._partial = b""

    def _line(self, line: bytes) -> None:
        if self._in_header:
            if self._top:
                self._header_size += len(line)
                if self._header_size > self._max_header:
                    self.problem = MessageProblem("header_size", "header block too large")
                    return
                self.header_bytes += line
            if line in (b"\r\n", b"\n"):
                self._end_header()
                return
            if self._ascii and not line.isascii():
                self.problem = MessageProblem("eight_bit_header", "8-bit header without SMTPUTF8")
                return
            if line[:1] in (b" ", b"\t"):
                if self._in_ct:
                    self._content_type += line.strip()
            else:
                self._in_ct = line[:13].lower() == b"content-type:"
                if self._in_ct:
                    self._content_type = line[13:].strip()
            return
        if not self._boundaries or not line.startswith(b"--"):
            return
        stripped = line.rstrip(b"\r\n").rstrip(b" \t")
        for depth in range(len(self._boundaries) - 1, -1, -1):
            b = self._boundaries[depth]
            if stripped == b"--" + b + b"--":
                del self._boundaries[depth:]
                return
            if stripped == b"--" + b:
                del self._boundaries[depth + 1 :]
                self._in_header = True
                self._content_type = b""
                self._in_ct = False
                return

    def _end_header(self) -> None:
        self._in_header = False
        self._top = False
        ct = self._content_type.lower()
        if ct.startswith(b"multipart/"):
            m = _BOUNDARY.search(self._content_type)
            if m:
                self._boundaries.append(m.group(1) or m.group(2))
                if len(self._boundaries) > self._max_depth:
                    self.problem = MessageProblem("mime_depth", "MIME nesting too deep")
        elif ct.startswith(b"message/rfc822"):
            # An attached message: its own header block follows (and counts as a level).
            self._in_header = True
            self._content_type = b""
        self._in_ct = False
