"""The IMAP server connection: a sans-IO state machine (h11 style) for IMAP4rev1
(RFC 3501) and IMAP4rev2 (RFC 9051), with LITERAL+/LITERAL- (RFC 7888), IDLE (RFC 2177),
SASL-IR (RFC 4959), COMPRESS=DEFLATE (RFC 4978) and the command syntax of CONDSTORE/
QRESYNC (RFC 7162), ESEARCH (RFC 4731), SEARCHRES (RFC 5182), UIDPLUS (RFC 4315), MOVE
(RFC 6851), LIST-EXTENDED (RFC 5258), LIST-STATUS (RFC 5819), SPECIAL-USE (RFC 6154),
SORT/THREAD (RFC 5256), ESORT (RFC 5267), QUOTA (RFC 9208), ENABLE (RFC 5161), ID
(RFC 2971), BINARY fetch items (RFC 3516).

Use (one ``ServerConnection`` per client connection)::

    conn = ServerConnection(limits, tls_active=implicit_tls)
    write(conn.send_unsolicited(response.untagged_status("OK", "ready")))
    on every read:  conn.receive_data(data)     # b"" = the peer closed
    then loop:      event = conn.next_event()   # until NEED_DATA (write, read more) or CLOSED

Answer each event before asking for the next one (``next_event`` raises
``LocalProtocolError`` while an answer is due):

- a command (``command.py``): any untagged responses, then its tagged completion, via
  ``send(*responses)``. Tell the machine what the command did *before* sending the
  completion: ``authenticated()`` (LOGIN/AUTHENTICATE succeeded), ``selected(read_only)``
  (SELECT/EXAMINE succeeded), ``unselected()`` (CLOSE, UNSELECT, a failed SELECT while
  selected), ``logout()`` (LOGOUT: then send ``* BYE`` and the OK). STARTTLS: send the
  OK, do the handshake, call ``tls_started()``. COMPRESS: send the OK, then call
  ``compress_started()`` before feeding more data.
- ``Idle``: ``send_continuation("idling")``; untagged updates go out with ``send`` any
  time; the client's DONE arrives as ``Done`` (send the tagged OK). Any other line
  during IDLE is an ``Invalid`` carrying the tagged BAD that ends the IDLE (RFC 2177 §3).
- ``Authenticate``: ``send_continuation(base64 challenge)`` or a tagged completion; each
  client line is an ``AuthResponse`` (data None: cancelled with "*").
- ``NeedLiteral``: ``accept_literal()`` or ``reject_literal(tagged NO/BAD)``. For APPEND's
  message literal (``append=True``) the machine then yields ``Append``, ``AppendData``
  chunks and ``AppendEnd``: answer only ``AppendEnd`` (``ok`` False: discard the message,
  send ``event.response``). A tagged completion sent while the message streams (storage
  failed, over quota) aborts it: the machine swallows the rest of the literal unread.
- ``Invalid``: ``send(event.response)``; the machine closes after it if ``event.close``.
- A big FETCH body streams: ``send_fetch_start(seq, items, name, size)``,
  ``send_fetch_chunk(data)`` ..., ``send_fetch_end()``.

Every byte for the client comes from a method of this class, so that COMPRESS=DEFLATE
applies to all of it in one place (each call's output ends with a Z_SYNC_FLUSH).

Invariants:
- the receive buffer holds at most ``max_line`` + one read; a command's literals at
  most ``max_literal_unauth`` (before login) or ``max_literal`` (after) in total; APPEND's
  message is never buffered (each ``AppendData`` is at most ``append_chunk`` octets);
  with compression, at most one read of compressed input waits to be inflated, and it is
  inflated ``append_chunk`` octets at a time (no decompression bomb);
- the events, and so the output, do not depend on how the input is split into reads
  (``AppendData`` chunk boundaries aside; and after a corrupt DEFLATE stream, whether
  the last few octets before the corruption are still read depends on the reads);
- bad input gives ``Invalid`` with a tagged BAD (an untagged ``* BAD`` when no tag could
  be read), never an exception; after ``max_errors`` BAD responses the machine adds
  ``* BYE`` and closes;
- a command in the wrong state gets a tagged BAD naming the state (RFC 9051 §6), before
  any of its literals is asked for;
- a line ends at LF; CR LF per RFC 9051 §2.2, a bare LF is accepted too (many clients);
- after STARTTLS's OK the buffered plaintext is discarded and counted in
  ``discarded_plaintext`` (RFC 9051 §6.2.1; the STARTTLS command-injection class).

Literals (RFC 9051 §4.3, RFC 7888): a synchronizing literal ``{n}`` waits for the
driver's ``accept_literal`` ("+" continuation). A non-synchronizing literal ``{n+}``
follows at once; the machine still asks (``NeedLiteral(synchronizing=False)``), and a
refusal makes it swallow the n octets and the rest of the command unbuffered. Before
login a non-synchronizing literal may be at most ``max_literal_plus_unsync`` (4096)
octets, the LITERAL- rule; after login any size within the limits (LITERAL+). So the
driver advertises LITERAL- before login and LITERAL+ after. Over its limit a
synchronizing literal gets a tagged BAD [TOOBIG]; a non-synchronizing one a tagged BAD
[TOOBIG], then ``* BYE`` and the end of the connection (RFC 7888 §4 allows closing),
since its octets are already on their way.
"""

from __future__ import annotations

import enum
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import cast

from mailwright.core.errors import LocalProtocolError
from mailwright.proto.imap import parser, response
from mailwright.proto.imap import state as rules
from mailwright.proto.imap.command import Append
from mailwright.proto.imap.events import (
    CLOSED,
    NEED_DATA,
    AppendData,
    AppendEnd,
    AuthResponse,
    Done,
    Event,
    Invalid,
    NeedLiteral,
)
from mailwright.proto.imap.parser import AppendHead, ParseError, Start
from mailwright.proto.imap.response import Response, Status, Value
from mailwright.proto.imap.state import Mode, State, Verb


@dataclass(frozen=True, slots=True)
class Limits:
    """Bounds the machine enforces itself."""

    max_line: int = 64 * 1024  # a command's text, literals excluded (RFC 7162 §4: >= 8192)
    max_literal_unauth: int = 8 * 1024  # literals of one command before login, in total
    max_literal: int = 64 * 1024  # literals of one command after login (APPEND's message aside)
    max_nesting: int = 16  # parenthesised lists, NOT and OR in one command
    max_errors: int = 20  # BAD responses before "* BYE" and close
    max_literal_plus_unsync: int = 4096  # RFC 7888 §4 LITERAL-: {n+} before login
    append_chunk: int = 64 * 1024  # the largest AppendData (also the inflate step)


MAX_LITERAL_SIZE = 2**63 - 1  # RFC 9051 §9: literal sizes are number64
_TAIL = 64  # the end of a line kept while discarding it: enough for a literal header
TOO_MANY_ERRORS = response.bye("Too many errors")
CLOSING = response.bye("Closing connection")
COMPRESSION_ERROR = "Invalid compressed data"


class _Reader(enum.Enum):
    LINE = "line"  # a command's next line (or its first)
    LITERAL = "literal"  # an accepted literal's octets, into the command
    APPEND_START = "append start"  # yield Append
    APPEND_DATA = "append data"  # the message literal, streamed
    APPEND_TAIL = "append tail"  # the rest of the line after the message literal
    DISCARD = "discard"  # swallow a literal's octets, then the rest of a line
    IDLE = "idle"  # a line that should say DONE
    AUTH = "auth"  # a SASL response line
    STOPPED = "stopped"  # nothing is read (TLS, COMPRESS, closing, awaiting the driver)


class _Await(enum.Enum):
    NOTHING = "nothing"
    DRIVER = "driver"  # a response to the last event is due
    LITERAL = "literal"  # accept_literal() or reject_literal() is due


@dataclass(frozen=True, slots=True)
class _Pending:
    """The command in progress: yielded (or streaming) and not yet completed."""

    tag: str | None  # None: an untagged BAD completes it
    verb: Verb | None  # None: a refused command
    close: bool = False  # close the connection once it is completed


@dataclass(frozen=True, slots=True)
class _LiteralHead:
    start: int  # where "{" is
    size: int | None  # None: beyond MAX_LITERAL_SIZE
    sync: bool


def _literal_head(line: bytes, *, quote_aware: bool = True) -> _LiteralHead | None:
    """The literal header ``{n}`` or ``{n+}`` a line ends with (RFC 9051 §4.3, RFC 7888),
    unless (``quote_aware``) the "{" is inside a quoted string."""
    if not line.endswith(b"}"):
        return None
    start = line.rfind(b"{")
    inner = line[start + 1 : -1]
    sync = not inner.endswith(b"+")
    digits = inner if sync else inner[:-1]
    if start < 0 or not digits or not (digits.isascii() and digits.isdigit()):
        return None
    if quote_aware and _inside_quote(line, start):
        return None
    significant = digits.lstrip(b"0")
    if len(significant) > len(str(MAX_LITERAL_SIZE)) or int(digits) > MAX_LITERAL_SIZE:
        return _LiteralHead(start, None, sync)
    return _LiteralHead(start, int(digits), sync)


def _inside_quote(line: bytes, end: int) -> bool:
    quoted = False
    i = 0
    while i < end:
        octet = line[i]
        if quoted and octet == 0x5C:  # backslash escapes the next octet inside quotes
            i += 1
        elif octet == 0x22:
            quoted = not quoted
        i += 1
    return quoted


class _TooLong:
    pass


_TOO_LONG = _TooLong()
_AGAIN = object()  # a reader step consumed input but has no event


class ServerConnection:
    def __init__(self, limits: Limits | None = None, *, tls_active: bool = False) -> None:
        self.limits = limits or Limits()
        self.state = State.NOT_AUTHENTICATED
        self.mode = Mode.COMMAND
        self.read_only = False  # the selected mailbox was opened with EXAMINE
        self.tls_active = tls_active  # True from the start on an implicit-TLS port (993)
        self.compressing = False
        self.error_count = 0
        self.discarded_plaintext = 0  # bytes dropped at STARTTLS (logged by the driver)
        self._buf = bytearray()
        self._scanned = 0  # octets of _buf known to hold no LF
        self._eof = False
        self._reader = _Reader.LINE
        self._await = _Await.NOTHING
        self._pending: _Pending | None = None
        # the command being framed
        self._start: Start | None = None
        self._segs: list[bytes] = []
        self._lits: list[bytes] = []
        self._line_total = 0
        self._literal_total = 0
        # a literal announced or being read
        self._lit_size = 0
        self._lit_sync = True
        self._lit_append = False
        self._lit_buf = bytearray()
        self._append_head: AppendHead | None = None
        self._left = 0  # octets of the literal still to come
        # discarding
        self._skip = 0
        self._discard_tail = b""
        self._discard_literals = True
        # compression (RFC 4978)
        self._inflater: zlib._Decompress | None = None
        self._deflater: zlib._Compress | None = None
        self._zin = bytearray()
        self._zerror = False
        self._zmore = False  # the last inflate step was full: zlib may hold more output
        # a FETCH literal being streamed out
        self._stream_left: int | None = None

    # -- input -----------------------------------------------------------------------

    def receive_data(self, data: bytes) -> None:
        """Bytes read from the client; ``b""`` when it closed its side."""
        if not data:
            self._eof = True
        elif self.mode is Mode.TLS:
            self.discarded_plaintext += len(data)
        elif self.state in (State.LOGOUT, State.CLOSED):
            return  # nothing will read it: keep the buffer bounded
        elif self.compressing:
            self._zin += data
        else:
            self._buf += data

    def next_event(self) -> Event:
        if self._await is _Await.DRIVER:
            raise LocalProtocolError(f"the response to {self._describe()} is not sent yet")
        if self._await is _Await.LITERAL:
            raise LocalProtocolError("accept_literal() or reject_literal() first")
        if self.state is State.LOGOUT:
            self._close()
        if self.state is State.CLOSED:
            return CLOSED
        while True:
            event = self._step()
            if event is _AGAIN:
                continue
            if event is not None:
                return cast(Event, event)
            if self._inflate():
                continue
            if self._zerror:
                # RFC 4978 §3 allows no recovery from a broken compressed stream.
                return self._invalid(None, "BAD", COMPRESSION_ERROR, close=True)
            if self._eof:
                self._close()
                return CLOSED
            return NEED_DATA

    @property
    def should_delay(self) -> bool:
        """Past half the error cap, the driver slows each response."""
        return self.error_count > 0 and self.error_count >= self.limits.max_errors // 2

    @property
    def logged_in(self) -> bool:
        return self.state in (State.AUTHENTICATED, State.SELECTED)

    # -- output ----------------------------------------------------------------------

    def send(self, *responses: Response) -> bytes:
        """Bytes for ``responses``, in order. A tagged one (or the untagged BAD of a
        tagless ``Invalid``) completes the command in progress and applies its effect."""
        self._check_not_streaming()
        # Check first, so that a misuse raises before anything has changed.
        completion = None
        for resp in responses:
            if isinstance(resp, Status) and self._completes(resp):
                if completion is not None:
                    raise LocalProtocolError("send() completes one command at most")
                completion = resp
        out = bytearray()
        close = False
        for resp in responses:
            out += resp.to_bytes()
            if not isinstance(resp, Status):
                continue
            if resp.status == "BAD":
                self.error_count += 1
            if resp.status == "BYE" and self.state is not State.CLOSED:
                self.state = State.LOGOUT
            if resp is completion:
                close = self._complete(resp)
        if self.state is State.CLOSED or (self.state is State.LOGOUT and self._pending is None):
            self._close()
        if close or (self._too_many() and self.state is not State.CLOSED):
            out += (TOO_MANY_ERRORS if self._too_many() else CLOSING).to_bytes()
            self._close()
        return self._emit(bytes(out))

    def send_continuation(self, text: str | bytes = "") -> bytes:
        """``+ text`` (RFC 9051 §7.5): the answer to IDLE ("idling") or a SASL challenge
        (base64) during AUTHENTICATE. Literals are answered with ``accept_literal``."""
        self._check_not_streaming()
        pending = self._pending
        if pending is None or pending.verb is None or self._await is not _Await.DRIVER:
            raise LocalProtocolError("no command is waiting for a continuation")
        mode = rules.continuation_mode(pending.verb)
        out = response.continuation(text).to_bytes()
        self.mode = mode
        self._reader = _Reader.IDLE if mode is Mode.IDLE else _Reader.AUTH
        self._await = _Await.NOTHING
        return self._emit(out)

    def send_unsolicited(self, resp: Status) -> bytes:
        """The greeting (``* OK``, ``* PREAUTH``) or a closing ``* BYE`` (shutdown,
        timeout): a BYE drops any command in progress and closes the session."""
        self._check_not_streaming()
        if resp.tag is not None or resp.status not in ("OK", "PREAUTH", "BYE"):
            raise LocalProtocolError("unsolicited responses are untagged OK, PREAUTH or BYE")
        out = resp.to_bytes()
        if resp.status == "BYE":
            self._close()
        return self._emit(out)

    def send_fetch_start(
        self,
        seq: int,
        items: Sequence[tuple[str, Value]],
        name: str,
        size: int,
        *,
        binary: bool = False,
    ) -> bytes:
        """The start of a FETCH response whose last item is a ``size``-octet literal that
        follows in ``send_fetch_chunk`` calls: ``* seq FETCH (items... name {size}``."""
        self._check_not_streaming()
        if size < 0:
            raise LocalProtocolError("a literal size is not negative")
        out = response.fetch_literal_head(seq, items, name, size, binary=binary)
        self._stream_left = size
        return self._emit(out)

    def send_fetch_chunk(self, chunk: bytes) -> bytes:
        if self._stream_left is None:
            raise LocalProtocolError("send_fetch_chunk() without send_fetch_start()")
        if len(chunk) > self._stream_left:
            raise LocalProtocolError("more literal octets than announced")
        self._stream_left -= len(chunk)
        return self._emit(chunk)

    def send_fetch_end(self, items: Sequence[tuple[str, Value]] = ()) -> bytes:
        """Items after the literal, and the end of the FETCH response."""
        if self._stream_left is None:
            raise LocalProtocolError("send_fetch_end() without send_fetch_start()")
        if self._stream_left:
            raise LocalProtocolError(f"{self._stream_left} literal octets not sent yet")
        self._stream_left = None
        return self._emit(response.fetch_literal_tail(items))

    # -- literals --------------------------------------------------------------------

    def accept_literal(self) -> bytes:
        """Take the literal just announced: the "+" continuation for ``{n}``, b"" for
        ``{n+}`` (its octets are already on their way)."""
        if self._await is not _Await.LITERAL:
            raise LocalProtocolError("no literal is waiting for a decision")
        self._await = _Await.NOTHING
        self._left = self._lit_size
        if self._lit_append:
            start = cast(Start, self._start)  # set by the command's first line
            self._pending = _Pending(start.tag, Verb.APPEND)
            self._reader = _Reader.APPEND_START
            self.mode = Mode.APPEND
        else:
            self._reader = _Reader.LITERAL
            self._lit_buf = bytearray()
        if not self._lit_sync:
            return b""
        return self._emit(response.LITERAL_CONTINUATION.to_bytes())

    def reject_literal(self, resp: Status) -> bytes:
        """Refuse the literal just announced, and so its command, with ``resp`` (tagged
        NO or BAD). The octets of a non-synchronizing literal and the rest of the command
        are swallowed unread."""
        if self._await is not _Await.LITERAL:
            raise LocalProtocolError("no literal is waiting for a decision")
        start = cast(Start, self._start)  # set while a literal awaits a decision
        if resp.tag != start.tag or resp.status not in ("NO", "BAD"):
            raise LocalProtocolError("a literal is refused with its command's tagged NO or BAD")
        self._await = _Await.NOTHING
        sync, size = self._lit_sync, self._lit_size
        self._reset_command()
        if not sync:
            self._start_discard(skip=size)
        if resp.status == "BAD":
            self.error_count += 1
        out = resp.to_bytes()
        if self._too_many():
            out += TOO_MANY_ERRORS.to_bytes()
            self._close()
        return self._emit(out)

    # -- what the driver tells the machine -----------------------------------------------

    def authenticated(self) -> None:
        """LOGIN or AUTHENTICATE succeeded (or the greeting is PREAUTH)."""
        self.state = rules.on_authenticated(self.state)

    def selected(self, read_only: bool) -> None:
        """SELECT (``read_only`` False) or EXAMINE succeeded."""
        self.state = rules.on_selected(self.state)
        self.read_only = read_only

    def unselected(self) -> None:
        """CLOSE or UNSELECT, or a SELECT that failed and so closed the mailbox."""
        self.state = rules.on_unselected(self.state)
        self.read_only = False

    def logout(self) -> None:
        """LOGOUT: the BYE and the tagged OK go out next, then the session is over."""
        self.state = rules.on_logout(self.state)

    def tls_started(self) -> None:
        """The TLS handshake after STARTTLS succeeded."""
        if self.mode is not Mode.TLS:
            raise LocalProtocolError("tls_started() without STARTTLS")
        self.mode = Mode.COMMAND
        self.tls_active = True
        self._reader = _Reader.LINE

    def compress_started(self) -> None:
        """COMPRESS's OK was written: from the next octet both directions are raw
        DEFLATE (RFC 4978 §3, RFC 1951). Octets already received after the command are
        the start of the compressed stream."""
        if self.mode is not Mode.COMPRESS:
            raise LocalProtocolError("compress_started() without COMPRESS")
        self.mode = Mode.COMMAND
        self.compressing = True
        self._inflater = zlib.decompressobj(-zlib.MAX_WBITS)
        self._deflater = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
        self._zin = bytearray(self._buf)
        self._buf.clear()
        self._scanned = 0
        self._reader = _Reader.LINE

    # -- internals: output -----------------------------------------------------------------

    def _emit(self, data: bytes) -> bytes:
        if self._deflater is None or not data:
            return data
        return self._deflater.compress(data) + self._deflater.flush(zlib.Z_SYNC_FLUSH)

    def _check_not_streaming(self) -> None:
        if self._stream_left is not None:
            raise LocalProtocolError("a FETCH literal is being streamed: finish it first")

    def _too_many(self) -> bool:
        return self.error_count >= self.limits.max_errors

    def _close(self) -> None:
        self.state = State.CLOSED
        self._pending = None
        self._await = _Await.NOTHING
        self._reader = _Reader.STOPPED
        self._buf.clear()
        self._zin.clear()

    def _describe(self) -> str:
        pending = cast(_Pending, self._pending)  # set whenever a response is awaited
        verb = pending.verb.value if pending.verb is not None else "a refused command"
        return f"{pending.tag or '*'} {verb}"

    def _completes(self, resp: Status) -> bool:
        pending = self._pending
        if resp.tag is None:
            return (
                pending is not None
                and pending.tag is None
                and resp.status == "BAD"
                and self._await is _Await.DRIVER
            )
        if pending is None or pending.tag != resp.tag:
            raise LocalProtocolError(f"no command tagged {resp.tag!r} is waiting for completion")
        streaming = self._reader in (_Reader.APPEND_START, _Reader.APPEND_DATA, _Reader.APPEND_TAIL)
        if self._await is not _Await.DRIVER and not streaming:
            raise LocalProtocolError(
                f"{self._describe()} cannot be completed now: the client is sending"
            )
        return True

    def _complete(self, resp: Status) -> bool:
        """Apply the completion of the command in progress; True if we must close."""
        pending = cast(_Pending, self._pending)  # _completes checked it
        if self._reader in (_Reader.APPEND_START, _Reader.APPEND_DATA, _Reader.APPEND_TAIL):
            # The driver gave up on the message mid-stream: swallow the rest unread.
            left = 0 if self._reader is _Reader.APPEND_TAIL else self._left
            self._reset_command()
            self._start_discard(skip=left)
        self._pending = None
        self._await = _Await.NOTHING
        self.state, self.mode = rules.after_completion(self.state, pending.verb, resp.status)
        if self.mode is Mode.TLS:
            # RFC 9051 §6.2.1 / RFC 3207 §4.2: nothing sent in plaintext after STARTTLS
            # is read as a command.
            self.discarded_plaintext += len(self._buf)
            self._buf.clear()
            self._scanned = 0
            self._reader = _Reader.STOPPED
        elif self.mode is Mode.COMPRESS:
            self._reader = _Reader.STOPPED
        elif self._reader is not _Reader.DISCARD and self.state is not State.CLOSED:
            self._reader = _Reader.LINE
        return pending.close

    # -- internals: input --------------------------------------------------------------------

    def _inflate(self) -> bool:
        """Inflate some waiting compressed input into the buffer; False if there is none."""
        inflater = self._inflater
        if inflater is None or self._zerror or not (self._zin or self._zmore):
            return False
        data = bytes(self._zin)
        backup = inflater.copy()
        step = self.limits.append_chunk
        try:
            out = inflater.decompress(data, step)
        except zlib.error:
            # What preceded the error is still the client's: recover it, octet by octet.
            # (How much of the last few octets before the error can be recovered does
            # depend on how the input was split: a known limit, for broken streams only.)
            out = _inflate_until_error(backup, data)
            self._zerror = True
            self._zin.clear()
            self._buf += out
            return bool(out)
        # A full step may leave output inside zlib even when all input was taken.
        self._zmore = len(out) == step
        self._zin = bytearray(inflater.unconsumed_tail)
        if inflater.eof and inflater.unused_data:
            self._zerror = True  # data after the end of the compressed stream
            self._zin.clear()
        self._buf += out
        return True

    def _step(self) -> Event | object | None:
        match self._reader:
            case _Reader.LINE:
                return self._read_command_line()
            case _Reader.LITERAL:
                return self._read_literal()
            case _Reader.APPEND_START:
                return self._append_start()
            case _Reader.APPEND_DATA:
                return self._append_data()
            case _Reader.APPEND_TAIL:
                return self._append_tail()
            case _Reader.DISCARD:
                return self._discard()
            case _Reader.IDLE:
                return self._idle_line()
            case _Reader.AUTH:
                return self._auth_line()
            case _:
                return None

    def _take_line(self, room: int) -> bytes | _TooLong | None:
        """The next line without its LF (and CR), if it is no longer than ``room``
        octets (CR included); None if incomplete. A too long line stays in the buffer."""
        nl = self._buf.find(b"\n", self._scanned)
        if nl < 0:
            self._scanned = len(self._buf)
            return _TOO_LONG if len(self._buf) > room else None
        if nl > room:
            return _TOO_LONG
        line = bytes(self._buf[:nl])
        del self._buf[: nl + 1]
        self._scanned = 0
        return line[:-1] if line.endswith(b"\r") else line

    def _invalid(
        self,
        tag: str | None,
        status: str,
        text: str,
        code: response.Code | None = None,
        *,
        close: bool = False,
        verb: Verb | None = None,
    ) -> Invalid:
        resp = Status(tag, status, text, code)
        self._pending = _Pending(tag, verb, close)
        self._await = _Await.DRIVER
        if close:
            self.state = State.LOGOUT  # read nothing more; closed once this is sent
            self._reader = _Reader.STOPPED
        return Invalid(tag, resp, close)

    def _reset_command(self) -> None:
        self._start = None
        self._segs = []
        self._lits = []
        self._line_total = 0
        self._literal_total = 0
        self._append_head = None

    def _start_discard(self, *, skip: int, literals: bool = True) -> None:
        self._skip = skip
        self._discard_tail = b""
        self._discard_literals = literals
        self._reader = _Reader.DISCARD

    def _unsync_too_big(self, size: int | None) -> bool:
        """Whether a non-synchronizing literal is beyond every limit that applies to it
        even when it is thrown away: before login, RFC 7888 §4 LITERAL-."""
        if size is None:
            return True
        return not self.logged_in and size > self.limits.max_literal_plus_unsync

    def _refuse(
        self,
        tag: str | None,
        status: str,
        text: str,
        head: _LiteralHead | None,
        code: response.Code | None = None,
    ) -> Invalid:
        """Refuse the command being framed; swallow a non-synchronizing literal it ends in."""
        self._reset_command()
        if head is not None and not head.sync:
            if self._unsync_too_big(head.size):
                return self._invalid(tag, "BAD", "Literal too large", response.TOOBIG, close=True)
            self._start_discard(skip=head.size or 0)
        return self._invalid(tag, status, text, code)

    def _read_command_line(self) -> Event | object | None:
        line = self._take_line(self.limits.max_line - self._line_total)
        if line is None:
            return None
        if isinstance(line, _TooLong):
            tag = self._start.tag if self._start else None
            if tag is None:
                window = bytes(self._buf[: self.limits.max_line])
                tag = parser.tag_of(window) if b" " in window else None
            self._reset_command()
            self._start_discard(skip=0)
            return self._invalid(tag, "BAD", "Command line too long")
        if not line and not self._segs:
            return _AGAIN  # an empty line between commands: nothing to answer
        self._line_total += len(line) + 1
        head = _literal_head(line)
        segment = line if head is None else line[: head.start]
        if self._start is None:
            start = parser.parse_start(segment)
            if isinstance(start, parser.BadStart):
                return self._refuse(start.tag, "BAD", start.text, head)
            refusal = rules.check(
                self.state, start.verb, tls_active=self.tls_active, compressing=self.compressing
            )
            if refusal is not None:
                return self._refuse(start.tag, refusal.status, refusal.text, head, refusal.code)
            self._start = start
        self._segs.append(segment)
        if head is None:
            return self._finish_command()
        return self._announce_literal(head)

    def _announce_literal(self, head: _LiteralHead) -> Event:
        start = cast(Start, self._start)  # set by the first line
        append = False
        if start.verb is Verb.APPEND:
            try:
                self._append_head = parser.parse_append_head(
                    self._segs, self._lits, start.pos, self.limits.max_nesting
                )
            except ParseError as exc:
                return self._refuse(start.tag, exc.status, _syntax(start.verb, exc), head)
            append = self._append_head is not None
        if append:
            too_big = head.size is None
        else:
            budget = (
                self.limits.max_literal if self.logged_in else self.limits.max_literal_unauth
            ) - self._literal_total
            if not head.sync and not self.logged_in:
                budget = min(budget, self.limits.max_literal_plus_unsync)
            too_big = head.size is None or head.size > budget
        if too_big:
            self._reset_command()
            text = "Literal too large"
            return self._invalid(start.tag, "BAD", text, response.TOOBIG, close=not head.sync)
        self._lit_size = cast(int, head.size)  # too_big covers None
        self._lit_sync = head.sync
        self._lit_append = append
        self._await = _Await.LITERAL
        return NeedLiteral(start.tag, start.verb.value, self._lit_size, head.sync, append)

    def _finish_command(self) -> Event:
        start = cast(Start, self._start)  # set by the first line
        segs, lits = self._segs, self._lits
        self._reset_command()
        try:
            command = parser.parse_command(
                start.tag, start.verb, segs, lits, start.pos, self.limits.max_nesting
            )
        except ParseError as exc:
            return self._invalid(start.tag, exc.status, _syntax(start.verb, exc), exc.code)
        self._pending = _Pending(start.tag, start.verb)
        self._await = _Await.DRIVER
        return command

    def _read_literal(self) -> object | None:
        take = min(self._left, len(self._buf))
        if take:
            self._lit_buf += self._buf[:take]
            del self._buf[:take]
            self._scanned = 0
            self._left -= take
        if self._left:
            return None
        self._lits.append(bytes(self._lit_buf))
        self._literal_total += self._lit_size
        self._lit_buf = bytearray()
        self._reader = _Reader.LINE
        return _AGAIN

    def _append_start(self) -> Event:
        start = cast(Start, self._start)  # both set before the literal was announced
        head = cast(AppendHead, self._append_head)
        self._reader = _Reader.APPEND_DATA if self._left else _Reader.APPEND_TAIL
        return Append(start.tag, head.mailbox, head.flags, head.internal_date, self._lit_size)

    def _append_data(self) -> Event | None:
        take = min(self._left, len(self._buf), self.limits.append_chunk)
        if not take:
            return None
        chunk = bytes(self._buf[:take])
        del self._buf[:take]
        self._scanned = 0
        self._left -= take
        if not self._left:
            self._reader = _Reader.APPEND_TAIL
        return AppendData(chunk)

    def _append_tail(self) -> Event | None:
        start = cast(Start, self._start)  # set before the literal was announced
        line = self._take_line(self.limits.max_line - self._line_total)
        if line is None:
            return None
        self._reset_command()
        self.mode = Mode.COMMAND
        self._await = _Await.DRIVER
        self._reader = _Reader.STOPPED
        if isinstance(line, _TooLong):
            self._start_discard(skip=0)
            text = "Command line too long"
        elif line:
            # RFC 3502 MULTIAPPEND (or CATENATE, UTF8) is not offered: more than the
            # CRLF after the message is an error, and the message is not stored.
            head = _literal_head(line)
            if head is not None and not head.sync:
                self._start_discard(skip=head.size or 0)
            text = "Only one message per APPEND (MULTIAPPEND is not supported)"
        else:
            return AppendEnd(start.tag)
        return AppendEnd(start.tag, ok=False, response=Status(start.tag, "BAD", text))

    def _discard(self) -> Event | object | None:
        if self._skip:
            take = min(self._skip, len(self._buf))
            if not take:
                return None
            del self._buf[:take]
            self._scanned = 0
            self._skip -= take
            return _AGAIN
        nl = self._buf.find(b"\n")
        if nl < 0:
            self._discard_tail = (self._discard_tail + bytes(self._buf))[-_TAIL:]
            self._buf.clear()
            self._scanned = 0
            return None
        line = (self._discard_tail + bytes(self._buf[:nl]))[-_TAIL - 1 :]
        del self._buf[: nl + 1]
        self._scanned = 0
        self._discard_tail = b""
        line = line[:-1] if line.endswith(b"\r") else line
        head = _literal_head(line, quote_aware=False) if self._discard_literals else None
        if head is not None and not head.sync:
            if self._unsync_too_big(head.size):
                return self._invalid(None, "BAD", "Literal too large", response.TOOBIG, close=True)
            self._skip = head.size or 0
            return _AGAIN
        self._reader = _Reader.LINE
        return _AGAIN

    def _idle_line(self) -> Event | None:
        pending = cast(_Pending, self._pending)  # the IDLE command
        tag = cast(str, pending.tag)
        line = self._take_line(self.limits.max_line)
        if line is None:
            return None
        self.mode = Mode.COMMAND
        self._reader = _Reader.STOPPED
        if isinstance(line, _TooLong):
            self._start_discard(skip=0, literals=False)
        elif line.upper() == b"DONE":
            self._await = _Await.DRIVER
            return Done(tag)
        # RFC 2177 §3: only DONE may follow; anything else ends the IDLE with BAD.
        return self._invalid(tag, "BAD", "Expected DONE to end IDLE", verb=Verb.IDLE)

    def _auth_line(self) -> Event | None:
        pending = cast(_Pending, self._pending)  # the AUTHENTICATE command
        line = self._take_line(self.limits.max_line)
        if line is None:
            return None
        self._reader = _Reader.STOPPED
        if isinstance(line, _TooLong):
            self.mode = Mode.COMMAND
            self._start_discard(skip=0, literals=False)
            return self._invalid(pending.tag, "BAD", "SASL response too long", verb=pending.verb)
        self._await = _Await.DRIVER
        # RFC 9051 §6.2.2: "*" cancels the exchange.
        return AuthResponse(None if line == b"*" else line)


def _inflate_until_error(inflater: zlib._Decompress, data: bytes) -> bytes:
    """What ``inflater`` makes of ``data``, fed one octet at a time, before the octet
    that raises an error. (Less than one inflate step: a call that fills its step
    returns before it reaches the error.)"""
    out = bytearray()
    for i in range(len(data)):
        try:
            out += inflater.decompress(data[i : i + 1])
        except zlib.error:
            break
    return bytes(out)


def _syntax(verb: Verb, exc: ParseError) -> str:
    if exc.status == "BAD":
        return f"Syntax error in {verb.value}: {exc.text}"
    return exc.text
