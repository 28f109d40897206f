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
  read — one timer task for all, where a timeout per read costs more than a command.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import cast

from mailwright.serve.tls import describe

_MAX_PENDING = 256 * 1024


@dataclass(slots=True, eq=False)
class Deadline:
    """A connection's timing state, as the reaper sees it."""

    task: asyncio.Task[None] | None = None
    reading: bool = False  # waiting for bytes from the client
    deadline: float = 0.0  # loop time by which the next command must be complete
    timed_out: bool = False


class Connection(asyncio.Protocol):
    def __init__(self, *, max_pending: int = _MAX_PENDING) -> None:
        self.transport: asyncio.Transport | None = None
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

    @property
    def peer(self) -> tuple[str, int]:
        name = self.transport.get_extra_info("peername") if self.transport else None
        if not name:
            return "?", 0
        return str(name[0]), int(name[1])

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
        try:
            received: bytes = await reader
            return received
        finally:
            self._reader = None

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

    async def start_tls(self, context: ssl.SSLContext, handshake_timeout: float) -> str:
        """Upgrade to TLS in place; returns the protocol and cipher, for the log and Received."""
        if self.transport is None:  # pragma: no cover - only called on a live connection
            raise ConnectionResetError("connection closed")
        self._read_paused = False  # start_tls resumes reading on the new transport
        loop = asyncio.get_running_loop()
        transport = await loop.start_tls(
            self.transport,
            self,
            context,
            server_side=True,
            ssl_handshake_timeout=handshake_timeout,
        )
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
