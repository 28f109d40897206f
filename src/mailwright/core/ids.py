"""Identifiers: queue ids that follow a message from arrival to delivery, connection ids."""

from __future__ import annotations

import os
import time

_ALPHABET = "0123456789BCDFGHJKLMNPQRSTVWXYZbcdfghjkmnpqrstvwxyz"


def _encode(n: int, width: int) -> str:
    out = []
    for _ in range(width):
        n, r = divmod(n, len(_ALPHABET))
        out.append(_ALPHABET[r])
    return "".join(reversed(out))


def new_queue_id() -> str:
    """A 14-character id, roughly time-ordered (Postfix's long queue ids do the same)."""
    micros = time.time_ns() // 1000
    return _encode(micros, 9) + _encode(int.from_bytes(os.urandom(4), "big"), 5)


def new_connection_id() -> str:
    return _encode(int.from_bytes(os.urandom(6), "big"), 8)
