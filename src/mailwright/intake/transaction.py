"""One message on its way in: envelope, recipients, body bytes, and the commit that stores it.

Invariants: the body streams into a store blob (memory bounded by the backend); nothing
is visible in any mailbox until ``commit`` returns; ``abort`` leaves no trace.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from mailwright.core.address import Address
from mailwright.core.ids import new_queue_id
from mailwright.message.scan import MessageProblem, MessageScanner
from mailwright.store.api import BlobWriter, DeliveryResult, Messages, Target


@dataclass(slots=True)
class Recipient:
    address: Address
    targets: tuple[Target, ...]


@dataclass(slots=True)
class Transaction:
    sender: Address | None
    params: dict[str, str | None]
    queue_id: str = field(default_factory=new_queue_id)
    recipients: list[Recipient] = field(default_factory=list)
    blob: BlobWriter | None = None
    scanner: MessageScanner | None = None
    received_at: int = 0
    octets: int = 0  # body octets received from the client (after dot-unstuffing)

    @property
    def smtputf8(self) -> bool:
        return "SMTPUTF8" in self.params

    def begin(self, messages: Messages, scanner: MessageScanner, prefix: bytes) -> None:
        """Start the body: ``prefix`` is the trace headers we add."""
        self.blob = messages.new_blob()
        self.blob.write(prefix)
        self.scanner = scanner
        self.received_at = int(time.time())

    def write(self, data: bytes) -> None:
        if self.blob is None or self.scanner is None:
            return
        self.octets += len(data)
        self.scanner.feed(data)
        self.blob.write(data)

    def problem(self) -> MessageProblem | None:
        if self.scanner is None:
            return None
        self.scanner.close()
        return self.scanner.problem

    def targets(self) -> list[Target]:
        seen: dict[tuple[int, str], Target] = {}
        for r in self.recipients:
            for t in r.targets:
                seen.setdefault((t.account_id, t.mailbox), t)
        return list(seen.values())

    async def commit(self, messages: Messages) -> DeliveryResult:
        """Store the message once and place it in every target mailbox, durably. Targets
        whose account is over quota are skipped and listed in the result (QuotaExceeded
        when that is every target)."""
        if self.blob is None:
            return DeliveryResult([])
        blob, self.blob = self.blob, None
        return await messages.deliver(blob, self.queue_id, self.received_at, self.targets())

    def abort(self) -> None:
        if self.blob is not None:
            self.blob.abort()
            self.blob = None
