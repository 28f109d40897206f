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

from mailwright.config import SmtpConfig
from mailwright.core.ids import new_connection_id
from mailwright.core.log import event as log_event
from mailwright.intake.routing import Router
from mailwright.intake.smtp import Peer, SmtpSession, limits_from
from mailwright.proto.smtp import events as ev
from mailwright.proto.smtp import replies
from mailwright.proto.smtp.server import ServerConnection
from mailwright.serve.conn import Connection, Reaper
from mailwright.serve.limits import ConnectionLimiter
from mailwright.store.api import Messages

log = logging.getLogger("mailwright.smtp")


class _SmtpConnection(Connection):
    def __init__(self, listener: SmtpListener) -> None:
        super().__init__()
        self.listener = listener
        self.ip = "?"
        self.idle = True  # waiting for a command outside any transaction
        self.counted = False  # holds a slot in the connection caps

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.listener._open(self)


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
        self._conns: set[_SmtpConnection] = set()
        self._servers: list[asyncio.AbstractServer] = []
        self._stopping = False
        self._reaper = Reaper(min(1.0, config.idle_timeout / 4, config.session_timeout / 4))

    async def listen_socket(self, sock: socket.socket) -> asyncio.AbstractServer:
        """Serve on an already bound socket (shared by every worker process)."""
        sock.setblocking(False)
        loop = asyncio.get_running_loop()
        server = await loop.create_server(lambda: _SmtpConnection(self), sock=sock)
        self._servers.append(server)
        self._reaper.start()
        return server

    def _open(self, conn: _SmtpConnection) -> None:
        """A client connected: refuse it at once over a cap, else start its session task."""
        ip, port = conn.peer
        conn.ip = ip
        if self._stopping or not self.limiter.acquire(ip):
            reply = replies.SHUTTING_DOWN if self._stopping else replies.TOO_MANY_CONNECTIONS
            log_event(log, logging.WARNING, "limit.hit", what="connections", client=ip)
            with contextlib.suppress(ConnectionError):
                conn.write(reply.to_bytes())
            conn.close()
            return
        conn.counted = True
        self._conns.add(conn)
        self._reaper.timings.add(conn.timing)
        conn.timing.task = asyncio.get_running_loop().create_task(self._run(conn, port))

    async def _run(self, conn: _SmtpConnection, port: int) -> None:
        peer = Peer(conn.ip, port, new_connection_id())
        session = SmtpSession(
            hostname=self.hostname,
            config=self.config,
            router=self.router,
            messages=self.messages,
            peer=peer,
            tls_available=self.tls_context() is not None,
        )
        log_event(log, logging.DEBUG, "smtp.connect", conn=peer.conn_id, client=conn.ip, port=port)
        try:
            await self._serve(conn, session)
        except asyncio.CancelledError:
            if conn.timing.timed_out:
                log_event(log, logging.INFO, "smtp.timeout", conn=peer.conn_id)
                reply = replies.TIMEOUT
            elif self._stopping:
                reply = replies.SHUTTING_DOWN
            else:
                raise
            with contextlib.suppress(ConnectionError):
                conn.write(reply.to_bytes())
        except (ConnectionError, ssl.SSLError) as exc:
            log_event(log, logging.INFO, "smtp.lost", conn=peer.conn_id, error=type(exc).__name__)
        except Exception:
            # Boundary: a bug in one session closes that connection, never the listener.
            log.exception("smtp.crash", extra={"fields": {"conn": peer.conn_id}})
        finally:
            session.abort()
            self._conns.discard(conn)
            self._reaper.timings.discard(conn.timing)
            self._release(conn)
            conn.close()
            # One line per connection (with its client) besides one per transaction.
            log_event(
                log,
                logging.INFO,
                "smtp.disconnect",
                conn=peer.conn_id,
                client=conn.ip,
                helo=session.helo or "",
                tls=session.tls_info or "",
                delivered=session.delivered,
            )

    async def _serve(self, conn: _SmtpConnection, session: SmtpSession) -> None:
        cfg = self.config
        timing = conn.timing
        machine = ServerConnection(self.limits)
        loop = asyncio.get_running_loop()
        out = bytearray(machine.send_unsolicited(session.greeting()))
        session_end = loop.time() + cfg.session_timeout
        timing.deadline = min(loop.time() + cfg.idle_timeout, session_end)
        while True:
            event = machine.next_event()
            if event is ev.NEED_DATA:
                if out:
                    conn.write(out)
                    out.clear()
                    await conn.drain()
                conn.idle = not machine.in_transaction
                if self._stopping and conn.idle:
                    out += machine.send_unsolicited(replies.SHUTTING_DOWN)
                    break
                timing.reading = True
                data = await conn.read()
                timing.reading = False
                conn.idle = False
                machine.receive_data(data)
                continue
            if event is ev.CLOSED:
                break
            timing.deadline = min(loop.time() + cfg.idle_timeout, session_end)
            reply = await session.handle(event)
            if reply is None:
                continue
            if reply.is_error and machine.should_delay and cfg.error_delay:
                # Postfix's soft error limit: a client that keeps erring is slowed down.
                await asyncio.sleep(cfg.error_delay)
            out += machine.send(reply)
            if isinstance(event, ev.StartTls) and reply.code == 220:
                await self._start_tls(conn, machine, session, out)
                out.clear()
        # Free the slot before the last reply goes out: a client that reconnects the
        # moment it reads 221 must not be refused for its own closing connection.
        self._release(conn)
        if out:
            with contextlib.suppress(ConnectionError):
                conn.write(out)
                await conn.drain()

    def _release(self, conn: _SmtpConnection) -> None:
        if conn.counted:
            conn.counted = False
            self.limiter.release(conn.ip)

    async def _start_tls(
        self,
        conn: _SmtpConnection,
        machine: ServerConnection,
        session: SmtpSession,
        out: bytearray,
    ) -> None:
        conn.write(out)
        await conn.drain()
        # RFC 3207 §4.2: plaintext the client pipelined behind STARTTLS is never read as
        # TLS-protected input. The machine dropped what it had; drop what the socket holds.
        machine.discarded_plaintext += conn.discard_pending()
        ctx = self.tls_context()
        if ctx is None:  # pragma: no cover - STARTTLS is answered 220 only with a context
            raise ConnectionAbortedError("TLS context vanished")
        info = await conn.start_tls(ctx, self.config.tls_handshake_timeout)
        machine.tls_started()
        session.tls_started(info)
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
        self._reaper.stop()

    async def shutdown(self, grace: float) -> None:
        """Stop accepting, end idle sessions with 421, let transactions finish within ``grace``."""
        self.close()
        tasks = [c.timing.task for c in self._conns if c.timing.task is not None]
        for c in self._conns:
            if c.idle and c.timing.task is not None:
                c.timing.task.cancel()
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
