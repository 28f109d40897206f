"""What every listener shares: a client connection as an asyncio ``Protocol``, and the reaper.

A ``Connection`` is the bytes side of one client: ``read()`` returns what arrived,
``write()`` sends, ``drain()`` waits while the kernel's send buffer is full,
``start_tls()`` upgrades in place. It replaces asyncio's StreamReader/StreamWriter pair,
whose bookkeeping cost more per command than the protocol machines themselves.

Invariants:
- bytes are handed to the reading task in the order they arrived, and at most about
  ``max_pending`` of them are buffered while the task is busy: past that, the transport
  stops reading until the task asks for more (TCP back-pressure, not memory);
- ``read()`` returns ``b""`` once the peer has closed, and raises ``ConnectionError`` if
  the connection broke; after ``start_tls()`` nothing received before the handshake is
  ever returned (RFC 3207 §4.2, RFC 2595 §3.1: pipelined plaintext is discarded);
- one ``Reaper`` per listener ends connections whose deadline passed while they wait to
  read — one timer task for all, where a timeout per read costs more than a command;
- an ``Acceptor`` takes one connection at a time from a listening socket every worker
  process shares, and lets a less loaded worker take it when it can: a worker with more
  open connections than another waits a moment (``BALANCE_WAIT``) before accepting, at
  most ``BALANCE_TRIES`` times in a row, so a worker that is dead or stuck delays a
  client by milliseconds, never loses it. (The event loop's own server accepts every
  waiting connection at once: ten clients that connect together could all land on one
  worker and stay there for the life of their sessions.)
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import socket
import ssl
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import cast

from mailwright.core.log import event as log_event
from mailwright.metrics import meter
from mailwright.serve.limits import ConnectionLimiter
from mailwright.serve.tls import describe

log = logging.getLogger("mailwright.serve")

BALANCE_WAIT = 0.001  # seconds a busier worker leaves a new connection to the others
BALANCE_TRIES = 10  # waits in a row before it accepts anyway
_OUT_OF_RESOURCES = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
_RESOURCE_PAUSE = 0.1  # seconds without accepting when the process is out of descriptors

_MAX_PENDING = 256 * 1024


@dataclass(slots=True, eq=False)
class Deadline:
    """A connection's timing state, as the reaper sees it."""

    task: asyncio.Task[None] | None = None
    reading: bool = False  # waiting for bytes from the client
    deadline: float = 0.0  # loop time by which the next command must be complete
    session_end: float = float("inf")  # loop time by which the whole session must end
    timed_out: bool = False


class Connection(asyncio.Protocol):
    def __init__(
        self,
        *,
        tls_context: Callable[[], ssl.SSLContext | None] | None = None,
        tls_handshake_timeout: float = 60.0,
        max_pending: int = _MAX_PENDING,
    ) -> None:
        self.transport: asyncio.Transport | None = None
        self.tls_context = tls_context
        self.tls_handshake_timeout = tls_handshake_timeout
        self.on_open: Callable[[Connection], None] | None = None
        self.idle = True  # waiting for a command with nothing at stake (shutdown may end it)
        self.counted = False  # holds a slot in the connection caps
        self.implicit_tls = False  # accepted on an implicit-TLS port
        # The client's address, kept from the start: a TLS transport forgets it once the
        # peer has gone, and the connection caps release the slot of this address.
        self.peer: tuple[str, int] = ("?", 0)
        # In (or waiting for) the TLS handshake: from the first byte on an implicit-TLS
        # port, during start_tls after STARTTLS. Nothing in plaintext may go out then.
        self.handshaking = False
        self.timing = Deadline()
        self._max_pending = max_pending
        self._pending = bytearray()
        self._reader: asyncio.Future[bytes] | None = None
        self._writable: asyncio.Future[None] | None = None
        self._write_paused = False
        self._read_paused = False
        self._eof = False
        self._lost = False
        self._error: BaseException | None = None

    # -- asyncio.Protocol callbacks -------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's TCP transport is not an asyncio.Transport subclass, but has its API.
        self.transport = cast(asyncio.Transport, transport)
        name = transport.get_extra_info("peername")
        if name:
            self.peer = str(name[0]), int(name[1])
        self.handshaking = self.implicit_tls
        if self.on_open is not None:
            self.on_open(self)

    def data_received(self, data: bytes) -> None:
        reader = self._reader
        if reader is not None and not reader.done():
            # The task is waiting: hand the bytes over without copying them.
            self._reader = None
            reader.set_result(data)
            return
        self._pending += data
        if len(self._pending) > self._max_pending and not self._read_paused and self.transport:
            self._read_paused = True
            self.transport.pause_reading()

    def eof_received(self) -> bool:
        self._eof = True
        self._wake_reader()
        return False  # close our side too: a half-open SMTP/POP3/IMAP session is useless

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost = True
        self._error = exc
        self._wake_reader()
        writable = self._writable
        if writable is not None and not writable.done():
            writable.set_result(None)

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        writable = self._writable
        if writable is not None and not writable.done():
            writable.set_result(None)

    def _wake_reader(self) -> None:
        reader = self._reader
        if reader is not None and not reader.done():
            self._reader = None
            if self._error is not None:
                reader.set_exception(ConnectionResetError(str(self._error)))
            else:
                reader.set_result(b"")

    # -- what the listeners use ---------------------------------------------------

    async def read(self) -> bytes:
        """The next bytes from the client; ``b""`` once it has closed."""
        if self._pending:
            data = bytes(self._pending)
            self._pending.clear()
            if self._read_paused and self.transport is not None:
                self._read_paused = False
                self.transport.resume_reading()
            return data
        if self._error is not None:
            raise ConnectionResetError(str(self._error))
        if self._eof or self._lost:
            return b""
        reader = asyncio.get_running_loop().create_future()
        self._reader = reader
        self.timing.reading = True  # only now may the reaper end this connection
        try:
            received: bytes = await reader
            return received
        finally:
            self._reader = None
            self.timing.reading = False

    def expect_within(self, seconds: float) -> None:
        """The next complete command must arrive within ``seconds`` (or the session's end)."""
        timing = self.timing
        timing.deadline = min(asyncio.get_running_loop().time() + seconds, timing.session_end)

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self.transport is None or self._lost or self.transport.is_closing():
            raise ConnectionResetError("connection closed")
        self.transport.write(data)

    def writelines(self, chunks: Iterable[bytes]) -> None:
        if self.transport is None or self._lost or self.transport.is_closing():
            raise ConnectionResetError("connection closed")
        self.transport.writelines(chunks)

    async def drain(self) -> None:
        """Wait while the transport's send buffer is above its high-water mark."""
        while self._write_paused and not self._lost:
            writable = asyncio.get_running_loop().create_future()
            self._writable = writable
            try:
                await writable
            finally:
                self._writable = None
        if self._lost:
            raise ConnectionResetError("connection closed")

    def discard_pending(self) -> int:
        """Drop what was received but not read; how many bytes that was."""
        n = len(self._pending)
        self._pending.clear()
        return n

    async def upgrade_tls(self) -> str:
        """``start_tls`` with the listener's context and handshake timeout."""
        if self.tls_context is None:  # pragma: no cover - TLS is offered only with a context
            raise ConnectionAbortedError("no TLS context")
        context = self.tls_context()
        if context is None:  # pragma: no cover - TLS is offered only with a context
            raise ConnectionAbortedError("TLS context vanished")
        return await self.start_tls(context, self.tls_handshake_timeout)

    async def start_tls(self, context: ssl.SSLContext, handshake_timeout: float) -> str:
        """Upgrade to TLS in place; returns the protocol and cipher, for the log and Received.

        Bytes received but not read when this is called are the client's first handshake
        bytes: on an implicit-TLS port the transport reads the ClientHello as soon as the
        connection is made, before the session task gets here; after STARTTLS the client
        sends it as soon as it reads our answer (plaintext pipelined behind the command
        was discarded before that answer). They go to the TLS layer ``loop.start_tls``
        installs, as if just received (``_replay``); anything else there fails the
        handshake, as garbage on the wire would.
        """
        if self.transport is None:  # pragma: no cover - only called on a live connection
            raise ConnectionResetError("connection closed")
        self._read_paused = False  # start_tls resumes reading on the new transport
        early = bytes(self._pending)
        self._pending.clear()
        loop = asyncio.get_running_loop()
        if early:
            # Runs before the TLS layer's connection_made, which loop.start_tls schedules
            # (with no await before it) after this: the layer keeps the bytes for the
            # handshake it then starts.
            loop.call_soon(_replay, self.transport, early)
        # The handshake waits on the client: the reaper ends it at its deadline, as it
        # ends any wait for a client (asyncio's own timeout, a little later, backs it up).
        self.handshaking = True
        deadline = self.timing.deadline
        self.expect_within(handshake_timeout)
        self.timing.reading = True
        try:
            transport = await loop.start_tls(
                self.transport,
                self,
                context,
                server_side=True,
                ssl_handshake_timeout=handshake_timeout + 5,
            )
        finally:
            self.timing.reading = False
        self.handshaking = False
        self.timing.deadline = deadline  # the next command's, as before the handshake
        if transport is None:  # pragma: no cover - only when the peer vanished mid-handshake
            raise ConnectionResetError("connection closed during the TLS handshake")
        self.transport = transport
        return describe(transport.get_extra_info("ssl_object")) or "TLS"

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()


def _replay(transport: asyncio.BaseTransport, data: bytes) -> None:
    """Give ``data`` to the protocol now on ``transport`` (the TLS layer) as if just
    received. asyncio's and uvloop's TLS layers are buffered protocols that keep what
    they receive before their ``connection_made`` for the handshake it starts."""
    # uvloop's is not an asyncio.BufferedProtocol subclass, but has its methods.
    protocol = cast(asyncio.BufferedProtocol, transport.get_protocol())
    view = memoryview(data)
    while view:
        buf = memoryview(protocol.get_buffer(len(view)))
        n = min(len(buf), len(view))
        buf[:n] = view[:n]
        protocol.buffer_updated(n)
        view = view[n:]


@dataclass(slots=True)
class Reaper:
    """Cancels every connection task whose deadline passed while it waits to read."""

    interval: float
    timings: set[Deadline] = field(default_factory=set)
    _task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run())

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self.interval)
            now = loop.time()
            for t in self.timings:
                if t.reading and not t.timed_out and now >= t.deadline and t.task is not None:
                    t.timed_out = True
                    t.task.cancel()


class Acceptor:
    """Accepts the connections of one listening socket for this worker (see the module's
    invariants); ``limiter`` knows every worker's connections."""

    def __init__(
        self,
        sock: socket.socket,
        factory: Callable[[], Connection],
        limiter: ConnectionLimiter,
    ) -> None:
        self.sock = sock
        self.factory = factory
        self.limiter = limiter
        self.loop = asyncio.get_running_loop()
        self._waits = 0
        self._watching = False
        self._timer: asyncio.TimerHandle | None = None
        self._closed = False
        self._attaching: set[asyncio.Task[None]] = set()

    def start(self) -> None:
        self.sock.setblocking(False)
        self._watch()

    def _watch(self) -> None:
        self._timer = None
        if not self._closed and not self._watching:
            self.loop.add_reader(self.sock.fileno(), self._ready)
            self._watching = True

    def _pause(self, seconds: float) -> None:
        if self._watching:
            self.loop.remove_reader(self.sock.fileno())
            self._watching = False
        if self._timer is None:
            self._timer = self.loop.call_later(seconds, self._watch)

    def _ready(self) -> None:
        if self._waits < BALANCE_TRIES and self.limiter.busier():
            # Every worker was woken for this connection: leave it to a less busy one.
            self._waits += 1
            self._pause(BALANCE_WAIT)
            return
        try:
            sock, _address = self.sock.accept()
        except (BlockingIOError, InterruptedError, ConnectionAbortedError):
            return  # another worker took it, or the client gave up already
        except OSError as exc:
            # Out of descriptors or memory: pause, or this callback would spin. Anything
            # else (a network error pending on that connection) is that client's alone.
            log_event(log, logging.ERROR, "accept.failed", error=exc.strerror or str(exc))
            if exc.errno in _OUT_OF_RESOURCES:
                self._pause(_RESOURCE_PAUSE)
            return
        self._waits = 0
        # Not blocking: both event loops make every socket they are handed so. TCP_NODELAY:
        # uvloop sets it too, asyncio not on an accepted socket (its proto is 0).
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.limiter.accepting(+1)
        task = self.loop.create_task(self._attach(sock))
        self._attaching.add(task)
        task.add_done_callback(self._attaching.discard)

    async def _attach(self, sock: socket.socket) -> None:
        made = False

        def make() -> Connection:
            # Its session counts from here on (``Listener._open``), not as being accepted.
            nonlocal made
            made = True
            self.limiter.accepting(-1)
            return self.factory()

        try:
            await self.loop.connect_accepted_socket(make, sock)
        except OSError:
            sock.close()  # gone before its transport was made: nothing was said to it
        finally:
            if not made:
                self.limiter.accepting(-1)

    def close(self) -> None:
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._watching:
            self.loop.remove_reader(self.sock.fileno())
            self._watching = False
        self.sock.close()  # this process's copy: the other workers' stay open


class Listener:
    """What every listener does around its sessions: accept within the connection caps,
    track the connections for the reaper and for shutdown, and stop.

    A subclass supplies ``_connection`` (a ``Connection`` for a new socket), ``_refusal``
    (the bytes that turn a client away) and ``_serve`` (the session); ``_serve`` runs in
    its own task, and is cancelled by the reaper or by shutdown while it waits to read.
    """

    def __init__(self, limiter: ConnectionLimiter, reaper_interval: float, protocol: str) -> None:
        self.limiter = limiter
        self.protocol = protocol  # the label of this listener's metrics
        self.stopping = False
        self.conns: set[Connection] = set()
        self._acceptors: list[Acceptor] = []
        self._reaper = Reaper(reaper_interval)

    def _connection(self) -> Connection:
        raise NotImplementedError

    def _refusal(self, stopping: bool) -> bytes:
        raise NotImplementedError

    async def _serve(self, conn: Connection) -> None:
        raise NotImplementedError

    async def listen_socket(self, sock: socket.socket, *, implicit_tls: bool = False) -> None:
        """Serve on an already bound socket (shared by every worker process);
        ``implicit_tls``: every connection starts with the TLS handshake (ports 465, 993, 995)."""
        acceptor = Acceptor(sock, lambda: self._new_connection(implicit_tls), self.limiter)
        acceptor.start()
        self._acceptors.append(acceptor)
        self._reaper.start()

    def _new_connection(self, implicit_tls: bool) -> Connection:
        conn = self._connection()
        conn.implicit_tls = implicit_tls
        conn.on_open = self._open
        return conn

    def _open(self, conn: Connection) -> None:
        """A client connected: refuse it at once over a cap, else start its session task."""
        ip = conn.peer[0]
        meter.connection_accepted(self.protocol)
        if self.stopping or not self.limiter.acquire(ip):
            log_event(log, logging.WARNING, "limit.hit", what="connections", client=ip)
            with contextlib.suppress(ConnectionError):
                conn.write(self._refusal(self.stopping))
            conn.close()
            return
        conn.counted = True
        self.conns.add(conn)
        self._reaper.timings.add(conn.timing)
        conn.timing.task = asyncio.get_running_loop().create_task(self._run(conn))

    async def _run(self, conn: Connection) -> None:
        # Here, not in _open: a task cancelled before it starts never runs its finally.
        meter.connection_opened(self.protocol)
        try:
            await self._serve(conn)
        finally:
            meter.connection_closed(self.protocol)
            self.conns.discard(conn)
            self._reaper.timings.discard(conn.timing)
            self.release(conn)
            conn.close()

    def release(self, conn: Connection) -> None:
        """Free the connection's slot in the caps (once)."""
        if conn.counted:
            conn.counted = False
            self.limiter.release(conn.peer[0])

    def close(self) -> None:
        """Stop accepting new connections."""
        self.stopping = True
        for acceptor in self._acceptors:
            acceptor.close()
        self._reaper.stop()

    async def shutdown(self, grace: float) -> None:
        """Stop accepting, end idle sessions, let the busy ones finish within ``grace``."""
        self.close()
        tasks = [c.timing.task for c in self.conns if c.timing.task is not None]
        for c in self.conns:
            if c.idle and c.timing.task is not None:
                c.timing.task.cancel()
        if tasks:
            _done, pending = await asyncio.wait(tasks, timeout=grace)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending, timeout=5)
