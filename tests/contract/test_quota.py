"""Quota (RFC 9208 STORAGE): ``used_bytes`` is exact after every operation, and nothing
that would raise it above ``quota_bytes`` happens — per recipient for a delivery."""

from __future__ import annotations

import asyncio

import pytest

from mailwright.store.api import INBOX, Store, Target
from mailwright.store.errors import NotFound, QuotaExceeded
from tests.contract.conftest import Backend
from tests.contract.helpers import (
    RECEIVED_AT,
    account,
    append,
    check_counters,
    deliver,
    inbox_id,
    message,
    queue_id,
    used,
)

BIG = 300_000


async def test_set_quota(store: Store) -> None:
    alice = await account(store, "alice@example.test")
    assert alice.quota_bytes is None
    await store.accounts.set_quota(alice.address, 100 * 1024 * 1024)
    got = await store.accounts.get_account(alice.address)
    assert got is not None and got.quota_bytes == 100 * 1024 * 1024
    assert await store.accounts.get_account_by_id(alice.id) == got
    await store.accounts.set_quota(alice.address, None)
    got = await store.accounts.get_account(alice.address)
    assert got is not None and got.quota_bytes is None
    with pytest.raises(NotFound):
        await store.accounts.set_quota("nobody@example.test", 1)
    with pytest.raises(ValueError):
        await store.accounts.set_quota(alice.address, -1)
    assert await store.accounts.get_account_by_id(999_999) is None


async def test_used_bytes_through_every_operation(store: Store, backend: Backend) -> None:
    alice = await account(store, "alice@example.test")
    bob = await account(store, "bob@example.test")
    inbox = await inbox_id(store, alice)
    archive = await inbox_id(store, alice, "Archive")
    small, big = message(1), message(2, size=BIG)
    expected = 0

    async def check(delta: int) -> None:
        nonlocal expected
        expected += delta
        assert await used(store, alice) == expected
        await check_counters(store, alice)
        await check_counters(store, bob)

    await deliver(store, small, [alice, Target(alice.id, "Archive"), bob])
    await check(2 * len(small))  # one copy stored, two placements counted
    await deliver(store, big, [alice])
    await check(len(big))
    await append(store, alice, small, "Drafts")
    await check(len(small))
    await store.messages.copy(inbox, [1, 2], archive)
    await check(len(small) + len(big))
    await store.messages.move(archive, [1], inbox)
    await check(0)
    await store.messages.move(inbox, [2], await inbox_id(store, bob))
    await check(-len(big))
    await store.messages.expunge(inbox, [1, 3])
    await check(-2 * len(small))
    await store.messages.expunge(inbox, [1, 3])  # again: nothing left to count
    await check(0)
    await store.mailboxes.create_mailbox(alice.id, "Work")
    await deliver(store, big, [Target(alice.id, "Work")])
    await deliver(store, small, [Target(alice.id, "Work")])
    await check(len(big) + len(small))
    await store.mailboxes.delete_mailbox(alice.id, "Work")
    await check(-len(big) - len(small))
    await store.mailboxes.rename_mailbox(alice.id, INBOX, "Old")
    await check(0)


async def test_deliver_to_a_full_account_is_refused(store: Store, backend: Backend) -> None:
    alice = await account(store, "alice@example.test")
    data = message(1, size=1000)
    await store.accounts.set_quota(alice.address, 2 * len(data))
    await deliver(store, data, [alice])
    await deliver(store, data, [alice])  # exactly at the quota: still fits
    rows, files = dict(backend.message_rows()), backend.blob_files()
    with pytest.raises(QuotaExceeded):
        await deliver(store, data, [alice])
    with pytest.raises(QuotaExceeded):
        await deliver(store, message(2, size=BIG), [alice])
    assert backend.message_rows() == rows and backend.blob_files() == files
    assert await used(store, alice) == 2 * len(data)
    inbox = await store.mailboxes.get_mailbox(alice.id, INBOX)
    assert (inbox.messages, inbox.uidnext) == (2, 3)


@pytest.mark.parametrize("size", [1000, BIG])
async def test_quota_is_per_recipient(store: Store, backend: Backend, size: int) -> None:
    alice = await account(store, "alice@example.test")
    bob = await account(store, "bob@example.test")
    carol = await account(store, "carol@example.test")
    await store.accounts.set_quota(bob.address, 10)
    data = message(1, size=size)
    blob = store.messages.new_blob()
    blob.write(data)
    targets = [Target(alice.id), Target(bob.id), Target(carol.id), Target(alice.id, "Archive")]
    result = await store.messages.deliver(blob, queue_id(), RECEIVED_AT, targets)
    assert [(d.account_id, d.mailbox) for d in result.delivered] == [
        (alice.id, INBOX),
        (carol.id, INBOX),
        (alice.id, "Archive"),
    ]
    assert result.over_quota == [Target(bob.id)]
    assert list(backend.message_rows().values()) == [3]
    assert await used(store, bob) == 0
    assert (await store.mailboxes.get_mailbox(bob.id, INBOX)).uidnext == 1
    for who in (alice, bob, carol):
        await check_counters(store, who)
    (p,) = await store.messages.list_placements(await inbox_id(store, carol))
    assert await store.messages.read_message(p.message_id) == data


async def test_quota_counts_earlier_targets_of_the_same_delivery(store: Store) -> None:
    alice = await account(store, "alice@example.test")
    data = message(1, size=1000)
    await store.accounts.set_quota(alice.address, len(data))
    blob = store.messages.new_blob()
    blob.write(data)
    result = await store.messages.deliver(
        blob, queue_id(), RECEIVED_AT, [Target(alice.id), Target(alice.id, "Archive")]
    )
    assert [d.mailbox for d in result.delivered] == [INBOX]
    assert result.over_quota == [Target(alice.id, "Archive")]
    assert await used(store, alice) == len(data)


async def test_append_over_quota(store: Store, backend: Backend) -> None:
    alice = await account(store, "alice@example.test")
    await store.accounts.set_quota(alice.address, 1000)
    await append(store, alice, message(1, size=600))
    with pytest.raises(QuotaExceeded):
        await append(store, alice, message(2, size=600))
    with pytest.raises(QuotaExceeded):
        await append(store, alice, message(3, size=BIG))
    assert len(backend.message_rows()) == 1 and backend.blob_files() == set()
    assert await used(store, alice) == 600
    await check_counters(store, alice)


async def test_copy_over_quota_copies_nothing(store: Store, backend: Backend) -> None:
    alice = await account(store, "alice@example.test")
    src, dst = await inbox_id(store, alice), await inbox_id(store, alice, "Archive")
    for i in range(3):
        await deliver(store, message(i, size=1000), [alice])
    await store.accounts.set_quota(alice.address, 4500)
    dst_before = await store.mailboxes.get_mailbox_by_id(dst)
    rows = backend.message_rows()
    with pytest.raises(QuotaExceeded):
        await store.messages.copy(src, [1, 2], dst)  # 3000 + 2000 > 4500: all or nothing
    assert await store.mailboxes.get_mailbox_by_id(dst) == dst_before
    assert backend.message_rows() == rows
    assert await used(store, alice) == 3000
    assert await store.messages.copy(src, [1], dst) == [(1, 1)]  # 4000 fits
    await check_counters(store, alice)


async def test_an_account_over_quota_can_still_clean_up(store: Store) -> None:
    # A lowered quota removes nothing; moving to Trash and expunging must still work.
    alice = await account(store, "alice@example.test")
    inbox = await inbox_id(store, alice)
    trash = await inbox_id(store, alice, "Trash")
    for i in range(3):
        await deliver(store, message(i, size=1000), [alice])
    await store.accounts.set_quota(alice.address, 100)
    assert await store.messages.move(inbox, [1, 2], trash) == [(1, 1), (2, 2)]
    await store.messages.store_flags(trash, [1], frozenset({"\\Deleted"}), "+")
    with pytest.raises(QuotaExceeded):
        await store.messages.copy(trash, [1], inbox)
    await store.messages.expunge(trash, [1, 2])
    await store.mailboxes.rename_mailbox(alice.id, INBOX, "Saved")
    assert await used(store, alice) == 1000
    await check_counters(store, alice)


async def test_move_into_a_full_account_is_refused_atomically(store: Store) -> None:
    alice = await account(store, "alice@example.test")
    bob = await account(store, "bob@example.test")
    await deliver(store, message(1, size=1000), [alice])
    await store.accounts.set_quota(bob.address, 500)
    src = await inbox_id(store, alice)
    with pytest.raises(QuotaExceeded):
        await store.messages.move(src, [1], await inbox_id(store, bob))
    # Neither half happened.
    assert [p.uid for p in await store.messages.list_placements(src)] == [1]
    assert await store.messages.expunged_since(src, 0) == []
    assert await used(store, alice) == 1000 and await used(store, bob) == 0
    await check_counters(store, alice)
    await check_counters(store, bob)


async def test_concurrent_deliveries_never_exceed_the_quota(store: Store) -> None:
    alice = await account(store, "alice@example.test")
    data = message(1, size=1000)
    await store.accounts.set_quota(alice.address, 10 * len(data))
    results = await asyncio.gather(
        *(deliver(store, data, [alice]) for _ in range(25)), return_exceptions=True
    )
    assert sum(1 for r in results if isinstance(r, QuotaExceeded)) == 15
    assert await used(store, alice) == 10 * len(data)
    await check_counters(store, alice)
