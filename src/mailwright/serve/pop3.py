"""The POP3 listeners: STLS on the port-110 role, implicit TLS on the port-995 role."""

from __future__ import annotations

import ssl
from collections.abc import Callable

from mailwright.access.pop3 import Pop3Session
from mailwright.config import Pop3Config
from mailwright.policy.auth import Authenticator
from mailwright.proto.pop3 import replies
from mailwright.serve.access import AccessListener, access_listener
from mailwright.serve.limits import ConnectionLimiter
from mailwright.store.api import Locks, Mailboxes, Messages


def _refusal(stopping: bool) -> bytes:
    return (replies.SHUTTING_DOWN if stopping else replies.TOO_MANY_CONNECTIONS).to_bytes()


def pop3_listener(
    *,
    hostname: str,
    config: Pop3Config,
    mailboxes: Mailboxes,
    messages: Messages,
    locks: Locks,
    authenticator: Authenticator,
    tls_context: Callable[[], ssl.SSLContext | None],
    limiter: ConnectionLimiter | None = None,
) -> AccessListener:
    def new_session(conn_id: str, ip: str, implicit_tls: bool) -> Pop3Session:
        return Pop3Session(
            hostname=hostname,
            config=config,
            mailboxes=mailboxes,
            messages=messages,
            locks=locks,
            authenticator=authenticator,
            conn_id=conn_id,
            ip=ip,
            tls_active=implicit_tls,
            tls_available=tls_context() is not None,
        )

    return access_listener("pop3", config, new_session, _refusal, tls_context, limiter)
