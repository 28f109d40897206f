"""LocalChangeFeed: bounded per-subscriber queues, resync on overflow, unsubscribe."""

from __future__ import annotations

import asyncio
import gc

from mailwright.store import feed as feed_module
from mailwright.store.api import Change
from mailwright.store.feed import LocalChangeFeed


def change(account: int, modseq: int) -> Change:
    return Change(account, 1, modseq, "append", (modseq,))


def test_overflow_yields_resync_instead_of_unbounded_memory() -> None:
    async def go() -> list[Change]:
        feed = LocalChangeFeed()
        sub = feed.subscribe(7)
        for i in range(feed_module._QUEUE_MAX + 50):
            feed.publish(change(7, i + 1))
        out = [await anext(sub) for _ in range(feed_module._QUEUE_MAX)]
        feed.publish(change(7, 99_999))  # after draining, changes flow again
        out.append(await anext(sub))
        return out

    got = asyncio.run(go())
    assert [c.modseq for c in got[: feed_module._QUEUE_MAX - 1]] == list(
        range(1, feed_module._QUEUE_MAX)
    )
    assert got[feed_module._QUEUE_MAX - 1] == Change(7, 0, 0, "resync", ())
    assert got[-1].modseq == 99_999


def test_close_unsubscribes_and_ends_iteration() -> None:
    async def go() -> None:
        feed = LocalChangeFeed()
        async with feed.subscribe(1) as sub:
            feed.publish(change(1, 1))
            assert (await anext(sub)).modseq == 1
        assert feed._subscribers == {}
        feed.publish(change(1, 2))  # nobody listening: dropped
        async for _ in sub:
            raise AssertionError("closed subscription yielded")
        await sub.aclose()

    asyncio.run(go())


def test_forgotten_subscription_is_dropped_when_collected() -> None:
    async def go() -> None:
        feed = LocalChangeFeed()
        feed.subscribe(1)
        gc.collect()
        assert feed._subscribers == {}
        keep = feed.subscribe(2)
        other = feed.subscribe(2)
        del other
        gc.collect()
        assert len(feed._subscribers[2]) == 1
        keep.close()

    asyncio.run(go())


def test_subscribers_only_hear_their_account() -> None:
    async def go() -> tuple[Change, Change]:
        feed = LocalChangeFeed()
        a, b = feed.subscribe(1), feed.subscribe(2)
        feed.publish(change(2, 5))
        feed.publish(change(1, 6))
        return await anext(a), await anext(b)

    a, b = asyncio.run(go())
    assert (a.account_id, a.modseq, b.account_id, b.modseq) == (1, 6, 2, 5)
