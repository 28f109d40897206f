"""The SMTP session: what to answer to each event of the protocol machine.

The machine (``proto.smtp``) decides syntax and sequence; this session decides
meaning (routing, policy, storage) and owns the Transaction. It does no socket I/O:
``serve.smtp`` feeds it events and writes its replies, and transcript tests drive it
over an in-memory stream.
"""

from __future__ import annotations

import ipaddress
import logging
import time
from dataclasses import dataclass

from mailwright.config import SmtpConfig
from mailwright.core.address import Address
from mailwright.core.log import event as log_event
from mailwright.core.reply import Reply
from mailwright.intake.pipeline import Pipeline
from mailwright.intake.routing import Router
from mailwright.intake.transaction import Recipient, Transaction
from mailwright.message import trace
from mailwright.message.dsn import xtext_decode
from mailwright.message.fixup import HeaderFixup
from mailwright.message.scan import MessageScanner
from mailwright.metrics import meter
from mailwright.policy.auth import Authenticator, plaintext_allowed
from mailwright.policy.recipient import RecipientFacts, check_recipient
from mailwright.policy.sasl import SaslExchange
from mailwright.policy.verdict import Accept, Defer, Reject
from mailwright.proto.sasl.mechanism import Credentials, Failure
from mailwright.proto.smtp import events as ev
from mailwright.proto.smtp import replies
from mailwright.proto.smtp.server import (
    AUTH_MAIL_PARAM,
    DSN_MAIL_PARAMS,
    DSN_RCPT_PARAMS,
    Limits,
)
from mailwright.store.api import Account, Messages, OutboundRecipient
from mailwright.store.errors import QuotaExceeded, StoreError

log = logging.getLogger("mailwright.smtp")

_HELP = Reply(
    214,
    "2.0.0",
    (
        "Commands: EHLO HELO MAIL RCPT DATA BDAT RSET NOOP QUIT HELP VRFY STARTTLS",
        "See RFC 5321",
    ),
)
_CONTENT_REPLIES = {
    "header_size": Reply(552, "5.3.4", "Message header block too large"),
    "mime_depth": Reply(554, "5.6.0", "MIME nesting too deep"),
    "eight_bit_header": Reply(
        554, "5.6.7", "Non-ASCII header requires SMTPUTF8 (RFC 6532); message refused"
    ),
}
_TLS_ACTIVE = Reply(503, "5.5.1", "TLS already active")
_SENDER_NOT_OWNED = Reply(553, "5.7.1", "Sender address rejected: not owned by user")
_MECHANISMS = ("PLAIN", "LOGIN")
_BASE_MAIL_PARAMS = frozenset({"SIZE", "BODY", "SMTPUTF8"})


@dataclass(frozen=True, slots=True)
class Peer:
    ip: str
    port: int
    conn_id: str


@dataclass(frozen=True, slots=True)
class Submission:
    """What a submission listener (RFC 6409) adds: AUTH, and mail only from users."""

    authenticator: Authenticator
    allow_plaintext: str = "loopback"  # AUTH without TLS: "never", "loopback", "always"
    sign_dkim: bool = True


@dataclass(frozen=True, slots=True)
class Relay:
    """Who may relay without AUTH (configured trusted networks; default none)."""

    trusted: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()

    @classmethod
    def from_config(cls, config: SmtpConfig) -> Relay:
        return cls(config.networks)

    def trusts(self, ip: str) -> bool:
        if not self.trusted:
            return False  # the default: no address parsing per connection
        try:
            address = ipaddress.ip_address(ip)
        except ValueError:
            return False
        return any(address in net for net in self.trusted)


def limits_from(config: SmtpConfig, *, submission: bool = False) -> Limits:
    mail = _BASE_MAIL_PARAMS | DSN_MAIL_PARAMS
    if submission:
        mail |= {AUTH_MAIL_PARAM}
    return Limits(
        max_line=config.max_line,
        max_message_size=config.max_message_size,
        max_data_line=config.max_data_line,
        max_errors=config.max_errors,
        normalize_bare_lf=config.bare_lf == "normalize",
        auth=submission,
        mail_params=mail,
        rcpt_params=DSN_RCPT_PARAMS,
    )


class SmtpSession:
    def __init__(
        self,
        *,
        hostname: str,
        config: SmtpConfig,
        router: Router,
        messages: Messages,
        peer: Peer,
        tls_available: bool,
        pipeline: Pipeline | None = None,
        submission: Submission | None = None,
        relay: Relay | None = None,
    ) -> None:
        self.hostname = hostname
        self.config = config
        self.router = router
        self.messages = messages
        self.pipeline = pipeline or Pipeline(router, messages, hostname)
        self.peer = peer
        self.tls_available = tls_available
        self.submission = submission
        self.trusted = (relay or Relay()).trusts(peer.ip)
        self.tls_info: str | None = None  # set once TLS is active (protocol, cipher)
        self.helo: str | None = None
        self.esmtp = False
        self.tx: Transaction | None = None
        self.delivered = 0
        self.user: Account | None = None  # authenticated (submission)
        self._sasl: SaslExchange | None = None

    def greeting(self) -> Reply:
        return Reply(220, None, f"{self.hostname} ESMTP mailwright")

    def tls_started(self, info: str) -> None:
        # RFC 3207 §4.2: forget everything learnt before the handshake.
        self.tls_info = info
        self.helo = None
        self.esmtp = False
        self.user = None
        self._sasl = None
        self.abort()

    @property
    def may_relay(self) -> bool:
        return self.user is not None or self.trusted

    def _auth_offered(self) -> bool:
        """RFC 4954 §4 and RFC 8314: AUTH only over TLS, unless the config allows it."""
        sub = self.submission
        if sub is None:
            return False
        return self.tls_info is not None or plaintext_allowed(sub.allow_plaintext, self.peer.ip)

    def abort(self) -> None:
        if self.tx is not None:
            self.tx.abort()
            self.tx = None

    async def handle(self, event: ev.Event) -> Reply | None:
        """The reply to ``event``; None for events that take none (data chunks)."""
        match event:
            case ev.DataChunk(data):
                if self.tx is not None:
                    self.tx.write(data)
                return None
            case ev.Bdat():
                if self.tx is not None and self.tx.blob is None:
                    self._begin_body()
                return None
            case ev.EndOfData():
                return await self._end_of_data(event)
            case ev.Ehlo(name):
                return self._hello(name, esmtp=True)
            case ev.Helo(name):
                return self._hello(name, esmtp=False)
            case ev.MailFrom():
                return await self._mail(event)
            case ev.RcptTo():
                return await self._rcpt(event)
            case ev.Data():
                self._begin_body()
                return replies.START_DATA
            case ev.Rset():
                self.abort()
                return replies.RESET_OK
            case ev.Noop():
                return replies.OK
            case ev.Quit():
                self.abort()
                return Reply(221, "2.0.0", f"{self.hostname} closing connection")
            case ev.Help():
                return _HELP
            case ev.Vrfy():
                # RFC 5321 §3.5.3: 252, so that VRFY never tells who exists.
                return replies.CANNOT_VRFY
            case ev.Auth(mechanism, initial):
                return await self._auth(mechanism, initial)
            case ev.AuthResponse(data):
                return await self._auth_step(data)
            case ev.StartTls():
                if self.tls_info is not None:
                    return _TLS_ACTIVE
                if not self.tls_available:
                    return replies.TLS_UNAVAILABLE
                return replies.READY_TLS
            case ev.Invalid(reply):
                return reply
        return replies.SYNTAX_ERROR  # pragma: no cover - every event is matched above

    def _hello(self, name: str, *, esmtp: bool) -> Reply:
        self.abort()
        self.helo = name
        self.esmtp = esmtp
        first = f"{self.hostname} Hello {name} [{self.peer.ip}]"
        if not esmtp:
            return Reply(250, None, first)
        lines = [
            first,
            "PIPELINING",
            f"SIZE {self.config.max_message_size}",
            "8BITMIME",
            "ENHANCEDSTATUSCODES",
            "SMTPUTF8",
            "CHUNKING",
        ]
        lines.append("DSN")
        if self.tls_available and self.tls_info is None:
            lines.append("STARTTLS")
        if self._auth_offered():
            lines.append("AUTH " + " ".join(_MECHANISMS))
        lines.append("HELP")
        return Reply(250, None, tuple(lines))

    # -- AUTH (RFC 4954) ----------------------------------------------------------------

    async def _auth(self, mechanism: str, initial: str | None) -> Reply:
        if not self._auth_offered():
            # RFC 4954 §6: a password would cross in the clear.
            return replies.AUTH_ENCRYPTION_REQUIRED
        exchange = SaslExchange.start(mechanism)
        if exchange is None:
            return replies.AUTH_MECHANISM_UNKNOWN
        self._sasl = exchange
        return await self._sasl_outcome(exchange.step(initial, initial=True))

    async def _auth_step(self, data: str) -> Reply:
        exchange = self._sasl
        if exchange is None:  # pragma: no cover - the machine reads responses only after 334
            return replies.BAD_SEQUENCE
        if data == "*":
            self._sasl = None
            return replies.AUTH_CANCELLED
        return await self._sasl_outcome(exchange.step(data))

    async def _sasl_outcome(self, outcome: object) -> Reply:
        if isinstance(outcome, str):
            return Reply(334, None, outcome)
        self._sasl = None
        if isinstance(outcome, Failure):
            log_event(
                log,
                logging.INFO,
                "auth.refused",
                conn=self.peer.conn_id,
                client=self.peer.ip,
                reason=outcome.reason,
            )
            return replies.AUTH_UNDECODABLE if outcome.undecodable else replies.AUTH_INVALID
        if not isinstance(outcome, Credentials):  # pragma: no cover - str handled above
            return replies.AUTH_UNDECODABLE
        sub = self.submission
        if sub is None:  # pragma: no cover - AUTH is offered only with a submission
            return replies.AUTH_INVALID
        try:
            result = await sub.authenticator.authenticate(
                outcome.username,
                outcome.password,
                self.peer.ip,
                conn=self.peer.conn_id,
                protocol="submission",
            )
        except StoreError as exc:
            log_event(log, logging.ERROR, "store.error", conn=self.peer.conn_id, error=str(exc))
            return replies.AUTH_TEMPORARY
        if not result.ok or result.account is None:
            return replies.AUTH_INVALID
        self.user = result.account
        log_event(
            log,
            logging.INFO,
            "auth.ok",
            conn=self.peer.conn_id,
            client=self.peer.ip,
            user=result.account.address,
        )
        return replies.AUTH_OK

    # -- the envelope ----------------------------------------------------------------------

    async def _mail(self, event: ev.MailFrom) -> Reply:
        size = event.params.get("SIZE")
        if size is not None and int(size) > self.config.max_message_size:
            # RFC 1870 §6.2: refuse up front when the declared size is too big.
            return replies.SIZE_EXCEEDED
        if self.submission is not None:
            if self.user is None and not self.trusted:
                # RFC 6409 §4.3 / RFC 4954 §6: submission requires authentication.
                return replies.AUTH_REQUIRED
            if self.user is not None and not await self._owns(event.address):
                log_event(
                    log,
                    logging.WARNING,
                    "sender.not_owned",
                    conn=self.peer.conn_id,
                    user=self.user.address,
                    sender=str(event.address),
                )
                return _SENDER_NOT_OWNED
        tx = Transaction(event.address, dict(event.params))
        envid = event.params.get("ENVID")
        if envid:
            tx.envid = xtext_decode(envid)
        self.tx = tx
        return replies.SENDER_OK

    async def _owns(self, sender: Address | None) -> bool:
        """An authenticated user may send as its own address, its sub-addresses, and the
        aliases that reach it (the null sender too: RFC 6409 allows it for DSNs)."""
        user = self.user
        if sender is None or user is None:
            return True
        if sender.key == user.address.lower():
            return True
        route = await self.router.route(sender)
        return any(t.account_id == user.id for t in route.targets)

    async def _rcpt(self, event: ev.RcptTo) -> Reply:
        tx = self.tx
        if tx is None:  # pragma: no cover - the state table allows RCPT only after MAIL
            return replies.BAD_SEQUENCE
        route = await self.router.route(event.address)
        verdict = check_recipient(
            RecipientFacts(
                local_domain=route.local_domain,
                known=route.known,
                may_relay=self.may_relay,
                accepted_so_far=len(tx.recipients),
                max_recipients=self.config.max_recipients,
                quotas=route.quotas,
                declared_size=_declared_size(tx.params),
            )
        )
        match verdict:
            case Accept():
                dsn = _outbound_recipient(event)
                if route.local_domain:
                    tx.recipients.append(
                        Recipient(event.address, route.targets, notify=dsn.notify, orcpt=dsn.orcpt)
                    )
                else:
                    tx.recipients.append(Recipient(event.address, remote=dsn))
                return replies.RECIPIENT_OK
            case Reject(reply, reason) | Defer(reply, reason):
                log_event(
                    log,
                    logging.INFO,
                    reason or "recipient.refused",
                    conn=self.peer.conn_id,
                    client=self.peer.ip,
                    rcpt=str(event.address),
                    reply=str(reply),
                )
                return reply
        return replies.BAD_SEQUENCE  # pragma: no cover - Verdict is one of the three

    def _begin_body(self) -> None:
        tx = self.tx
        if tx is None:  # pragma: no cover - the state table allows DATA only after RCPT
            return
        rcpt = str(tx.recipients[0].address) if len(tx.recipients) == 1 else None
        prefix = trace.received(
            helo=self.helo or self.peer.ip,
            peer_ip=self.peer.ip,
            by=self.hostname,
            protocol=trace.protocol_name(
                esmtp=self.esmtp,
                tls=self.tls_info is not None,
                auth=self.user is not None,
                utf8=tx.smtputf8,
            ),
            queue_id=tx.queue_id,
            recipient=rcpt,
            tls=self.tls_info,
        )
        if not tx.remote:
            # RFC 5321 §4.4: Return-Path is added at final delivery. A copy that is also
            # relayed must not carry one (the final MTA adds its own), so a message with
            # remote recipients has none in its local copies either (one stored copy).
            prefix = trace.return_path(str(tx.sender) if tx.sender else None) + prefix
        scanner = MessageScanner(
            max_header_size=self.config.max_header_size,
            max_mime_depth=self.config.max_mime_depth,
            ascii_headers=self.config.eight_bit_headers == "reject" and not tx.smtputf8,
        )
        fixup = None
        if self.submission is not None:
            # RFC 6409 §8.3: a submission server may add a missing Message-ID and Date.
            fixup = HeaderFixup(
                hostname=self.hostname,
                queue_id=tx.queue_id,
                max_hold=self.config.max_header_size,
            )
        sub = self.submission
        # Mail relayed for a trusted network (an application server) leaves signed too,
        # as it would through submission.
        signing = sub.sign_dkim if sub is not None else self.trusted
        tx.begin(
            self.messages, scanner, prefix, fixup, self.pipeline.hasher(tx) if signing else None
        )

    async def _end_of_data(self, event: ev.EndOfData) -> Reply:
        tx = self.tx
        if tx is None:  # pragma: no cover - the machine ends data only inside a transaction
            return replies.BAD_SEQUENCE
        if event.rejected is not None:
            self._finish(tx, event.rejected)
            return event.rejected
        if not event.last:
            return Reply(250, "2.0.0", f"{tx.octets} octets received so far")
        started = time.perf_counter()
        problem = tx.problem()
        if problem is not None:
            reply = _CONTENT_REPLIES[problem.kind]
            self._finish(tx, reply)
            return reply
        size = tx.blob.size if tx.blob is not None else 0
        if tx.dkim is not None:
            self.pipeline.sign(tx)
        received = {
            "client": self.peer.ip,
            "helo": self.helo or "",
            "sender": str(tx.sender or ""),
            "size": str(size),
        }
        if self.user is not None:
            received["user"] = self.user.address
        try:
            result = await tx.commit(self.messages, tx.events(received))
        except QuotaExceeded:
            # Every recipient's mailbox filled up since RCPT: temporary, room may be made.
            self._finish(tx, replies.MAILBOX_FULL_TEMP, size)
            return replies.MAILBOX_FULL_TEMP
        except StoreError as exc:
            log_event(log, logging.ERROR, "store.error", queue_id=tx.queue_id, error=str(exc))
            self._finish(tx, replies.STORAGE_TRANSIENT, size)
            return replies.STORAGE_TRANSIENT
        reply = Reply(250, "2.0.0", f"Ok: queued as {tx.queue_id}")
        if result.over_quota:
            # The others got it, so the message is accepted; these recipients did not,
            # and the sender hears of it in a DSN (RFC 3464), as after any acceptance.
            full = set(result.over_quota)
            log_event(
                log,
                logging.WARNING,
                "delivery.over_quota",
                queue_id=tx.queue_id,
                rcpt=",".join(
                    str(r.address) for r in tx.recipients if r.targets and set(r.targets) <= full
                ),
                accounts=",".join(str(t.account_id) for t in result.over_quota),
            )
        await self.pipeline.local_reports(tx, result)
        if result.queued:
            self.pipeline.on_queued()
        self.delivered += 1
        self._finish(tx, reply, size)
        meter.smtp_transaction(time.perf_counter() - started)
        return reply

    def _finish(self, tx: Transaction, reply: Reply, size: int | None = None) -> None:
        """One log line per transaction, carrying the queue id."""
        tx.abort()
        self.tx = None
        log_event(
            log,
            logging.INFO,
            "smtp.delivered" if reply.code == 250 else "smtp.refused",
            queue_id=tx.queue_id,
            conn=self.peer.conn_id,
            client=self.peer.ip,
            helo=self.helo or "",
            sender=f"<{tx.sender or ''}>",
            nrcpt=len(tx.recipients),
            rcpt=",".join(str(r.address) for r in tx.recipients[:5]),
            size=size if size is not None else "",
            reply=str(reply),
        )


def _outbound_recipient(event: ev.RcptTo) -> OutboundRecipient:
    """A remote recipient with its RFC 3461 parameters (checked by the machine)."""
    notify = tuple(v for v in (event.params.get("NOTIFY") or "").upper().split(",") if v)
    orcpt = event.params.get("ORCPT")
    decoded: str | None = None
    if orcpt:
        kind, _, value = orcpt.partition(";")
        try:
            decoded = f"{kind};{xtext_decode(value)}"
        except ValueError:
            decoded = None
    return OutboundRecipient(str(event.address), notify, decoded)


def _declared_size(params: dict[str, str | None]) -> int:
    """MAIL FROM's SIZE= (RFC 1870); the machine has checked it is a number."""
    value = params.get("SIZE")
    return int(value) if value and value.isdigit() else 0
