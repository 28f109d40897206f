"""Closing and reopening a store keeps everything: state is on disk, not in the process."""

from __future__ import annotations

from collections import Counter

from mailwright.store.api import INBOX, Store
from tests.contract.conftest import Backend
from tests.contract.helpers import Peer, account, check_counters, deliver, inbox_id, message


async def test_reopen_keeps_everything(store: Store, backend: Backend) -> None:
    alice = await account(store, "alice@example.test")
    bob = await account(store, "bob@example.test")
    await store.accounts.add_alias("team@example.test", ["alice@example.test", "bob@example.test"])
    await store.accounts.add_alias("@example.test", ["alice@example.test"])
    await store.mailboxes.create_mailbox(alice.id, "Projects", None)
    small, big = message(1), message(2, size=400_000)
    await deliver(store, small, [alice, bob])
    await deliver(store, big, [alice])
    box = await inbox_id(store, alice)
    await store.messages.store_flags(box, [1], frozenset({"\\Seen", "$Work"}), "=")
    await deliver(store, message(3), [alice])
    await store.messages.expunge(box, [3])

    domains = await store.accounts.list_domains()
    accounts = await store.accounts.list_accounts()
    aliases = await store.accounts.list_aliases()
    mailboxes = await store.mailboxes.list_mailboxes(alice.id)
    placements = await store.messages.list_placements(box)
    expunged = await store.messages.expunged_since(box, 0)

    store = await backend.reopen(store)

    assert await store.accounts.list_domains() == domains
    assert await store.accounts.list_accounts() == accounts
    assert await store.accounts.list_aliases() == aliases
    # UIDVALIDITY, UIDNEXT and HIGHESTMODSEQ survive: clients keep their caches.
    assert await store.mailboxes.list_mailboxes(alice.id) == mailboxes
    assert await store.messages.list_placements(box) == placements
    assert await store.messages.expunged_since(box, 0) == expunged == [3]
    assert [await store.messages.read_message(p.message_id) for p in placements] == [small, big]
    (d,) = await deliver(store, message(4), [alice])
    assert d.uid == 4


async def test_uidvalidity_is_stable_across_reopen(store: Store, backend: Backend) -> None:
    alice = await account(store, "alice@example.test")
    before = {b.name: b.uidvalidity for b in await store.mailboxes.list_mailboxes(alice.id)}
    store = await backend.reopen(store)
    store = await backend.reopen(store)
    after = {b.name: b.uidvalidity for b in await store.mailboxes.list_mailboxes(alice.id)}
    assert after == before
    assert (await store.mailboxes.get_mailbox(alice.id, INBOX)).uidvalidity == before[INBOX]


# -- SIGKILL: what was acknowledged is there, and nothing is half done ---------------------

BIG = 300_000


async def test_append_acknowledged_then_killed_is_present(store: Store, backend: Backend) -> None:
    alice = await account(store, "alice@example.test")
    sizes = [100, BIG, 0, 128 * 1024 + 1]
    peer = await Peer.start(backend, "append", alice.address, *map(str, sizes))
    acked = [(await peer.expect("acked ")).split()[1:] for _ in sizes]
    await peer.expect("done")
    await peer.kill()  # SIGKILL the instant the last append was acknowledged
    store = await backend.reopen(store)  # opening sweeps what a crash leaves
    placements = await store.messages.list_placements(await inbox_id(store, alice))
    assert [[str(p.uid), str(p.message_id)] for p in placements] == acked
    for n, (p, size) in enumerate(zip(placements, sizes, strict=True)):
        assert await store.messages.read_message(p.message_id) == message(n, size=size)
    await check_counters(store, alice)


async def test_move_is_all_or_nothing_under_sigkill(store: Store, backend: Backend) -> None:
    # RFC 6851 MOVE is one transaction: a crash leaves each message in exactly one of the
    # two mailboxes, never in both or neither, with its bytes and every counter right.
    alice = await account(store, "alice@example.test")
    datas = [message(i, size=BIG if i % 5 == 0 else 0) for i in range(20)]
    for d in datas:
        await deliver(store, d, [alice])
    rows = dict(backend.message_rows())
    files = backend.blob_files()
    peer = await Peer.start(backend, "shuffle", alice.address)
    for n in range(1, 8):
        assert await peer.line() == f"round {n}"
    await peer.kill()
    store = await backend.reopen(store)
    ids: Counter[int] = Counter()
    for name in (INBOX, "Archive"):
        for p in await store.messages.list_placements(await inbox_id(store, alice, name)):
            ids[p.message_id] += 1
    assert set(ids) == set(rows) and set(ids.values()) == {1}
    assert backend.message_rows() == rows
    assert backend.blob_files() == files
    bodies = set()
    for name in (INBOX, "Archive"):
        for p in await store.messages.list_placements(await inbox_id(store, alice, name)):
            bodies.add(await store.messages.read_message(p.message_id))
    assert bodies == set(datas)
    await check_counters(store, alice)
