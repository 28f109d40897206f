"""IMAP sequence sets: message sequence numbers and UIDs (RFC 9051 §9 ``sequence-set``).

A set is a comma-separated list of numbers and ranges; ``*`` stands for the largest number
in use (the last message's sequence number, or its UID). RFC 9051 §9: "2:4" and "4:2"
are the same range, and a range that names ``*`` covers the last message even when its
other end is beyond it ("559:*" with 500 as the last UID covers 500). RFC 5182 adds
``$``: the result the last ``SEARCH RETURN (SAVE)`` saved, which only the session knows.

Invariants: numbers are 1..2**32-1 (0 is never a message, RFC 9051 §2.3.1.1); a parsed
set is never empty; ``to_str`` of a parsed set parses back to an equal set.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from mailwright.core.errors import LocalProtocolError

MAX_NUMBER = 2**32 - 1  # RFC 9051 §9: nz-number is a non-zero unsigned 32-bit integer
STAR = None  # how "*" is stored in a range's ends

End = int | None  # a number, or STAR


class SequenceSetError(ValueError):
    """The text is not a sequence set; the message says why (it goes into a BAD)."""


@dataclass(frozen=True, slots=True)
class SequenceSet:
    """A parsed sequence set: ``ranges`` as written (single numbers are ``(n, n)``),
    each with its lower end first and ``STAR`` (None) last; or ``saved`` for ``$``."""

    ranges: tuple[tuple[End, End], ...] = ()
    saved: bool = False

    def __post_init__(self) -> None:
        if self.saved == bool(self.ranges):
            raise LocalProtocolError("a sequence set has ranges, or is the saved result $")
        for lo, hi in self.ranges:
            for end in (lo, hi):
                if end is not None and not 1 <= end <= MAX_NUMBER:
                    raise LocalProtocolError(f"{end} is no message number")
            if lo is None and hi is not None:
                raise LocalProtocolError("a range is stored with STAR last")
            if lo is not None and hi is not None and lo > hi:
                raise LocalProtocolError("a range is stored lower end first")

    @classmethod
    def parse(cls, text: str, *, allow_saved: bool = True) -> SequenceSet:
        """Parse ``text`` (RFC 9051 §9 sequence-set; RFC 5182 ``$`` if ``allow_saved``)."""
        if text == "$":
            if not allow_saved:
                raise SequenceSetError("$ is not allowed here")
            return cls(saved=True)
        if not text:
            raise SequenceSetError("empty sequence set")
        ranges = []
        for element in text.split(","):
            first, colon, second = element.partition(":")
            lo = _end(first, text)
            hi = _end(second, text) if colon else lo
            if lo is None or (hi is not None and lo > hi):
                lo, hi = hi, lo
            ranges.append((lo, hi))
        return cls(tuple(ranges))

    @classmethod
    def of(cls, numbers: Iterable[int]) -> SequenceSet:
        """The set of ``numbers`` (at least one), as compact ranges."""
        ranges = tuple((lo, hi) for lo, hi in _runs(numbers))
        if not ranges:
            raise LocalProtocolError("a sequence set holds at least one number")
        return cls(ranges)

    @property
    def has_star(self) -> bool:
        return any(hi is None for _, hi in self.ranges)

    def resolve(self, largest: int) -> list[tuple[int, int]]:
        """The set as sorted, merged, inclusive ranges, ``*`` being ``largest``.

        ``largest`` is the number of messages (sequence numbers) or the highest UID in
        use; 0 means an empty mailbox, where ``*`` names nothing (RFC 9051 §6.4.8 treats
        "*" as the last message, and there is none). Numbers beyond ``largest`` are
        kept: whether they are an error (sequence numbers) or match nothing (UIDs) is
        the session's choice.
        """
        if self.saved:
            raise LocalProtocolError("the saved result $ is resolved by the session")
        spans = []
        for lo, hi in self.ranges:
            if hi is None or lo is None:
                if largest <= 0:
                    continue
                end = largest if lo is None else lo
                spans.append((min(end, largest), max(end, largest)))
            else:
                spans.append((lo, hi))
        spans.sort()
        merged: list[tuple[int, int]] = []
        for lo, hi in spans:
            if merged and lo <= merged[-1][1] + 1:
                merged[-1] = (merged[-1][0], max(merged[-1][1], hi))
            else:
                merged.append((lo, hi))
        return merged

    def contains(self, n: int, largest: int) -> bool:
        """Whether ``n`` is in the set, ``*`` being ``largest`` (see ``resolve``)."""
        return any(lo <= n <= hi for lo, hi in self.resolve(largest))

    def to_str(self) -> str:
        if self.saved:
            return "$"
        return ",".join(_element(lo, hi) for lo, hi in self.ranges)

    def __str__(self) -> str:
        return self.to_str()


def _end(text: str, whole: str) -> End:
    if text == "*":
        return STAR
    # Only ASCII digits: "²".isdigit() is True. RFC 9051 §9: nz-number has no leading 0.
    if not (text.isascii() and text.isdigit()) or text.startswith("0"):
        raise SequenceSetError(f"invalid sequence set {whole[:40]!r}")
    if len(text) > len(str(MAX_NUMBER)) or int(text) > MAX_NUMBER:
        raise SequenceSetError(f"number out of range in sequence set {whole[:40]!r}")
    return int(text)


def _element(lo: End, hi: End) -> str:
    first = "*" if lo is None else str(lo)
    if lo == hi:
        return first
    return f"{first}:{'*' if hi is None else hi}"


def _runs(numbers: Iterable[int]) -> list[tuple[int, int]]:
    runs: list[tuple[int, int]] = []
    for n in sorted(set(numbers)):
        if not 1 <= n <= MAX_NUMBER:
            raise LocalProtocolError(f"{n} is no message number")
        if runs and n == runs[-1][1] + 1:
            runs[-1] = (runs[-1][0], n)
        else:
            runs.append((n, n))
    return runs


def compress_uids(numbers: Iterable[int]) -> str:
    """Numbers as a compact sequence set, ascending: ``[1, 2, 3, 7]`` -> ``"1:3,7"``.

    "" for no numbers (the caller decides whether an empty set may be sent at all).
    """
    return ",".join(_element(lo, hi) for lo, hi in _runs(numbers))
