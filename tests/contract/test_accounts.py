"""Accounts and their mailboxes: add, get, list, password, remove."""

from __future__ import annotations

import pytest

from mailwright.store.api import DEFAULT_MAILBOXES, INBOX, Account, Store, Target
from mailwright.store.errors import Conflict, NotFound
from tests.contract.conftest import Backend
from tests.contract.helpers import HASH, account, deliver, message


async def test_add_account_returns_it(store: Store) -> None:
    await store.accounts.add_domain("example.test")
    acct = await store.accounts.add_account("alice@example.test", HASH)
    assert acct.id > 0
    assert (acct.address, acct.password_hash, acct.quota_bytes, acct.used_bytes) == (
        "alice@example.test",
        HASH,
        None,
        0,
    )
    assert await store.accounts.get_account("alice@example.test") == acct


async def test_new_account_has_default_mailboxes(store: Store) -> None:
    acct = await account(store, "alice@example.test")
    boxes = await store.mailboxes.list_mailboxes(acct.id)
    # RFC 6154 special-use names; INBOX always first (RFC 3501 §5.1).
    assert boxes[0].name == INBOX
    assert {(b.name, b.special_use) for b in boxes} == set(DEFAULT_MAILBOXES)
    assert dict(DEFAULT_MAILBOXES) == {
        "INBOX": None,
        "Sent": "\\Sent",
        "Drafts": "\\Drafts",
        "Trash": "\\Trash",
        "Junk": "\\Junk",
        "Archive": "\\Archive",
    }
    for b in boxes:
        assert b.uidvalidity > 0
        assert (b.uidnext, b.messages, b.size) == (1, 0, 0)
        assert await store.mailboxes.get_mailbox(acct.id, b.name) == b
    assert len({b.id for b in boxes}) == len(boxes)


async def test_add_account_needs_a_local_domain(store: Store) -> None:
    with pytest.raises(NotFound):
        await store.accounts.add_account("alice@nowhere.test", HASH)
    assert await store.accounts.list_accounts() == []


async def test_duplicate_account_is_conflict(store: Store) -> None:
    first = await account(store, "alice@example.test")
    with pytest.raises(Conflict):
        await store.accounts.add_account("alice@example.test", "other")
    assert await store.accounts.list_accounts() == [first]


async def test_get_missing_account_is_none(store: Store) -> None:
    await store.accounts.add_domain("example.test")
    assert await store.accounts.get_account("nobody@example.test") is None


async def test_list_accounts_all_and_by_domain(store: Store) -> None:
    # "a_b.test" would match "axb.test" if the domain filter were an unescaped LIKE.
    for address in ("zed@a_b.test", "amy@a_b.test", "bob@axb.test", "cat@c.test"):
        await account(store, address)
    assert [a.address for a in await store.accounts.list_accounts()] == [
        "amy@a_b.test",
        "bob@axb.test",
        "cat@c.test",
        "zed@a_b.test",
    ]
    assert [a.address for a in await store.accounts.list_accounts("a_b.test")] == [
        "amy@a_b.test",
        "zed@a_b.test",
    ]
    assert [a.address for a in await store.accounts.list_accounts("axb.test")] == ["bob@axb.test"]
    assert await store.accounts.list_accounts("none.test") == []


async def test_set_password(store: Store) -> None:
    acct = await account(store, "alice@example.test")
    await store.accounts.set_password("alice@example.test", "$argon2id$new")
    got = await store.accounts.get_account("alice@example.test")
    assert got == Account(acct.id, acct.address, "$argon2id$new", None, 0)


async def test_set_password_of_missing_user_is_not_found(store: Store) -> None:
    await store.accounts.add_domain("example.test")
    with pytest.raises(NotFound):
        await store.accounts.set_password("nobody@example.test", HASH)


async def test_remove_missing_account_is_not_found(store: Store) -> None:
    await store.accounts.add_domain("example.test")
    with pytest.raises(NotFound):
        await store.accounts.remove_account("nobody@example.test")


async def test_remove_account_deletes_its_messages_and_files(
    store: Store, backend: Backend
) -> None:
    alice = await account(store, "alice@example.test")
    bob = await account(store, "bob@example.test")
    await deliver(store, message(1), [alice])
    await deliver(store, message(2, size=300_000), [alice])
    shared = await deliver(store, message(3, size=300_000), [alice, bob])
    assert len(backend.message_rows()) == 3
    files_before = backend.blob_files()

    await store.accounts.remove_account("alice@example.test")

    assert await store.accounts.get_account("alice@example.test") is None
    assert await store.mailboxes.list_mailboxes(alice.id) == []
    # Only the message bob also holds is left, now referenced once, its file kept.
    assert list(backend.message_rows().values()) == [1]
    bob_inbox = await store.mailboxes.get_mailbox(bob.id, INBOX)
    (placement,) = await store.messages.list_placements(bob_inbox.id)
    assert placement.uid == shared[1].uid
    assert await store.messages.read_message(placement.message_id) == message(3, size=300_000)
    if files_before:
        assert len(backend.blob_files()) == 1 and backend.blob_files() < files_before


async def test_removed_account_can_be_added_again_empty(store: Store) -> None:
    alice = await account(store, "alice@example.test")
    await deliver(store, message(1), [alice])
    old = await store.mailboxes.get_mailbox(alice.id, INBOX)
    await store.accounts.remove_account("alice@example.test")
    again = await store.accounts.add_account("alice@example.test", HASH)
    inbox = await store.mailboxes.get_mailbox(again.id, INBOX)
    assert (inbox.messages, inbox.uidnext) == (0, 1)
    assert await store.messages.list_placements(inbox.id) == []
    # RFC 3501 §2.3.1.1: UIDs start again, so a client's cached UIDs must be invalidated —
    # even when the account is recreated within the same second.
    assert inbox.uidvalidity != old.uidvalidity


async def test_create_mailbox(store: Store) -> None:
    acct = await account(store, "alice@example.test")
    box = await store.mailboxes.create_mailbox(acct.id, "Lists/python", None)
    assert box.name == "Lists/python" and box.special_use is None
    assert (box.uidnext, box.messages, box.size) == (1, 0, 0)
    assert await store.mailboxes.get_mailbox(acct.id, "Lists/python") == box
    with pytest.raises(Conflict):
        await store.mailboxes.create_mailbox(acct.id, "Lists/python")
    flagged = await store.mailboxes.create_mailbox(acct.id, "Important", "\\Flagged")
    assert flagged.special_use == "\\Flagged"
    names = [b.name for b in await store.mailboxes.list_mailboxes(acct.id)]
    assert names[0] == INBOX and {"Lists/python", "Important"} <= set(names)
    # Delivery can file into it.
    (d,) = await deliver(store, message(), [Target(acct.id, "Lists/python")])
    assert (d.mailbox, d.uid) == ("Lists/python", 1)


async def test_get_missing_mailbox_is_not_found(store: Store) -> None:
    acct = await account(store, "alice@example.test")
    with pytest.raises(NotFound):
        await store.mailboxes.get_mailbox(acct.id, "Nope")
