"""Modified UTF-7, the mailbox-name encoding of IMAP4rev1 (RFC 3501 §5.1.3).

Printable US-ASCII (0x20-0x7E) stands for itself, except "&", which is written "&-".
Any other run of characters is UTF-16BE, in base64 with "," instead of "/" and no "="
padding, between "&" and "-". IMAP4rev2 (RFC 9051 §5.1) and UTF8=ACCEPT (RFC 6855 §3)
send names as UTF-8 instead; which applies is the session's knowledge (ENABLE).

``decode`` is strict, so that one name has one spelling (RFC 3501 §5.1.3: a printable
character MUST NOT be encoded, and the base64 ends on a code unit with zero bits left).
"""

from __future__ import annotations

import base64

_B64_ALPHABET = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,")


class MUtf7Error(ValueError):
    """The text is not valid modified UTF-7."""


def _printable(ch: str) -> bool:
    return "\x20" <= ch <= "\x7e"


def encode(name: str) -> str:
    """``name`` in modified UTF-7."""
    out: list[str] = []
    run: list[str] = []

    def flush() -> None:
        if run:
            utf16 = "".join(run).encode("utf-16-be", "surrogatepass")
            b64 = base64.b64encode(utf16).decode("ascii").rstrip("=").replace("/", ",")
            out.append(f"&{b64}-")
            run.clear()

    for ch in name:
        if _printable(ch):
            flush()
            out.append("&-" if ch == "&" else ch)
        else:
            run.append(ch)
    flush()
    return "".join(out)


def decode(text: str) -> str:
    """The name that ``text`` (modified UTF-7) spells; ``MUtf7Error`` if it is invalid."""
    out: list[str] = []
    i = 0
    n = len(text)
    while i < n:
        ch = text[i]
        if not _printable(ch):
            raise MUtf7Error(f"character {ch!r} must be encoded")
        if ch != "&":
            out.append(ch)
            i += 1
            continue
        end = text.find("-", i + 1)
        if end < 0:
            raise MUtf7Error("unterminated '&' shift")
        if end == i + 1:
            out.append("&")
        else:
            out.append(_decode_run(text[i + 1 : end]))
            # Two encoded runs back to back should have been one run.
            if text.startswith("&", end + 1) and not text.startswith("&-", end + 1):
                raise MUtf7Error("adjacent encoded runs")
        i = end + 1
    return "".join(out)


def _decode_run(b64: str) -> str:
    raw = b64.encode("ascii", "replace")
    if not set(raw) <= _B64_ALPHABET:
        raise MUtf7Error(f"invalid character in encoded run {b64!r}")
    if len(raw) % 4 == 1:
        raise MUtf7Error("truncated encoded run")
    padded = raw.replace(b",", b"/") + b"=" * (-len(raw) % 4)
    # The checks above leave nothing b64decode could refuse.
    data = base64.b64decode(padded, validate=True)
    # Canonical: the bits after the last octet are zero (re-encoding gives the same text).
    if base64.b64encode(data).rstrip(b"=") != padded.rstrip(b"="):
        raise MUtf7Error("non-zero bits at the end of an encoded run")
    if len(data) % 2:
        raise MUtf7Error("encoded run ends inside a UTF-16 code unit")
    try:
        decoded = data.decode("utf-16-be")
    except UnicodeDecodeError as exc:
        raise MUtf7Error("unpaired surrogate in encoded run") from exc
    if any(_printable(c) for c in decoded):
        raise MUtf7Error("printable US-ASCII must not be encoded")
    return decoded
