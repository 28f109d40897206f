"""API keys: made here, shown once, stored as a SHA-256 of the secret.

A key is ``mw_`` and 43 characters of URL-safe base64 (256 random bits): a fast hash is
enough for such a secret (nothing to guess), and a lookup by hash needs no scan. The
first characters (``prefix``) are kept in clear so that listings can tell keys apart.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

KEY_PREFIX = "mw_"
SCOPES = ("send", "read", "manage")
_SHOWN = 10  # characters of a key kept in clear ("mw_" and 7 more)


@dataclass(frozen=True, slots=True)
class NewKey:
    secret: str  # the whole key: shown once, never stored
    prefix: str
    secret_hash: bytes


def new_key() -> NewKey:
    secret = KEY_PREFIX + secrets.token_urlsafe(32)
    return NewKey(secret, secret[:_SHOWN], hash_secret(secret))


def hash_secret(secret: str) -> bytes:
    return hashlib.sha256(secret.encode("utf-8", "surrogateescape")).digest()


def check_scopes(scopes: list[str] | tuple[str, ...]) -> frozenset[str]:
    """The scopes as a set; ValueError naming one that is not a scope."""
    for scope in scopes:
        if scope not in SCOPES:
            raise ValueError(f"unknown scope {scope!r}: use {', '.join(SCOPES)}")
    if not scopes:
        raise ValueError(f"a key needs at least one scope: {', '.join(SCOPES)}")
    return frozenset(scopes)
