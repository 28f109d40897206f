"""The IMAP listeners: STARTTLS on the port-143 role, implicit TLS on the port-993 role."""

from __future__ import annotations

import ssl
from collections.abc import Callable

from mailwright.access.imap.session import ImapSession
from mailwright.config import ImapConfig
from mailwright.policy.auth import Authenticator
from mailwright.proto.imap import response
from mailwright.serve.access import AccessListener, access_listener
from mailwright.serve.limits import ConnectionLimiter
from mailwright.store.api import Accounts, ChangeFeed, Mailboxes, Messages


def _refusal(stopping: bool) -> bytes:
    text = "Server shutting down" if stopping else "Too many connections, try again later"
    return response.bye(text, response.UNAVAILABLE).to_bytes()


def imap_listener(
    *,
    hostname: str,
    config: ImapConfig,
    accounts: Accounts,
    mailboxes: Mailboxes,
    messages: Messages,
    changes: ChangeFeed,
    authenticator: Authenticator,
    tls_context: Callable[[], ssl.SSLContext | None],
    limiter: ConnectionLimiter | None = None,
) -> AccessListener:
    def new_session(conn_id: str, ip: str, implicit_tls: bool) -> ImapSession:
        return ImapSession(
            hostname=hostname,
            config=config,
            accounts=accounts,
            mailboxes=mailboxes,
            messages=messages,
            changes=changes,
            authenticator=authenticator,
            conn_id=conn_id,
            ip=ip,
            tls_active=implicit_tls,
            tls_available=tls_context() is not None,
        )

    return access_listener("imap", config, new_session, _refusal, tls_context, limiter)
