"""One message on its way in: envelope, recipients, body bytes, and the commit that stores it.

Invariants: the body streams into a store blob (memory bounded by the backend, and, for a
submission, by the header block held for its fix-ups); nothing is visible in any mailbox
or queued until ``commit`` returns; ``abort`` leaves no trace. Local recipients and remote
ones (queued for delivery) are stored in one commit, sharing one copy of the message.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from mailwright.core.address import Address
from mailwright.core.ids import new_queue_id
from mailwright.message.dkim import MessageHasher
from mailwright.message.fixup import HeaderFixup
from mailwright.message.scan import MessageProblem, MessageScanner
from mailwright.metrics import meter
from mailwright.store.api import (
    ApiSend,
    BlobWriter,
    DeliveryResult,
    MailEvent,
    Messages,
    Outbound,
    OutboundRecipient,
    Target,
)


@dataclass(slots=True)
class Recipient:
    address: Address
    targets: tuple[Target, ...] = ()  # local mailboxes
    remote: OutboundRecipient | None = None  # queued for delivery elsewhere
    notify: tuple[str, ...] = ()  # RFC 3461 NOTIFY of a local recipient (upper case)
    orcpt: str | None = None  # RFC 3461 ORCPT of a local recipient, decoded


@dataclass(slots=True)
class Transaction:
    sender: Address | None
    params: dict[str, str | None]
    queue_id: str = field(default_factory=new_queue_id)
    recipients: list[Recipient] = field(default_factory=list)
    blob: BlobWriter | None = None
    scanner: MessageScanner | None = None
    fixup: HeaderFixup | None = None  # submission: Message-ID and Date when missing
    dkim: MessageHasher | None = None  # to be DKIM-signed: its header and body hash
    received_at: int = 0
    octets: int = 0  # body octets received from the client (after dot-unstuffing)
    envid: str | None = None  # RFC 3461, decoded
    prefix: bytes = b""  # header fields for relayed copies only (DKIM-Signature)

    @property
    def smtputf8(self) -> bool:
        return "SMTPUTF8" in self.params

    @property
    def remote(self) -> list[Recipient]:
        return [r for r in self.recipients if r.remote is not None]

    @property
    def message_id(self) -> str:
        if self.fixup is not None and self.fixup.message_id:
            return self.fixup.message_id
        return self.scanner.message_id if self.scanner is not None else ""

    def begin(
        self,
        messages: Messages,
        scanner: MessageScanner,
        prefix: bytes,
        fixup: HeaderFixup | None = None,
        dkim: MessageHasher | None = None,
    ) -> None:
        """Start the body: ``prefix`` is the trace headers we add (not signed)."""
        self.blob = messages.new_blob()
        self.blob.write(prefix)
        self.scanner = scanner
        self.fixup = fixup
        self.dkim = dkim
        self.received_at = int(time.time())

    def write(self, data: bytes) -> None:
        if self.blob is None or self.scanner is None:
            return
        self.octets += len(data)
        self.scanner.feed(data)
        if self.fixup is not None:
            data = self.fixup.feed(data)
        if self.dkim is not None:
            self.dkim.update(data)
        self.blob.write(data)

    def problem(self) -> MessageProblem | None:
        if self.scanner is None:
            return None
        if self.fixup is not None and self.blob is not None:
            rest = self.fixup.close()
            if self.dkim is not None:
                self.dkim.update(rest)
            self.blob.write(rest)
        if self.dkim is not None:
            self.dkim.close()
        self.scanner.close()
        return self.scanner.problem

    def targets(self) -> list[Target]:
        seen: dict[tuple[int, str], Target] = {}
        for r in self.recipients:
            for t in r.targets:
                seen.setdefault((t.account_id, t.mailbox), t)
        return list(seen.values())

    def outbound(self) -> Outbound | None:
        remote = [r.remote for r in self.recipients if r.remote is not None]
        if not remote:
            return None
        ret = (self.params.get("RET") or "").upper()
        return Outbound(
            sender=str(self.sender) if self.sender else "",
            recipients=tuple(remote),
            envid=self.envid,
            ret="FULL" if ret == "FULL" else "HDRS" if ret == "HDRS" else None,
            smtputf8=self.smtputf8,
            eight_bit=(self.params.get("BODY") or "").upper() == "8BITMIME",
            prefix=self.prefix,
        )

    def events(self, received: dict[str, str]) -> list[MailEvent]:
        """The events a commit records: the arrival, whose detail names the local
        recipients it was filed for (one row, not one per recipient: on the port-25 path
        every row costs throughput), then one "queued" per remote recipient (each has a
        life of its own in the queue)."""
        mid = self.message_id
        local = [str(r.address) for r in self.recipients if r.remote is None and r.targets]
        detail = dict(received)
        if local:
            detail["delivered"] = ",".join(local)
        out = [MailEvent(self.queue_id, "received", "", detail, mid)]
        out += [
            MailEvent(self.queue_id, "queued", r.remote.address, {}, mid)
            for r in self.recipients
            if r.remote is not None
        ]
        return out

    async def commit(
        self,
        messages: Messages,
        events: Sequence[MailEvent] = (),
        send: ApiSend | None = None,
    ) -> DeliveryResult:
        """Store the message once, place it in every target mailbox and queue its remote
        recipients, durably (with the HTTP API's record of it, ``send``). Targets whose
        account is over quota are skipped and listed in the result (QuotaExceeded when that
        is every target and nothing is queued)."""
        if self.blob is None:
            return DeliveryResult([])
        blob, self.blob = self.blob, None
        result = await messages.deliver(
            blob,
            self.queue_id,
            self.received_at,
            self.targets(),
            outbound=self.outbound(),
            events=events,
            send=send,
        )
        self._count(result)
        return result

    def _count(self, result: DeliveryResult) -> None:
        """The metrics of a stored message: received, and each local recipient delivered
        (or bounced, when every mailbox it has was full); remote ones count as they leave."""
        full = set(result.over_quota)
        local = [r for r in self.recipients if r.targets]
        bounced = sum(1 for r in local if set(r.targets) <= full)
        meter.messages("received")
        meter.messages("delivered", len(local) - bounced)
        meter.messages("bounced", bounced)

    def abort(self) -> None:
        if self.blob is not None:
            self.blob.abort()
            self.blob = None
