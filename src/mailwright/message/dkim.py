"""DKIM signatures (RFC 6376) with RSA-SHA256 and Ed25519-SHA256 (RFC 8463), and key records.

Signing is done here: the relaxed canonical body hashed as the message streams
(``BodyHash``), the header fields selected and canonicalized once for all keys, the
SHA-256 digest signed by ``cryptography`` (RSA, OpenSSL) or PyNaCl (Ed25519, libsodium).
dkimpy verifies (``verify``: tests and operators' checks), and the tests hold every
signature made here to dkimpy's verifier. dkimpy's own signer costs about half a
millisecond more per signature in Python (header parsing, canonicalizing the headers
again per key, regular expressions over the field) and its RSA is Python arithmetic.

Invariants:
- canonicalization is relaxed/relaxed (RFC 6376 §3.4.2, §3.4.4): signatures survive the
  re-folding and whitespace changes relays commonly make;
- the header fields signed are those of ``SIGNED_HEADERS`` that the message has, each as
  many times as it occurs, plus ``from`` once more: a signed "null" instance
  (RFC 6376 §5.4.2, §8.15), so no second From can be added without breaking the signature;
- one signature per key; with an RSA and an Ed25519 key the message is dual-signed
  (RFC 8463), so receivers that know only RSA still find a signature they can check;
- a key's ``domain`` goes into d= as A-labels; whether it aligns with the From domain
  (DMARC, RFC 7489 §3.1.1) is the caller's decision;
- the header section is read as dkimpy's verifier reads it (a field name is printable
  ASCII up to the first colon, an mbox "From " line is skipped), so both agree on what
  was signed.

Key forms (``DkimKey.private_key``): RSA is a 2048-bit PKCS#1 ``RSA PRIVATE KEY`` PEM
(the form dkimpy and OpenDKIM read); Ed25519 is the 32-byte seed in base64, the form
PyNaCl and common DKIM signers read.

Memory: ``sign_parts`` needs only the header section and the body hash; ``sign`` and
``verify`` take the whole message as bytes (dkimpy copies it a few times while
verifying). Their callers bound the size.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import re
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import dkim  # type: ignore[import-untyped]
import nacl.signing
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa, utils
from dkim.crypto import (  # type: ignore[import-untyped]
    UnparsableKeyError,
    parse_pem_private_key,
)

from mailwright.core.errors import MailwrightError

Algorithm = Literal["rsa-sha256", "ed25519-sha256"]
ALGORITHMS: tuple[Algorithm, ...] = ("rsa-sha256", "ed25519-sha256")

# RFC 8301 §3.2: signers MUST use RSA keys of at least 1024 bits and SHOULD use 2048.
RSA_BITS = 2048
RSA_EXPONENT = 65537

# What a reader sees and what changes its meaning; RFC 6376 §5.4.1 lists most of these.
# Trace and transport fields (Received, Return-Path) are left out: relays add them.
SIGNED_HEADERS: tuple[str, ...] = (
    "from",
    "to",
    "cc",
    "subject",
    "date",
    "message-id",
    "reply-to",
    "mime-version",
    "content-type",
    "content-transfer-encoding",
    "in-reply-to",
    "references",
    "list-unsubscribe",
    "list-unsubscribe-post",  # RFC 8058 §4: one-click unsubscribe MUST be signed
)
_RELAXED = b"relaxed/relaxed"
_FIELD_NAME = b"DKIM-Signature"
# RFC 6376 §3.1: a selector is one or more DNS labels.
_SELECTOR = re.compile(
    r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*",
    re.ASCII | re.IGNORECASE,
)
_HOSTNAME = re.compile(
    r"(?=.{1,253}\Z)[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)+",
    re.ASCII,
)


class DkimError(MailwrightError):
    """A key, a domain or a message that cannot be used for DKIM."""


@dataclass(frozen=True, slots=True)
class DkimKey:
    """One signing key: d= ``domain`` (ASCII), s= ``selector``, a= ``algorithm``."""

    domain: str
    selector: str
    algorithm: Algorithm
    private_key: bytes

    def __repr__(self) -> str:
        # Keep the private key out of logs and tracebacks.
        return f"DkimKey({self.domain!r}, {self.selector!r}, {self.algorithm!r})"


def ascii_domain(domain: str) -> str:
    """A host name as DKIM and DNS use it: lower case, A-labels (RFC 5890 §2.3.2.1).

    Raises ``DkimError`` for anything that is not a host name of two labels or more
    (an address literal, a bare label, a name with "/" or ".." in it).
    """
    name = domain.strip().rstrip(".").lower()
    if not name.isascii():
        try:
            name = name.encode("idna").decode("ascii")
        except UnicodeError:
            raise DkimError(f"bad domain {domain!r}") from None
    if _HOSTNAME.fullmatch(name) is None:
        raise DkimError(f"bad domain {domain!r}")
    return name


def generate_key(algorithm: Algorithm) -> bytes:
    """A new private key in the form ``DkimKey.private_key`` takes (see the module doc)."""
    if algorithm == "rsa-sha256":
        key = rsa.generate_private_key(public_exponent=RSA_EXPONENT, key_size=RSA_BITS)
        return key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,  # PKCS#1, RFC 8017 §A.1.2
            serialization.NoEncryption(),
        )
    if algorithm == "ed25519-sha256":
        seed = ed25519.Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.Raw,
            serialization.PrivateFormat.Raw,
            serialization.NoEncryption(),
        )
        return base64.b64encode(seed)
    raise DkimError(f"unknown DKIM algorithm {algorithm!r}")


def _ed25519_seed(private_key: bytes) -> bytes:
    try:
        seed = base64.b64decode(private_key.strip(), validate=True)
    except ValueError:
        raise DkimError("bad Ed25519 private key: not base64") from None
    if len(seed) != 32:
        raise DkimError("bad Ed25519 private key: not a 32-byte seed")
    return seed


def dns_record(private_key: bytes, algorithm: Algorithm) -> str:
    """The TXT record value publishing the key's public half.

    RFC 6376 §3.6.1: p= is the base64 DER SubjectPublicKeyInfo for k=rsa; RFC 8463 §4.2:
    the raw 32-byte public key for k=ed25519.
    """
    if algorithm == "rsa-sha256":
        try:
            key = serialization.load_pem_private_key(private_key, password=None)
        except (ValueError, TypeError):
            raise DkimError("bad RSA private key") from None
        if not isinstance(key, rsa.RSAPrivateKey):
            raise DkimError("bad RSA private key: not an RSA key")
        public = key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return f"v=DKIM1; k=rsa; p={base64.b64encode(public).decode('ascii')}"
    if algorithm == "ed25519-sha256":
        ed_key = ed25519.Ed25519PrivateKey.from_private_bytes(_ed25519_seed(private_key))
        public = ed_key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        return f"v=DKIM1; k=ed25519; p={base64.b64encode(public).decode('ascii')}"
    raise DkimError(f"unknown DKIM algorithm {algorithm!r}")


@dataclass(frozen=True, slots=True)
class _Signature:
    signature: bytes


class _RsaSigner:
    """RSASSA-PKCS1-v1_5 over a SHA-256 digest with ``cryptography`` (OpenSSL), in the
    shape of PyNaCl's Ed25519 key (``sign(digest).signature``), so both sign alike.
    dkimpy's own RSA is arithmetic in Python: about 25 ms a signature, against well
    under one here."""

    def __init__(self, key: rsa.RSAPrivateKey) -> None:
        self._key = key

    def sign(self, digest: bytes) -> _Signature:
        return _Signature(
            self._key.sign(digest, padding.PKCS1v15(), utils.Prehashed(hashes.SHA256()))
        )


@functools.lru_cache(maxsize=64)
def _signing_key(private_key: bytes, algorithm: str, selector: str) -> Any:
    """The key object that signs a digest (parsed once per key, not per message)."""
    if algorithm == "rsa-sha256":
        try:
            parse_pem_private_key(private_key)  # the form dkimpy would read, checked
            key = serialization.load_pem_private_key(private_key, password=None)
        except (UnparsableKeyError, ValueError, IndexError, TypeError):
            raise DkimError(f"bad RSA private key for selector {selector}") from None
        if not isinstance(key, rsa.RSAPrivateKey):
            raise DkimError(f"bad RSA private key for selector {selector}")
        return _RsaSigner(key)
    if algorithm == "ed25519-sha256":
        return nacl.signing.SigningKey(_ed25519_seed(private_key))
    raise DkimError(f"unknown DKIM algorithm {algorithm!r}")


def _header_list(headers: Sequence[tuple[bytes, bytes]]) -> list[bytes]:
    # RFC 6376 §5.4.2: a field that occurs n times is listed n times (signed bottom up);
    # the extra "from" signs the absence of any further From.
    counts = Counter(name.lower().rstrip() for name, _ in headers)
    listed = [
        n for name in SIGNED_HEADERS for n in [name.encode("ascii")] * counts[name.encode("ascii")]
    ]
    return [*listed, b"from"]


# A run of WSP that is not already one SP: single spaces, most of them, need no match.
_WSP_RUN = re.compile(rb"\t[\t ]*| [\t ]+")


class BodyHash:
    """The SHA-256 of a body in relaxed canonical form (RFC 6376 §3.4.4), fed in pieces:
    whitespace runs become one space, whitespace at the end of a line goes, empty lines
    at the end go, and a non-empty body ends with one CRLF (as dkimpy computes it, so
    its verifier agrees). Memory: one line."""

    def __init__(self) -> None:
        self._sha = hashlib.sha256()
        self._partial = b""
        self._blank = 0  # empty lines seen but not yet known not to be the last ones

    def update(self, data: bytes) -> None:
        # The complete lines at once: two passes in C, not a regex call per line.
        data = self._partial + data
        end = data.rfind(b"\r\n") + 2
        if end < 2:
            self._partial = data
            return
        self._partial = data[end:]
        text = _WSP_RUN.sub(b" ", data[:end]).replace(b" \r\n", b"\r\n")
        # Empty lines at the end are held back: only a later non-empty line says whether
        # they are inside the body (hashed) or its end (dropped).
        i = len(text) - 2  # where the last line's CRLF starts
        blank = 0
        while i >= 2 and text[i - 2 : i] == b"\r\n":
            blank += 1
            i -= 2
        if i == 0:  # nothing but empty lines
            self._blank += blank + 1
            return
        if self._blank:
            self._sha.update(b"\r\n" * self._blank)
        self._sha.update(text[: i + 2])
        self._blank = blank

    def digest(self) -> bytes:
        """The base64 bh= value. Call once, after the last ``update``."""
        if self._partial:
            # A last line without CRLF keeps its trailing space (only WSP before a CRLF
            # is removed) and gets the CRLF a non-empty body ends with.
            text = _WSP_RUN.sub(b" ", self._partial)
            self._partial = b""
            if self._blank:
                self._sha.update(b"\r\n" * self._blank)
                self._blank = 0
            self._sha.update(text + b"\r\n")
        return base64.b64encode(self._sha.digest())


class MessageHasher:
    """A message fed in pieces, for signing once it is complete: keeps its header section
    (at most ``max_header`` octets; beyond that, nothing to sign) and hashes its body."""

    def __init__(self, max_header: int) -> None:
        self._max = max_header
        self._head = bytearray()
        self._in_header = True
        self._gave_up = False
        self.body = BodyHash()
        self.header: bytes | None = None  # the header fields, each ending in CRLF

    def update(self, data: bytes) -> None:
        if not self._in_header:
            if not self._gave_up:
                self.body.update(data)
            return
        self._head += data
        if self._head.startswith(b"\r\n"):
            end = 0
        else:
            i = self._head.find(b"\r\n\r\n")
            end = -1 if i < 0 else i + 2
        if end < 0 and len(self._head) <= self._max:
            return
        self._in_header = False
        if end < 0 or end > self._max:
            self._head = bytearray()  # too big to sign: hash nothing more
            self._gave_up = True
            return
        self.header = bytes(self._head[:end])
        self.body.update(bytes(self._head[end + 2 :]))
        self._head = bytearray()

    def close(self) -> None:
        """At the end of the message (one that is all header has no blank line)."""
        if self._in_header and self._head and len(self._head) <= self._max:
            head = bytes(self._head)
            self.header = head if head.endswith(b"\r\n") else head + b"\r\n"
        self._in_header = False
        self._head = bytearray()


def sign(message: bytes, keys: Sequence[DkimKey], *, timestamp: int | None = None) -> bytes:
    """The DKIM-Signature header fields to prepend to ``message``, one per key.

    Each field is folded and ends with CRLF; no keys gives ``b""``. ``timestamp`` is the
    t= value (RFC 6376 §3.5), the current time when not given.
    Raises ``DkimError`` for a bad key, a malformed header section or a missing From.
    """
    if not keys:
        return b""
    hasher = MessageHasher(len(message))
    hasher.update(message)
    hasher.close()
    if hasher.header is None:
        raise DkimError("cannot sign: no header section")
    return sign_parts(hasher.header, hasher.body.digest(), keys, timestamp=timestamp)


def sign_parts(
    header: bytes, body_hash: bytes, keys: Sequence[DkimKey], *, timestamp: int | None = None
) -> bytes:
    """``sign`` for a message whose body was hashed as it streamed (``MessageHasher``):
    ``header`` is its header section, ``body_hash`` the bh= value."""
    if not keys:
        return b""
    fields = _parse_header(header)
    # RFC 6376 §5.4: the From field MUST be signed; a message without one is not signable.
    if not any(name.lower() == b"from" for name, _ in fields):
        raise DkimError("cannot sign: the message has no From header field")
    include = _header_list(fields)
    # Every key signs the same fields, so they are selected and canonicalized once.
    signed = b"".join(_selected(fields, include))
    when = str(int(time.time()) if timestamp is None else timestamp).encode("ascii")
    out: list[bytes] = []
    for key in keys:
        try:
            domain = ascii_domain(key.domain).encode("ascii")
        except DkimError:
            raise DkimError(f"cannot sign for domain {key.domain!r}") from None
        if _SELECTOR.fullmatch(key.selector) is None:
            raise DkimError(f"bad DKIM selector {key.selector!r}")
        pk = _signing_key(key.private_key, key.algorithm, key.selector)
        # i= is left out: its default is "@" + d= (RFC 6376 §3.5). b= comes last, empty
        # while hashing (§3.7); both algorithms hash with SHA-256 (RFC 8463 §3).
        words = [
            b"v=1;",
            b"a=" + key.algorithm.encode("ascii") + b";",
            b"c=" + _RELAXED + b";",
            b"d=" + domain + b";",
            b"s=" + key.selector.lower().encode("ascii") + b";",
            b"t=" + when + b";",
            *_h_tag(include),
            b"bh=" + body_hash + b";",
            b"b=",
        ]
        # The field as hashed: relaxed canonical form (§3.4.2), so the folding below,
        # whatever it is, canonicalizes to exactly this; no CRLF at its end (§3.7).
        digest = hashlib.sha256(signed + _FIELD_NAME.lower() + b":" + b" ".join(words)).digest()
        value = base64.b64encode(pk.sign(digest).signature)
        out.append(_fold(words, value))
    return b"".join(out)


# dkimpy's reading of a header section (``rfc822_parse``), so that what it verifies is
# what was signed: a field name is printable ASCII up to the first colon; an mbox
# "From " line is skipped.
_LINE_END = re.compile(rb"\r?\n")
_FIELD_START = re.compile(rb"[\x21-\x7e]+?:")
_MAX_LINE = 76  # a folded line, CRLF not counted (RFC 5322 §2.1.1 says at most 78)


def _parse_header(header: bytes) -> list[tuple[bytes, bytes]]:
    """The header fields as (name, unfolded value); raises DkimError for a line that is
    neither a field nor a continuation of one."""
    fields: list[list[bytes]] = []
    for line in _LINE_END.split(header):
        if not line:
            break
        if line[0] in (0x09, 0x20):
            if not fields:
                raise DkimError("cannot sign: the header section starts with a folded line")
            fields[-1][1] += line  # unfolding removes the CRLF only (RFC 5322 §2.2.3)
            continue
        m = _FIELD_START.match(line)
        if m is not None:
            fields.append([line[: m.end() - 1], line[m.end() :]])
        elif not line.startswith(b"From "):
            raise DkimError(f"cannot sign: not a header field: {line[:40]!r}")
    return [(name, value) for name, value in fields]


def _selected(fields: list[tuple[bytes, bytes]], include: list[bytes]) -> list[bytes]:
    """The fields that ``include`` names in relaxed canonical form (RFC 6376 §3.4.2),
    in its order; a name listed n times takes its n last instances, bottom up
    (§5.4.2), and a name listed more often than it occurs takes nothing more."""
    out: list[bytes] = []
    below: dict[bytes, int] = {}
    for name in include:
        i = below.get(name, len(fields))
        while i > 0:
            i -= 1
            if fields[i][0].lower() == name:
                value = _WSP_RUN.sub(b" ", fields[i][1]).strip()
                out.append(name + b":" + value + b"\r\n")
                break
        below[name] = i
    return out


def _h_tag(include: list[bytes]) -> list[bytes]:
    """The h= tag as words that may be folded apart: "h=from", ":", "to", …, "from;"."""
    words = [b"h=" + include[0]]
    for name in include[1:]:
        words += [b":", name]
    words[-1] += b";"
    return words


def _fold(words: list[bytes], signature: bytes) -> bytes:
    """The DKIM-Signature field: ``words`` joined by spaces, folded before a word that
    would pass ``_MAX_LINE``, then the b= value broken over lines of its own. Folding
    whitespace inside b= is allowed (RFC 6376 §3.5) and removed with it when verifying."""
    lines: list[bytes] = []
    line = _FIELD_NAME + b":"
    for word in words[:-1]:
        if len(line) + 1 + len(word) > _MAX_LINE:
            lines.append(line)
            line = b""
        line += b" " + word
    lines.append(line)
    width = _MAX_LINE - 1
    first = width - len(words[-1])
    lines.append(b" " + words[-1] + signature[:first])
    lines += [b" " + signature[i : i + width] for i in range(first, len(signature), width)]
    return b"\r\n".join(lines) + b"\r\n"


def verify(message: bytes, txt_lookup: Callable[[str], str | None]) -> bool:
    """True when the message has DKIM signatures and every one of them verifies.

    ``txt_lookup`` gets a key's DNS name (``selector._domainkey.domain``, no final dot)
    and returns its TXT value, the strings concatenated (RFC 6376 §3.6.2.2), or None.
    For tests and operators' checks; inbound verification policy is not this function.
    """

    def dnsfunc(name: bytes, timeout: float = 5) -> bytes | None:
        try:
            text = txt_lookup(name.decode("ascii").rstrip(".").lower())
        except UnicodeDecodeError:
            return None
        return None if text is None else text.encode("ascii", "replace")

    try:
        verifier = dkim.DKIM(message)
        count = sum(1 for name, _ in verifier.headers if name.lower() == b"dkim-signature")
        if count == 0:
            return False
        return all(verifier.verify(idx=i, dnsfunc=dnsfunc) for i in range(count))
    except (dkim.DKIMException, ValueError):
        # A malformed signature or key record (bad base64 included) is a failed check.
        return False
