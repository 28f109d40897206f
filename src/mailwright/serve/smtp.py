"""The SMTP listener: a thin asyncio adapter between sockets and ``ServerConnection`` + ``SmtpSession``.

Invariants:
- replies are written when the machine needs more input (so pipelined commands get
  their replies in one write, RFC 2920 §3.2), and always before reading again;
- a command (or, in DATA, a line) must complete within ``idle_timeout``; bytes that
  trickle in without completing one do not extend the deadline; the whole session
  ends after ``session_timeout``. One reaper task per listener enforces the deadlines
  (a timer per read costs more than the rest of a command's handling);
- only a connection waiting to read is ever cancelled by the reaper, never one whose
  message is being stored;
- an exception in one connection is logged and closes that connection only.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
from collections.abc import Callable
from dataclasses import dataclass

from mailwright.config import SmtpConfig
from mailwright.core.ids import new_connection_id
from mailwright.core.log import event as log_event
from mailwright.intake.routing import Router
from mailwright.intake.smtp import Peer, SmtpSession, limits_from
from mailwright.proto.smtp import events as ev
from mailwright.proto.smtp import replies
from mailwright.proto.smtp.server import ServerConnection
from mailwright.serve.limits import ConnectionLimiter
from mailwright.serve.tls import describe
from mailwright.store.api import Messages

log = logging.getLogger("mailwright.smtp")
_READ = 65536


@dataclass(slots=True)
class _Conn:
    task: asyncio.Task[None]
    ip: str
    idle: bool = True  # waiting for a command outside any transaction
    reading: bool = False  # waiting for bytes from the client
    deadline: float = 0.0  # loop time by which the next event must be complete
    timed_out: bool = False
    counted: bool = True  # still holds a slot in the connection caps


class SmtpListener:
    def __init__(
        self,
        *,
        hostname: str,
        config: SmtpConfig,
        router: Router,
        messages: Messages,
        tls_context: Callable[[], ssl.SSLContext | None],
        limiter: ConnectionLimiter | None = None,
    ) -> None:
        self.hostname = hostname
        self.config = config
        self.router = router
        self.messages = messages
        self.tls_context = tls_context
        self.limits = limits_from(config)
        self.limiter = limiter or ConnectionLimiter(
            1, config.max_connections, config.max_connections_per_ip
        )
        self._conns: dict[asyncio.Task[None], _Conn] = {}
        self._servers: list[asyncio.Server] = []
        self._stopping = False
        self._reaper: asyncio.Task[None] | None = None

    async def listen_socket(self, sock: socket.socket) -> asyncio.Server:
        """Serve on an already bound socket (shared by every worker process)."""
        sock.setblocking(False)
        server = await asyncio.start_server(self._accept, sock=sock, limit=_READ * 2)
        self._servers.append(server)
        if self._reaper is None:
            self._reaper = asyncio.create_task(self._reap())
        return server

    async def _reap(self) -> None:
        """End every connection whose deadline has passed while it waits to read."""
        loop = asyncio.get_running_loop()
        interval = min(1.0, self.config.idle_timeout / 4, self.config.session_timeout / 4)
        while True:
            await asyncio.sleep(interval)
            now = loop.time()
            for c in self._conns.values():
                if c.reading and not c.timed_out and now >= c.deadline:
                    c.timed_out = True
                    c.task.cancel()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peername = writer.get_extra_info("peername") or ("?", 0)
        ip, port = str(peername[0]), int(peername[1])
        if self._stopping or not self.limiter.acquire(ip):
            reply = replies.SHUTTING_DOWN if self._stopping else replies.TOO_MANY_CONNECTIONS
            log_event(log, logging.WARNING, "limit.hit", what="connections", client=ip)
            with contextlib.suppress(ConnectionError):
                writer.write(reply.to_bytes())
                await writer.drain()
            writer.close()
            return
        task = asyncio.current_task()
        if task is None:  # pragma: no cover - start_server always runs us in a task
            self.limiter.release(ip)
            return
        conn = _Conn(task, ip)
        self._conns[task] = conn
        peer = Peer(ip, port, new_connection_id())
        session = SmtpSession(
            hostname=self.hostname,
            config=self.config,
            router=self.router,
            messages=self.messages,
            peer=peer,
            tls_available=self.tls_context() is not None,
        )
        log_event(log, logging.DEBUG, "smtp.connect", conn=peer.conn_id, client=ip, port=port)
        try:
            await self._serve(reader, writer, session, conn)
        except asyncio.CancelledError:
            if conn.timed_out:
                log_event(log, logging.INFO, "smtp.timeout", conn=peer.conn_id)
                reply = replies.TIMEOUT
            elif self._stopping:
                reply = replies.SHUTTING_DOWN
            else:
                raise
            with contextlib.suppress(ConnectionError, RuntimeError):
                writer.write(reply.to_bytes())
        except (ConnectionError, ssl.SSLError, asyncio.IncompleteReadError) as exc:
            log_event(log, logging.INFO, "smtp.lost", conn=peer.conn_id, error=type(exc).__name__)
        except Exception:
            log.exception("smtp.crash", extra={"fields": {"conn": peer.conn_id}})
        finally:
            session.abort()
            del self._conns[task]
            self._release(conn)
            with contextlib.suppress(Exception):
                writer.close()
            # One line per connection (with its client) besides one per transaction.
            log_event(
                log,
                logging.INFO,
                "smtp.disconnect",
                conn=peer.conn_id,
                client=ip,
                helo=session.helo or "",
                tls=session.tls_info or "",
                delivered=session.delivered,
            )

    async def _serve(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        session: SmtpSession,
        conn: _Conn,
    ) -> None:
        cfg = self.config
        machine = ServerConnection(self.limits)
        loop = asyncio.get_running_loop()
        out = bytearray(machine.send_unsolicited(session.greeting()))
        session_end = loop.time() + cfg.session_timeout
        conn.deadline = min(loop.time() + cfg.idle_timeout, session_end)
        while True:
            event = machine.next_event()
            if event is ev.NEED_DATA:
                if out:
                    writer.write(out)
                    out.clear()
                    await writer.drain()
                conn.idle = not machine.in_transaction
                if self._stopping and conn.idle:
                    out += machine.send_unsolicited(replies.SHUTTING_DOWN)
                    break
                conn.reading = True
                data = await reader.read(_READ)
                conn.reading = False
                conn.idle = False
                machine.receive_data(data)
                continue
            if event is ev.CLOSED:
                break
            conn.deadline = min(loop.time() + cfg.idle_timeout, session_end)
            reply = await session.handle(event)
            if reply is None:
                continue
            if reply.is_error and machine.should_delay and cfg.error_delay:
                # Postfix's soft error limit: a client that keeps erring is slowed down.
                await asyncio.sleep(cfg.error_delay)
            out += machine.send(reply)
            if isinstance(event, ev.StartTls) and reply.code == 220:
                await self._start_tls(reader, writer, machine, session, out)
                out.clear()
        # Free the slot before the last reply goes out: a client that reconnects the
        # moment it reads 221 must not be refused for its own closing connection.
        self._release(conn)
        if out:
            with contextlib.suppress(ConnectionError):
                writer.write(out)
                await writer.drain()

    def _release(self, conn: _Conn) -> None:
        if conn.counted:
            conn.counted = False
            self.limiter.release(conn.ip)

    async def _start_tls(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        machine: ServerConnection,
        session: SmtpSession,
        out: bytearray,
    ) -> None:
        writer.write(out)
        await writer.drain()
        # RFC 3207 §4.2: plaintext the client pipelined behind STARTTLS is never read as
        # TLS-protected input. The machine dropped what it had; drop what the stream holds.
        pending: bytearray = reader._buffer  # type: ignore[attr-defined]
        if pending:
            machine.discarded_plaintext += len(pending)
            pending.clear()
        ctx = self.tls_context()
        if ctx is None:  # pragma: no cover - STARTTLS is answered 220 only with a context
            raise ConnectionAbortedError("TLS context vanished")
        await writer.start_tls(ctx, ssl_handshake_timeout=self.config.tls_handshake_timeout)
        info = describe(writer.get_extra_info("ssl_object"))
        machine.tls_started()
        session.tls_started(info or "TLS")
        log_event(
            log,
            logging.INFO,
            "smtp.tls",
            conn=session.peer.conn_id,
            tls=info,
            discarded=machine.discarded_plaintext,
        )

    def close(self) -> None:
        """Stop accepting new connections."""
        self._stopping = True
        for server in self._servers:
            server.close()
        if self._reaper is not None:
            self._reaper.cancel()
            self._reaper = None

    async def shutdown(self, grace: float) -> None:
        """Stop accepting, end idle sessions with 421, let transactions finish within ``grace``."""
        self.close()
        for c in list(self._conns.values()):
            if c.idle:
                c.task.cancel()
        tasks = [c.task for c in self._conns.values()]
        if tasks:
            _done, pending = await asyncio.wait(tasks, timeout=grace)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending, timeout=5)
        for server in self._servers:
            await server.wait_closed()


def bind(host: str, port: int) -> socket.socket:
    """A listening socket; IPv6 addresses listen on IPv6 only (list both to get both)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    return socket.create_server((host, port), family=family, backlog=1024)
