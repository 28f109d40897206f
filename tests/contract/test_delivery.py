"""Delivery, UIDs, MODSEQs, flags and expunge (RFC 3501 §2.3.1.1, RFC 7162)."""

from __future__ import annotations

import asyncio

import pytest

from mailwright.store.api import INBOX, Delivered, Store, Target
from mailwright.store.errors import Conflict, NotFound
from tests.contract.conftest import Backend
from tests.contract.helpers import RECEIVED_AT, account, deliver, inbox_id, message

BIG = 300_000  # well past any inline limit (SQLite keeps up to 128 KiB in the row)


async def test_one_stored_copy_for_several_targets(store: Store, backend: Backend) -> None:
    alice = await account(store, "alice@example.test")
    bob = await account(store, "bob@example.test")
    data = message(1)
    delivered = await deliver(store, data, [alice, bob, Target(alice.id, "Archive")])
    assert [(d.account_id, d.mailbox, d.uid) for d in delivered] == [
        (alice.id, INBOX, 1),
        (bob.id, INBOX, 1),
        (alice.id, "Archive", 1),
    ]
    assert list(backend.message_rows().values()) == [3]
    ids = set()
    for acct, box in ((alice, INBOX), (bob, INBOX), (alice, "Archive")):
        (p,) = await store.messages.list_placements(await inbox_id(store, acct, box))
        assert (p.uid, p.flags, p.internal_date, p.size) == (1, frozenset(), RECEIVED_AT, len(data))
        ids.add(p.message_id)
        assert await store.messages.read_message(p.message_id) == data
    assert len(ids) == 1


async def test_counters_follow_delivery(store: Store) -> None:
    alice = await account(store, "alice@example.test")
    a, b = message(1), message(2, size=5000)
    await deliver(store, a, [alice])
    await deliver(store, b, [alice])
    inbox = await store.mailboxes.get_mailbox(alice.id, INBOX)
    assert (inbox.messages, inbox.size, inbox.uidnext) == (2, len(a) + len(b), 3)
    got = await store.accounts.get_account(alice.address)
    assert got is not None and got.used_bytes == len(a) + len(b)
    await store.messages.expunge(inbox.id, [1])
    inbox = await store.mailboxes.get_mailbox(alice.id, INBOX)
    assert (inbox.messages, inbox.size, inbox.uidnext) == (1, len(b), 3)
    got = await store.accounts.get_account(alice.address)
    assert got is not None and got.used_bytes == len(b)


async def test_uids_strictly_increase_and_are_never_reused(store: Store) -> None:
    alice = await account(store, "alice@example.test")
    box = await inbox_id(store, alice)
    uids = [(await deliver(store, message(i), [alice]))[0].uid for i in range(5)]
    assert uids == [1, 2, 3, 4, 5]
    await store.messages.expunge(box, [4, 5])
    (d,) = await deliver(store, message(6), [alice])
    assert d.uid == 6
    await store.messages.expunge(box, [1, 2, 3, 6])
    assert await store.messages.list_placements(box) == []
    (d,) = await deliver(store, message(7), [alice])
    assert d.uid == 7
    assert (await store.mailboxes.get_mailbox(alice.id, INBOX)).uidnext == 8


async def test_uids_are_per_mailbox(store: Store) -> None:
    alice = await account(store, "alice@example.test")
    await deliver(store, message(1), [alice])
    await deliver(store, message(2), [alice])
    (d,) = await deliver(store, message(3), [Target(alice.id, "Archive")])
    assert d.uid == 1


async def test_highestmodseq_increases_on_every_change(store: Store) -> None:
    alice = await account(store, "alice@example.test")
    box = await inbox_id(store, alice)

    async def highest() -> int:
        return (await store.mailboxes.get_mailbox(alice.id, INBOX)).highestmodseq

    start = await highest()
    (d,) = await deliver(store, message(1), [alice])
    assert d.modseq == await highest() > start
    (p,) = await store.messages.list_placements(box)
    assert p.modseq == d.modseq
    await deliver(store, message(2), [alice])
    after_second = await highest()
    assert after_second > d.modseq

    flagged = (await store.messages.store_flags(box, [1], frozenset({"\\Seen"}), "+")).modseq
    assert flagged == await highest() > after_second
    p1 = (await store.messages.list_placements(box))[0]
    assert p1.modseq == flagged

    expunged = await store.messages.expunge(box, [2])
    assert expunged == await highest() > flagged


async def test_store_flags_modes(store: Store) -> None:
    alice = await account(store, "alice@example.test")
    box = await inbox_id(store, alice)
    for i in range(3):
        await deliver(store, message(i), [alice])

    async def flags() -> dict[int, frozenset[str]]:
        return {p.uid: p.flags for p in await store.messages.list_placements(box)}

    await store.messages.store_flags(box, [1, 2], frozenset({"\\Seen", "$Label"}), "+")
    assert await flags() == {
        1: {"\\Seen", "$Label"},
        2: {"\\Seen", "$Label"},
        3: frozenset(),
    }
    await store.messages.store_flags(box, [2, 3], frozenset({"\\Flagged"}), "+")
    assert await flags() == {
        1: {"\\Seen", "$Label"},
        2: {"\\Seen", "$Label", "\\Flagged"},
        3: {"\\Flagged"},
    }
    await store.messages.store_flags(box, [1, 2], frozenset({"$Label", "\\Draft"}), "-")
    assert await flags() == {1: {"\\Seen"}, 2: {"\\Seen", "\\Flagged"}, 3: {"\\Flagged"}}
    await store.messages.store_flags(box, [1, 2, 3], frozenset({"\\Answered"}), "=")
    assert await flags() == {1: {"\\Answered"}, 2: {"\\Answered"}, 3: {"\\Answered"}}
    await store.messages.store_flags(box, [3], frozenset(), "=")
    assert (await flags())[3] == frozenset()


async def test_store_flags_only_touches_changed_messages(store: Store) -> None:
    alice = await account(store, "alice@example.test")
    box = await inbox_id(store, alice)
    await deliver(store, message(1), [alice])
    await deliver(store, message(2), [alice])
    m1 = (await store.messages.store_flags(box, [1, 2], frozenset({"\\Seen"}), "+")).modseq
    await store.messages.store_flags(box, [1], frozenset({"\\Seen"}), "+")  # no change
    m3 = (await store.messages.store_flags(box, [2], frozenset({"\\Flagged"}), "+")).modseq
    placements = {p.uid: p.modseq for p in await store.messages.list_placements(box)}
    # CONDSTORE: a message's MODSEQ moves only when its flags actually change.
    assert placements == {1: m1, 2: m3}


async def test_store_flags_on_missing_uid_is_ignored(store: Store) -> None:
    alice = await account(store, "alice@example.test")
    box = await inbox_id(store, alice)
    await deliver(store, message(1), [alice])
    await store.messages.store_flags(box, [1, 99], frozenset({"\\Seen"}), "+")
    assert [p.flags for p in await store.messages.list_placements(box)] == [{"\\Seen"}]


async def test_store_flags_on_missing_mailbox_is_not_found(store: Store) -> None:
    with pytest.raises(NotFound):
        await store.messages.store_flags(999_999, [1], frozenset(), "=")


async def test_expunged_since(store: Store) -> None:
    alice = await account(store, "alice@example.test")
    box = await inbox_id(store, alice)
    for i in range(4):
        await deliver(store, message(i), [alice])
    before = (await store.mailboxes.get_mailbox(alice.id, INBOX)).highestmodseq
    m1 = await store.messages.expunge(box, [2])
    m2 = await store.messages.expunge(box, [4, 3])
    assert await store.messages.expunged_since(box, before) == [2, 3, 4]
    assert await store.messages.expunged_since(box, m1) == [3, 4]
    assert await store.messages.expunged_since(box, m2) == []
    assert [p.uid for p in await store.messages.list_placements(box)] == [1]


async def test_expunge_of_shared_message_keeps_other_copies(store: Store, backend: Backend) -> None:
    alice = await account(store, "alice@example.test")
    bob = await account(store, "bob@example.test")
    data = message(1, size=BIG)
    await deliver(store, data, [alice, bob])
    await store.messages.expunge(await inbox_id(store, alice), [1])
    assert list(backend.message_rows().values()) == [1]
    (p,) = await store.messages.list_placements(await inbox_id(store, bob))
    assert await store.messages.read_message(p.message_id) == data
    await store.messages.expunge(await inbox_id(store, bob), [1])
    assert backend.message_rows() == {}
    assert backend.blob_files() == set()
    with pytest.raises(NotFound):
        await store.messages.read_message(p.message_id)


async def test_list_placements_in_uid_order(store: Store) -> None:
    alice = await account(store, "alice@example.test")
    box = await inbox_id(store, alice)
    sizes = [len(message(i)) for i in range(3)]
    for i in range(3):
        await deliver(store, message(i), [alice])
    placements = await store.messages.list_placements(box)
    assert [(p.uid, p.size) for p in placements] == [(1, sizes[0]), (2, sizes[1]), (3, sizes[2])]
    assert await store.messages.list_placements(await inbox_id(store, alice, "Trash")) == []


@pytest.mark.parametrize("size", [0, 128 * 1024, 128 * 1024 + 1, BIG, 3 * 1024 * 1024 + 17])
@pytest.mark.parametrize("chunk", [1000, 65536])
async def test_bodies_round_trip_byte_exact(store: Store, size: int, chunk: int) -> None:
    alice = await account(store, "alice@example.test")
    data = message(size, size=size)
    data = data[:-5] + b"\x00\xff\r\n." if size else data  # any octets, not only text
    await deliver(store, data, [alice], chunk=chunk)
    (p,) = await store.messages.list_placements(await inbox_id(store, alice))
    assert p.size == len(data)
    assert await store.messages.read_message(p.message_id) == data


async def test_blob_writer_counts_its_size(store: Store) -> None:
    blob = store.messages.new_blob()
    blob.write(b"abc")
    blob.write(b"x" * 200_000)
    assert blob.size == 200_003
    blob.abort()


async def test_aborted_blob_leaves_nothing(store: Store, backend: Backend) -> None:
    blob = store.messages.new_blob()
    blob.write(message(1, size=BIG))
    blob.abort()
    assert backend.blob_files() == set()
    assert backend.message_rows() == {}


async def test_deliver_to_no_targets_stores_nothing(store: Store, backend: Backend) -> None:
    await account(store, "alice@example.test")
    assert await deliver(store, message(1, size=BIG), []) == []
    assert backend.message_rows() == {}
    assert backend.blob_files() == set()


@pytest.mark.parametrize("size", [100, BIG])
async def test_deliver_to_removed_account_stores_nothing(
    store: Store, backend: Backend, size: int
) -> None:
    alice = await account(store, "alice@example.test")
    bob = await account(store, "bob@example.test")
    await store.accounts.remove_account(bob.address)
    with pytest.raises(NotFound):
        await deliver(store, message(1, size=size), [alice, bob])
    # All or nothing: not even alice's copy, and no row or file left over.
    assert backend.message_rows() == {}
    assert backend.blob_files() == set()
    inbox = await store.mailboxes.get_mailbox(alice.id, INBOX)
    assert (inbox.messages, inbox.size, inbox.uidnext) == (0, 0, 1)
    got = await store.accounts.get_account(alice.address)
    assert got is not None and got.used_bytes == 0
    # The UID that failed delivery would have taken is still the next one.
    (d,) = await deliver(store, message(2), [alice])
    assert d.uid == 1


async def test_deliver_to_missing_mailbox_is_not_found(store: Store, backend: Backend) -> None:
    alice = await account(store, "alice@example.test")
    with pytest.raises(NotFound):
        await deliver(store, message(1, size=BIG), [Target(alice.id, "Nope")])
    assert backend.message_rows() == {}
    assert backend.blob_files() == set()


async def test_failed_duplicate_queue_id_does_not_harm_the_first(
    store: Store, backend: Backend
) -> None:
    alice = await account(store, "alice@example.test")
    first = message(1, size=BIG)
    await deliver(store, first, [alice], qid="SAMEQUEUEID001")
    with pytest.raises(Conflict):
        await deliver(store, message(2, size=BIG), [alice], qid="SAMEQUEUEID001")
    (p,) = await store.messages.list_placements(await inbox_id(store, alice))
    assert await store.messages.read_message(p.message_id) == first
    assert len(backend.blob_files()) <= 1


async def test_concurrent_deliveries_group_commit(store: Store, backend: Backend) -> None:
    alice = await account(store, "alice@example.test")
    bob = await account(store, "bob@example.test")
    commits_before = backend.commits(store)
    n = 200
    results: list[list[Delivered]] = await asyncio.gather(
        *(deliver(store, message(i), [alice, bob]) for i in range(n))
    )
    commits = backend.commits(store) - commits_before
    for who in (alice, bob):
        uids = [d.uid for r in results for d in r if d.account_id == who.id]
        assert sorted(uids) == list(range(1, n + 1))
        modseqs = [d.modseq for r in results for d in r if d.account_id == who.id]
        assert len(set(modseqs)) == n
    assert 0 < commits < n  # several deliveries shared one fsynced commit
    # Every acknowledged message is there, each once, with its own bytes.
    placements = await store.messages.list_placements(await inbox_id(store, alice))
    assert len(placements) == n
    bodies = {await store.messages.read_message(p.message_id) for p in placements}
    assert bodies == {message(i) for i in range(n)}
    assert len(backend.message_rows()) == n


async def test_concurrent_mixed_writes_stay_consistent(store: Store) -> None:
    alice = await account(store, "alice@example.test")
    box = await inbox_id(store, alice)
    for i in range(20):
        await deliver(store, message(i), [alice])
    await asyncio.gather(
        *(deliver(store, message(100 + i), [alice]) for i in range(20)),
        *(store.messages.store_flags(box, [i], frozenset({"\\Seen"}), "+") for i in range(1, 11)),
        store.messages.expunge(box, list(range(11, 21))),
    )
    placements = await store.messages.list_placements(box)
    assert [p.uid for p in placements] == list(range(1, 11)) + list(range(21, 41))
    assert all(p.flags == {"\\Seen"} for p in placements[:10])
    inbox = await store.mailboxes.get_mailbox(alice.id, INBOX)
    assert inbox.messages == 30
    assert inbox.highestmodseq >= max(p.modseq for p in placements)
    assert inbox.size == sum(p.size for p in placements)


async def test_expunge_with_repeated_uids_counts_once(store: Store, backend: Backend) -> None:
    alice = await account(store, "alice@example.test")
    bob = await account(store, "bob@example.test")
    data = message(1)
    await deliver(store, data, [alice, bob])
    await deliver(store, message(2), [alice])
    box = await inbox_id(store, alice)
    await store.messages.expunge(box, [1, 1, 1])
    inbox = await store.mailboxes.get_mailbox(alice.id, INBOX)
    assert (inbox.messages, inbox.size) == (1, len(message(2)))
    # Bob's copy is still referenced and readable.
    (p,) = await store.messages.list_placements(await inbox_id(store, bob))
    assert await store.messages.read_message(p.message_id) == data
    assert sorted(backend.message_rows().values()) == [1, 1]


async def test_expunge_of_missing_uids_changes_nothing_but_modseq(store: Store) -> None:
    alice = await account(store, "alice@example.test")
    box = await inbox_id(store, alice)
    await deliver(store, message(1), [alice])
    await store.messages.expunge(box, [5, 6])
    assert [p.uid for p in await store.messages.list_placements(box)] == [1]
    assert await store.messages.expunged_since(box, 0) == []
    assert (await store.mailboxes.get_mailbox(alice.id, INBOX)).messages == 1
