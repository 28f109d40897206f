"""SMTP-style replies: a code, an optional enhanced status code and text lines."""

from __future__ import annotations

import functools
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Reply:
    """One reply. ``status`` is the RFC 3463 enhanced code ("2.1.0"); None where
    RFC 2034 §3 says not to use one (greeting, EHLO/HELO)."""

    code: int
    status: str | None
    text: str | tuple[str, ...]

    @property
    def lines(self) -> tuple[str, ...]:
        return (self.text,) if isinstance(self.text, str) else self.text

    @property
    def is_positive(self) -> bool:
        return 200 <= self.code < 400

    @property
    def is_error(self) -> bool:
        return self.code >= 400

    def with_text(self, text: str) -> Reply:
        return Reply(self.code, self.status, text)

    def to_bytes(self) -> bytes:
        return _render(self)

    def _render(self) -> bytes:
        lines = self.lines or ("",)
        out = []
        prefix = f"{self.status} " if self.status else ""
        last = len(lines) - 1
        for i, line in enumerate(lines):
            sep = " " if i == last else "-"
            out.append(f"{self.code}{sep}{prefix}{line}".rstrip(" ") + "\r\n")
        return "".join(out).encode("utf-8")

    def __str__(self) -> str:
        prefix = f"{self.status} " if self.status else ""
        return f"{self.code} {prefix}{' / '.join(self.lines)}"


@functools.lru_cache(maxsize=512)
def _render(reply: Reply) -> bytes:
    # A pure memo: most replies are the same few constants, rendered on every command.
    return reply._render()
