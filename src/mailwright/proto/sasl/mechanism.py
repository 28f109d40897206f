"""Sans-IO server side of the SASL PLAIN and LOGIN mechanisms, protocol-neutral.

Use (a driver of POP3 AUTH, IMAP AUTHENTICATE or SMTP AUTH)::

    mech = server_mechanism(name)            # None: not offered -> refuse
    data = None if no initial response else decode_response(text, initial=True)
    result = mech.step(data)                 # Challenge / Credentials / Failure
    while Challenge: send encode_challenge(result.data) in the protocol's framing,
        read a line ("*" cancels: the protocol's business), decode_response(line),
        result = mech.step(data)
    Credentials: check them (policy.auth); Failure: refuse, log ``reason``.

Invariants:
- a mechanism is used for one exchange: ``step`` after the exchange ended (or ``None``
  where a response is due) is a ``LocalProtocolError``;
- the password never appears in a repr; ``Failure.reason`` is for the log only, the
  client gets one reply for every failure;
- identities never hold NUL, CR, LF or other control characters.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass, field
from typing import ClassVar

from mailwright.core.errors import LocalProtocolError


@dataclass(frozen=True, slots=True)
class Challenge:
    """Send this (base64-encoded by ``encode_challenge``) and wait for a response."""

    data: bytes


@dataclass(frozen=True, slots=True)
class Credentials:
    """The exchange is complete: check these. ``authzid`` is "" when none was given."""

    authzid: str
    username: str
    password: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class Failure:
    """The exchange failed; ``reason`` is for the log, never for the client.
    ``undecodable``: the client's line was not base64 at all (RFC 4954 §4 answers that
    501 5.5.2, and a decoded response that is refused 535 5.7.8)."""

    reason: str
    undecodable: bool = False


Step = Challenge | Credentials | Failure


def decode_response(text: str | bytes, *, initial: bool = False) -> bytes | Failure:
    """A client's base64 line, decoded strictly (RFC 4648 §4, canonical padding).

    ``initial``: an initial response, where "=" stands for an empty one (RFC 4954 §4,
    RFC 5034 §4, RFC 4959 §3); an empty line is then malformed. In a reply to a
    challenge an empty line is an empty response. Cancellation ("*") is the caller's.
    """
    raw = text.encode("ascii", "replace") if isinstance(text, str) else text
    if initial and raw == b"=":
        return b""
    if initial and not raw:
        return Failure("empty initial response (send '=' for an empty one)", undecodable=True)
    try:
        data = base64.b64decode(raw, validate=True)
    except binascii.Error:
        return Failure("response is not valid base64", undecodable=True)
    # b64decode takes "QR==" for "QQ==": only the one canonical spelling is accepted, so
    # that one response has one meaning.
    if base64.b64encode(data) != raw:
        return Failure("response is not canonical base64", undecodable=True)
    return data


def encode_challenge(data: bytes) -> str:
    """A server challenge as base64 text ("" for an empty challenge)."""
    return base64.b64encode(data).decode("ascii")


def _text(data: bytes, what: str) -> str | Failure:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return Failure(f"{what} is not UTF-8")
    # TODO(RFC 4616 §2, RFC 4013): SASLprep is not applied; strings compare as sent.
    if not text:
        return Failure(f"empty {what}")
    return text


def _identity(text: str | Failure, what: str) -> str | Failure:
    # Identities reach logs and lookups: no control characters (RFC 4616 §2 excludes NUL;
    # CR, LF and the rest would forge log lines).
    if isinstance(text, str) and any(ch < " " or ch == "\x7f" for ch in text):
        return Failure(f"control character in {what}")
    return text


class Plain:
    """PLAIN (RFC 4616 §2): one response, ``[authzid] NUL authcid NUL passwd`` in UTF-8."""

    name: ClassVar[str] = "PLAIN"

    def __init__(self) -> None:
        self._challenged = False
        self._finished = False

    def step(self, client_data: bytes | None) -> Step:
        if self._finished:
            raise LocalProtocolError("PLAIN exchange already finished")
        if client_data is None:
            if self._challenged:
                raise LocalProtocolError("PLAIN needs the client's response now")
            # RFC 4422 §5: without an initial response the server sends an empty
            # challenge, and the client answers with the message.
            self._challenged = True
            return Challenge(b"")
        self._finished = True
        return _parse_plain(client_data)


def _parse_plain(data: bytes) -> Credentials | Failure:
    parts = data.split(b"\0")
    if len(parts) != 3:
        return Failure(f"PLAIN message has {len(parts) - 1} NUL separators, not 2")
    zid = "authorization identity"
    authzid = _identity(_text(parts[0], zid), zid) if parts[0] else ""
    username = _identity(_text(parts[1], "username"), "username")
    password = _text(parts[2], "password")
    if isinstance(authzid, Failure):
        return authzid
    if isinstance(username, Failure):
        return username
    if isinstance(password, Failure):
        return password
    return Credentials(authzid, username, password)


class Login:
    """LOGIN (draft-murchison-sasl-login-00): challenges "Username:" then "Password:".

    An initial response, where clients send one, is the username (as Microsoft's
    [MS-XLOGIN] describes), and the exchange goes straight to "Password:".
    """

    name: ClassVar[str] = "LOGIN"

    _START, _USERNAME, _PASSWORD, _FINISHED = range(4)

    def __init__(self) -> None:
        self._stage = self._START
        self._username = ""

    def step(self, client_data: bytes | None) -> Step:
        if self._stage == self._FINISHED:
            raise LocalProtocolError("LOGIN exchange already finished")
        if client_data is None:
            if self._stage != self._START:
                raise LocalProtocolError("LOGIN needs the client's response now")
            self._stage = self._USERNAME
            return Challenge(b"Username:")
        if self._stage == self._PASSWORD:
            self._stage = self._FINISHED
            password = _text(client_data, "password")
            if isinstance(password, Failure):
                return password
            return Credentials("", self._username, password)
        username = _identity(_text(client_data, "username"), "username")
        if isinstance(username, Failure):
            self._stage = self._FINISHED
            return username
        self._username = username
        self._stage = self._PASSWORD
        return Challenge(b"Password:")


Mechanism = Plain | Login
MECHANISMS: dict[str, type[Plain] | type[Login]] = {"PLAIN": Plain, "LOGIN": Login}


def server_mechanism(name: str) -> Mechanism | None:
    """A fresh server mechanism for ``name`` (any case), or None if we have none."""
    factory = MECHANISMS.get(name.upper()) if name.isascii() else None
    return factory() if factory is not None else None
