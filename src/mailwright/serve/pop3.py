"""The POP3 listeners: STLS on the port-110 role, implicit TLS on the port-995 role.

The session (``access.pop3.Pop3Session``) runs the protocol over the connection; this
module adds what sockets need: connection caps, the TLS handshake on implicit-TLS ports,
timeouts (a closing ``-ERR`` when the reaper ends a session) and shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import Callable

from mailwright.access.pop3 import Pop3Session
from mailwright.config import Pop3Config
from mailwright.core.ids import new_connection_id
from mailwright.core.log import event as log_event
from mailwright.policy.auth import Authenticator
from mailwright.proto.pop3 import replies
from mailwright.serve.conn import Connection, Listener
from mailwright.serve.limits import ConnectionLimiter
from mailwright.store.api import Locks, Mailboxes, Messages

log = logging.getLogger("mailwright.pop3")


class Pop3Listener(Listener):
    def __init__(
        self,
        *,
        hostname: str,
        config: Pop3Config,
        mailboxes: Mailboxes,
        messages: Messages,
        locks: Locks,
        authenticator: Authenticator,
        tls_context: Callable[[], ssl.SSLContext | None],
        limiter: ConnectionLimiter | None = None,
    ) -> None:
        super().__init__(
            limiter or ConnectionLimiter(1, config.max_connections, config.max_connections_per_ip),
            min(1.0, config.login_timeout / 4, config.idle_timeout / 4),
        )
        self.hostname = hostname
        self.config = config
        self.mailboxes = mailboxes
        self.messages = messages
        self.locks = locks
        self.authenticator = authenticator
        self.tls_context = tls_context

    def _connection(self) -> Connection:
        return Connection(
            tls_context=self.tls_context, tls_handshake_timeout=self.config.tls_handshake_timeout
        )

    def _refusal(self, stopping: bool) -> bytes:
        reply = replies.SHUTTING_DOWN if stopping else replies.TOO_MANY_CONNECTIONS
        return reply.to_bytes()

    async def _serve(self, conn: Connection) -> None:
        ip, port = conn.peer
        conn_id = new_connection_id()
        implicit = conn.implicit_tls
        session = Pop3Session(
            hostname=self.hostname,
            config=self.config,
            mailboxes=self.mailboxes,
            messages=self.messages,
            locks=self.locks,
            authenticator=self.authenticator,
            conn_id=conn_id,
            ip=ip,
            tls_active=implicit,
            tls_available=self.tls_context() is not None,
        )
        log_event(log, logging.DEBUG, "pop3.connect", conn=conn_id, client=ip, port=port)
        try:
            if implicit:
                session.tls_info = await conn.upgrade_tls()
            await session.run(conn)
        except asyncio.CancelledError:
            if conn.timing.timed_out:
                log_event(log, logging.INFO, "pop3.timeout", conn=conn_id)
                notice = replies.TIMEOUT
            elif self.stopping:
                notice = replies.SHUTTING_DOWN
            else:
                raise
            if not conn.handshaking:  # no plaintext to a client that expects TLS
                with contextlib.suppress(ConnectionError):
                    conn.write(session.notice(notice))
        except (ConnectionError, ssl.SSLError) as exc:
            log_event(log, logging.INFO, "pop3.lost", conn=conn_id, error=type(exc).__name__)
        except Exception:
            # Boundary: a bug in one session closes that connection, never the listener.
            log.exception("pop3.crash", extra={"fields": {"conn": conn_id}})
        finally:
            session.close()
            log_event(
                log,
                logging.INFO,
                "pop3.disconnect",
                conn=conn_id,
                client=ip,
                user=session.account.address if session.account else "",
                tls=session.tls_info or "",
                retrieved=session.retrieved,
                deleted=session.removed,
            )
