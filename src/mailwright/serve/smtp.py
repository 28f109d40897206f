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
from mailwright.intake.pipeline import Pipeline
from mailwright.intake.routing import Router
from mailwright.intake.smtp import Peer, Relay, SmtpSession, Submission, limits_from
from mailwright.proto.smtp import events as ev
from mailwright.proto.smtp import replies
from mailwright.proto.smtp.server import ServerConnection
from mailwright.serve.conn import Connection, Listener
from mailwright.serve.limits import ConnectionLimiter
from mailwright.store.api import Messages

log = logging.getLogger("mailwright.smtp")


class SmtpListener(Listener):
    def __init__(
        self,
        *,
        hostname: str,
        config: SmtpConfig,
        router: Router,
        messages: Messages,
        tls_context: Callable[[], ssl.SSLContext | None],
        limiter: ConnectionLimiter | None = None,
        pipeline: Pipeline | None = None,
        submission: Submission | None = None,
        relay: Relay | None = None,
    ) -> None:
        """``submission``: this listener is for message submission (RFC 6409: AUTH, then
        mail to anywhere); otherwise it is the port-25 role (mail for local domains, or
        from ``relay``'s trusted networks)."""
        super().__init__(
            limiter or ConnectionLimiter(1, config.max_connections, config.max_connections_per_ip),
            min(1.0, config.idle_timeout / 4, config.session_timeout / 4),
            "submission" if submission is not None else "smtp",
        )
        self.hostname = hostname
        self.config = config
        self.router = router
        self.messages = messages
        self.tls_context = tls_context
        self.pipeline = pipeline
        self.submission = submission
        self.relay = relay
        self.limits = limits_from(config, submission=submission is not None)
        self.name = self.protocol

    def _connection(self) -> Connection:
        return Connection(
            tls_context=self.tls_context, tls_handshake_timeout=self.config.tls_handshake_timeout
        )

    def _refusal(self, stopping: bool) -> bytes:
        return (replies.SHUTTING_DOWN if stopping else replies.TOO_MANY_CONNECTIONS).to_bytes()

    async def _serve(self, conn: Connection) -> None:
        ip, port = conn.peer
        peer = Peer(ip, port, new_connection_id())
        session = SmtpSession(
            hostname=self.hostname,
            config=self.config,
            router=self.router,
            messages=self.messages,
            peer=peer,
            tls_available=self.tls_context() is not None,
            pipeline=self.pipeline,
            submission=self.submission,
            relay=self.relay,
        )
        log_event(
            log,
            logging.DEBUG,
            "smtp.connect",
            conn=peer.conn_id,
            client=ip,
            port=port,
            listener=self.name,
        )
        try:
            if conn.implicit_tls:
                # RFC 8314 §3.3: on port 465 TLS comes first, then the SMTP greeting.
                session.tls_info = await conn.upgrade_tls()
            await self._session(conn, session)
        except asyncio.CancelledError:
            if conn.timing.timed_out:
                log_event(log, logging.INFO, "smtp.timeout", conn=peer.conn_id)
                reply = replies.TIMEOUT
            elif self.stopping:
                reply = replies.SHUTTING_DOWN
            else:
                raise
            if not conn.handshaking:  # no plaintext to a client that expects TLS
                with contextlib.suppress(ConnectionError):
                    conn.write(reply.to_bytes())
        except (ConnectionError, ssl.SSLError) as exc:
            log_event(log, logging.INFO, "smtp.lost", conn=peer.conn_id, error=type(exc).__name__)
        except Exception:
            # Boundary: a bug in one session closes that connection, never the listener.
            log.exception("smtp.crash", extra={"fields": {"conn": peer.conn_id}})
        finally:
            session.abort()
            # One line per connection (with its client) besides one per transaction.
            log_event(
                log,
                logging.INFO,
                "smtp.disconnect",
                conn=peer.conn_id,
                client=ip,
                helo=session.helo or "",
                tls=session.tls_info or "",
                user=session.user.address if session.user is not None else "",
                delivered=session.delivered,
            )

    async def _session(self, conn: Connection, session: SmtpSession) -> None:
        cfg = self.config
        timing = conn.timing
        machine = ServerConnection(self.limits)
        loop = asyncio.get_running_loop()
        out = bytearray(machine.send_unsolicited(session.greeting()))
        timing.session_end = loop.time() + cfg.session_timeout
        conn.expect_within(cfg.idle_timeout)
        while True:
            event = machine.next_event()
            if event is ev.NEED_DATA:
                if out:
                    conn.write(out)
                    out.clear()
                    await conn.drain()
                conn.idle = not machine.in_transaction
                if self.stopping and conn.idle:
                    out += machine.send_unsolicited(replies.SHUTTING_DOWN)
                    break
                data = await conn.read()
                conn.idle = False
                machine.receive_data(data)
                continue
            if event is ev.CLOSED:
                break
            conn.expect_within(cfg.idle_timeout)
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
        self.release(conn)
        if out:
            with contextlib.suppress(ConnectionError):
                conn.write(out)
                await conn.drain()

    async def _start_tls(
        self,
        conn: Connection,
        machine: ServerConnection,
        session: SmtpSession,
        out: bytearray,
    ) -> None:
        # RFC 3207 §4.2: plaintext the client pipelined behind STARTTLS is never read as
        # TLS-protected input. The machine dropped what it had; drop what the socket holds,
        # before the 220 goes out: what arrives after it is the handshake.
        machine.discarded_plaintext += conn.discard_pending()
        conn.write(out)
        await conn.drain()
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


def bind(host: str, port: int) -> socket.socket:
    """A listening socket; IPv6 addresses listen on IPv6 only (list both to get both)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    return socket.create_server((host, port), family=family, backlog=1024)
