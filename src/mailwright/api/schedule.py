"""Held sends: requests with a ``send_at`` in the future, sent at their time.

Invariants:
- a held send is claimed (leased) by one process at a time; a process that dies with a
  claim leaves it due again when the lease lapses (at once after a restart);
- it is sent at most once: it is sent under the queue id it was given when it was asked
  for, and the API's record of a send is unique by queue id, so a second attempt after a
  crash (sent, not yet settled) finds the first and only settles;
- a held send that can no longer be sent (its key revoked, its template gone, every
  recipient refused) is not retried: its recipients get "dropped" events saying why; only
  storage trouble (503) is retried.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from mailwright.api.errors import ApiError
from mailwright.api.models import MessageIn
from mailwright.api.send import Sender, request_recipients
from mailwright.core.log import event as log_event
from mailwright.store.api import Api, ApiSend, MailEvent, ScheduledSend
from mailwright.store.errors import StoreError

log = logging.getLogger("mailwright.api")

RETRY_DELAY = 60.0  # seconds after storage trouble
LEASE = 300.0  # longer than one send can take
BATCH = 50


class ScheduledSender:
    def __init__(
        self,
        api: Api,
        sender: Sender,
        *,
        poll_interval: float = 1.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._api = api
        self._sender = sender
        self._poll = poll_interval
        self._clock = clock
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="scheduled-sends")

    async def stop(self, grace: float) -> None:
        if self._task is None:
            return
        self._stopping.set()
        with contextlib.suppress(asyncio.CancelledError, TimeoutError):
            await asyncio.wait_for(self._task, grace)
        self._task = None

    async def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                sent = await self.run_once()
            except StoreError as exc:
                log_event(log, logging.ERROR, "scheduled.claim_failed", error=str(exc))
                sent = 0
            if sent:
                continue  # there may be more due
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self._poll)

    async def run_once(self) -> int:
        """Send what is due now; how many were claimed."""
        now = self._clock()
        first = await self._api.next_scheduled()
        if first is None or first > now:
            return 0  # nothing due: a read, no write transaction every poll
        due = await self._api.claim_scheduled(now, BATCH, LEASE)
        for entry in due:
            if self._stopping.is_set():
                break  # the rest wait for their lease to lapse, or the next start
            await self._send(entry)
        return len(due)

    async def _send(self, entry: ScheduledSend) -> None:
        key = await self._api.get_key(entry.key_id)
        if key is None or key.revoked:
            await self._give_up(entry, "the API key was revoked")
            return
        try:
            msg = MessageIn.model_validate_json(entry.request)
            await self._sender.send(
                key,
                msg,
                idempotency_key=entry.idempotency_key,
                request_hash=entry.fingerprint,
                scheduled=entry.queue_id,
            )
        except ApiError as exc:
            if exc.status == 503:
                await self._api.settle_scheduled(
                    entry.queue_id, retry_at=self._clock() + RETRY_DELAY, error=exc.message
                )
                return
            await self._give_up(entry, exc.message)
            return
        await self._api.settle_scheduled(entry.queue_id)
        log_event(log, logging.INFO, "scheduled.sent", queue_id=entry.queue_id)

    async def _give_up(self, entry: ScheduledSend, reason: str) -> None:
        events = [
            MailEvent(entry.queue_id, "dropped", r, {"reason": reason[:300]})
            for r in request_recipients(entry)
        ]
        record = ApiSend(
            entry.key_id, entry.sender_domain, entry.idempotency_key, entry.fingerprint
        )
        with contextlib.suppress(StoreError):
            # Recorded once: a second try (after a crash) finds the record and only settles.
            await self._api.record_send(entry.queue_id, record, events)
        await self._api.settle_scheduled(entry.queue_id)
        log_event(log, logging.WARNING, "scheduled.dropped", queue_id=entry.queue_id, reason=reason)
