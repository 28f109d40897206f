"""Closing and reopening a store keeps everything: state is on disk, not in the process."""

from __future__ import annotations

from mailwright.store.api import INBOX, Store
from tests.contract.conftest import Backend
from tests.contract.helpers import account, deliver, inbox_id, message


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
