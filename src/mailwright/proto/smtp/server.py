"""The SMTP server connection: a sans-IO state machine (h11 style).

Use: ``receive_data(bytes)``; loop ``next_event()`` until ``NEED_DATA``; answer each
command with ``send(reply)`` (which returns the bytes to write) before asking for the
next event. ``receive_data(b"")`` means the peer closed.

Invariants:
- the receive buffer never holds more than ``max_line`` + one read of bytes in command
  mode, ``max_auth_line`` + one read in a SASL exchange, nor more than
  ``max_data_line_chunk`` + one read in DATA mode;
- a line after a 334 is a SASL response, never a command (RFC 4954 §4); which of the
  two the next line is gets decided only when the reply before it is sent;
- only CRLF.CRLF ends DATA (RFC 5321 §4.1.1.4); a bare CR or LF never ends a command
  or DATA, and never turns one transaction into two;
- after STARTTLS is answered 220, bytes already buffered are discarded (RFC 3207 §4.2).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from mailwright.core.address import AddressError, parse_path
from mailwright.core.errors import LocalProtocolError
from mailwright.core.reply import Reply
from mailwright.proto.smtp import replies
from mailwright.proto.smtp.events import (
    CLOSED,
    NEED_DATA,
    Auth,
    AuthResponse,
    Bdat,
    Data,
    DataChunk,
    Ehlo,
    EndOfData,
    Event,
    Helo,
    Help,
    Invalid,
    MailFrom,
    Noop,
    Quit,
    RcptTo,
    Rset,
    StartTls,
    Vrfy,
)
from mailwright.proto.smtp.state import State, Verb, after_reply, authenticates, check

# ESMTP parameter names, for the driver to combine into ``Limits.mail_params`` and
# ``Limits.rcpt_params``: e.g. ``BASE_MAIL_PARAMS | DSN_MAIL_PARAMS | {AUTH_MAIL_PARAM}``.
BASE_MAIL_PARAMS = frozenset({"SIZE", "BODY", "SMTPUTF8"})  # RFC 1870, 6152, 6531
DSN_MAIL_PARAMS = frozenset({"RET", "ENVID"})  # RFC 3461 §4.3, §4.4
DSN_RCPT_PARAMS = frozenset({"NOTIFY", "ORCPT"})  # RFC 3461 §4.1, §4.2
AUTH_MAIL_PARAM = "AUTH"  # RFC 4954 §5


@dataclass(frozen=True, slots=True)
class Limits:
    """Bounds the machine enforces itself. Defaults follow the foundation issue."""

    max_line: int = 2048  # RFC 5321 §4.5.3.1.4 asks for at least 512
    max_message_size: int = 25 * 1024 * 1024
    max_data_line: int = 1024 * 1024  # longer text lines are stored intact up to this
    max_errors: int = 20  # then 421 and close
    normalize_bare_lf: bool = False  # Postfix's smtpd_forbid_bare_newline = normalize
    mail_params: frozenset[str] = BASE_MAIL_PARAMS
    rcpt_params: frozenset[str] = frozenset()
    auth: bool = False  # RFC 4954 AUTH; off (502 not implemented) for the port-25 role
    # RFC 4954 §4: a server must take SASL response lines of 12288 octets (CRLF included
    # here, as in ``max_line``); the AUTH command line itself stays within ``max_line``.
    max_auth_line: int = 12288


@dataclass(frozen=True, slots=True)
class _LineRefusals:
    """What a line that cannot be read gets, in command mode and in a SASL exchange."""

    too_long: Reply
    bare_newline: Reply
    nul: Reply


_COMMAND_LINE = _LineRefusals(
    replies.LINE_TOO_LONG, replies.BARE_NEWLINE_COMMAND, replies.NUL_IN_COMMAND
)
_AUTH_LINE = _LineRefusals(replies.AUTH_LINE_TOO_LONG, replies.AUTH_BARE_NEWLINE, replies.AUTH_NUL)


_DATA_SPILL = 64 * 1024  # a partial DATA line longer than this is passed on in pieces
_VERBS = {v.value: v for v in Verb if v is not Verb.END_OF_DATA}
_NOT_IMPLEMENTED = {"EXPN", "TURN", "ETRN", "ATRN", "SEND", "SOML", "SAML", "AUTH", "XCLIENT"}
_PARAM = re.compile(r"([A-Za-z0-9][A-Za-z0-9-]*)(?:=([\x21-\x3c\x3e-\x7e\u0080-\U0010ffff]+))?")
# RFC 4422 §3.1: a mechanism name is 1 to 20 of A-Z, 0-9, "-", "_" (taken in any case
# and upper-cased). RFC 4954 §4: the initial response is base64, or "=" for an empty one;
# only the characters are checked here, decoding is the driver's.
_AUTH_ARG = re.compile(r"([A-Za-z0-9_-]{1,20})(?: +([A-Za-z0-9+/=]+))?")
# RFC 3461 §4 xtext: xchar is 0x21-0x7E except "+" and "="; "+" is followed by two
# upper-case hex digits. The machine never decodes it, but checks what the octets would
# be: a control character (CR, LF, NUL among them) is refused wherever it would land.
_XCHAR = r"[\x21-\x2a\x2c-\x3c\x3e-\x7e]"
_XPRINTABLE = r"\+(?:[2-6][0-9A-F]|7[0-9A-E])"  # an escaped octet 0x20-0x7E
_XEIGHT_BIT = r"\+[89A-F][0-9A-F]"
# RFC 3461 §4.2, §4.4: ORCPT's address and ENVID are printable US-ASCII once decoded.
_XTEXT_PRINTABLE = re.compile(rf"(?:{_XCHAR}|{_XPRINTABLE})+")
# RFC 4954 §5: AUTH=<mailbox>; a UTF-8 mailbox arrives as escaped 8-bit octets.
_XTEXT_MAILBOX = re.compile(rf"(?:{_XCHAR}|{_XPRINTABLE}|{_XEIGHT_BIT})+")
_ORCPT = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+;(.+)")  # RFC 3461 §4.2: atom ";" xtext
_ENVID_MAX = 100  # RFC 3461 §4.4, counted once decoded
_NOTIFY_WHEN = frozenset({"SUCCESS", "FAILURE", "DELAY"})
# a dot line with a bare LF on either side ("\n.\n", "\n.\r\n", "\r\n.\n"); starts at the LF
_BARE_DOT_LINE = re.compile(rb"(?<!\r)\n\.\r?\n|(?<=\r)\n\.\n")
_BARE_LF = re.compile(rb"(?<!\r)\n")
# Which refusal a message gets when it has several problems: a fixed order, not the first
# one noticed, so that the reply does not depend on how the bytes were split into reads.
_DATA_ERROR_RANK = {
    replies.BARE_NEWLINE_DATA: 0,
    replies.NUL_IN_DATA: 1,
    replies.DATA_LINE_TOO_LONG: 2,
    replies.SIZE_EXCEEDED: 3,
}


class ServerConnection:
    def __init__(self, limits: Limits | None = None) -> None:
        self.limits = limits or Limits()
        self.state = State.CONNECTED
        self.error_count = 0
        self.discarded_plaintext = 0  # bytes dropped at STARTTLS (logged by the driver)
        self._buf = bytearray()
        self._eof = False
        self._pending: Verb | None = None  # the command awaiting our reply
        self._smtputf8 = False
        self._authenticated = False
        self._discarding_line = False
        # DATA / BDAT reading
        self._tail = b"\r\n"  # the last two raw DATA bytes read (CRLF at the start)
        self._line_len = 0  # length of the current (partial) content line
        self._data_size = 0
        self._data_error: Reply | None = None
        self._data_close = False
        self._bdat_left = 0
        self._bdat_last = False
        self._bdat_refusal: Reply | None = None
        self._resume_state = State.CONNECTED
        self._chunk_cr = False  # the previous BDAT piece ended in CR
        self._data_done = False

    # -- input ---------------------------------------------------------------

    def receive_data(self, data: bytes) -> None:
        if data:
            if self.state is State.TLS:
                self.discarded_plaintext += len(data)
                return
            if self.state is State.CLOSED:
                return  # nothing will read it: keep the buffer bounded
            self._buf += data
        else:
            self._eof = True

    def next_event(self) -> Event:
        if self._pending is not None:
            raise LocalProtocolError(f"reply to {self._pending.value} not sent yet")
        if self.state is State.CLOSED:
            return CLOSED
        if self.state is State.DATA:
            event = self._next_data()
        elif self.state is State.BDAT:
            event = self._next_bdat()
        elif self.state is State.TLS:
            event = NEED_DATA  # the peer may still hang up during the handshake
        elif self.state is State.AUTH:
            event = self._next_auth_response()
        else:
            event = self._next_command()
        if event is NEED_DATA and self._eof:
            self.state = State.CLOSED
            return CLOSED
        return event

    # -- output --------------------------------------------------------------

    def send(self, reply: Reply) -> bytes:
        """Bytes for ``reply`` to the pending command; applies its state change."""
        verb = self._pending
        if verb is None:
            raise LocalProtocolError("no command is waiting for a reply")
        self._pending = None
        out = reply.to_bytes()
        if verb is Verb.END_OF_DATA:
            self.state = after_reply(self.state, verb, reply, last_chunk=self._bdat_last)
            if self._data_close and reply.code != 421:
                self.state = State.CLOSED
        else:
            self.state = after_reply(self.state, verb, reply)
        if authenticates(verb, reply):
            self._authenticated = True
        if self.state is State.DATA:
            self._start_data()
        if self.state is State.TLS:
            # RFC 3207 §4.2: anything pipelined behind STARTTLS is not trusted.
            self.discarded_plaintext += len(self._buf)
            self._buf.clear()
        if reply.code >= 400 and reply.code != 421:
            self.error_count += 1
            if self.error_count >= self.limits.max_errors and self.state is not State.CLOSED:
                out += replies.TOO_MANY_ERRORS.to_bytes()
                self.state = State.CLOSED
        return out

    def send_unsolicited(self, reply: Reply) -> bytes:
        """Greeting, timeout or shutdown notices: replies to no command."""
        if reply.code == 421:
            self.state = State.CLOSED
        return reply.to_bytes()

    def tls_started(self) -> None:
        """The TLS handshake after STARTTLS succeeded: RFC 3207 §4.2 resets the session."""
        if self.state is not State.TLS:
            raise LocalProtocolError("tls_started() without STARTTLS")
        self.state = State.CONNECTED
        self._smtputf8 = False
        self._authenticated = False

    @property
    def authenticated(self) -> bool:
        """A 235 was sent to AUTH. Kept across RSET and EHLO (as Postfix does); a TLS
        handshake ends it (RFC 3207 §4.2)."""
        return self._authenticated

    @property
    def should_delay(self) -> bool:
        """Past half the error cap, the driver slows each reply (Postfix's soft limit)."""
        return self.error_count > 0 and self.error_count >= self.limits.max_errors // 2

    @property
    def in_transaction(self) -> bool:
        return self.state in (State.MAIL, State.RCPT, State.DATA, State.BDAT, State.BDAT_MORE)

    # -- commands ------------------------------------------------------------

    def _take_line(self, limit: int, refusals: _LineRefusals) -> bytes | Reply | None:
        """The next line without its CRLF, the refusal for a line that cannot be read,
        or None while the line is incomplete. Lines over ``limit`` are dropped as they
        arrive, so the buffer stays bounded."""
        nl = self._buf.find(b"\n")
        if nl < 0:
            if len(self._buf) > limit:
                # keep the tail CR: it may pair with the next LF
                self._discarding_line = True
                del self._buf[:-1]
            return None
        raw = bytes(self._buf[: nl + 1])
        del self._buf[: nl + 1]
        if self._discarding_line or len(raw) > limit:
            self._discarding_line = False
            return refusals.too_long
        if not raw.endswith(b"\r\n"):
            if not self.limits.normalize_bare_lf:
                return refusals.bare_newline
            raw = raw[:-1] + b"\r\n"
        line = raw[:-2]
        if b"\r" in line:
            return refusals.bare_newline
        if b"\0" in line:
            return refusals.nul
        return line

    def _next_command(self) -> Event:
        line = self._take_line(self.limits.max_line, _COMMAND_LINE)
        if line is None:
            return NEED_DATA
        if isinstance(line, Reply):
            return self._refuse(line)
        return self._parse_command(line)

    def _next_auth_response(self) -> Event:
        """A line after 334 (RFC 4954 §4). A refusal ends the exchange: the pending verb
        is AUTH, so the machine goes back to GREETED when it is sent."""
        line = self._take_line(self.limits.max_auth_line, _AUTH_LINE)
        if line is None:
            return NEED_DATA
        if isinstance(line, Reply):
            return self._refuse(line, Verb.AUTH)
        if not line.isascii():
            return self._refuse(replies.AUTH_EIGHT_BIT, Verb.AUTH)
        self._pending = Verb.AUTH
        return AuthResponse(line.decode("ascii"))

    def _refuse(self, reply: Reply, verb: Verb = Verb.NOOP) -> Invalid:
        self._pending = verb
        return Invalid(reply)

    def _parse_command(self, line: bytes) -> Event:
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError:
            return self._refuse(replies.EIGHT_BIT_COMMAND)
        word, _, arg = text.partition(" ")
        name = word.upper()
        # Only an ASCII word names a command: "MA\u0131L".upper() == "MAIL".
        verb = _VERBS.get(name) if word.isascii() else None
        if verb is Verb.AUTH and not self.limits.auth:
            verb = None  # answered as not implemented, below
        if verb is None:
            if name in _NOT_IMPLEMENTED:
                return self._refuse(replies.NOT_IMPLEMENTED)
            return self._refuse(replies.SYNTAX_ERROR)
        if not text.isascii() and verb not in (Verb.MAIL, Verb.RCPT, Verb.VRFY):
            return self._refuse(replies.EIGHT_BIT_COMMAND)
        refusal = check(self.state, verb, authenticated=self._authenticated)
        if refusal is not None:
            if verb is Verb.BDAT:
                return self._refuse_bdat(arg, refusal)
            return self._refuse(refusal)
        event = self._build(verb, arg.strip(" "))
        if isinstance(event, Invalid):
            return event
        if isinstance(event, Bdat):
            self._start_bdat(event)
            return event
        self._pending = verb
        return event

    def _build(self, verb: Verb, arg: str) -> Event:
        match verb:
            case Verb.EHLO | Verb.HELO:
                if not arg or " " in arg:
                    return self._refuse(Reply(501, "5.5.4", f"Syntax: {verb.value} hostname"))
                return Ehlo(arg) if verb is Verb.EHLO else Helo(arg)
            case Verb.MAIL:
                return self._parse_mail(arg)
            case Verb.RCPT:
                return self._parse_rcpt(arg)
            case Verb.BDAT:
                return self._parse_bdat(arg)
            case Verb.VRFY:
                if not arg:
                    return self._refuse(Reply(501, "5.5.4", "Syntax: VRFY address"))
                return Vrfy(arg)
            case Verb.HELP:
                return Help(arg)
            case Verb.NOOP:
                return Noop()  # RFC 5321 §4.1.1.9: a parameter string is ignored
            case Verb.AUTH:
                m = _AUTH_ARG.fullmatch(arg)
                if m is None:
                    return self._refuse(replies.AUTH_SYNTAX)
                return Auth(m.group(1).upper(), m.group(2))
            case _:
                if arg:
                    return self._refuse(
                        Reply(501, "5.5.4", f"Syntax: {verb.value} takes no arguments")
                    )
                return _SIMPLE[verb]

    def _split_path(self, arg: str, keyword: str) -> tuple[str, str] | Invalid:
        if not arg.upper().startswith(keyword):
            return self._refuse(Reply(501, "5.5.4", f"Syntax: {keyword}<address>"))
        rest = arg[len(keyword) :].lstrip(" ")
        if not rest.startswith("<"):
            return self._refuse(
                Reply(
                    501,
                    "5.1.7" if keyword == "FROM:" else "5.1.3",
                    "Bad address syntax: address must be in <>",
                )
            )
        # a quoted local part may hold '>': find the real end outside quotes
        end = _path_end(rest)
        if end < 0:
            return self._refuse(Reply(501, "5.5.4", "Syntax error: missing >"))
        return rest[: end + 1], rest[end + 1 :].strip(" ")

    def _parse_params(
        self, text: str, allowed: frozenset[str], checks: dict[str, _ParamCheck]
    ) -> dict[str, str | None] | Invalid:
        """The parameters in ``text``; those with an entry in ``checks`` have their value
        checked and stored as the check returns it."""
        params: dict[str, str | None] = {}
        for item in text.split():
            m = _PARAM.fullmatch(item)
            if m is None:
                return self._refuse(Reply(501, "5.5.4", f"Bad parameter syntax: {item[:40]}"))
            key = m.group(1).upper()
            if key in params:
                return self._refuse(Reply(501, "5.5.4", f"Duplicate parameter: {key}"))
            if key not in allowed:
                return self._refuse(
                    replies.BAD_PARAMETER.with_text(f"Unsupported parameter: {key}")
                )
            value = m.group(2)
            if key in checks:
                value_check, refusal = checks[key]
                value = value_check(value)
                if value is None:
                    return self._refuse(refusal)
            params[key] = value
        return params

    def _parse_mail(self, arg: str) -> Event:
        split = self._split_path(arg, "FROM:")
        if isinstance(split, Invalid):
            return split
        path, rest = split
        params = self._parse_params(rest, self.limits.mail_params, _MAIL_CHECKS)
        if isinstance(params, Invalid):
            return params
        if "SMTPUTF8" in params and params["SMTPUTF8"] is not None:
            return self._refuse(Reply(501, "5.5.4", "SMTPUTF8 takes no value"))
        if "SIZE" in params:
            size = params["SIZE"]
            if size is None or not (size.isascii() and size.isdigit()) or len(size) > 20:
                return self._refuse(Reply(501, "5.5.4", "SIZE requires a number"))
        body = params.get("BODY", "7BIT") or ""
        if not body.isascii() or body.upper() not in ("7BIT", "8BITMIME"):
            return self._refuse(replies.BAD_PARAMETER.with_text("BODY must be 7BIT or 8BITMIME"))
        utf8 = "SMTPUTF8" in params
        try:
            address = parse_path(path, utf8=utf8, allow_null=True)
        except AddressError as exc:
            return self._refuse(Reply(501, "5.1.7", f"Bad sender address syntax: {exc}"))
        self._smtputf8 = utf8
        return MailFrom(address, params)

    def _parse_rcpt(self, arg: str) -> Event:
        split = self._split_path(arg, "TO:")
        if isinstance(split, Invalid):
            return split
        path, rest = split
        params = self._parse_params(rest, self.limits.rcpt_params, _RCPT_CHECKS)
        if isinstance(params, Invalid):
            return params
        try:
            address = parse_path(path, utf8=self._smtputf8, allow_postmaster=True)
        except AddressError as exc:
            return self._refuse(Reply(501, "5.1.3", f"Bad recipient address syntax: {exc}"))
        return RcptTo(address, params)  # type: ignore[arg-type]

    # -- DATA ----------------------------------------------------------------

    def _start_data(self) -> None:
        self._tail = b"\r\n"
        self._line_len = 0
        self._data_size = 0
        self._data_error = None
        self._data_close = False
        self._data_done = False
        self._bdat_last = True

    def _fail_data(self, reply: Reply) -> None:
        if self._data_error is None or _DATA_ERROR_RANK[reply] < _DATA_ERROR_RANK[self._data_error]:
            self._data_error = reply

    def _next_data(self) -> Event:
        while True:
            if self._data_done:
                return self._end_of_data()
            piece = self._take_data()
            if piece is None:
                return NEED_DATA
            self._count(len(piece))
            if piece and self._data_error is None:
                return DataChunk(piece)

    def _take_data(self) -> bytes | None:
        """The next run of unstuffed content from the buffer, or None if more is needed.

        Sets ``_data_done`` when the end marker was found.
        """
        buf = self._buf
        nl = buf.rfind(b"\n")
        line_start = self._tail.endswith(b"\n")
        if nl < 0:
            if len(buf) <= _DATA_SPILL:
                return None
            # One long line: pass it on in pieces, holding back a trailing CR.
            cut = len(buf) - 1 if buf.endswith(b"\r") else len(buf)
            piece = bytes(buf[:cut])
            del buf[:cut]
            self._tail = (self._tail + piece)[-2:]
            if b"\r" in piece:
                self._fail_data(replies.BARE_NEWLINE_DATA)
            self._line_len += len(piece)  # raw octets, as for a whole line below
            self._check_line_length(self._line_len)
            if line_start and piece.startswith(b"."):
                piece = piece[1:]
            return piece
        region = bytes(buf[: nl + 1])
        # Search the region together with the two bytes read before it, so that a marker
        # split across reads is seen exactly as it would be in one read.
        scan = self._tail + region
        end = scan.find(b"\r\n.\r\n")  # when found, the content is region[:end]
        content = region if end < 0 else region[:end]
        consumed = nl + 1 if end < 0 else end + 3
        crlf = content.count(b"\r\n")
        if content.count(b"\r") != crlf:
            self._fail_data(replies.BARE_NEWLINE_DATA)
        if content.count(b"\n") != crlf:
            if self.limits.normalize_bare_lf:
                content = _BARE_LF.sub(b"\r\n", content)
            else:
                self._fail_data(replies.BARE_NEWLINE_DATA)
        # A bare-LF dot line needs a bare LF somewhere in ``scan``: count before searching.
        if not self.limits.normalize_bare_lf and scan.count(b"\n") != scan.count(b"\r\n"):
            dot = _BARE_DOT_LINE.search(scan)
            if dot is not None and (end < 0 or dot.start() < end):
                # A client ending DATA with a bare-LF dot: refuse now and hang up,
                # so that nothing it sends next is read as a command.
                self._fail_data(replies.BARE_NEWLINE_DATA)
                content = region[: max(dot.start() - 2, 0)]
                self._data_close = True
                end = dot.start()
                consumed = len(buf)
        del buf[:consumed]
        if b"\0" in content:
            self._fail_data(replies.NUL_IN_DATA)
        first = content.find(b"\n")
        longest = self._line_len + (first if first >= 0 else len(content))
        if len(content) > self.limits.max_data_line:
            longest = max(longest, *(len(line) for line in content.split(b"\n")))
        self._check_line_length(longest - 1)
        # RFC 5321 §4.5.2: drop the first character of a line that starts with a period.
        if line_start and content.startswith(b"."):
            content = content[1:]
        content = content.replace(b"\r\n.", b"\r\n")
        self._tail = (self._tail + region)[-2:]
        self._line_len = 0
        self._data_done = end >= 0
        return content

    def _check_line_length(self, length: int) -> None:
        if length > self.limits.max_data_line:
            self._fail_data(replies.DATA_LINE_TOO_LONG)

    def _count(self, n: int) -> None:
        self._data_size += n
        if self._data_size > self.limits.max_message_size:
            self._fail_data(replies.SIZE_EXCEEDED)

    def _end_of_data(self) -> EndOfData:
        self._pending = Verb.END_OF_DATA
        self._data_done = False
        return EndOfData(self._data_error, last=self._bdat_last)

    # -- BDAT (RFC 3030) -------------------------------------------------------

    def _parse_bdat(self, arg: str) -> Bdat | Invalid:
        parts = arg.split()
        if not 1 <= len(parts) <= 2 or not parts[0].isdigit() or len(parts[0]) > 20:
            return self._refuse(Reply(501, "5.5.4", "Syntax: BDAT size [LAST]"))
        if len(parts) == 2 and parts[1].upper() != "LAST":
            return self._refuse(Reply(501, "5.5.4", "Syntax: BDAT size [LAST]"))
        return Bdat(int(parts[0]), len(parts) == 2)

    def _refuse_bdat(self, arg: str, refusal: Reply) -> Event:
        """A BDAT we refuse still carries its chunk: read and drop it, then refuse."""
        parsed = self._parse_bdat(arg)
        if isinstance(parsed, Invalid):
            return parsed  # unknown size: nothing sensible can be skipped
        self._bdat_refusal = refusal
        self._resume_state = self.state
        self._bdat_left = parsed.size
        self.state = State.BDAT
        return self._next_bdat()

    def _start_bdat(self, event: Bdat) -> None:
        if self.state is not State.BDAT_MORE:
            self._data_size = 0
            self._data_error = None
            self._chunk_cr = False
        self._data_close = False
        self._bdat_left = event.size
        self._bdat_last = event.last
        self._bdat_refusal = None
        self.state = State.BDAT

    def _next_bdat(self) -> Event:
        while self._bdat_left > 0:
            if not self._buf:
                return NEED_DATA
            take = min(self._bdat_left, len(self._buf))
            piece = bytes(self._buf[:take])
            del self._buf[:take]
            self._bdat_left -= take
            if self._bdat_refusal is not None:
                continue
            self._count(len(piece))
            piece = self._check_chunk(piece)
            if self._data_error is None and piece:
                return DataChunk(piece)
        if self._bdat_refusal is not None:
            refusal, self._bdat_refusal = self._bdat_refusal, None
            self.state = self._resume_state
            return self._refuse(refusal)
        if self._bdat_last and self._chunk_cr:
            self._fail_data(replies.BARE_NEWLINE_DATA)
        self._pending = Verb.END_OF_DATA
        return EndOfData(self._data_error, last=self._bdat_last)

    def _check_chunk(self, piece: bytes) -> bytes:
        """Bare CR/LF and NUL rules for BDAT content, across chunk boundaries.

        ``piece`` is never empty: ``_next_bdat`` only passes bytes it took.
        """
        if b"\0" in piece:
            self._fail_data(replies.NUL_IN_DATA)
        joined_lf = self._chunk_cr and piece.startswith(b"\n")
        if self._chunk_cr and not joined_lf:
            self._fail_data(replies.BARE_NEWLINE_DATA)
        self._chunk_cr = piece.endswith(b"\r")
        crlf = piece.count(b"\r\n")
        if piece.count(b"\r") - crlf - self._chunk_cr > 0:
            self._fail_data(replies.BARE_NEWLINE_DATA)
        if piece.count(b"\n") - crlf - joined_lf > 0:
            if not self.limits.normalize_bare_lf:
                self._fail_data(replies.BARE_NEWLINE_DATA)
            elif joined_lf:
                piece = b"\n" + _BARE_LF.sub(b"\r\n", piece[1:])
            else:
                piece = _BARE_LF.sub(b"\r\n", piece)
        return piece


# -- ESMTP parameter values --------------------------------------------------------------
# Each check returns the value to store (RET and NOTIFY upper-cased, the rest as sent,
# xtext undecoded) or None when the value is bad. A parameter without "=" has value None.


def _auth_param(value: str | None) -> str | None:
    # RFC 4954 §5: AUTH=<> (identity unknown or not trusted) or an xtext mailbox.
    if value is None or (value != "<>" and _XTEXT_MAILBOX.fullmatch(value) is None):
        return None
    return value


def _ret_param(value: str | None) -> str | None:
    # RFC 3461 §4.3: RET=FULL or RET=HDRS. isascii() first: "\u017f".upper() == "S".
    if value is None or not value.isascii() or value.upper() not in ("FULL", "HDRS"):
        return None
    return value.upper()


def _envid_param(value: str | None) -> str | None:
    if value is None or _XTEXT_PRINTABLE.fullmatch(value) is None:
        return None
    # each "+XX" is one octet once decoded
    if len(value) - 2 * value.count("+") > _ENVID_MAX:
        return None
    return value


def _notify_param(value: str | None) -> str | None:
    # RFC 3461 §4.1: NEVER alone, or a list of SUCCESS, FAILURE and DELAY.
    if value is None or not value.isascii():
        return None
    upper = value.upper()
    items = upper.split(",")
    if len(set(items)) != len(items):
        return None
    if items != ["NEVER"] and not _NOTIFY_WHEN.issuperset(items):
        return None
    return upper


def _orcpt_param(value: str | None) -> str | None:
    m = _ORCPT.fullmatch(value) if value is not None else None
    if m is None or _XTEXT_PRINTABLE.fullmatch(m.group(1)) is None:
        return None
    return value


_ParamCheck = tuple[Callable[[str | None], str | None], Reply]
_MAIL_CHECKS: dict[str, _ParamCheck] = {
    AUTH_MAIL_PARAM: (_auth_param, replies.BAD_AUTH_PARAM),
    "RET": (_ret_param, replies.BAD_RET_PARAM),
    "ENVID": (_envid_param, replies.BAD_ENVID_PARAM),
}
_RCPT_CHECKS: dict[str, _ParamCheck] = {
    "NOTIFY": (_notify_param, replies.BAD_NOTIFY_PARAM),
    "ORCPT": (_orcpt_param, replies.BAD_ORCPT_PARAM),
}


def _path_end(rest: str) -> int:
    quoted = False
    escaped = False
    for i, ch in enumerate(rest):
        if escaped:
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch == '"':
            quoted = not quoted
        elif ch == ">" and not quoted:
            return i
    return -1


_SIMPLE: dict[Verb, Event] = {
    Verb.DATA: Data(),
    Verb.RSET: Rset(),
    Verb.NOOP: Noop(),
    Verb.QUIT: Quit(),
    Verb.STARTTLS: StartTls(),
}
