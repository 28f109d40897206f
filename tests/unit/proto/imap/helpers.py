"""Drive the sans-IO IMAP server machine in tests: feed bytes, answer every event."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from mailwright.proto.imap import command as cmd
from mailwright.proto.imap import response as r
from mailwright.proto.imap.events import (
    AppendData,
    AppendEnd,
    AuthResponse,
    Closed,
    Done,
    Event,
    Invalid,
    NeedData,
    NeedLiteral,
)
from mailwright.proto.imap.server import Limits, ServerConnection

LOGIN = b"a0 LOGIN alice secret\r\n"
SELECT = LOGIN + b"s0 SELECT INBOX\r\n"


class Driver:
    """A permissive session: refusals as the machine says, success for every command,
    a continuation for IDLE and AUTHENTICATE, every literal accepted unless ``reject``
    says otherwise. Records the events, the output and the appended messages."""

    def __init__(
        self,
        conn: ServerConnection,
        *,
        reject: Callable[[NeedLiteral], bool] = lambda event: False,
        tls: bool = False,
        compress: bool = True,
    ) -> None:
        self.conn = conn
        self.compress = compress  # accept COMPRESS (else refuse it with NO)
        self.reject = reject
        self.tls = tls  # call tls_started() right after STARTTLS's OK
        self.events: list[Event] = []
        self.out = bytearray()
        self.appended: list[bytes] = []
        self._tag = ""
        self._message = bytearray()

    def feed(self, data: bytes | Iterable[bytes]) -> None:
        pieces = [data] if isinstance(data, bytes) else list(data)
        for piece in pieces:
            self.conn.receive_data(piece)
            if self.pump():
                return

    def pump(self) -> bool:
        """Answer events until NEED_DATA (False) or CLOSED (True)."""
        while True:
            event = self.conn.next_event()
            if isinstance(event, NeedData):
                return False
            self.events.append(event)
            if isinstance(event, Closed):
                return True
            self.out += self.answer(event)

    def answer(self, event: Event) -> bytes:
        conn = self.conn
        match event:
            case Invalid(response=resp):
                return conn.send(resp)
            case NeedLiteral():
                if self.reject(event):
                    return conn.reject_literal(r.tagged(event.tag, "NO", "Too big", r.TOOBIG))
                return conn.accept_literal()
            case cmd.Login(tag=tag):
                conn.authenticated()
                return conn.send(r.tagged(tag, "OK", "LOGIN completed"))
            case cmd.Authenticate(tag=tag) | cmd.Idle(tag=tag):
                self._tag = tag
                return conn.send_continuation("idling" if isinstance(event, cmd.Idle) else "")
            case AuthResponse(data=None):
                return conn.send(r.tagged(self._tag, "BAD", "Authentication cancelled"))
            case AuthResponse():
                conn.authenticated()
                return conn.send(r.tagged(self._tag, "OK", "Authenticated"))
            case cmd.Select(tag=tag) | cmd.Examine(tag=tag):
                conn.selected(read_only=isinstance(event, cmd.Examine))
                return conn.send(r.exists(2), r.tagged(tag, "OK", "Selected", r.READ_WRITE))
            case cmd.Close(tag=tag) | cmd.Unselect(tag=tag):
                conn.unselected()
                return conn.send(r.tagged(tag, "OK", "Closed"))
            case cmd.Logout(tag=tag):
                conn.logout()
                return conn.send(r.bye("Bye"), r.tagged(tag, "OK", "LOGOUT completed"))
            case cmd.StartTls(tag=tag):
                out = conn.send(r.tagged(tag, "OK", "Begin TLS negotiation"))
                if self.tls:
                    conn.tls_started()
                return out
            case cmd.Compress(tag=tag) if not self.compress:
                return conn.send(r.tagged(tag, "NO", "Not now"))
            case cmd.Compress(tag=tag):
                out = conn.send(r.tagged(tag, "OK", "DEFLATE active"))
                conn.compress_started()
                return out
            case cmd.Append():
                self._message = bytearray()
                return b""
            case AppendData(chunk=chunk):
                self._message += chunk
                return b""
            case AppendEnd(ok=True, tag=tag):
                self.appended.append(bytes(self._message))
                return conn.send(r.tagged(tag, "OK", "APPEND completed"))
            case AppendEnd(response=resp) if resp is not None:
                return conn.send(resp)
            case Done(tag=tag):
                return conn.send(r.tagged(tag, "OK", "IDLE terminated"))
            case cmd.Fetch(tag=tag):
                return conn.send(
                    r.fetch(1, [("FLAGS", [])]), r.tagged(tag, "OK", "FETCH completed")
                )
            case _:
                return conn.send(r.tagged(event.tag, "OK", "Completed"))  # type: ignore[union-attr]


def run(
    data: bytes | Iterable[bytes],
    limits: Limits | None = None,
    *,
    tls_active: bool = False,
    reject: Callable[[NeedLiteral], bool] = lambda event: False,
    tls: bool = False,
) -> Driver:
    driver = Driver(ServerConnection(limits, tls_active=tls_active), reject=reject, tls=tls)
    driver.feed(data)
    return driver


def split(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


def bytewise(data: bytes) -> list[bytes]:
    return split(data, 1)


def merged(events: list[Event]) -> list[Event]:
    """``events`` with adjacent AppendData joined: their split follows the reads."""
    out: list[Event] = []
    for event in events:
        if isinstance(event, AppendData) and out and isinstance(out[-1], AppendData):
            out[-1] = AppendData(out[-1].chunk + event.chunk)
        else:
            out.append(event)
    return out


def lines(out: bytes | bytearray) -> list[str]:
    return bytes(out).decode("utf-8", "replace").split("\r\n")[:-1]


def one(data: bytes, setup: bytes = b"", limits: Limits | None = None) -> Event:
    """The single event for ``data`` after ``setup`` was fed and answered."""
    driver = run([setup] if setup else [], limits)
    start = len(driver.events)
    driver.feed(data)
    events = driver.events[start:]
    assert len(events) == 1, events
    return events[0]


def invalid(data: bytes, setup: bytes = b"", limits: Limits | None = None) -> Invalid:
    event = one(data, setup, limits)
    assert isinstance(event, Invalid), event
    return event
