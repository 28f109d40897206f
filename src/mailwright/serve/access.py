"""The listener for mailbox access protocols (POP3, IMAP): one shape for both.

The session (``access.pop3.Pop3Session``, ``access.imap.session.ImapSession``) runs the
protocol over the connection; this module adds what sockets need: connection caps, the
TLS handshake on implicit-TLS ports, timeouts (a closing notice when the reaper ends a
session), shutdown, and one log line per connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import Callable
from typing import Literal, Protocol

from mailwright.access.channel import Channel
from mailwright.core.ids import new_connection_id
from mailwright.core.log import event as log_event
from mailwright.serve.conn import Connection, Listener
from mailwright.serve.limits import ConnectionLimiter

Notice = Literal["timeout", "shutdown"]


class AccessSession(Protocol):
    tls_info: str | None

    async def run(self, channel: Channel) -> None: ...

    def notice(self, kind: Notice) -> bytes:
        """The closing words for a session the server ends; the session is over."""
        ...

    def close(self) -> None:
        """Give back what the session holds (locks, subscriptions); idempotent."""
        ...

    def summary(self) -> dict[str, object]:
        """Fields for the connection's last log line (user, counts)."""
        ...


# (connection id, client address, TLS from the start) -> a session
SessionFactory = Callable[[str, str, bool], AccessSession]


class ListenerConfig(Protocol):
    """The settings every access protocol's section has (``pop3``, ``imap``)."""

    @property
    def tls_handshake_timeout(self) -> float: ...
    @property
    def login_timeout(self) -> float: ...
    @property
    def idle_timeout(self) -> float: ...
    @property
    def max_connections(self) -> int: ...
    @property
    def max_connections_per_ip(self) -> int: ...


class AccessListener(Listener):
    def __init__(
        self,
        *,
        protocol: str,
        new_session: SessionFactory,
        refusal: Callable[[bool], bytes],
        tls_context: Callable[[], ssl.SSLContext | None],
        tls_handshake_timeout: float,
        limiter: ConnectionLimiter,
        reaper_interval: float,
    ) -> None:
        super().__init__(limiter, reaper_interval, protocol)
        self.log = logging.getLogger(f"mailwright.{protocol}")
        self.new_session = new_session
        self.refusal = refusal
        self.tls_context = tls_context
        self.tls_handshake_timeout = tls_handshake_timeout

    def _connection(self) -> Connection:
        return Connection(
            tls_context=self.tls_context, tls_handshake_timeout=self.tls_handshake_timeout
        )

    def _refusal(self, stopping: bool) -> bytes:
        return self.refusal(stopping)

    async def _serve(self, conn: Connection) -> None:
        ip, port = conn.peer
        conn_id = new_connection_id()
        implicit = conn.implicit_tls
        session = self.new_session(conn_id, ip, implicit)
        name, log = self.protocol, self.log
        log_event(log, logging.DEBUG, f"{name}.connect", conn=conn_id, client=ip, port=port)
        try:
            if implicit:
                session.tls_info = await conn.upgrade_tls()
            await session.run(conn)
        except asyncio.CancelledError:
            notice: Notice
            if conn.timing.timed_out:
                log_event(log, logging.INFO, f"{name}.timeout", conn=conn_id)
                notice = "timeout"
            elif self.stopping:
                notice = "shutdown"
            else:
                raise
            if not conn.handshaking:  # no plaintext to a client that expects TLS
                with contextlib.suppress(ConnectionError):
                    conn.write(session.notice(notice))
        except (ConnectionError, ssl.SSLError) as exc:
            log_event(log, logging.INFO, f"{name}.lost", conn=conn_id, error=type(exc).__name__)
        except Exception:
            # Boundary: a bug in one session closes that connection, never the listener.
            log.exception(f"{name}.crash", extra={"fields": {"conn": conn_id}})
        finally:
            session.close()
            log_event(
                log,
                logging.INFO,
                f"{name}.disconnect",
                conn=conn_id,
                client=ip,
                tls=session.tls_info or "",
                **session.summary(),
            )


def access_listener(
    protocol: str,
    config: ListenerConfig,
    new_session: SessionFactory,
    refusal: Callable[[bool], bytes],
    tls_context: Callable[[], ssl.SSLContext | None],
    limiter: ConnectionLimiter | None,
) -> AccessListener:
    """A listener for ``protocol`` with ``config``'s timeouts and caps (``limiter``: the
    caps shared by every worker; by default this process's own)."""
    return AccessListener(
        protocol=protocol,
        new_session=new_session,
        refusal=refusal,
        tls_context=tls_context,
        tls_handshake_timeout=config.tls_handshake_timeout,
        limiter=limiter
        or ConnectionLimiter(1, config.max_connections, config.max_connections_per_ip),
        # The reaper looks often enough to end a session within a quarter of its timeout.
        reaper_interval=min(1.0, config.login_timeout / 4, config.idle_timeout / 4),
    )
