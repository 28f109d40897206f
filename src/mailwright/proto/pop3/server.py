"""The POP3 server connection: a sans-IO state machine (h11 style), and the encoders of
multi-line responses.

Use: ``receive_data(bytes)``; loop ``next_event()`` until ``NEED_DATA``; answer each
event with ``send(reply)`` or ``send_multiline(reply, body)`` (which return the bytes to
write) before asking for the next one. ``receive_data(b"")`` means the peer closed.
A message body for RETR or TOP streams: ``send(replies.MESSAGE_FOLLOWS)``, then
``MessageEncoder.feed`` for each chunk read from storage, then ``finish()``.

Invariants:
- the receive buffer never holds more than the line limit + one read of bytes: a longer
  line is refused and discarded as it arrives (``max_line`` for commands,
  ``max_sasl_line`` for SASL responses);
- a line ends at LF: CRLF per RFC 1939 §3, and a bare LF is accepted too, because many
  clients send it and, unlike SMTP DATA, no message content is framed by it here (POP3
  only reads commands from the client, so there is no smuggling to fear). A CR anywhere
  else in a line is refused;
- after STLS is answered +OK, bytes already buffered are discarded (RFC 2595 §4; the
  STARTTLS command-injection class): nothing sent in plaintext is read as a command;
- the events and the reply bytes do not depend on how the input is split into reads;
- every multi-line body is dot-stuffed and ends with CRLF "." CRLF (RFC 1939 §3).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from mailwright.core.errors import LocalProtocolError
from mailwright.proto.pop3 import replies
from mailwright.proto.pop3.events import (
    CLOSED,
    NEED_DATA,
    Auth,
    AuthResponse,
    Capa,
    Dele,
    Event,
    Invalid,
    List,
    Noop,
    Pass,
    Quit,
    Retr,
    Rset,
    Stat,
    Stls,
    Top,
    Uidl,
    User,
)
from mailwright.proto.pop3.replies import Pop3Reply, Response, encode_lines
from mailwright.proto.pop3.state import (
    State,
    Verb,
    after_reply,
    check,
    multiline_allowed,
    on_command,
)


@dataclass(frozen=True, slots=True)
class Limits:
    """Bounds the machine enforces itself."""

    # RFC 2449 §4 caps a command line at 255 octets (CRLF included), which AUTH with an
    # initial response can exceed; we allow more, as most servers do.
    max_line: int = 1024
    max_sasl_line: int = 8192  # a SASL response line during AUTH (RFC 5034 §4: no limit)
    max_errors: int = 10  # then "-ERR Too many errors" and close


MAX_NUMBER = 2**31 - 1  # message numbers and TOP line counts: 1..MAX_NUMBER / 0..MAX_NUMBER
_VERBS = {v.value: v for v in Verb if v is not Verb.AUTH_RESPONSE}
# RFC 1939 §7 APOP, and commands of older POP3 versions (RFC 1081 LAST, RFC 1082 XTND,
# RFC 1081 RPOP). APOP needs each password in plain text on the server.
_NOT_SUPPORTED = frozenset({"APOP", "LAST", "XTND", "RPOP"})
# RFC 4422 §3.1: a mechanism name is 1-20 of upper-case letters, digits, "-" and "_";
# clients send it in any case.
_MECHANISM = re.compile(r"[A-Za-z0-9_-]{1,20}")
_USAGE = {
    Verb.USER: "USER name",
    Verb.PASS: "PASS password",
    Verb.AUTH: "AUTH mechanism [initial-response]",
    Verb.LIST: "LIST [msg]",
    Verb.RETR: "RETR msg",
    Verb.DELE: "DELE msg",
    Verb.TOP: "TOP msg lines",
    Verb.UIDL: "UIDL [msg]",
}
_SIMPLE: dict[Verb, Event] = {
    Verb.CAPA: Capa(),
    Verb.STAT: Stat(),
    Verb.NOOP: Noop(),
    Verb.RSET: Rset(),
    Verb.QUIT: Quit(),
    Verb.STLS: Stls(),
}


def _syntax(verb: Verb) -> Invalid:
    usage = _USAGE.get(verb, f"{verb.value} takes no arguments")
    return Invalid(Pop3Reply(False, f"Syntax: {usage}"))


def _number(arg: str) -> int | None:
    """A decimal number, or None. Beyond MAX_NUMBER it is MAX_NUMBER + 1."""
    if not (arg.isascii() and arg.isdigit()):
        return None  # "²".isdigit() is True: only ASCII digits are numbers here
    digits = arg.lstrip("0")
    if len(digits) > len(str(MAX_NUMBER)):
        return MAX_NUMBER + 1  # never int() a huge string: bounded work, no int limit
    return int(arg)


class ServerConnection:
    def __init__(self, limits: Limits | None = None, *, tls_active: bool = False) -> None:
        self.limits = limits or Limits()
        self.state = State.AUTHORIZATION
        self.tls_active = tls_active  # True from the start on an implicit-TLS port (995)
        self.user: str | None = None  # the accepted USER name while in State.USER
        self.error_count = 0
        self.discarded_plaintext = 0  # bytes dropped at STLS (logged by the driver)
        self._buf = bytearray()
        self._eof = False
        self._discarding_line = False
        self._pending: Verb | None = None  # the command awaiting our reply
        self._pending_user: str | None = None
        self._multiline = False  # the pending command may get a multi-line body

    # -- input ---------------------------------------------------------------

    def receive_data(self, data: bytes) -> None:
        if data:
            if self.state is State.TLS:
                self.discarded_plaintext += len(data)
                return
            if self.state in (State.UPDATE, State.CLOSED):
                return  # nothing will read it: keep the buffer bounded
            self._buf += data
        else:
            self._eof = True

    def next_event(self) -> Event:
        if self._pending is not None:
            raise LocalProtocolError(f"reply to {self._pending.value} not sent yet")
        if self.state is State.CLOSED:
            return CLOSED
        event = NEED_DATA if self.state is State.TLS else self._next_line()
        if event is NEED_DATA and self._eof:
            self.state = State.CLOSED
            return CLOSED
        return event

    # -- output --------------------------------------------------------------

    def send(self, reply: Response) -> bytes:
        """Bytes for ``reply`` to the pending event; applies its state change.

        A ``Pop3Reply`` with ``lines`` is sent whole (status, dot-stuffed body, ".").
        A ``Continuation`` answers only AUTH or a SASL response.
        """
        verb = self._pending
        if verb is None:
            raise LocalProtocolError("no command is waiting for a reply")
        if isinstance(reply, Pop3Reply) and reply.lines is not None:
            self._check_multiline(verb)
        # Both raise on misuse, before anything has changed.
        new = after_reply(self.state, verb, reply)
        out = reply.to_bytes()
        self._pending = None
        self.state = new
        if verb is Verb.USER and new is State.USER:
            self.user = self._pending_user
        elif new is not State.USER:
            self.user = None
        if new is State.TLS:
            # RFC 2595 §4: anything pipelined behind STLS was sent in plaintext: drop it.
            self.discarded_plaintext += len(self._buf)
            self._buf.clear()
        if isinstance(reply, Pop3Reply) and not reply.ok:
            self.error_count += 1
            if self.error_count >= self.limits.max_errors and self.state is not State.CLOSED:
                out += replies.TOO_MANY_ERRORS.to_bytes()
                self.state = State.CLOSED
                self.user = None
        return out

    def send_multiline(self, reply: Pop3Reply, body: Iterable[str | bytes] | bytes) -> bytes:
        """A positive reply and its body, dot-stuffed and terminated (RFC 1939 §3).

        ``body`` is either text lines without line ends (CAPA, LIST, UIDL) or a stored
        message as bytes (see ``MessageEncoder`` to stream one instead).
        """
        verb = self._pending
        if verb is None:
            raise LocalProtocolError("no command is waiting for a reply")
        if not reply.ok or reply.lines is not None:
            raise LocalProtocolError("send_multiline takes a +OK reply without lines")
        self._check_multiline(verb)
        encoded = encode_message(body) if isinstance(body, bytes) else encode_lines(body)
        return self.send(reply) + encoded

    def send_unsolicited(self, reply: Pop3Reply) -> bytes:
        """The greeting (+OK), or a notice that closes the session (-ERR: timeout,
        shutdown, too many connections). A -ERR also drops any command awaiting a reply."""
        if not reply.ok:
            self.state = State.CLOSED
            self._pending = None
            self.user = None
        return reply.to_bytes()

    def tls_started(self) -> None:
        """The TLS handshake after STLS succeeded: AUTHORIZATION again, with TLS active."""
        if self.state is not State.TLS:
            raise LocalProtocolError("tls_started() without STLS")
        self.state = State.AUTHORIZATION
        self.tls_active = True
        self.user = None

    @property
    def authenticated(self) -> bool:
        return self.state in (State.TRANSACTION, State.UPDATE)

    @property
    def should_delay(self) -> bool:
        """Past half the error cap, the driver slows each reply."""
        return self.error_count > 0 and self.error_count >= self.limits.max_errors // 2

    def _check_multiline(self, verb: Verb) -> None:
        if not self._multiline:
            raise LocalProtocolError(f"no multi-line response to this {verb.value}")

    # -- lines -----------------------------------------------------------------

    def _next_line(self) -> Event:
        sasl = self.state is State.SASL
        limit = self.limits.max_sasl_line if sasl else self.limits.max_line
        # A refused line inside a SASL exchange fails the AUTH (RFC 5034 §4).
        verb = Verb.AUTH_RESPONSE if sasl else Verb.NOOP
        nl = self._buf.find(b"\n")
        if nl < 0:
            if len(self._buf) > limit:
                # No line end in sight: drop what we have, and the rest up to the LF.
                self._discarding_line = True
                self._buf.clear()
            return NEED_DATA
        raw = bytes(self._buf[: nl + 1])
        del self._buf[: nl + 1]
        if self._discarding_line or len(raw) > limit:
            self._discarding_line = False
            return self._refuse(replies.LINE_TOO_LONG, verb)
        line = raw[:-2] if raw.endswith(b"\r\n") else raw[:-1]
        if b"\r" in line:
            return self._refuse(replies.BAD_LINE_ENDING, verb)
        if b"\0" in line:
            return self._refuse(replies.NUL_IN_COMMAND, verb)
        if sasl:
            if not line.isascii():
                return self._refuse(replies.AUTH_FAILED, verb)  # base64 is ASCII
            self._pending = Verb.AUTH_RESPONSE
            self._multiline = False
            return AuthResponse(line.decode("ascii"))
        return self._parse_command(line)

    def _refuse(self, reply: Pop3Reply, verb: Verb = Verb.NOOP) -> Invalid:
        self._pending = verb
        self._multiline = False
        return Invalid(reply)

    def _parse_command(self, line: bytes) -> Event:
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError:
            return self._refuse(replies.NOT_UTF8)
        word, _, rest = text.partition(" ")
        # Only an ASCII word names a command: "U\u017fER".upper() == "USER" (long s).
        name = word.upper() if word.isascii() else ""
        verb = _VERBS.get(name)
        if verb is None:
            if name in _NOT_SUPPORTED:
                return self._refuse(replies.NOT_SUPPORTED)
            return self._refuse(replies.UNKNOWN_COMMAND)
        refusal = check(self.state, verb, tls_active=self.tls_active)
        if refusal is not None:
            return self._refuse(refusal)
        event = self._build(verb, rest)
        if isinstance(event, Invalid):
            return self._refuse(event.reply)
        self._pending = verb
        has_argument = isinstance(event, List | Uidl) and event.msg is not None
        self._multiline = multiline_allowed(verb, has_argument)
        self._pending_user = event.name if isinstance(event, User) else None
        self.state = on_command(self.state, verb)
        return event

    def _build(self, verb: Verb, rest: str) -> Event:
        if verb is Verb.PASS:
            # RFC 1939 §7: PASS has one argument, so spaces in it are part of the password.
            return Pass(rest) if rest else _syntax(verb)
        # RFC 1939 §3: arguments are separated by a single space; we tolerate several.
        args = [a for a in rest.split(" ") if a]
        match verb:
            case Verb.USER:
                return User(args[0]) if len(args) == 1 else _syntax(verb)
            case Verb.AUTH:
                if not 1 <= len(args) <= 2:
                    return _syntax(verb)
                if not _MECHANISM.fullmatch(args[0]):
                    return Invalid(replies.BAD_MECHANISM)
                return Auth(args[0].upper(), args[1] if len(args) == 2 else None)
            case Verb.LIST | Verb.UIDL:
                if len(args) > 1:
                    return _syntax(verb)
                if not args:
                    return List() if verb is Verb.LIST else Uidl()
                msg = _message_number(args[0])
                if isinstance(msg, Invalid):
                    return msg
                return List(msg) if verb is Verb.LIST else Uidl(msg)
            case Verb.RETR | Verb.DELE:
                if len(args) != 1:
                    return _syntax(verb)
                msg = _message_number(args[0])
                if isinstance(msg, Invalid):
                    return msg
                return Retr(msg) if verb is Verb.RETR else Dele(msg)
            case Verb.TOP:
                if len(args) != 2:
                    return _syntax(verb)
                msg = _message_number(args[0])
                if isinstance(msg, Invalid):
                    return msg
                lines = _number(args[1])
                if lines is None or lines > MAX_NUMBER:
                    return Invalid(replies.BAD_LINE_COUNT)
                return Top(msg, lines)
            case _:
                return _syntax(verb) if args else _SIMPLE[verb]


def _message_number(arg: str) -> int | Invalid:
    """RFC 1939 §3: message numbers start at 1. Zero and numbers beyond 2**31-1 name no
    message (the reply says so); anything but decimal digits is a syntax error."""
    n = _number(arg)
    if n is None:
        return Invalid(replies.BAD_MESSAGE_NUMBER)
    if not 1 <= n <= MAX_NUMBER:
        return Invalid(replies.NO_SUCH_MESSAGE)
    return n


# -- multi-line bodies ---------------------------------------------------------------

_BARE_LF = re.compile(rb"(?<!\r)\n")


class MessageEncoder:
    """Dot-stuffs a stored message for RETR, or its start for TOP, chunk by chunk.

    ``feed`` takes the message in pieces split anywhere (between CR and LF, right after a
    line end, inside a line) and returns the bytes to send; the output does not depend on
    the split. ``finish`` returns the end: a CRLF if the message did not end with one,
    then "." CRLF (RFC 1939 §3).

    Stored messages are CRLF lines; a bare LF is sent as CRLF, so that no client that
    splits lines at LF can see a "." line we did not stuff. A bare CR is sent as it is.

    ``body_lines`` makes it TOP's encoder (RFC 1939 §7): the header, the blank line after
    it, then that many body lines. ``done`` then says the rest need not be read.
    """

    def __init__(self, body_lines: int | None = None) -> None:
        self._top = body_lines is not None
        self._body_left = body_lines or 0
        self._in_header = True
        self._line_len = 0  # octets of the current line so far (after LF became CRLF)
        self._prev_cr = False  # the last octet fed was CR: a leading LF pairs with it
        self._last = b"\n"  # the last octet sent; LF also stands for "nothing sent yet"
        self._done = False
        self._finished = False

    @property
    def done(self) -> bool:
        """TOP has all the lines it needs: further input is ignored."""
        return self._done

    def feed(self, chunk: bytes) -> bytes:
        if self._finished:
            raise LocalProtocolError("MessageEncoder.feed() after finish()")
        if not chunk or self._done:
            return b""
        # Stored messages are CRLF lines: counting (in C) spares the regex in that case.
        bare = chunk.count(b"\n") != chunk.count(b"\r\n")
        data = _BARE_LF.sub(b"\r\n", chunk) if bare else chunk
        if self._prev_cr and chunk.startswith(b"\n"):
            data = data[1:]  # that LF completes the CR fed last: it was not bare
        self._prev_cr = chunk.endswith(b"\r")
        if self._top:
            data = self._cut(data)
        out = data.replace(b"\n.", b"\n..")
        if self._last == b"\n" and data.startswith(b"."):
            out = b"." + out
        self._last = data[-1:]
        return out

    def finish(self) -> bytes:
        if self._finished:
            raise LocalProtocolError("MessageEncoder.finish() called twice")
        self._finished = True
        if self._last == b"\n":
            return replies.MULTILINE_END
        if self._last == b"\r":
            return b"\n" + replies.MULTILINE_END  # complete the CR into a line end
        return b"\r\n" + replies.MULTILINE_END

    def _cut(self, data: bytes) -> bytes:
        """``data`` up to the last line TOP sends (all of it if that is not reached)."""
        pos = 0
        while True:
            nl = data.find(b"\n", pos)
            if nl < 0:
                self._line_len += len(data) - pos
                return data
            length = self._line_len + nl + 1 - pos
            self._line_len = 0
            pos = nl + 1
            if self._in_header:
                # Every LF follows a CR by now: a line of two octets is the empty line
                # that ends the header (RFC 5322 §2.1).
                if length == 2:
                    self._in_header = False
                    if self._body_left == 0:
                        self._done = True
                        return data[:pos]
                continue
            self._body_left -= 1
            if self._body_left == 0:
                self._done = True
                return data[:pos]


def encode_message(message: bytes, body_lines: int | None = None) -> bytes:
    """A whole stored message as a dot-stuffed body with its terminator (RETR), or with
    ``body_lines`` its header, blank line and first ``body_lines`` body lines (TOP)."""
    encoder = MessageEncoder(body_lines)
    return encoder.feed(message) + encoder.finish()
