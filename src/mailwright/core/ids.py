"""Identifiers: queue ids that follow a message from arrival to delivery, connection ids."""

from __future__ import annotations

import os
import time

_ALPHABET = "0123456789BCDFGHJKLMNPQRSTVWXYZbcdfghjkmnpqrstvwxyz"
_BASE = len(_ALPHABET)
# Two digits at a time: an id is made for every connection and every message.
_PAIRS = tuple(a + b for a in _ALPHABET for b in _ALPHABET)
_PAIR_BASE = _BASE * _BASE


def _encode(n: int, width: int) -> str:
    """The lowest ``width`` base-51 digits of ``n``, most significant first."""
    out = []
    for _ in range(width // 2):
        n, r = divmod(n, _PAIR_BASE)
        out.append(_PAIRS[r])
    if width % 2:
        out.append(_ALPHABET[n % _BASE])
    out.reverse()
    return "".join(out)


def new_queue_id() -> str:
    """A 14-character id, roughly time-ordered (Postfix's long queue ids do the same)."""
    return _encode(time.time_ns() // 1000, 9) + _encode(int.from_bytes(os.urandom(4)), 5)


def new_connection_id() -> str:
    return _encode(int.from_bytes(os.urandom(6)), 8)
