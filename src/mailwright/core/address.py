"""Mailbox addresses as RFC 5321 §4.1.2 defines them, with RFC 6531 UTF-8 where allowed.

Invariants:
- an ``Address`` always has a syntactically valid local part and domain;
- ``domain`` is stored lower-case (IDNA A-labels and U-labels are kept as given);
- ``key`` is the case-folded form used for every lookup (accounts, aliases).
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

# RFC 5321 §4.5.3.1: local part ≤ 64 octets, domain ≤ 255, path ≤ 256 including <>.
MAX_LOCAL = 64
MAX_DOMAIN = 255
MAX_PATH = 256

_ATEXT = r"A-Za-z0-9!#$%&'*+/=?^_`{|}~\-"
_ATEXT_UTF8 = _ATEXT + r"\u0080-\U0010ffff"
_DOT_STRING = re.compile(rf"[{_ATEXT}]+(?:\.[{_ATEXT}]+)*")
_DOT_STRING_UTF8 = re.compile(rf"[{_ATEXT_UTF8}]+(?:\.[{_ATEXT_UTF8}]+)*")
# qtextSMTP and quoted-pairSMTP (RFC 5321 §4.1.2).
_QUOTED = re.compile(r'"(?:[\x20\x21\x23-\x5b\x5d-\x7e]|\\[\x20-\x7e])*"')
_QUOTED_UTF8 = re.compile(r'"(?:[\x20\x21\x23-\x5b\x5d-\x7e\u0080-\U0010ffff]|\\[\x20-\x7e])*"')
_LABEL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?")
# The same rule for a whole ASCII domain in one match (the hot path of every RCPT).
_ASCII_DOMAIN = re.compile(
    r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*"
)
_LABEL_UTF8 = re.compile(
    r"[A-Za-z0-9\u0080-\U0010ffff](?:[A-Za-z0-9\u0080-\U0010ffff-]*[A-Za-z0-9\u0080-\U0010ffff])?"
)
_GENERAL_LITERAL = re.compile(r"[A-Za-z0-9-]*[A-Za-z0-9]:[\x21-\x5a\x5e-\x7e]+")


class AddressError(ValueError):
    """The text is not a valid mailbox or path."""


def _valid_domain(domain: str, utf8: bool) -> bool:
    if domain.startswith("["):
        if not domain.endswith("]"):
            return False
        inner = domain[1:-1]
        if inner.lower().startswith("ipv6:"):
            if "%" in inner:
                return False  # RFC 5321 §4.1.3 has no zone index (ipaddress accepts one)
            try:
                ipaddress.IPv6Address(inner[5:])
            except ValueError:
                return False
            return True
        try:
            ipaddress.IPv4Address(inner)
        except ValueError:
            return _GENERAL_LITERAL.fullmatch(inner) is not None and not inner[0].isdigit()
        return True
    if not domain or len(domain.encode("utf-8")) > MAX_DOMAIN:
        return False
    if domain.isascii():
        return _ASCII_DOMAIN.fullmatch(domain) is not None
    if not utf8:
        return False
    label = _LABEL_UTF8
    labels = domain.split(".")
    return all(label.fullmatch(part) and len(part.encode()) <= 63 for part in labels)


@dataclass(frozen=True, slots=True)
class Address:
    local: str
    domain: str

    @classmethod
    def parse(cls, text: str, *, utf8: bool = False) -> Address:
        """Parse ``local@domain`` (no angle brackets)."""
        at = text.rfind("@")
        if at <= 0:
            raise AddressError("address must be local-part@domain")
        local, domain = text[:at], text[at + 1 :]
        if not utf8 and not text.isascii():
            raise AddressError("non-ASCII address without SMTPUTF8")
        if len(local.encode("utf-8")) > MAX_LOCAL:
            raise AddressError("local part longer than 64 octets")
        dot = _DOT_STRING_UTF8 if utf8 else _DOT_STRING
        quoted = _QUOTED_UTF8 if utf8 else _QUOTED
        if not (dot.fullmatch(local) or quoted.fullmatch(local)):
            raise AddressError("invalid local part")
        if not _valid_domain(domain, utf8):
            raise AddressError("invalid domain")
        return cls(local, domain.lower())

    @property
    def key(self) -> str:
        """The case-folded form used for lookups."""
        return f"{self.local.lower()}@{self.domain}"

    @property
    def is_quoted(self) -> bool:
        return self.local.startswith('"')

    @property
    def is_bare_postmaster(self) -> bool:
        """``<Postmaster>`` without a domain (RFC 5321 §4.1.1.3): this server's postmaster."""
        return self.domain == ""

    def __str__(self) -> str:
        return f"{self.local}@{self.domain}" if self.domain else self.local


def parse_path(
    text: str, *, utf8: bool = False, allow_null: bool = False, allow_postmaster: bool = False
) -> Address | None:
    """Parse an RFC 5321 Reverse-path / Forward-path including the angle brackets.

    ``<>`` yields None when ``allow_null``. ``<Postmaster>`` (any case, no domain) yields
    ``Address("postmaster", "")`` when ``allow_postmaster`` (RFC 5321 §4.1.1.3, §4.5.1). A source route (``<@a,@b:user@c>``) is
    accepted and ignored, as RFC 5321 §4.1.1.3 and Appendix C require.
    """
    if len(text.encode("utf-8")) > MAX_PATH:
        raise AddressError("path longer than 256 octets")
    if not (text.startswith("<") and text.endswith(">")):
        raise AddressError("path must be enclosed in <>")
    inner = text[1:-1]
    if inner == "":
        if allow_null:
            return None
        raise AddressError("null path not allowed here")
    if allow_postmaster and inner.lower() == "postmaster":
        return Address("postmaster", "")
    if inner.startswith("@"):
        colon = inner.find(":")
        if colon < 0:
            raise AddressError("invalid source route")
        for hop in inner[:colon].split(","):
            if not hop.startswith("@") or not _valid_domain(hop[1:], utf8):
                raise AddressError("invalid source route")
        inner = inner[colon + 1 :]
    return Address.parse(inner, utf8=utf8)
