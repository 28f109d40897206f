"""Messages as IMAP uses them: APPEND (RFC 9051 §6.3.12), COPY/MOVE with UIDPLUS (RFC 4315,
RFC 6851), STORE with CONDSTORE (RFC 7162 §3.1), changes since a MODSEQ, the structure
cache and partial reads."""

from __future__ import annotations

import asyncio
import itertools

import pytest

from mailwright.store.api import Change, Store, Target
from mailwright.store.errors import InvalidName, NotFound, StoreError
from tests.contract.conftest import Backend
from tests.contract.helpers import (
    RECEIVED_AT,
    account,
    append,
    check_counters,
    deliver,
    inbox_id,
    message,
    used,
)

WAIT = 10.0
BIG = 300_000
SEEN = frozenset({"\\Seen"})


async def highest(store: Store, mailbox_id: int) -> int:
    return (await store.mailboxes.get_mailbox_by_id(mailbox_id)).highestmodseq


# -- append ------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [50, BIG])
async def test_append(store: Store, size: int) -> None:
    alice = await account(store, "alice@example.test")
    await deliver(store, message(0), [Target(alice.id, "Drafts")])
    data = message(1, size=size)
    before = await store.mailboxes.get_mailbox(alice.id, "Drafts")
    d = await append(
        store, alice, data, "Drafts", frozenset({"\\Draft", "$Todo"}), internal_date=1_600_000_000
    )
    assert (d.account_id, d.mailbox, d.uid) == (alice.id, "Drafts", 2)
    assert d.modseq > before.highestmodseq
    (_, p) = await store.messages.list_placements(before.id)
    assert (p.uid, p.flags, p.modseq, p.internal_date, p.size) == (
        2,
        frozenset({"\\Draft", "$Todo"}),
        d.modseq,
        1_600_000_000,
        len(data),
    )
    assert await store.messages.read_message(p.message_id) == data
    await check_counters(store, alice)


async def test_append_normalises_flags(store: Store, backend: Backend) -> None:
    alice = await account(store, "alice@example.test")
    await append(
        store, alice, message(1), flags=frozenset({"\\SEEN", "\\recent", "\\flagged", "$Label"})
    )
    (p,) = await store.messages.list_placements(await inbox_id(store, alice))
    # System flags in canonical spelling, \Recent never stored, keywords as given.
    assert p.flags == {"\\Seen", "\\Flagged", "$Label"}
    with pytest.raises(InvalidName):
        await append(store, alice, message(2, size=BIG), flags=frozenset({"two words"}))
    assert backend.blob_files() == set()  # the refused body left nothing behind


async def test_append_to_another_accounts_mailbox_is_not_found(
    store: Store, backend: Backend
) -> None:
    alice = await account(store, "alice@example.test")
    bob = await account(store, "bob@example.test")
    blob = store.messages.new_blob()
    blob.write(message(1, size=BIG))
    with pytest.raises(NotFound):
        await store.messages.append(alice.id, await inbox_id(store, bob), blob, SEEN, 0)
    assert backend.message_rows() == {}
    assert backend.blob_files() == set()


async def test_append_is_published(store: Store) -> None:
    alice = await account(store, "alice@example.test")
    changes = store.changes.subscribe(alice.id)
    d = await append(store, alice, message(1))
    change = await asyncio.wait_for(anext(changes), WAIT)
    assert change == Change(alice.id, await inbox_id(store, alice), d.modseq, "append", (1,))


async def test_concurrent_appends_get_distinct_uids(store: Store) -> None:
    alice = await account(store, "alice@example.test")
    got = await asyncio.gather(*(append(store, alice, message(i)) for i in range(50)))
    assert sorted(d.uid for d in got) == list(range(1, 51))
    assert len({d.modseq for d in got}) == 50


# -- copy and move -------------------------------------------------------------------------


async def test_copy_maps_uids_in_ascending_source_order(store: Store, backend: Backend) -> None:
    alice = await account(store, "alice@example.test")
    src = await inbox_id(store, alice)
    dst = await inbox_id(store, alice, "Archive")
    datas = [message(i, size=BIG if i == 2 else 0) for i in range(6)]
    for data in datas:
        await deliver(store, data, [alice])
    await deliver(store, message(99), [Target(alice.id, "Archive")])  # dst UID 1 taken
    await store.messages.expunge(src, [4])
    await store.messages.store_flags(src, [3], frozenset({"\\Flagged", "$X"}), "+")
    used_before = await used(store, alice)
    dst_before = await store.mailboxes.get_mailbox_by_id(dst)

    mapping = await store.messages.copy(src, [5, 3, 4, 77, 1, 3], dst)

    # Missing (4, 77) skipped, repeats once, ascending source order, UIDs from UIDNEXT.
    assert mapping == [(1, 2), (3, 3), (5, 4)]
    src_ps = {p.uid: p for p in await store.messages.list_placements(src)}
    dst_ps = {p.uid: p for p in await store.messages.list_placements(dst)}
    for s, d in mapping:
        assert dst_ps[d].message_id == src_ps[s].message_id  # shared, not stored again
        assert dst_ps[d].flags == src_ps[s].flags
        assert dst_ps[d].internal_date == src_ps[s].internal_date == RECEIVED_AT
        assert dst_ps[d].modseq > dst_before.highestmodseq
    assert len({dst_ps[d].modseq for _, d in mapping}) == 1  # one MODSEQ for the operation
    rows = backend.message_rows()
    assert sorted(rows[src_ps[s].message_id] for s, _ in mapping) == [2, 2, 2]
    # Usage counts every placement.
    copied = sum(src_ps[s].size for s, _ in mapping)
    assert await used(store, alice) == used_before + copied
    await check_counters(store, alice)
    # The source is untouched.
    assert sorted(src_ps) == [1, 2, 3, 5, 6]
    # Expunging the original keeps the copy readable, and the other way round.
    await store.messages.expunge(src, [1, 3, 5])
    for _s, d in mapping:
        assert await store.messages.read_message(dst_ps[d].message_id) in datas
    await store.messages.expunge(dst, [d for _, d in mapping])
    await check_counters(store, alice)


async def test_copy_into_the_same_mailbox(store: Store) -> None:
    alice = await account(store, "alice@example.test")
    box = await inbox_id(store, alice)
    await deliver(store, message(1), [alice])
    assert await store.messages.copy(box, [1], box) == [(1, 2)]
    ps = await store.messages.list_placements(box)
    assert [p.uid for p in ps] == [1, 2] and ps[0].message_id == ps[1].message_id
    await check_counters(store, alice)


async def test_copy_of_nothing_changes_nothing(store: Store) -> None:
    alice = await account(store, "alice@example.test")
    src, dst = await inbox_id(store, alice), await inbox_id(store, alice, "Trash")
    before = await store.mailboxes.get_mailbox_by_id(dst)
    assert await store.messages.copy(src, [1, 2], dst) == []
    assert await store.messages.move(src, [], dst) == []
    assert await store.mailboxes.get_mailbox_by_id(dst) == before
    with pytest.raises(NotFound):
        await store.messages.copy(src, [1], 999_999)
    with pytest.raises(NotFound):
        await store.messages.copy(999_999, [1], dst)


async def test_copy_to_another_account(store: Store) -> None:
    alice = await account(store, "alice@example.test")
    bob = await account(store, "bob@example.test")
    await deliver(store, message(1), [alice])
    changes = store.changes.subscribe(bob.id)
    mapping = await store.messages.copy(
        await inbox_id(store, alice), [1], await inbox_id(store, bob)
    )
    assert mapping == [(1, 1)]
    change = await asyncio.wait_for(anext(changes), WAIT)
    assert (change.account_id, change.kind, change.uids) == (bob.id, "append", (1,))
    await check_counters(store, alice)
    await check_counters(store, bob)


async def test_move(store: Store, backend: Backend) -> None:
    alice = await account(store, "alice@example.test")
    src = await inbox_id(store, alice)
    dst = await inbox_id(store, alice, "Trash")
    datas = [message(i, size=BIG if i == 1 else 0) for i in range(4)]
    for data in datas:
        await deliver(store, data, [alice])
    await store.messages.store_flags(src, [2], SEEN, "+")
    src_before = await store.mailboxes.get_mailbox_by_id(src)
    used_before = await used(store, alice)
    rows_before = backend.message_rows()
    changes = store.changes.subscribe(alice.id)

    mapping = await store.messages.move(src, [4, 2, 9], dst)

    assert mapping == [(2, 1), (4, 2)]
    assert [p.uid for p in await store.messages.list_placements(src)] == [1, 3]
    moved = await store.messages.list_placements(dst)
    assert [(p.uid, p.flags) for p in moved] == [(1, SEEN), (2, frozenset())]
    assert [await store.messages.read_message(p.message_id) for p in moved] == [
        datas[1],
        datas[3],
    ]
    # QRESYNC: the source says which UIDs left.
    assert await store.messages.expunged_since(src, src_before.highestmodseq) == [2, 4]
    # Moved, not copied: the same rows, each referenced once; usage unchanged.
    assert backend.message_rows() == rows_before
    assert await used(store, alice) == used_before
    await check_counters(store, alice)
    published = [await asyncio.wait_for(anext(changes), WAIT) for _ in range(2)]
    assert {(c.mailbox_id, c.kind, c.uids) for c in published} == {
        (dst, "append", (1, 2)),
        (src, "expunge", (2, 4)),
    }


async def test_move_within_one_mailbox(store: Store) -> None:
    alice = await account(store, "alice@example.test")
    box = await inbox_id(store, alice)
    await deliver(store, message(1), [alice])
    assert await store.messages.move(box, [1], box) == [(1, 2)]
    assert [p.uid for p in await store.messages.list_placements(box)] == [2]
    await check_counters(store, alice)


async def test_move_to_another_account(store: Store, backend: Backend) -> None:
    alice = await account(store, "alice@example.test")
    bob = await account(store, "bob@example.test")
    await deliver(store, message(1, size=BIG), [alice])
    await store.messages.move(await inbox_id(store, alice), [1], await inbox_id(store, bob))
    assert list(backend.message_rows().values()) == [1]
    assert len(backend.blob_files()) == 1
    await check_counters(store, alice)
    await check_counters(store, bob)
    assert await used(store, alice) == 0


async def test_move_back_and_forth_keeps_one_copy(store: Store, backend: Backend) -> None:
    alice = await account(store, "alice@example.test")
    a, b = await inbox_id(store, alice), await inbox_id(store, alice, "Archive")
    for i in range(5):
        await deliver(store, message(i, size=BIG if i == 0 else 0), [alice])
    for _ in range(3):
        await store.messages.move(a, range(1, 100), b)
        a, b = b, a
    assert sorted(backend.message_rows().values()) == [1] * 5
    assert len(backend.blob_files()) == 1
    await check_counters(store, alice)


# -- flags ------------------------------------------------------------------------------


async def test_store_flags_result(store: Store) -> None:
    alice = await account(store, "alice@example.test")
    box = await inbox_id(store, alice)
    for i in range(4):
        await deliver(store, message(i), [alice])
    await store.messages.store_flags(box, [2], SEEN, "+")
    top = await highest(store, box)

    result = await store.messages.store_flags(box, [4, 2, 1, 99, 1], SEEN, "+")

    assert result.modseq == top + 1 == await highest(store, box)
    assert result.changed == [(1, SEEN, top + 1), (4, SEEN, top + 1)]
    assert [(u, f) for u, f, _ in result.unchanged] == [(2, SEEN)]
    assert result.failed == []


async def test_store_that_changes_nothing_takes_no_modseq(store: Store) -> None:
    alice = await account(store, "alice@example.test")
    box = await inbox_id(store, alice)
    await deliver(store, message(1), [alice])
    first = await store.messages.store_flags(box, [1], SEEN, "+")
    changes = store.changes.subscribe(alice.id)
    for mode, flags in (("+", SEEN), ("=", SEEN), ("-", frozenset({"\\Flagged"}))):
        again = await store.messages.store_flags(box, [1], flags, mode)
        assert again.changed == [] and again.modseq == first.modseq
    assert await highest(store, box) == first.modseq
    (p,) = await store.messages.list_placements(box)
    assert p.modseq == first.modseq
    # Nothing was published for the no-ops: the next change is the real one.
    real = await store.messages.store_flags(box, [1], SEEN, "-")
    change = await asyncio.wait_for(anext(changes), WAIT)
    assert (change.kind, change.modseq) == ("flags", real.modseq)


async def test_unchangedsince(store: Store) -> None:
    # RFC 7162 §3.1.3: messages changed after the client's MODSEQ are left alone (MODIFIED).
    alice = await account(store, "alice@example.test")
    box = await inbox_id(store, alice)
    for i in range(3):
        await deliver(store, message(i), [alice])
    ps = {p.uid: p.modseq for p in await store.messages.list_placements(box)}
    client_saw = ps[2]  # UID 3 arrived (and so changed) after this
    result = await store.messages.store_flags(
        box, [1, 2, 3], frozenset({"\\Deleted"}), "+", unchangedsince=client_saw
    )
    assert [u for u, _, _ in result.changed] == [1, 2]
    assert result.failed == [3]
    flags = {p.uid: p.flags for p in await store.messages.list_placements(box)}
    assert flags == {1: {"\\Deleted"}, 2: {"\\Deleted"}, 3: frozenset()}
    # Now UIDs 1 and 2 changed after client_saw: a second conditional STORE fails on them.
    again = await store.messages.store_flags(
        box, [1, 2, 3], SEEN, "+", unchangedsince=result.modseq
    )
    assert [u for u, _, _ in again.changed] == [1, 2, 3] and again.failed == []
    stale = await store.messages.store_flags(box, [1, 2, 3], SEEN, "-", unchangedsince=0)
    assert stale.failed == [1, 2, 3] and stale.changed == [] and stale.modseq == again.modseq
    await check_counters(store, alice)


async def test_flags_are_case_insensitive(store: Store) -> None:
    # RFC 3501 §2.3.2, RFC 9051 §2.3.2: flag and keyword names are case-insensitive. System
    # flags are stored in their canonical spelling; a keyword in the spelling it was
    # first stored with on the message.
    alice = await account(store, "alice@example.test")
    box = await inbox_id(store, alice)
    await deliver(store, message(1), [alice])
    await store.messages.store_flags(box, [1], frozenset({"\\SEEN", "\\answered", "$Work"}), "+")
    (p,) = await store.messages.list_placements(box)
    assert p.flags == {"\\Seen", "\\Answered", "$Work"}
    again = await store.messages.store_flags(box, [1], frozenset({"$WORK", "\\seen"}), "+")
    assert again.changed == [] and again.unchanged == [(1, p.flags, p.modseq)]
    result = await store.messages.store_flags(box, [1], frozenset({"\\seen", "$work"}), "-")
    assert result.changed == [(1, frozenset({"\\Answered"}), result.modseq)]
    await store.messages.store_flags(box, [1], frozenset({"$Later"}), "+")
    kept = await store.messages.store_flags(box, [1], frozenset({"$LATER", "\\DRAFT"}), "=")
    assert kept.changed == [(1, frozenset({"$Later", "\\Draft"}), kept.modseq)]
    await store.messages.store_flags(box, [1], frozenset({"\\Recent"}), "+")
    (p,) = await store.messages.list_placements(box)
    assert "\\Recent" not in p.flags
    with pytest.raises(StoreError):
        await store.messages.store_flags(box, [1], frozenset({"a b"}), "+")
    await check_counters(store, alice)


async def test_modseq_strictly_increases_per_mailbox(store: Store) -> None:
    alice = await account(store, "alice@example.test")
    box = await inbox_id(store, alice)
    trash = await inbox_id(store, alice, "Trash")
    seen = [await highest(store, box)]

    async def step() -> None:
        now = await highest(store, box)
        assert now > seen[-1]
        seen.append(now)

    await deliver(store, message(1), [alice])
    await step()
    await append(store, alice, message(2))
    await step()
    await store.messages.store_flags(box, [1], SEEN, "+")
    await step()
    await store.messages.copy(trash, [], box)  # nothing: no MODSEQ
    assert await highest(store, box) == seen[-1]
    await deliver(store, message(3), [Target(alice.id, "Trash")])
    await store.messages.copy(trash, [1], box)
    await step()
    await store.messages.move(box, [1], trash)
    await step()
    await store.messages.expunge(box, [2])
    await step()


# -- changed since ------------------------------------------------------------------------


async def test_changed_since(store: Store) -> None:
    alice = await account(store, "alice@example.test")
    box = await inbox_id(store, alice)
    for i in range(5):
        await deliver(store, message(i), [alice])
    mark = await highest(store, box)
    assert await store.messages.changed_since(box, mark) == []
    await store.messages.store_flags(box, [4, 2], SEEN, "+")
    await deliver(store, message(6), [alice])
    await store.messages.expunge(box, [3])
    changed = await store.messages.changed_since(box, mark)
    assert [p.uid for p in changed] == [2, 4, 6]
    assert [p.flags for p in changed] == [SEEN, SEEN, frozenset()]
    everything = await store.messages.list_placements(box)
    assert await store.messages.changed_since(box, 0) == everything
    assert await store.messages.expunged_since(box, mark) == [3]


# -- structure cache and partial reads ------------------------------------------------------


async def test_structure_cache(store: Store) -> None:
    alice = await account(store, "alice@example.test")
    box = await inbox_id(store, alice)
    await deliver(store, message(1), [alice])
    (p,) = await store.messages.list_placements(box)
    assert await store.messages.read_structure(p.message_id) is None
    top = await highest(store, box)
    changes = store.changes.subscribe(alice.id)
    blob = bytes(range(256)) * 10
    await store.messages.save_structure(p.message_id, blob)
    assert await store.messages.read_structure(p.message_id) == blob
    # Not a change of the mailbox: no MODSEQ, nothing published.
    assert await highest(store, box) == top
    assert (await store.messages.list_placements(box)) == [p]
    await store.messages.store_flags(box, [1], SEEN, "+")
    assert (await asyncio.wait_for(anext(changes), WAIT)).kind == "flags"
    await store.messages.expunge(box, [1])
    with pytest.raises(NotFound):
        await store.messages.read_structure(p.message_id)
    with pytest.raises(NotFound):
        await store.messages.save_structure(p.message_id, b"x")


async def test_structure_is_shared_by_copies(store: Store) -> None:
    alice = await account(store, "alice@example.test")
    await deliver(store, message(1), [alice, Target(alice.id, "Archive")])
    (p,) = await store.messages.list_placements(await inbox_id(store, alice))
    (q,) = await store.messages.list_placements(await inbox_id(store, alice, "Archive"))
    await store.messages.save_structure(p.message_id, b"tree")
    assert await store.messages.read_structure(q.message_id) == b"tree"


@pytest.mark.parametrize("size", [1000, BIG])
async def test_read_message_range(store: Store, size: int) -> None:
    alice = await account(store, "alice@example.test")
    data = message(1, size=size)
    await deliver(store, data, [alice])
    (p,) = await store.messages.list_placements(await inbox_id(store, alice))
    read = store.messages.read_message_range
    for start, end in itertools.product(
        [0, 1, 7, size // 2, size - 1, size, size + 10], [0, 1, 9, size // 2 + 3, size, size * 2]
    ):
        assert await read(p.message_id, start, end) == data[start:end], (start, end)
    assert await read(p.message_id, -5, 3) == data[:3]
    await store.messages.expunge(await inbox_id(store, alice), [1])
    with pytest.raises(NotFound):
        await read(p.message_id, 0, 10)
    with pytest.raises(NotFound):
        await read(p.message_id, 5, 5)


async def test_message_ids_are_not_reused(store: Store) -> None:
    # A session may still hold the id of a message another session expunged: reading it
    # must say NotFound, never return a newer message that took the same id.
    alice = await account(store, "alice@example.test")
    box = await inbox_id(store, alice)
    await deliver(store, message(1), [alice])
    (old,) = await store.messages.list_placements(box)
    await store.messages.expunge(box, [1])
    await deliver(store, message(2), [alice])
    (new,) = await store.messages.list_placements(box)
    assert new.message_id != old.message_id
    with pytest.raises(NotFound):
        await store.messages.read_message(old.message_id)
