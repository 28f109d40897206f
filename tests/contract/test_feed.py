"""The change feed: what IDLE and NOTIFY sessions hear after each commit."""

from __future__ import annotations

import asyncio
import json

import pytest

from mailwright.store.api import Change, Store
from mailwright.store.errors import NotFound
from tests.contract.conftest import Backend
from tests.contract.helpers import Peer, account, deliver, inbox_id, message

WAIT = 10.0  # a bound for a hung test, never a pacing sleep


async def test_append_is_published_after_deliver(store: Store) -> None:
    alice = await account(store, "alice@example.test")
    box = await inbox_id(store, alice)
    changes = store.changes.subscribe(alice.id)
    (d,) = await deliver(store, message(1), [alice])
    change = await asyncio.wait_for(anext(changes), WAIT)
    assert change == Change(alice.id, box, d.modseq, "append", (d.uid,))


async def test_subscription_covers_changes_before_first_read(store: Store) -> None:
    # An IMAP IDLE session subscribes, then reads the mailbox, then waits: a delivery
    # between subscribing and waiting must not be lost.
    alice = await account(store, "alice@example.test")
    changes = store.changes.subscribe(alice.id)
    await deliver(store, message(1), [alice])
    await deliver(store, message(2), [alice])
    kinds = [await asyncio.wait_for(anext(changes), WAIT) for _ in range(2)]
    assert [(c.kind, c.uids) for c in kinds] == [("append", (1,)), ("append", (2,))]


async def test_flags_and_expunge_are_published(store: Store) -> None:
    alice = await account(store, "alice@example.test")
    box = await inbox_id(store, alice)
    await deliver(store, message(1), [alice])
    await deliver(store, message(2), [alice])
    changes = store.changes.subscribe(alice.id)
    flagged = (await store.messages.store_flags(box, [1, 2], frozenset({"\\Seen"}), "+")).modseq
    expunged = await store.messages.expunge(box, [2, 77])
    got = [await asyncio.wait_for(anext(changes), WAIT) for _ in range(2)]
    assert got == [
        Change(alice.id, box, flagged, "flags", (1, 2)),
        # Only UIDs that existed are reported gone.
        Change(alice.id, box, expunged, "expunge", (2,)),
    ]


async def test_each_account_hears_only_its_own_changes(store: Store) -> None:
    alice = await account(store, "alice@example.test")
    bob = await account(store, "bob@example.test")
    alice_feed = store.changes.subscribe(alice.id)
    bob_feed = store.changes.subscribe(bob.id)
    await deliver(store, message(1), [bob])
    await deliver(store, message(2), [alice, bob])
    first = await asyncio.wait_for(anext(alice_feed), WAIT)
    assert first.account_id == alice.id and first.uids == (1,)
    bob_changes = [await asyncio.wait_for(anext(bob_feed), WAIT) for _ in range(2)]
    assert [c.uids for c in bob_changes] == [(1,), (2,)]
    assert {c.account_id for c in bob_changes} == {bob.id}


async def test_failed_delivery_publishes_nothing(store: Store) -> None:
    alice = await account(store, "alice@example.test")
    bob = await account(store, "bob@example.test")
    await store.accounts.remove_account(bob.address)
    changes = store.changes.subscribe(alice.id)
    with pytest.raises(NotFound):
        await deliver(store, message(1), [alice, bob])
    (d,) = await deliver(store, message(2), [alice])
    change = await asyncio.wait_for(anext(changes), WAIT)
    assert change.uids == (d.uid,) == (1,)


# -- across stores and processes (several workers and the CLI share one installation) ---


async def test_changes_reach_another_store_of_the_installation(
    store: Store, backend: Backend
) -> None:
    alice = await account(store, "alice@example.test")
    box = await inbox_id(store, alice)
    other = await backend.open()
    changes = other.changes.subscribe(alice.id)
    (d,) = await deliver(store, message(1), [alice])
    assert await asyncio.wait_for(anext(changes), WAIT) == Change(
        alice.id, box, d.modseq, "append", (1,)
    )
    flagged = await store.messages.store_flags(box, [1], frozenset({"\\Seen"}), "+")
    gone = await store.messages.expunge(box, [1])
    got = [await asyncio.wait_for(anext(changes), WAIT) for _ in range(2)]
    assert got == [
        Change(alice.id, box, flagged.modseq, "flags", (1,)),
        Change(alice.id, box, gone, "expunge", (1,)),
    ]
    # And the other way round; each store hears its own change once.
    mine = store.changes.subscribe(alice.id)
    (d2,) = await deliver(other, message(2), [alice])
    assert (await asyncio.wait_for(anext(mine), WAIT)).uids == (d2.uid,)
    assert (await asyncio.wait_for(anext(changes), WAIT)).uids == (d2.uid,)
    await deliver(store, message(3), [alice])
    assert (await asyncio.wait_for(anext(changes), WAIT)).uids == (3,)
    assert (await asyncio.wait_for(anext(mine), WAIT)).uids == (3,)


async def test_a_delivery_in_another_process_is_heard(store: Store, backend: Backend) -> None:
    # An IMAP session in IDLE in one worker; the message arrives through another worker.
    alice = await account(store, "alice@example.test")
    box = await inbox_id(store, alice)
    changes = store.changes.subscribe(alice.id)
    peer = await Peer.start(backend, "deliver", alice.address, "2")
    assert await peer.line() == "delivered 1"
    assert await peer.line() == "delivered 2"
    await peer.finish()
    got = [await asyncio.wait_for(anext(changes), WAIT) for _ in range(2)]
    assert [(c.mailbox_id, c.kind, c.uids) for c in got] == [
        (box, "append", (1,)),
        (box, "append", (2,)),
    ]


async def test_another_process_hears_this_ones_delivery(store: Store, backend: Backend) -> None:
    alice = await account(store, "alice@example.test")
    box = await inbox_id(store, alice)
    peer = await Peer.start(backend, "listen", alice.address)
    assert await peer.line() == "ready"
    (d,) = await deliver(store, message(1), [alice])
    assert json.loads(await peer.line()) == [alice.id, box, d.modseq, "append", [d.uid]]
    await peer.finish()


async def test_a_dead_process_does_not_stop_the_others(store: Store, backend: Backend) -> None:
    # A worker killed with its store open leaves its socket behind: deliveries go on,
    # and the others still hear them.
    alice = await account(store, "alice@example.test")
    listener = await Peer.start(backend, "listen", alice.address)
    assert await listener.line() == "ready"
    await listener.kill()
    other = await backend.open()
    changes = other.changes.subscribe(alice.id)
    for i in range(3):
        (d,) = await deliver(store, message(i), [alice])
        assert (await asyncio.wait_for(anext(changes), WAIT)).uids == (d.uid,)
