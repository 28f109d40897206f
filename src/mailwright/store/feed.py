"""An in-process change feed: sessions of one account learn of each committed change.

Backends publish after commit. A bounded queue per subscriber: a subscriber that falls
behind gets a ``None`` (resynchronise from the store) instead of unbounded memory.

Invariant: ``subscribe`` registers at once, not at the first ``__anext__``, so a session
that subscribes, then reads the mailbox, then waits, misses no change made in between
(an async generator would register only when first iterated).
"""

from __future__ import annotations

import asyncio

from mailwright.store.api import Change

_QUEUE_MAX = 1024


class Subscription:
    """One subscriber's changes, in commit order. ``aclose`` (or ``async with``) ends it."""

    def __init__(self, feed: LocalChangeFeed, account_id: int) -> None:
        self._feed = feed
        self._account_id = account_id
        self._queue: asyncio.Queue[Change | None] = asyncio.Queue(_QUEUE_MAX)
        self._closed = False
        feed._subscribers.setdefault(account_id, set()).add(self._queue)

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Change:
        if self._closed:
            raise StopAsyncIteration
        change = await self._queue.get()
        if change is None:
            # Overflowed: the subscriber must re-read the mailbox state.
            return Change(self._account_id, 0, 0, "resync", ())
        return change

    async def aclose(self) -> None:
        self.close()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        subs = self._feed._subscribers.get(self._account_id)
        if subs is not None:
            subs.discard(self._queue)
            if not subs:
                del self._feed._subscribers[self._account_id]

    async def __aenter__(self) -> Subscription:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        # A session that forgets to close still stops receiving once it is gone.
        self.close()


class LocalChangeFeed:
    def __init__(self) -> None:
        self._subscribers: dict[int, set[asyncio.Queue[Change | None]]] = {}

    def publish(self, change: Change) -> None:
        # A copy: a collected Subscription's __del__ may unsubscribe while we iterate.
        for q in tuple(self._subscribers.get(change.account_id, ())):
            if q.full():
                continue
            if q.qsize() == _QUEUE_MAX - 1:
                q.put_nowait(None)
            else:
                q.put_nowait(change)

    def subscribe(self, account_id: int) -> Subscription:
        return Subscription(self, account_id)
