"""The one pipeline every entry point hands its messages to: SMTP (inbound and submission),
``mailwright send``, DSNs, and (later) the HTTP API.

A message's recipients are routed once: local addresses (accounts, aliases, sub-addresses,
catch-alls) become mailbox targets, remote ones — only for a sender allowed to relay —
become queue entries; both are stored in one commit (``Transaction.commit``). Messages
from a local domain that leave the server are DKIM-signed for that domain on the way in.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from mailwright.core.address import Address, AddressError
from mailwright.core.errors import MailwrightError
from mailwright.core.log import event as log_event
from mailwright.intake.routing import Router
from mailwright.intake.transaction import Recipient, Transaction
from mailwright.message import dkim, trace
from mailwright.message.dsn import DeliveryReport, RecipientStatus, build_dsn, notify_wants
from mailwright.message.fixup import HeaderFixup
from mailwright.message.scan import MessageScanner
from mailwright.store.api import (
    ApiSend,
    DeliveryResult,
    MailEvent,
    Messages,
    OutboundRecipient,
    Queue,
)
from mailwright.store.errors import StoreError

MAILBOX_FULL_STATUS = "5.2.2"  # RFC 3463: mailbox full


class MessageRefused(MailwrightError):
    """A message the pipeline will not take (its header too large, MIME too deep)."""


log = logging.getLogger("mailwright.intake")

# A domain's DKIM keys (none: not signed).
KeyLookup = Callable[[str], Sequence[dkim.DkimKey]]


def _no_keys(domain: str) -> Sequence[dkim.DkimKey]:
    return ()


def _nothing() -> None:
    return None


@dataclass
class Pipeline:
    router: Router
    messages: Messages
    hostname: str
    dkim_keys: KeyLookup = _no_keys
    on_queued: Callable[[], None] = field(default=_nothing)  # wakes the queue runner
    max_header_size: int = 100 * 1024
    max_mime_depth: int = 50
    queue: Queue | None = None  # the event log, for what is learnt after the commit

    def keys_for(self, sender: Address | None) -> Sequence[dkim.DkimKey]:
        if sender is None:
            return ()
        return self.dkim_keys(sender.domain.lower())

    def hasher(self, tx: Transaction) -> dkim.MessageHasher | None:
        """What ``tx`` needs to be signed as it streams: only a message that leaves the
        server, from a local domain with keys."""
        if not tx.remote or not self.keys_for(tx.sender):
            return None
        return dkim.MessageHasher(self.max_header_size)

    def sign(self, tx: Transaction) -> None:
        """DKIM-sign ``tx``'s message for its sender's domain (its header and body hash
        were taken as it streamed); the signature is sent before the stored bytes
        (``Outbound.prefix``), so local copies do not carry it."""
        keys = self.keys_for(tx.sender)
        hashed = tx.dkim
        if not keys or not tx.remote or hashed is None or hashed.header is None:
            return
        header, body_hash = hashed.header, hashed.body.digest()
        try:
            # On the loop, not in a thread: the work is the header's canonicalization (a
            # few small fields) and one signature per key (under a millisecond for
            # RSA-2048); a thread measured no faster on a busy machine.
            tx.prefix = dkim.sign_parts(header, body_hash, keys)
        except Exception as exc:
            # Boundary: a key that cannot sign must not stop the mail; the log says so.
            log_event(log, logging.ERROR, "dkim.sign_failed", queue_id=tx.queue_id, error=str(exc))

    async def inject(
        self,
        sender: str,
        recipients: Sequence[str],
        data: bytes,
        *,
        relay: bool = True,
        submission: bool = True,
        source: str = "local",
        send: ApiSend | None = None,
        queue_id: str | None = None,
        events: Sequence[MailEvent] = (),
    ) -> tuple[Transaction, DeliveryResult, list[str]]:
        """Hand a whole message to the pipeline (the CLI, DSNs, the HTTP API). Returns
        the transaction, what the store did, and the recipients refused (unknown local
        users; remote ones when ``relay`` is False). ``submission``: add Message-ID/Date
        when missing and DKIM-sign, as for SMTP submission. ``send``: the HTTP API's record,
        stored in the same commit, with ``events`` besides the message's own; ``queue_id``:
        the id the message's headers already name."""
        sender_addr = Address.parse(sender, utf8=True) if sender else None
        params: dict[str, str | None] = {"BODY": "8BITMIME"} if not data.isascii() else {}
        if not sender.isascii() or not all(r.isascii() for r in recipients):
            params["SMTPUTF8"] = None  # RFC 6531: UTF-8 addresses need it on the way out
        tx = Transaction(sender_addr, params)
        if queue_id is not None:
            tx.queue_id = queue_id
        refused: list[str] = []
        for text in recipients:
            try:
                address = Address.parse(text, utf8=True)
            except AddressError:
                refused.append(text)
                continue
            route = await self.router.route(address)
            if route.known:
                tx.recipients.append(Recipient(address, route.targets))
            elif not route.local_domain and relay:
                tx.recipients.append(Recipient(address, remote=OutboundRecipient(str(address))))
            else:
                refused.append(text)
        if not tx.recipients:
            return tx, DeliveryResult([]), refused
        prefix = trace.received(
            helo="localhost",
            peer_ip="127.0.0.1",
            by=self.hostname,
            protocol=source,
            queue_id=tx.queue_id,
            recipient=None,
        )
        if not tx.remote:
            prefix = trace.return_path(sender or None) + prefix
        fixup = (
            HeaderFixup(hostname=self.hostname, queue_id=tx.queue_id, max_hold=self.max_header_size)
            if submission
            else None
        )
        tx.begin(
            self.messages,
            self.scanner(utf8=True),
            prefix,
            fixup,
            self.hasher(tx) if submission else None,
        )
        tx.write(data)
        problem = tx.problem()
        if problem is not None:
            tx.abort()
            raise MessageRefused(f"message refused: {problem}")
        self.sign(tx)
        result = await tx.commit(self.messages, [*tx.events({"source": source}), *events], send)
        if result.queued:
            self.on_queued()
        return tx, result, refused

    async def local_reports(self, tx: Transaction, result: DeliveryResult) -> None:
        """After a commit: DSNs about local recipients (RFC 3461 §4.1) — "failed" for those
        whose every mailbox was full, "delivered" for those that asked with NOTIFY=SUCCESS
        — and the events of the full ones."""
        full = {(t.account_id, t.mailbox) for t in result.over_quota}
        sender = str(tx.sender) if tx.sender is not None else ""
        statuses: list[RecipientStatus] = []
        bounced: list[MailEvent] = []
        for r in tx.recipients:
            if not r.targets:
                continue
            if all((t.account_id, t.mailbox) in full for t in r.targets):
                bounced.append(
                    MailEvent(tx.queue_id, "bounced", str(r.address), {"reply": "mailbox full"})
                )
                if notify_wants(sender, r.notify, "FAILURE"):
                    statuses.append(
                        RecipientStatus(
                            str(r.address),
                            "failed",
                            MAILBOX_FULL_STATUS,
                            original_recipient=r.orcpt,
                            diagnostic="mailbox full (over quota)",
                            diagnostic_type="x-local",
                        )
                    )
            elif notify_wants(sender, r.notify, "SUCCESS"):
                statuses.append(
                    RecipientStatus(
                        str(r.address), "delivered", "2.0.0", original_recipient=r.orcpt
                    )
                )
        if bounced and self.queue is not None:
            try:
                await self.queue.add_events(bounced)
            except StoreError as exc:
                log_event(log, logging.ERROR, "events.failed", queue_id=tx.queue_id, error=str(exc))
        if not statuses or not result.message_id:
            return
        ret = (tx.params.get("RET") or "").upper()
        report = DeliveryReport(
            reporting_mta=self.hostname,
            to=sender,
            recipients=statuses,
            envid=tx.envid,
            ret="FULL" if ret == "FULL" else "HDRS" if ret == "HDRS" else None,
            smtputf8=tx.smtputf8,
        )
        try:
            original = await self.messages.read_message(result.message_id)
            data = await asyncio.to_thread(build_dsn, report, original)
            await self.inject("", [sender], data, submission=False, source="DSN")
        except StoreError as exc:
            # Boundary: the message itself is stored; a DSN that cannot be is logged.
            log_event(log, logging.ERROR, "dsn.failed", queue_id=tx.queue_id, error=str(exc))

    def scanner(self, *, utf8: bool) -> MessageScanner:
        return MessageScanner(
            max_header_size=self.max_header_size,
            max_mime_depth=self.max_mime_depth,
            ascii_headers=not utf8,
        )
