"""The change feed: what IDLE and NOTIFY sessions hear after each commit."""

from __future__ import annotations

import asyncio

import pytest

from mailwright.store.api import Change, Store
from mailwright.store.errors import NotFound
from tests.contract.helpers import account, deliver, inbox_id, message

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
    flagged = await store.messages.store_flags(box, [1, 2], frozenset({"\\Seen"}), "+")
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
