"""The SMTP client: one message, one destination host, a result per recipient.

``Connection.open`` connects, reads the greeting, says EHLO (HELO if EHLO is refused), does
STARTTLS per policy and AUTH when it has credentials; ``Connection.send`` runs one mail
transaction (several in a row on one connection, RSET between) and ``quit`` ends it. The
module-level ``deliver`` does all three for one message.

TLS policies (per destination): ``none`` never STARTTLS; ``opportunistic`` STARTTLS when
offered, without checking the certificate, and if the handshake fails, the host once more
in plaintext (``Delivery.tls_fallback`` says so); ``require`` no STARTTLS → defer;
``verify`` as require, and the certificate chain (CA file or the system's store) and the
host name are checked.

Invariants:
- nothing here raises for what a remote host or the network does: every outcome is a
  ``RecipientResult`` — DELIVERED with the server's reply, DEFERRED (4xx, timeout,
  connection trouble; try again later) or FAILED (5xx, or a check of ours that no retry
  can change: SIZE, SMTPUTF8, 8-bit conversion);
- ``RecipientResult.stage`` tells where it happened: anything before "rcpt" is about the
  host, not the recipient, so the queue may try the next MX host;
- every wait has its RFC 5321 §4.5.3.2 time limit;
- the message is read in chunks (64 KiB) and never held whole, except when 8-bit content
  must be converted for a server without 8BITMIME (``downgrade``), a rare path;
- credentials are sent only over TLS and never logged.

Why not aiosmtplib: it sends each command and waits for its reply (no PIPELINING, RFC
2920), takes the message as one ``bytes`` (no streaming), and has one timeout for DATA
initiation, data blocks and termination, where RFC 5321 §4.5.3.2 has three. This client is
small and uses only asyncio's transports.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import re
import ssl
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Literal, cast

from mailwright.config.model import Config, SmtpClientTimeouts, TlsPolicy
from mailwright.core.errors import LocalProtocolError
from mailwright.core.ids import new_connection_id
from mailwright.core.log import TRACE, event
from mailwright.core.reply import Reply
from mailwright.dns.resolver import address_literal
from mailwright.message.dsn import xtext_encode
from mailwright.outbound.downgrade import ConversionError, to_seven_bit
from mailwright.outbound.wire import (
    DataEncoder,
    ReplyError,
    ReplyParser,
    command,
    describe,
    ehlo_keywords,
)

log = logging.getLogger("mailwright.outbound")

CHUNK = 64 * 1024
_MAX_BUFFERED = 1024 * 1024  # a server that floods us with more than this unread is cut off


@dataclass(frozen=True, slots=True)
class Prefixed:
    """Header fields of ours (a DKIM-Signature) before a stored message's bytes."""

    prefix: bytes
    body: bytes | os.PathLike[str]


MessageSource = bytes | os.PathLike[str] | Prefixed
_BAD_ADDRESS = re.compile(r"[\x00-\x1f\x7f]")
Stage = Literal[
    "connect", "greeting", "ehlo", "starttls", "auth", "mail", "rcpt", "data", "content"
]


class Outcome(Enum):
    DELIVERED = "delivered"
    DEFERRED = "deferred"  # try again later
    FAILED = "failed"  # bounce


@dataclass(frozen=True, slots=True)
class Recipient:
    address: str
    notify: tuple[str, ...] = ()  # RFC 3461 NOTIFY: ("NEVER",) or SUCCESS/FAILURE/DELAY
    orcpt: str | None = None  # RFC 3461 ORCPT, xtext-decoded: "rfc822;user@example.org"


@dataclass(frozen=True, slots=True)
class Envelope:
    sender: str  # "" for the null reverse-path
    recipients: tuple[Recipient, ...]
    eight_bit: bool = False  # the body has 8-bit octets (it came with BODY=8BITMIME)
    smtputf8: bool = False  # UTF-8 addresses or header fields (RFC 6531)
    ret: Literal["FULL", "HDRS"] | None = None  # RFC 3461 RET
    envid: str | None = None  # RFC 3461 ENVID, xtext-decoded
    queue_id: str = ""  # for the log


@dataclass(frozen=True, slots=True)
class Destination:
    host: str  # the name: what a certificate is checked against, and the log
    address: str  # what to connect to (an IP address from the resolver)
    port: int = 25

    def __str__(self) -> str:
        if self.host == self.address:
            return f"{self.host}:{self.port}"
        return f"{self.host}[{self.address}]:{self.port}"


@dataclass(frozen=True, slots=True)
class ClientSettings:
    helo_name: str
    timeouts: SmtpClientTimeouts = field(default_factory=SmtpClientTimeouts)
    tls_policy: TlsPolicy = "opportunistic"
    ca_file: str | None = None  # for "verify"; None: the system's trust store
    implicit_tls: bool = False  # TLS from the first byte (port 465) instead of STARTTLS
    username: str | None = None  # AUTH PLAIN/LOGIN after TLS, when set
    password: str | None = None

    @classmethod
    def for_domain(cls, config: Config, domain: str) -> ClientSettings:
        """Settings for delivery by MX to ``domain``."""
        out = config.outbound
        return cls(
            helo_name=out.helo_name or config.hostname,
            timeouts=out.timeouts,
            tls_policy=out.policy_for(domain),
            ca_file=out.ca_file or None,
        )

    @classmethod
    def for_smarthost(cls, config: Config) -> tuple[Destination, ClientSettings]:
        """The smarthost and how to talk to it; TLS is always required."""
        smart = config.outbound.smarthost
        if not smart.host:
            raise LocalProtocolError("no smarthost configured")
        settings = cls(
            helo_name=config.outbound.helo_name or config.hostname,
            timeouts=config.outbound.timeouts,
            tls_policy="verify" if smart.verify else "require",
            ca_file=config.outbound.ca_file or None,
            implicit_tls=smart.tls == "implicit",
            username=smart.username or None,
            password=smart.password if smart.username else None,
        )
        return Destination(smart.host, smart.host, smart.port), settings


@dataclass(frozen=True, slots=True)
class RecipientResult:
    recipient: str
    outcome: Outcome
    reply: Reply  # the server's (``remote``) or ours, with an RFC 3463 status
    stage: Stage
    remote: bool
    host: str  # "mx.example.org[192.0.2.1]:25"

    @property
    def diagnostic(self) -> str:
        """The reply on one line, for a DSN's Diagnostic-Code and the log."""
        return describe(self.reply)


@dataclass(frozen=True, slots=True)
class Delivery:
    results: tuple[RecipientResult, ...]  # in the envelope's order
    host: str
    tls: str | None = None  # "TLSv1.3 TLS_AES_256_GCM_SHA384" when encrypted
    tls_fallback: bool = False  # opportunistic TLS failed; sent in plaintext
    dsn: bool = False  # the server offered DSN, so NOTIFY/RET/ENVID/ORCPT went along


class SessionError(Exception):
    """The host could not be used (connect, greeting, EHLO, TLS, AUTH, lost connection)."""

    def __init__(
        self, reply: Reply, stage: Stage, *, remote: bool, outcome: Outcome | None = None
    ) -> None:
        super().__init__(describe(reply))
        self.reply = reply
        self.stage = stage
        self.remote = remote
        self.outcome = outcome if outcome is not None else _outcome(reply)


class _TlsHandshakeFailed(Exception):
    pass


class _Lost(Exception):
    """The connection ended (EOF, reset) while we waited."""


def _outcome(reply: Reply) -> Outcome:
    """2xx delivered, 5xx failed; 4xx — and anything unexpected (3xx) — deferred."""
    if 200 <= reply.code < 300:
        return Outcome.DELIVERED
    return Outcome.FAILED if reply.code >= 500 else Outcome.DEFERRED


# -- the transport -----------------------------------------------------------------------------


class _Wire(asyncio.Protocol):
    """Bytes in and out of one connection; replies are parsed as they arrive."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self.transport: asyncio.Transport | None = None
        self.parser = ReplyParser()
        self._waiter: asyncio.Future[None] | None = None
        self.closed = False
        self.close_reason = "connection closed by the server"
        self._paused = False
        self._drain: asyncio.Future[None] | None = None

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A stream transport (asyncio's, uvloop's or TLS's): what create_connection gives.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.parser.feed(data)
        if self.parser.buffered > _MAX_BUFFERED:
            self.close_reason = "the server sent too much unrequested data"
            self.abort()
        self._wake()

    def eof_received(self) -> bool:
        self.closed = True
        self._wake()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if exc is not None:
            self.close_reason = f"connection lost: {exc}"
        self._wake()
        if self._drain is not None and not self._drain.done():
            self._drain.set_result(None)

    def pause_writing(self) -> None:
        self._paused = True

    def resume_writing(self) -> None:
        self._paused = False
        if self._drain is not None and not self._drain.done():
            self._drain.set_result(None)

    # ours
    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def read_reply(self, timeout: float) -> Reply:
        async with asyncio.timeout(timeout):
            while True:
                reply = self.parser.next_reply()
                if reply is not None:
                    return reply
                if self.closed:
                    raise _Lost(self.close_reason)
                self._waiter = self._loop.create_future()
                try:
                    await self._waiter
                finally:
                    self._waiter = None

    def write(self, data: bytes) -> None:
        if self.closed or self.transport is None or self.transport.is_closing():
            raise _Lost(self.close_reason)
        self.transport.write(data)

    async def drain(self, timeout: float) -> None:
        async with asyncio.timeout(timeout):
            while self._paused and not self.closed:
                self._drain = self._loop.create_future()
                try:
                    await self._drain
                finally:
                    self._drain = None
        if self.closed:
            raise _Lost(self.close_reason)

    async def start_tls(
        self, ctx: ssl.SSLContext, server_hostname: str | None, timeout: float
    ) -> int:
        """Upgrade to TLS; returns how many octets of plaintext were thrown away."""
        if self.transport is None:
            raise _Lost(self.close_reason)
        # RFC 3207 §4.2 and the STARTTLS injection attacks: nothing the server (or a man in
        # the middle) sent before the handshake may be read as part of the TLS session.
        discarded = self.parser.discard()
        try:
            async with asyncio.timeout(timeout + 1):
                new = await self._loop.start_tls(
                    self.transport,
                    self,
                    ctx,
                    server_hostname=server_hostname,
                    ssl_handshake_timeout=timeout,
                )
        except (ssl.SSLError, ssl.CertificateError, OSError, TimeoutError, EOFError) as exc:
            self.closed = True
            self.abort()
            raise _TlsHandshakeFailed(_short(exc)) from None
        if new is None:  # pragma: no cover - asyncio returns None only if closed meanwhile
            self.closed = True
            raise _TlsHandshakeFailed("connection closed during the TLS handshake")
        self.transport = new
        return discarded

    def tls_description(self) -> str | None:
        if self.transport is None:
            return None
        obj = self.transport.get_extra_info("ssl_object")
        if not isinstance(obj, ssl.SSLObject):
            return None
        cipher = obj.cipher()
        return f"{obj.version()} {cipher[0] if cipher else ''}".strip()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    async def close(self, timeout: float = 5.0) -> None:
        if self.transport is None:
            return
        self.transport.close()
        try:
            async with asyncio.timeout(timeout):
                while not self.closed:
                    self._waiter = self._loop.create_future()
                    try:
                        await self._waiter
                    finally:
                        self._waiter = None
        except TimeoutError:
            self.abort()


def _short(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text[:300] if text else type(exc).__name__


def _tls_context(settings: ClientSettings, dest: Destination) -> ssl.SSLContext:
    try:
        return _new_tls_context(settings)
    except (OSError, ssl.SSLError) as exc:
        # A missing or broken CA file: ours to fix, so the mail waits (deferred).
        raise SessionError(
            Reply(421, "4.7.5", f"cannot set up TLS for {dest}: {_short(exc)}"),
            "starttls",
            remote=False,
        ) from None


def _new_tls_context(settings: ClientSettings) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if settings.tls_policy == "verify":
        ctx.check_hostname = True
        ctx.verify_mode = ssl.CERT_REQUIRED
        if settings.ca_file:
            ctx.load_verify_locations(cafile=settings.ca_file)
        else:
            ctx.load_default_certs(ssl.Purpose.SERVER_AUTH)
    else:
        # Opportunistic and "require" encrypt without authenticating (RFC 7435): most MX
        # hosts' certificates would fail a check, and plaintext is the alternative.
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


def _sni(host: str) -> str | None:
    return None if address_literal(host) is not None else host


# -- the session ---------------------------------------------------------------------------


class Connection:
    """One SMTP session with one host; ``send`` as many messages as you like, then ``quit``."""

    def __init__(
        self, wire: _Wire, dest: Destination, settings: ClientSettings, conn_id: str
    ) -> None:
        self._wire = wire
        self.destination = dest
        self.settings = settings
        self.conn_id = conn_id
        self.extensions: dict[str, str] = {}
        self.esmtp = False
        self.tls: str | None = None
        self.tls_fallback = False
        # A transaction the server holds open (MAIL accepted, no end-of-data reply yet):
        # the next MAIL must be preceded by RSET (RFC 5321 §4.1.1.5).
        self._in_transaction = False
        self._broken = False

    # -- opening ---------------------------------------------------------------------------

    @classmethod
    async def open(cls, dest: Destination, settings: ClientSettings) -> Connection:
        """Connect and get ready to send. Raises ``SessionError`` when the host cannot be used."""
        try:
            return await cls._open(dest, settings, try_tls=True)
        except _TlsHandshakeFailed as exc:
            if settings.tls_policy != "opportunistic" or settings.implicit_tls:
                raise SessionError(
                    Reply(421, "4.7.5", f"TLS handshake with {dest} failed: {exc}"),
                    "starttls",
                    remote=False,
                ) from None
            # Opportunistic TLS: a broken TLS stack must not stop mail (RFC 7435 §3), so
            # the host is tried once more without it, and the log says so.
            event(log, logging.WARNING, "outbound.tls_fallback", host=str(dest), reason=str(exc))
            conn = await cls._open(dest, settings, try_tls=False)
            conn.tls_fallback = True
            return conn

    @classmethod
    async def _open(
        cls, dest: Destination, settings: ClientSettings, *, try_tls: bool
    ) -> Connection:
        loop = asyncio.get_running_loop()
        wire = _Wire(loop)
        conn = cls(wire, dest, settings, new_connection_id())
        t = settings.timeouts
        ctx = _tls_context(settings, dest) if settings.implicit_tls else None
        try:
            async with asyncio.timeout(t.connect + (t.tls_handshake if ctx else 0)):
                await loop.create_connection(
                    lambda: wire,
                    host=dest.address,
                    port=dest.port,
                    ssl=ctx,
                    server_hostname=_sni(dest.host) if ctx else None,
                    ssl_handshake_timeout=t.tls_handshake if ctx else None,
                )
        except TimeoutError:
            raise SessionError(
                Reply(421, "4.4.1", f"connect to {dest}: timed out"), "connect", remote=False
            ) from None
        except (ssl.SSLError, ssl.CertificateError) as exc:
            raise SessionError(
                Reply(421, "4.7.5", f"TLS handshake with {dest} failed: {_short(exc)}"),
                "connect",
                remote=False,
            ) from None
        except OSError as exc:
            reason = os.strerror(exc.errno) if exc.errno else _short(exc)
            raise SessionError(
                Reply(421, "4.4.1", f"connect to {dest}: {reason}"), "connect", remote=False
            ) from None
        if ctx is not None:
            conn.tls = wire.tls_description()
        event(log, logging.DEBUG, "outbound.connected", conn=conn.conn_id, host=str(dest))
        try:
            await conn._greet(try_tls=try_tls)
        except BaseException:
            wire.abort()
            raise
        return conn

    async def _greet(self, *, try_tls: bool) -> None:
        t = self.settings.timeouts
        greeting = await self._call(None, t.greeting, "greeting")
        if greeting.code != 220:
            # RFC 5321 §3.1: a 554 greeting means "no service here"; say QUIT and go.
            await self._polite_quit()
            raise SessionError(greeting, "greeting", remote=True)
        await self._ehlo()
        if self.settings.tls_policy != "none" and not self.settings.implicit_tls:
            await self._starttls(try_tls)
        if self.settings.username is not None:
            await self._auth()

    async def _ehlo(self) -> None:
        t = self.settings.timeouts
        helo = self.settings.helo_name
        reply = await self._call(command("EHLO", helo), t.command, "ehlo")
        if reply.code == 250:
            self.esmtp = True
            self.extensions = ehlo_keywords(reply)
            return
        if reply.code >= 500 and not self._wire.closed:
            # RFC 5321 §3.2: a server that does not know EHLO gets HELO.
            reply = await self._call(command("HELO", helo), t.command, "ehlo")
            if reply.code == 250:
                self.esmtp = False
                self.extensions = {}
                return
        await self._polite_quit()
        raise SessionError(reply, "ehlo", remote=True)

    async def _starttls(self, try_tls: bool) -> None:
        policy = self.settings.tls_policy
        dest = self.destination
        if not try_tls:
            return  # the plaintext retry after a failed opportunistic handshake
        if "STARTTLS" not in self.extensions:
            if policy == "opportunistic":
                return
            await self._polite_quit()
            raise SessionError(
                Reply(421, "4.7.4", f"TLS is required, but {dest} did not offer STARTTLS"),
                "starttls",
                remote=False,
            )
        t = self.settings.timeouts
        reply = await self._call(command("STARTTLS"), t.command, "starttls")
        if reply.code != 220:
            if policy == "opportunistic":
                event(
                    log,
                    logging.INFO,
                    "outbound.starttls_refused",
                    conn=self.conn_id,
                    host=str(dest),
                    reply=describe(reply),
                )
                if reply.code == 421:
                    raise SessionError(reply, "starttls", remote=True)
                return
            await self._polite_quit()
            raise SessionError(
                Reply(
                    421, "4.7.4", f"TLS is required, but {dest} refused STARTTLS: {describe(reply)}"
                ),
                "starttls",
                remote=False,
            )
        ctx = _tls_context(self.settings, dest)
        discarded = await self._wire.start_tls(ctx, _sni(dest.host), t.tls_handshake)
        if discarded:
            event(
                log,
                logging.WARNING,
                "outbound.starttls_plaintext_discarded",
                conn=self.conn_id,
                host=str(dest),
                octets=discarded,
            )
        self.tls = self._wire.tls_description()
        # RFC 3207 §4.2: forget everything learnt before TLS and ask again.
        self.extensions = {}
        await self._ehlo()

    async def _auth(self) -> None:
        user = self.settings.username or ""
        password = self.settings.password or ""
        dest = self.destination
        if self.tls is None:
            raise SessionError(
                Reply(421, "4.7.0", f"will not send credentials to {dest} without TLS"),
                "auth",
                remote=False,
            )
        mechanisms = self.extensions.get("AUTH", "").upper().split()
        t = self.settings.timeouts
        if "PLAIN" in mechanisms:
            token = base64.b64encode(f"\0{user}\0{password}".encode()).decode("ascii")
            reply = await self._call(
                command("AUTH", "PLAIN", token), t.command, "auth", secret=True
            )
        elif "LOGIN" in mechanisms:
            reply = await self._call(command("AUTH", "LOGIN"), t.command, "auth")
            for secret in (user, password):
                if reply.code != 334:
                    break
                token = base64.b64encode(secret.encode()).decode("ascii")
                reply = await self._call(command(token), t.command, "auth", secret=True)
        else:
            await self._polite_quit()
            raise SessionError(
                Reply(421, "4.7.4", f"{dest} offers no AUTH mechanism we know (PLAIN, LOGIN)"),
                "auth",
                remote=False,
                outcome=Outcome.DEFERRED,
            )
        if reply.code != 235:
            await self._polite_quit()
            # A refused login is our configuration's problem, not the recipients': defer,
            # so that mail waits for the fix instead of bouncing (as Postfix does).
            raise SessionError(reply, "auth", remote=True, outcome=Outcome.DEFERRED)

    # -- sending ---------------------------------------------------------------------------

    @property
    def usable(self) -> bool:
        """The session can take another message."""
        return not self._broken and not self._wire.closed

    async def send(self, envelope: Envelope, content: MessageSource) -> Delivery:
        """One mail transaction. Every recipient gets a result; nothing raises for the
        server's or the network's doing."""
        if not self.usable:
            raise LocalProtocolError("send() on a connection that is closed or broken")
        if not envelope.recipients:
            raise LocalProtocolError("send() without recipients")
        results: dict[int, RecipientResult] = {}
        try:
            await self._transaction(envelope, content, results)
        except SessionError as exc:
            self._broken = True
            self._fill(envelope, results, exc.reply, exc.stage, exc.remote, exc.outcome)
        except (_Lost, TimeoutError, ReplyError, OSError) as exc:
            self._broken = True
            stage = self._stage
            what = "timeout" if isinstance(exc, TimeoutError) else _short(exc)
            reply = Reply(421, "4.4.2", f"{what} while talking to {self.destination} ({stage})")
            self._fill(envelope, results, reply, stage, False, Outcome.DEFERRED)
            self._wire.abort()
        ordered = tuple(results[i] for i in range(len(envelope.recipients)))
        for r in ordered:
            event(
                log,
                logging.INFO,
                f"outbound.{r.outcome.value}",
                queue_id=envelope.queue_id,
                conn=self.conn_id,
                rcpt=r.recipient,
                host=r.host,
                stage=r.stage,
                reply=r.diagnostic,
                tls=self.tls or "none",
            )
        return Delivery(
            ordered,
            str(self.destination),
            tls=self.tls,
            tls_fallback=self.tls_fallback,
            dsn="DSN" in self.extensions,
        )

    _stage: Stage = "mail"

    def _fill(
        self,
        envelope: Envelope,
        results: dict[int, RecipientResult],
        reply: Reply,
        stage: Stage,
        remote: bool,
        outcome: Outcome,
        only: Sequence[int] | None = None,
    ) -> None:
        indexes = range(len(envelope.recipients)) if only is None else only
        for i in indexes:
            if i not in results:
                results[i] = RecipientResult(
                    envelope.recipients[i].address,
                    outcome,
                    reply,
                    stage,
                    remote,
                    str(self.destination),
                )

    async def _transaction(
        self, envelope: Envelope, content: MessageSource, results: dict[int, RecipientResult]
    ) -> None:
        ext = self.extensions
        dest = self.destination
        t = self.settings.timeouts
        self._stage = "mail"

        # Addresses come from our own queue, checked on arrival; this is the last guard
        # before they become command text (CONVENTIONS: CR, LF, NUL refused where they
        # enter). A bad one is never sent.
        if _BAD_ADDRESS.search(envelope.sender):
            reply = Reply(553, "5.1.7", "invalid sender address")
            self._fill(envelope, results, reply, "mail", False, Outcome.FAILED)
            return
        for i, r in enumerate(envelope.recipients):
            if _BAD_ADDRESS.search(r.address) or not r.address:
                reply = Reply(553, "5.1.3", "invalid recipient address")
                self._fill(envelope, results, reply, "rcpt", False, Outcome.FAILED, [i])
        to_send = [i for i in range(len(envelope.recipients)) if i not in results]
        if not to_send:
            return

        # RFC 6531 §3.2: UTF-8 addresses or header fields need SMTPUTF8 at the other end.
        needs_utf8 = (
            envelope.smtputf8
            or not envelope.sender.isascii()
            or any(not r.address.isascii() for r in envelope.recipients)
        )
        if needs_utf8 and "SMTPUTF8" not in ext:
            reply = Reply(550, "5.6.7", f"{dest} does not support SMTPUTF8 (RFC 6531)")
            self._fill(envelope, results, reply, "mail", False, Outcome.FAILED)
            return

        # RFC 6152 §3: no 8-bit body for a server that did not offer 8BITMIME.
        body: str | None = None
        source = content
        if (envelope.eight_bit or needs_utf8) and "8BITMIME" in ext:
            body = "BODY=8BITMIME"
        elif "8BITMIME" not in ext and not needs_utf8:
            # Checked even when the envelope says 7-bit: clients that send 8-bit octets
            # without BODY=8BITMIME are common, and broken mail must not leave here.
            try:
                source = await asyncio.to_thread(_seven_bit, content)
            except ConversionError as exc:
                reply = Reply(
                    554,
                    "5.6.3",
                    f"{dest} does not support 8BITMIME and the message cannot be converted: {exc}",
                )
                self._fill(envelope, results, reply, "content", False, Outcome.FAILED)
                return
            if source is not content:
                event(
                    log,
                    logging.INFO,
                    "outbound.converted_7bit",
                    queue_id=envelope.queue_id,
                    conn=self.conn_id,
                )

        # A stat is a thread hop; bytes need none (a hop costs up to a GIL switch
        # interval on a busy loop).
        size = _size(source) if _in_memory(source) else await asyncio.to_thread(_size, source)
        limit = _size_limit(ext.get("SIZE"))
        if "SIZE" in ext and limit and size > limit:
            # RFC 1870 §6.1: do not send what the server said it will not take.
            reply = Reply(552, "5.3.4", f"message size {size} exceeds the limit {limit} of {dest}")
            self._fill(envelope, results, reply, "mail", False, Outcome.FAILED)
            return

        dsn = "DSN" in ext
        mail_args = [f"FROM:<{envelope.sender}>"]
        if "SIZE" in ext:
            mail_args.append(f"SIZE={size}")
        if body:
            mail_args.append(body)
        if needs_utf8:
            mail_args.append("SMTPUTF8")
        if dsn and envelope.ret:
            mail_args.append(f"RET={envelope.ret}")
        if dsn and envelope.envid:
            mail_args.append(f"ENVID={xtext_encode(envelope.envid)}")
        batch: list[tuple[Stage, bytes, float]] = []
        if self._in_transaction:
            batch.append(("mail", command("RSET"), t.command))
        rset = self._in_transaction
        batch.append(("mail", command("MAIL", *mail_args, utf8=needs_utf8), t.mail))
        for i in to_send:
            r = envelope.recipients[i]
            args = [f"TO:<{r.address}>"]
            if dsn and r.notify:
                args.append(f"NOTIFY={','.join(_notify(r.notify))}")
            if dsn and r.orcpt:
                args.append(f"ORCPT={_orcpt(r.orcpt)}")
            batch.append(("rcpt", command("RCPT", *args, utf8=needs_utf8), t.rcpt))
        # RFC 2920 §3.1: DATA may end the group; the server answers it 503/554 when no
        # recipient was accepted. One round trip fewer per message.
        pipelined = "PIPELINING" in ext
        if pipelined:
            batch.append(("data", command("DATA"), t.data_init))

        replies = await self._exchange(batch, pipelined=pipelined)
        data: Reply | None = replies.pop() if pipelined else None
        if rset:
            reset = replies.pop(0)
            if reset is None or reset.code != 250:
                raise SessionError(
                    reset or self._no_reply("RSET"), "mail", remote=reset is not None
                )
            self._in_transaction = False
        mail = replies[0]
        if mail is None or mail.code != 250:
            reply = mail or self._no_reply("MAIL")
            self._fill(envelope, results, reply, "mail", mail is not None, _outcome(reply), to_send)
            self._after_reply(reply)
            await self._refuse_data(data)
            return
        self._in_transaction = True
        accepted: list[int] = []
        for i, rcpt in zip(to_send, replies[1:], strict=True):
            if rcpt is not None and rcpt.is_positive and rcpt.code < 300:
                accepted.append(i)  # 250, or 251 "will forward" (RFC 5321 §3.4)
                continue
            reply = rcpt or self._no_reply("RCPT")
            self._fill(envelope, results, reply, "rcpt", rcpt is not None, _outcome(reply), [i])
            self._after_reply(reply)
        if not accepted:
            await self._refuse_data(data)
            return

        self._stage = "data"
        if not pipelined:
            self._wire.write(command("DATA"))
            data = await self._wire.read_reply(t.data_init)
        if data is None or data.code != 354:
            reply = data or self._no_reply("DATA")
            self._fill(
                envelope, results, reply, "data", data is not None, _outcome(reply), accepted
            )
            self._after_reply(reply)
            return
        self._stage = "content"
        encoder = DataEncoder()
        if _in_memory(source):
            # A message in memory goes in one write: no drain between its pieces.
            self._wire.write(b"".join([*map(encoder.feed, _pieces(source)), encoder.finish()]))
        else:
            async for chunk in _chunks(source):
                piece = encoder.feed(chunk)
                if piece:
                    self._wire.write(piece)
                    await self._wire.drain(t.data_block)
            self._wire.write(encoder.finish())
        await self._wire.drain(t.data_block)
        # The at-least-once window: from here until the reply, a lost connection means
        # the server may have the message and we will send it again.
        reply = await self._wire.read_reply(t.data_done)
        self._in_transaction = False  # the end-of-data reply ends the transaction, whatever it is
        self._fill(envelope, results, reply, "content", True, _outcome(reply), accepted)
        self._after_reply(reply)

    async def _refuse_data(self, data: Reply | None) -> None:
        """After a pipelined DATA with nothing to send: a server that said 354 anyway gets
        an empty message's end, "." (RFC 2920 §3.1), and its reply is ignored."""
        if data is None or data.code != 354:
            return
        self._stage = "content"
        self._wire.write(b".\r\n")
        reply = await self._wire.read_reply(self.settings.timeouts.data_done)
        self._in_transaction = False
        self._after_reply(reply)

    async def _exchange(
        self, batch: list[tuple[Stage, bytes, float]], *, pipelined: bool
    ) -> list[Reply | None]:
        """Send the commands and read their replies. RFC 2920: with PIPELINING, all at
        once; without, one by one, stopping at a failed MAIL or RSET."""
        if pipelined:
            self._wire.write(b"".join(line for _, line, _ in batch))
            replies: list[Reply | None] = []
            for stage, line, timeout in batch:
                self._stage = stage
                try:
                    reply = await self._wire.read_reply(timeout)
                except _Lost:
                    if not replies:
                        raise
                    # Gone after some replies (a 421 and close, typically): what was
                    # answered stands; the rest had no answer.
                    self._broken = True
                    break
                self._trace(line, reply)
                replies.append(reply)
                if reply.code == 421:
                    self._broken = True  # RFC 5321 §3.8: nothing more will be answered
                    break
            return replies + [None] * (len(batch) - len(replies))
        replies = []
        stopped = False
        for stage, line, timeout in batch:
            if stopped:
                replies.append(None)
                continue
            self._stage = stage
            reply = await self._call(line, timeout, stage)
            replies.append(reply)
            if stage == "mail" and reply.code != 250:
                stopped = True
        return replies

    def _no_reply(self, what: str) -> Reply:
        why = self._wire.close_reason if self._wire.closed else "the session ended (421)"
        return Reply(421, "4.4.2", f"no reply to {what} from {self.destination}: {why}")

    def _after_reply(self, reply: Reply) -> None:
        if reply.code == 421:
            self._broken = True  # RFC 5321 §3.8: the server is closing the channel

    async def _call(
        self, line: bytes | None, timeout: float, stage: Stage, *, secret: bool = False
    ) -> Reply:
        self._stage = stage
        try:
            if line is not None:
                self._wire.write(line)
            reply = await self._wire.read_reply(timeout)
        except TimeoutError:
            self._wire.abort()
            raise SessionError(
                Reply(421, "4.4.2", f"timeout waiting for {stage} reply from {self.destination}"),
                stage,
                remote=False,
            ) from None
        except (_Lost, ReplyError, OSError) as exc:
            self._wire.abort()
            raise SessionError(
                Reply(421, "4.4.2", f"{_short(exc)} ({stage}, {self.destination})"),
                stage,
                remote=False,
            ) from None
        self._trace(b"AUTH ***\r\n" if secret else line, reply)
        return reply

    def _trace(self, line: bytes | None, reply: Reply) -> None:
        if log.isEnabledFor(TRACE):
            sent = line.decode("utf-8", "replace").rstrip("\r\n") if line else ""
            event(log, TRACE, "outbound.wire", conn=self.conn_id, sent=sent, reply=describe(reply))

    async def _polite_quit(self) -> None:
        if self._wire.closed:
            return
        try:
            self._wire.write(command("QUIT"))
            await self._wire.read_reply(min(self.settings.timeouts.command, 10.0))
        except (_Lost, TimeoutError, ReplyError, OSError):
            pass
        self._wire.abort()

    async def quit(self) -> None:
        """End the session (QUIT, RFC 5321 §4.1.1.10); never raises."""
        if not self._wire.closed and not self._broken:
            try:
                self._wire.write(command("QUIT"))
                await self._wire.read_reply(self.settings.timeouts.command)
            except (_Lost, TimeoutError, ReplyError, OSError):
                pass
        await self._wire.close()

    def abort(self) -> None:
        self._broken = True
        self._wire.abort()


async def deliver(
    dest: Destination, settings: ClientSettings, envelope: Envelope, content: MessageSource
) -> Delivery:
    """Open a session, send one message, QUIT. Never raises for the remote's doing."""
    try:
        conn = await Connection.open(dest, settings)
    except SessionError as exc:
        results = tuple(
            RecipientResult(r.address, exc.outcome, exc.reply, exc.stage, exc.remote, str(dest))
            for r in envelope.recipients
        )
        for r in results:
            event(
                log,
                logging.INFO,
                f"outbound.{r.outcome.value}",
                queue_id=envelope.queue_id,
                rcpt=r.recipient,
                host=r.host,
                stage=r.stage,
                reply=r.diagnostic,
            )
        return Delivery(results, str(dest))
    try:
        return await conn.send(envelope, content)
    finally:
        await conn.quit()


# -- helpers --------------------------------------------------------------------------------


def _size_limit(param: str | None) -> int:
    """RFC 1870 §4: "SIZE" alone or "SIZE 0" means no fixed limit."""
    if not param:
        return 0
    try:
        return max(int(param.split()[0]), 0)
    except ValueError:
        return 0


def _notify(values: tuple[str, ...]) -> list[str]:
    upper = [v.strip().upper() for v in values]
    allowed = {"NEVER"} if "NEVER" in upper else {"SUCCESS", "FAILURE", "DELAY"}
    out = [v for v in upper if v in allowed]
    if not out or (len(out) > 1 and "NEVER" in out):
        raise LocalProtocolError(f"invalid NOTIFY {values!r} (RFC 3461 §4.1)")
    return out


def _orcpt(orcpt: str) -> str:
    kind, sep, address = orcpt.partition(";")
    if not sep:
        kind, address = "rfc822", orcpt
    kind = kind.strip().lower() or "rfc822"
    if not address.isascii():
        # RFC 6533 §3: utf-8-addr-xtext, non-ASCII as \x{HEX}, then xtext as always.
        kind = "utf-8"
        address = "".join(c if c.isascii() else f"\\x{{{ord(c):X}}}" for c in address)
    return f"{kind};{xtext_encode(address)}"


def _seven_bit(content: MessageSource) -> MessageSource:
    """``content`` itself when it is 7-bit, else its 7-bit conversion (in memory)."""
    if isinstance(content, Prefixed):
        if isinstance(content.body, bytes):
            if content.body.isascii() and content.prefix.isascii():
                return content
            return to_seven_bit(content.prefix + content.body)
        body = _seven_bit(content.body)
        if body is content.body and content.prefix.isascii():
            return content  # 7-bit throughout: keep streaming it
        return to_seven_bit(content.prefix + cast(bytes, body))
    if isinstance(content, bytes):
        return to_seven_bit(content)
    with open(content, "rb") as f:
        while chunk := f.read(CHUNK):
            if not chunk.isascii():
                break
        else:
            return content  # a 7-bit file: keep streaming it
    data = Path(content).read_bytes()
    return to_seven_bit(data)


def _in_memory(content: MessageSource) -> bool:
    if isinstance(content, Prefixed):
        return isinstance(content.body, bytes)
    return isinstance(content, bytes)


def _size(content: MessageSource) -> int:
    if isinstance(content, Prefixed):
        return len(content.prefix) + _size(content.body)
    if isinstance(content, bytes):
        return len(content)
    return os.stat(content).st_size


def _pieces(content: MessageSource) -> list[bytes]:
    """An in-memory message's bytes (``_in_memory``), its prefix first."""
    if isinstance(content, Prefixed):
        return [content.prefix, cast(bytes, content.body)]
    return [cast(bytes, content)]


async def _chunks(content: MessageSource) -> AsyncIterator[bytes]:
    if isinstance(content, Prefixed):
        if content.prefix:
            yield content.prefix
        async for chunk in _chunks(content.body):
            yield chunk
        return
    if isinstance(content, bytes):
        view = memoryview(content)
        for start in range(0, len(view), CHUNK):
            yield bytes(view[start : start + CHUNK])
        return
    f = await asyncio.to_thread(open, content, "rb")
    try:
        while chunk := await asyncio.to_thread(f.read, CHUNK):
            yield chunk
    finally:
        await asyncio.to_thread(f.close)


__all__ = [
    "ClientSettings",
    "Connection",
    "Delivery",
    "Destination",
    "Envelope",
    "MessageSource",
    "Outcome",
    "Prefixed",
    "Recipient",
    "RecipientResult",
    "SessionError",
    "deliver",
]
