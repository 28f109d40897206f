"""POP3 responses: the ``Pop3Reply`` and ``Continuation`` types and the named replies.

Extended response codes ("-ERR [AUTH] ...") follow RFC 2449 §8 and RFC 3206; a server
that sends them advertises RESP-CODES and AUTH-RESP-CODE in CAPA (see ``capa``).
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass, replace

from mailwright.core.errors import LocalProtocolError

MULTILINE_END = b".\r\n"  # RFC 1939 §3: a line holding only "." ends a multi-line response


def _check_text(what: str, text: str) -> None:
    # A CR or LF here would end the response early and let the rest read as another one.
    if "\r" in text or "\n" in text:
        raise LocalProtocolError(f"CR or LF in a POP3 {what}: {text[:40]!r}")


@dataclass(frozen=True, slots=True)
class Pop3Reply:
    """One response: ``+OK``/``-ERR``, an optional extended code (without brackets),
    text, and for multi-line responses the body lines (not yet dot-stuffed)."""

    ok: bool
    text: str = ""
    lines: tuple[str, ...] | None = None
    code: str | None = None  # RFC 2449 §8: "IN-USE", "LOGIN-DELAY", "SYS/TEMP", "AUTH", ...

    def __post_init__(self) -> None:
        _check_text("response", self.text)
        if self.code is not None:
            _check_text("response code", self.code)
            if not self.code or "]" in self.code or " " in self.code:
                raise LocalProtocolError(f"malformed response code {self.code!r}")
        if self.lines is not None and not self.ok:
            # RFC 1939 §3: only a positive response is followed by more lines.
            raise LocalProtocolError("a -ERR response has no multi-line body")

    @property
    def is_error(self) -> bool:
        return not self.ok

    def with_text(self, text: str) -> Pop3Reply:
        return replace(self, text=text)

    def status_line(self) -> bytes:
        """The first line alone, CRLF included."""
        return _status_line(self)

    def to_bytes(self) -> bytes:
        """The whole response: status line, then the dot-stuffed body and "." if any."""
        if self.lines is None:
            return _status_line(self)
        return _status_line(self) + encode_lines(self.lines)

    def __str__(self) -> str:
        return _status_line(self)[:-2].decode("utf-8")


def _status_line(reply: Pop3Reply) -> bytes:
    return _render(reply.ok, reply.code, reply.text)


@functools.lru_cache(maxsize=512)
def _render(ok: bool, code: str | None, text: str) -> bytes:
    # A pure memo: most replies are the same few constants, sent on every command. Keyed
    # on the status line alone, so that a long listing body is neither hashed nor kept.
    parts = ["+OK" if ok else "-ERR"]
    if code is not None:
        parts.append(f"[{code}]")
    if text:
        parts.append(text)
    return (" ".join(parts) + "\r\n").encode("utf-8")


@dataclass(frozen=True, slots=True)
class Continuation:
    """A SASL server challenge during AUTH: "+" SP base64 CRLF (RFC 5034 §4)."""

    data: str = ""  # already base64-encoded (``sasl.mechanism.encode_challenge``)

    def __post_init__(self) -> None:
        _check_text("continuation", self.data)

    def to_bytes(self) -> bytes:
        return f"+ {self.data}\r\n".encode("ascii")


Response = Pop3Reply | Continuation


def stuff_line(line: bytes) -> bytes:
    """One body line, dot-stuffed (RFC 1939 §3), CRLF not included."""
    return b"." + line if line.startswith(b".") else line


def encode_lines(lines: Iterable[str | bytes]) -> bytes:
    """Text lines (no line ends) as a multi-line body: dot-stuffed, CRLF each, then "."."""
    out = bytearray()
    for line in lines:
        raw = line.encode("utf-8") if isinstance(line, str) else line
        if b"\r" in raw or b"\n" in raw:
            raise LocalProtocolError(f"CR or LF inside a response line: {raw[:40]!r}")
        out += stuff_line(raw)
        out += b"\r\n"
    out += MULTILINE_END
    return bytes(out)


def capa(
    *,
    user: bool,
    stls: bool,
    sasl: Iterable[str] = (),
    implementation: str | None = None,
) -> Pop3Reply:
    """The CAPA response (RFC 2449 §5-§6) for what this connection may use now.

    ``user``: USER/PASS is offered; ``stls``: TLS is available and not yet active
    (RFC 2595 §4); ``sasl``: the SASL mechanisms offered (RFC 5034 §3).
    """
    lines = ["TOP", "UIDL", "RESP-CODES", "AUTH-RESP-CODE", "PIPELINING"]
    if user:
        lines.append("USER")
    mechanisms = " ".join(sasl)
    if mechanisms:
        lines.append(f"SASL {mechanisms}")
    if stls:
        lines.append("STLS")
    if implementation:
        lines.append(f"IMPLEMENTATION {implementation}")
    return replace(CAPA_FOLLOWS, lines=tuple(lines))


# -- positive -----------------------------------------------------------------------------

GREETING = Pop3Reply(True, "POP3 server ready")  # drivers add the host name with with_text
OK = Pop3Reply(True)
USER_OK = Pop3Reply(True, "Send PASS")
LOGGED_IN = Pop3Reply(True, "Logged in")
CAPA_FOLLOWS = Pop3Reply(True, "Capability list follows")
SCAN_LISTING_FOLLOWS = Pop3Reply(True, "Scan listing follows")
UIDL_FOLLOWS = Pop3Reply(True, "Unique-id listing follows")
MESSAGE_FOLLOWS = Pop3Reply(True, "Message follows")
DELETED = Pop3Reply(True, "Message deleted")
RESET_OK = Pop3Reply(True, "Reset")
BEGIN_TLS = Pop3Reply(True, "Begin TLS negotiation")
BYE = Pop3Reply(True, "Bye")

# -- negative: sent by the machine itself ----------------------------------------------------

UNKNOWN_COMMAND = Pop3Reply(False, "Unknown command")
# APOP needs the plain-text password on the server; we store only argon2id hashes.
NOT_SUPPORTED = Pop3Reply(False, "Command not supported")
LINE_TOO_LONG = Pop3Reply(False, "Line too long")
BAD_LINE_ENDING = Pop3Reply(False, "Bad line ending: CR must be followed by LF")
NUL_IN_COMMAND = Pop3Reply(False, "NUL character in command")
NOT_UTF8 = Pop3Reply(False, "Command is not valid UTF-8")
BAD_MESSAGE_NUMBER = Pop3Reply(False, "Invalid message number: expected a decimal number")
BAD_LINE_COUNT = Pop3Reply(False, "Invalid line count: expected a decimal number")
BAD_MECHANISM = Pop3Reply(False, "Invalid SASL mechanism name")
NO_SUCH_MESSAGE = Pop3Reply(False, "No such message")
SEND_USER_FIRST = Pop3Reply(False, "Send USER first")
SEND_PASS = Pop3Reply(False, "Send PASS, or USER to start over")
NOT_AUTHENTICATED = Pop3Reply(False, "Not authenticated")
ALREADY_AUTHENTICATED = Pop3Reply(False, "Already authenticated")
STLS_AFTER_LOGIN = Pop3Reply(False, "STLS is only valid before authentication")
TLS_ACTIVE = Pop3Reply(False, "TLS is already active")
BAD_SEQUENCE = Pop3Reply(False, "Command not valid in this state")
TOO_MANY_ERRORS = Pop3Reply(False, "Too many errors")

# -- negative: for drivers -------------------------------------------------------------------

# RFC 3206 §4: [AUTH] means the credentials were wrong, not the system. Every failure
# (unknown user, bad password, malformed SASL data, throttled) looks the same.
AUTH_FAILED = Pop3Reply(False, "Authentication failed", code="AUTH")
AUTH_CANCELLED = Pop3Reply(False, "Authentication cancelled")  # RFC 5034 §4: "*" line
UNKNOWN_MECHANISM = Pop3Reply(False, "Unsupported authentication mechanism")
TLS_REQUIRED = Pop3Reply(False, "Plain-text login needs TLS: send STLS first")
TLS_UNAVAILABLE = Pop3Reply(False, "TLS not available")
MESSAGE_ALREADY_DELETED = Pop3Reply(False, "Message already deleted")
IN_USE = Pop3Reply(False, "Mailbox is in use by another session", code="IN-USE")  # RFC 2449 §8.1.1
LOGIN_DELAY = Pop3Reply(False, "Logged in too recently", code="LOGIN-DELAY")  # RFC 2449 §8.1.2
SYS_TEMP = Pop3Reply(False, "Temporary system problem, try again later", code="SYS/TEMP")
SYS_PERM = Pop3Reply(False, "Permanent system problem", code="SYS/PERM")  # RFC 3206 §5
# RFC 1939 §6: QUIT's answer when the UPDATE state could not remove every message.
NOT_ALL_REMOVED = Pop3Reply(False, "Some deleted messages not removed", code="SYS/TEMP")

# -- unsolicited (each closes the connection) ------------------------------------------------

TIMEOUT = Pop3Reply(False, "Autologout: idle for too long")  # RFC 1939 §3
SHUTTING_DOWN = Pop3Reply(False, "Server shutting down, try again later", code="SYS/TEMP")
TOO_MANY_CONNECTIONS = Pop3Reply(False, "Too many connections, try again later", code="SYS/TEMP")
