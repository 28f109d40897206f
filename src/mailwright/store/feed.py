"""An in-process change feed: sessions of one account learn of each committed change.

Backends publish after commit. A bounded queue per subscriber: a subscriber that falls
behind gets a ``None`` (resynchronise from the store) instead of unbounded memory.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from mailwright.store.api import Change

_QUEUE_MAX = 1024


class LocalChangeFeed:
    def __init__(self) -> None:
        self._subscribers: dict[int, set[asyncio.Queue[Change | None]]] = {}

    def publish(self, change: Change) -> None:
        for q in self._subscribers.get(change.account_id, ()):
            if q.full():
                continue
            if q.qsize() == _QUEUE_MAX - 1:
                q.put_nowait(None)
            else:
                q.put_nowait(change)

    async def subscribe(self, account_id: int) -> AsyncIterator[Change]:
        q: asyncio.Queue[Change | None] = asyncio.Queue(_QUEUE_MAX)
        self._subscribers.setdefault(account_id, set()).add(q)
        try:
            while True:
                change = await q.get()
                if change is None:
                    # Overflowed: the subscriber must re-read the mailbox state.
                    yield Change(account_id, 0, 0, "resync", ())
                else:
                    yield change
        finally:
            subs = self._subscribers.get(account_id)
            if subs is not None:
                subs.discard(q)
                if not subs:
                    del self._subscribers[account_id]
