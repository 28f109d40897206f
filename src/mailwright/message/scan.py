"""A streaming scanner that checks a message's structure as its bytes arrive.

It enforces the header-block size, the MIME nesting depth and (optionally) ASCII-only
headers without holding more than one bounded line in memory. Invariants: ``feed``
accepts any chunking of the same bytes and reaches the same verdict (so every rule is a
rule about whole lines, and lines are handled in order); after the first problem the
scanner only counts.
"""

from __future__ import annotations

import re

# The parameter name must start the parameter: "xboundary=" is not "boundary=".
_BOUNDARY = re.compile(
    rb'(?:^|[;\s])boundary\s*=\s*(?:"([^"\r\n]{1,200})"|([^\s;"]{1,200}))', re.IGNORECASE
)
# A header line longer than this is a header_size problem (RFC 5322 §2.1.1 allows 998).
_MAX_HEADER_LINE = 64 * 1024
# A body line longer than this is never a boundary delimiter (RFC 2046 §5.1.1: boundaries
# are at most 70 characters; this leaves room for transport padding), so its bytes need
# not be kept.
_MAX_BODY_LINE = 4096


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
        self._skip = False  # discarding the rest of an over-long body line
        self._in_header = True  # in some part's header block
        self._header_size = 0  # of the top-level header block
        self._top = True  # still in the top-level header
        self._content_type = b""  # unfolded Content-Type of the current header block
        self._in_ct = False
        # Open MIME levels: a multipart's boundary, or None for an attached message/rfc822.
        self._levels: list[bytes | None] = []
        self.problem: MessageProblem | None = None
        self.message_id = ""  # the top-level Message-ID field's value (for the event log)
        # Out of every header with no open multipart: nothing later can matter, so the
        # rest of the message is not looked at (the common plain-text case).
        self._done = False

    def feed(self, data: bytes) -> None:
        if self.problem is not None or self._done:
            return
        lines = (self._partial + data).split(b"\n")
        self._partial = lines.pop()
        for line in lines:
            if self._skip:
                self._skip = False  # the end of the over-long body line
                continue
            self._line(line + b"\n")
            if self.problem is not None or self._done:
                return
        self._bound_partial()

    def close(self) -> None:
        if self._partial and self.problem is None and not self._skip and not self._done:
            self._line(self._partial)
        self._partial = b""
        self._skip = False

    def _bound_partial(self) -> None:
        """Keep memory bounded by one line, reaching the verdict the whole line would."""
        if self._in_header:
            if len(self._partial) > _MAX_HEADER_LINE:
                self._line(self._partial)  # too long whatever follows: a problem now
                self._partial = b""
        elif self._skip or len(self._partial) > _MAX_BODY_LINE:
            self._skip = True
            self._partial = b""

    def _line(self, line: bytes) -> None:
        if self._in_header:
            if self._top:
                self._header_size += len(line)
                if self._header_size > self._max_header:
                    self.problem = MessageProblem("header_size", "header block too large")
                    return
            if len(line) > _MAX_HEADER_LINE:
                self.problem = MessageProblem("header_size", "header line too long")
                return
            if line in (b"\r\n", b"\n"):
                self._end_header()
                return
            if self._ascii and not line.isascii():
                self.problem = MessageProblem("eight_bit_header", "8-bit header without SMTPUTF8")
                return
            if line[:1] in (b" ", b"\t"):
                if self._in_ct:
                    # RFC 5322 §2.2.3: unfolding removes the CRLF only, not the WSP.
                    self._content_type += line.rstrip(b"\r\n")
            else:
                if self._top and line[:11].lower() == b"message-id:" and not self.message_id:
                    self.message_id = line[11:].strip().decode("utf-8", "replace")[:250]
                self._in_ct = line[:13].lower() == b"content-type:"
                if self._in_ct:
                    self._content_type = line[13:].lstrip(b" \t").rstrip(b"\r\n")
            return
        if len(line) > _MAX_BODY_LINE or not line.startswith(b"--"):
            return
        stripped = line.rstrip(b"\r\n").rstrip(b" \t")
        for depth in range(len(self._levels) - 1, -1, -1):
            b = self._levels[depth]
            if b is None:
                continue
            if stripped == b"--" + b + b"--":
                del self._levels[depth:]
                self._check_done()
                return
            if stripped == b"--" + b:
                del self._levels[depth + 1 :]
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
                self._push(m.group(1) or m.group(2))
        elif ct.startswith(b"message/rfc822"):
            # An attached message: its own header block follows, and it is a level.
            self._push(None)
            self._in_header = True
            self._content_type = b""
        self._in_ct = False
        self._check_done()

    def _check_done(self) -> None:
        if not self._in_header and all(level is None for level in self._levels):
            self._done = True
            self._partial = b""

    def _push(self, level: bytes | None) -> None:
        self._levels.append(level)
        if len(self._levels) > self._max_depth:
            self.problem = MessageProblem("mime_depth", "MIME nesting too deep")
