"""Signed tokens for the links the API puts in messages (one-click unsubscribe; later,
tracking): what a link names cannot be changed without the installation's secret, so a
link never unsubscribes another address or redirects anywhere it was not made for.

A token is ``base64url(payload) + "." + base64url(HMAC-SHA256(secret, payload))[:22]``
(128 bits of MAC: forging one takes 2^128 tries, and the token stays short in a URL).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac

_MAC_CHARS = 22


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(secret: bytes, payload: bytes) -> str:
    return _b64(hmac.new(secret, payload, hashlib.sha256).digest())[:_MAC_CHARS]


def make_token(secret: bytes, *parts: str) -> str:
    """A token naming ``parts`` (none may hold a newline)."""
    payload = "\n".join(parts).encode("utf-8")
    return f"{_b64(payload)}.{_mac(secret, payload)}"


def read_token(secret: bytes, token: str, count: int) -> list[str] | None:
    """The ``count`` parts a token names, or None when it is not one this secret made."""
    body, dot, mac = token.partition(".")
    if not dot or len(token) > 4096:
        return None
    try:
        payload = _unb64(body)
    except (binascii.Error, ValueError):
        return None
    if not hmac.compare_digest(mac, _mac(secret, payload)):
        return None
    try:
        parts = payload.decode("utf-8").split("\n")
    except UnicodeDecodeError:
        return None
    return parts if len(parts) == count else None
