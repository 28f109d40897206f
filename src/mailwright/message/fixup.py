"""Submission fix-ups (RFC 6409 §8): a Message-ID and a Date for a message that lacks them,
added as the message streams through.

The top-level header block is held back (at most ``max_hold`` octets: the header size
limit) until its end is seen; then the missing fields are added at its end and everything
is passed on. A header block longer than ``max_hold`` is passed on unchanged (the header
size check refuses such a message anyway). Memory is bounded by ``max_hold``.
"""

from __future__ import annotations

import re
import secrets
import time
from datetime import UTC, datetime
from email.utils import format_datetime

_FIELD_START = re.compile(rb"(?:^|\r\n)(message-id|date)[ \t]*:", re.IGNORECASE)


def new_message_id(hostname: str, queue_id: str) -> str:
    """A globally unique msg-id (RFC 5322 §3.6.4): queue id, randomness, our host name."""
    host = "".join(c for c in hostname if c.isalnum() or c in ".-") or "localhost"
    return f"<{queue_id}.{secrets.token_hex(6)}@{host}>"


class HeaderFixup:
    def __init__(
        self, *, hostname: str, queue_id: str, max_hold: int, now: float | None = None
    ) -> None:
        self._hostname = hostname
        self._queue_id = queue_id
        self._max_hold = max_hold
        self._now = now
        self._hold = bytearray()
        self._passing = False  # the header block has been released
        self.message_id = ""  # the Message-ID the message carries (ours if we added it)
        self.added: list[str] = []  # names of the fields we added

    def feed(self, data: bytes) -> bytes:
        """The bytes to store now (empty while the header block is held)."""
        if self._passing:
            return data
        self._hold += data
        end = self._header_end()
        if end < 0:
            if len(self._hold) > self._max_hold:
                return self._release(len(self._hold), fix=False)
            return b""
        return self._release(end, fix=True)

    def close(self) -> bytes:
        """At the end of the message: whatever is still held (a message that is all
        header), with its fix-ups."""
        if self._passing:
            return b""
        hold = bytes(self._hold)
        end = len(hold) if hold.endswith(b"\r\n") or not hold else -1
        if end < 0:
            self._hold += b"\r\n"  # a last field without its CRLF (BDAT allows it)
            end = len(self._hold)
        return self._release(end, fix=True)

    def _header_end(self) -> int:
        """Offset just past the last header field's CRLF (where the blank line starts)."""
        if self._hold.startswith(b"\r\n"):
            return 0
        i = self._hold.find(b"\r\n\r\n")
        return -1 if i < 0 else i + 2

    def _release(self, end: int, *, fix: bool) -> bytes:
        self._passing = True
        held = bytes(self._hold)
        self._hold = bytearray()
        header = held[:end]
        present = {m.group(1).lower() for m in _FIELD_START.finditer(header)}
        self.message_id = _message_id(header)
        extra = []
        if fix and b"message-id" not in present:
            self.message_id = new_message_id(self._hostname, self._queue_id)
            extra.append(f"Message-ID: {self.message_id}\r\n")
            self.added.append("Message-ID")
        if fix and b"date" not in present:
            when = datetime.fromtimestamp(self._now or time.time(), UTC)
            extra.append(f"Date: {format_datetime(when)}\r\n")
            self.added.append("Date")
        return header + "".join(extra).encode("ascii") + held[end:]


_MESSAGE_ID = re.compile(rb"(?:^|\r\n)message-id[ \t]*:[ \t]*(?:\r\n[ \t]+)?([^\r\n]{1,250})", re.I)


def _message_id(header: bytes) -> str:
    m = _MESSAGE_ID.search(header)
    return m.group(1).decode("utf-8", "replace").strip() if m else ""
