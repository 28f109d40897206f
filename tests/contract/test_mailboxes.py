"""Mailboxes as IMAP sees them: hierarchy, INBOX, delete, rename, subscriptions, \\Recent
(RFC 9051 §6.3.4 to §6.3.8, RFC 3501 §2.3.2 \\Recent, RFC 6154 special use)."""

from __future__ import annotations

import asyncio

import pytest

from mailwright.store.api import INBOX, Change, Store, Target
from mailwright.store.errors import (
    AlreadyExists,
    Conflict,
    HasChildren,
    InvalidName,
    NotFound,
    NotPermitted,
)
from tests.contract.conftest import Backend
from tests.contract.helpers import (
    RECEIVED_AT,
    Peer,
    account,
    append,
    check_counters,
    deliver,
    inbox_id,
    message,
    used,
)

WAIT = 10.0  # a bound for a hung test, never a pacing sleep


async def names(store: Store, account_id: int) -> list[str]:
    return [b.name for b in await store.mailboxes.list_mailboxes(account_id)]


# -- create ------------------------------------------------------------------------------


async def test_create_makes_missing_superiors(store: Store) -> None:
    alice = await account(store, "alice@example.test")
    box = await store.mailboxes.create_mailbox(alice.id, "Lists/python/dev")
    assert box.name == "Lists/python/dev"
    got = set(await names(store, alice.id))
    assert {"Lists", "Lists/python", "Lists/python/dev"} <= got
    # The superiors are ordinary mailboxes: mail can be filed there.
    (d,) = await deliver(store, message(1), [Target(alice.id, "Lists/python")])
    assert d.uid == 1
    # A sibling under an existing superior creates only itself.
    before = len(got)
    await store.mailboxes.create_mailbox(alice.id, "Lists/rust")
    assert len(await names(store, alice.id)) == before + 1


async def test_create_refuses_an_existing_name(store: Store) -> None:
    alice = await account(store, "alice@example.test")
    await store.mailboxes.create_mailbox(alice.id, "Work")
    with pytest.raises(AlreadyExists):
        await store.mailboxes.create_mailbox(alice.id, "Work")
    with pytest.raises(Conflict):  # AlreadyExists is a Conflict
        await store.mailboxes.create_mailbox(alice.id, "Sent")
    # Names other than INBOX are case-sensitive.
    await store.mailboxes.create_mailbox(alice.id, "work")


@pytest.mark.parametrize("spelling", ["INBOX", "inbox", "Inbox", "iNbOx"])
async def test_inbox_is_case_insensitive(store: Store, spelling: str) -> None:
    alice = await account(store, "alice@example.test")
    with pytest.raises(AlreadyExists):
        await store.mailboxes.create_mailbox(alice.id, spelling)
    box = await store.mailboxes.get_mailbox(alice.id, spelling)
    assert box.name == INBOX and box.id == await inbox_id(store, alice)
    # Also as the first level of a longer name: stored as INBOX/…
    child = await store.mailboxes.create_mailbox(alice.id, f"{spelling}/Receipts")
    assert child.name == "INBOX/Receipts"
    assert (await store.mailboxes.get_mailbox(alice.id, "inbox/Receipts")).id == child.id
    (d,) = await deliver(store, message(1), [Target(alice.id, spelling.lower())])
    assert d.mailbox == INBOX


async def test_trailing_separator_creates_the_name_without_it(store: Store) -> None:
    # RFC 9051 §6.3.4: "CREATE foo/" declares foo will hold inferiors; foo is created.
    alice = await account(store, "alice@example.test")
    box = await store.mailboxes.create_mailbox(alice.id, "Projects/")
    assert box.name == "Projects"


@pytest.mark.parametrize(
    "bad", ["", "/", "a//b", "/a", "a\r\nb", "a\x00b", "tab\there", "x" * 1001, "a/\x7f"]
)
async def test_bad_names_are_refused(store: Store, bad: str) -> None:
    alice = await account(store, "alice@example.test")
    before = await names(store, alice.id)
    with pytest.raises(InvalidName):
        await store.mailboxes.create_mailbox(alice.id, bad)
    assert await names(store, alice.id) == before


async def test_names_are_stored_as_given(store: Store) -> None:
    alice = await account(store, "alice@example.test")
    for name in ("Entwürfe", "日本語/メール", "a b", "100% & more", "*", "%"):
        box = await store.mailboxes.create_mailbox(alice.id, name)
        assert box.name == name
        assert (await store.mailboxes.get_mailbox(alice.id, name)).id == box.id


async def test_special_use(store: Store) -> None:
    alice = await account(store, "alice@example.test")
    uses = {b.name: b.special_use for b in await store.mailboxes.list_mailboxes(alice.id)}
    assert uses == {
        INBOX: None,
        "Sent": "\\Sent",
        "Drafts": "\\Drafts",
        "Trash": "\\Trash",
        "Junk": "\\Junk",
        "Archive": "\\Archive",
    }
    box = await store.mailboxes.create_mailbox(alice.id, "Old", "\\archive")
    assert box.special_use == "\\Archive"  # canonical spelling
    with pytest.raises(InvalidName):
        await store.mailboxes.create_mailbox(alice.id, "Odd", "\\Nonsense")
    with pytest.raises(NotFound):
        await store.mailboxes.get_mailbox(alice.id, "Odd")


async def test_create_for_a_missing_account_is_not_found(store: Store) -> None:
    with pytest.raises(NotFound):
        await store.mailboxes.create_mailbox(999_999, "X")


async def test_get_mailbox_by_id(store: Store) -> None:
    alice = await account(store, "alice@example.test")
    box = await store.mailboxes.create_mailbox(alice.id, "Work")
    assert await store.mailboxes.get_mailbox_by_id(box.id) == box
    with pytest.raises(NotFound):
        await store.mailboxes.get_mailbox_by_id(999_999)


async def test_new_mailbox_ids_and_uidvalidities_are_never_reused(store: Store) -> None:
    alice = await account(store, "alice@example.test")
    seen_ids, seen_validities = set(), set()
    for _ in range(5):
        box = await store.mailboxes.create_mailbox(alice.id, "Again")
        assert box.id not in seen_ids and box.uidvalidity not in seen_validities
        seen_ids.add(box.id)
        seen_validities.add(box.uidvalidity)
        await store.mailboxes.delete_mailbox(alice.id, "Again")


# -- delete ------------------------------------------------------------------------------


async def test_delete_removes_the_mailbox_and_its_messages(store: Store, backend: Backend) -> None:
    alice = await account(store, "alice@example.test")
    bob = await account(store, "bob@example.test")
    await store.mailboxes.create_mailbox(alice.id, "Work")
    work = Target(alice.id, "Work")
    only_here = message(1, size=300_000)
    shared = message(2, size=300_000)
    await deliver(store, only_here, [work])
    await deliver(store, shared, [work, bob])
    await deliver(store, message(3), [alice])
    files = backend.blob_files()
    assert len(files) == 2

    await store.mailboxes.delete_mailbox(alice.id, "Work")

    with pytest.raises(NotFound):
        await store.mailboxes.get_mailbox(alice.id, "Work")
    assert "Work" not in await names(store, alice.id)
    # The message only Work held is gone, file and all; bob's copy of the other stays.
    assert sorted(backend.message_rows().values()) == [1, 1]
    assert len(backend.blob_files()) == 1
    (p,) = await store.messages.list_placements(await inbox_id(store, bob))
    assert await store.messages.read_message(p.message_id) == shared
    assert await used(store, alice) == len(message(3))
    await check_counters(store, alice)
    await check_counters(store, bob)


async def test_delete_refuses_inbox(store: Store) -> None:
    alice = await account(store, "alice@example.test")
    await deliver(store, message(1), [alice])
    for spelling in ("INBOX", "inbox"):
        with pytest.raises(NotPermitted):
            await store.mailboxes.delete_mailbox(alice.id, spelling)
    assert (await store.mailboxes.get_mailbox(alice.id, INBOX)).messages == 1


async def test_delete_refuses_a_mailbox_with_inferiors(store: Store) -> None:
    # RFC 9051 §6.3.5: a server that keeps no \Noselect containers refuses (HASCHILDREN).
    alice = await account(store, "alice@example.test")
    await store.mailboxes.create_mailbox(alice.id, "a/b/c")
    await deliver(store, message(1), [Target(alice.id, "a")])
    with pytest.raises(HasChildren):
        await store.mailboxes.delete_mailbox(alice.id, "a")
    with pytest.raises(HasChildren):
        await store.mailboxes.delete_mailbox(alice.id, "a/b")
    assert (await store.mailboxes.get_mailbox(alice.id, "a")).messages == 1
    # A name that only starts like a superior is not an inferior.
    await store.mailboxes.create_mailbox(alice.id, "a/b0")
    await store.mailboxes.create_mailbox(alice.id, "a/b.x")
    await store.mailboxes.delete_mailbox(alice.id, "a/b/c")
    await store.mailboxes.delete_mailbox(alice.id, "a/b")
    assert set(await names(store, alice.id)) >= {"a", "a/b0", "a/b.x"}
    assert "a/b" not in await names(store, alice.id)


async def test_delete_missing_is_not_found(store: Store) -> None:
    alice = await account(store, "alice@example.test")
    with pytest.raises(NotFound):
        await store.mailboxes.delete_mailbox(alice.id, "Nope")


async def test_delete_then_create_never_reuses_uids(store: Store) -> None:
    # RFC 9051 §2.3.1.1: name + UIDVALIDITY + UID names one message forever.
    alice = await account(store, "alice@example.test")
    old = await store.mailboxes.create_mailbox(alice.id, "Work")
    await deliver(store, message(1), [Target(alice.id, "Work")])
    await deliver(store, message(2), [Target(alice.id, "Work")])
    await store.mailboxes.delete_mailbox(alice.id, "Work")
    new = await store.mailboxes.create_mailbox(alice.id, "Work")
    assert new.uidvalidity != old.uidvalidity
    assert new.id != old.id
    (d,) = await deliver(store, message(3), [Target(alice.id, "Work")])
    assert d.uid == 1  # UIDs start again, which the new UIDVALIDITY announces
    # The old mailbox's id names nothing any more.
    with pytest.raises(NotFound):
        await store.messages.store_flags(old.id, [1], frozenset({"\\Seen"}), "+")
    assert await store.messages.list_placements(old.id) == []


async def test_delete_keeps_subscriptions(store: Store) -> None:
    # RFC 9051 §6.3.7: the server must not remove a subscription unilaterally.
    alice = await account(store, "alice@example.test")
    await store.mailboxes.create_mailbox(alice.id, "Work")
    await store.mailboxes.subscribe(alice.id, "Work")
    await store.mailboxes.delete_mailbox(alice.id, "Work")
    assert "Work" in await store.mailboxes.list_subscriptions(alice.id)


async def test_delete_and_create_are_published(store: Store) -> None:
    alice = await account(store, "alice@example.test")
    changes = store.changes.subscribe(alice.id)
    box = await store.mailboxes.create_mailbox(alice.id, "Work")
    await store.mailboxes.delete_mailbox(alice.id, "Work")
    got = [await asyncio.wait_for(anext(changes), WAIT) for _ in range(2)]
    assert [(c.kind, c.mailbox_id, c.uids) for c in got] == [
        ("create", box.id, ()),
        ("delete", box.id, ()),
    ]


# -- rename ------------------------------------------------------------------------------


async def test_rename_moves_inferiors_and_keeps_uids(store: Store) -> None:
    alice = await account(store, "alice@example.test")
    foo = await store.mailboxes.create_mailbox(alice.id, "foo")
    bar = await store.mailboxes.create_mailbox(alice.id, "foo/bar")
    await store.mailboxes.create_mailbox(alice.id, "foobar")  # not an inferior of foo
    await deliver(store, message(1), [Target(alice.id, "foo/bar")])
    await deliver(store, message(2), [Target(alice.id, "foo/bar")])
    await store.messages.expunge(bar.id, [1])

    await store.mailboxes.rename_mailbox(alice.id, "foo", "zap")

    got = set(await names(store, alice.id))
    assert {"zap", "zap/bar", "foobar"} <= got and not {"foo", "foo/bar"} & got
    zap = await store.mailboxes.get_mailbox(alice.id, "zap")
    zapbar = await store.mailboxes.get_mailbox(alice.id, "zap/bar")
    # RFC 9051 §6.3.6: the UIDs still name the same messages, so UIDVALIDITY is kept
    # (and a new "foo" gets a new one, so its UIDs cannot be confused with these).
    assert (zap.id, zap.uidvalidity) == (foo.id, foo.uidvalidity)
    assert (zapbar.id, zapbar.uidvalidity, zapbar.uidnext) == (bar.id, bar.uidvalidity, 3)
    assert [p.uid for p in await store.messages.list_placements(zapbar.id)] == [2]
    assert await store.messages.expunged_since(zapbar.id, 0) == [1]
    again = await store.mailboxes.create_mailbox(alice.id, "foo")
    assert again.uidvalidity not in (foo.uidvalidity, bar.uidvalidity)
    await check_counters(store, alice)


async def test_rename_creates_missing_superiors(store: Store) -> None:
    alice = await account(store, "alice@example.test")
    await store.mailboxes.create_mailbox(alice.id, "foo/bar/zap")
    await store.mailboxes.rename_mailbox(alice.id, "foo/bar/zap", "baz/rag/zowie")
    got = set(await names(store, alice.id))
    assert {"baz", "baz/rag", "baz/rag/zowie", "foo", "foo/bar"} <= got
    assert "foo/bar/zap" not in got


async def test_rename_errors(store: Store) -> None:
    alice = await account(store, "alice@example.test")
    await store.mailboxes.create_mailbox(alice.id, "a/b")
    await store.mailboxes.create_mailbox(alice.id, "c")
    await store.mailboxes.create_mailbox(alice.id, "d/b")
    with pytest.raises(NotFound):
        await store.mailboxes.rename_mailbox(alice.id, "nope", "x")
    with pytest.raises(AlreadyExists):
        await store.mailboxes.rename_mailbox(alice.id, "a", "c")
    with pytest.raises(AlreadyExists):
        await store.mailboxes.rename_mailbox(alice.id, "c", "inbox")
    with pytest.raises(AlreadyExists):
        await store.mailboxes.rename_mailbox(alice.id, "c", "c")
    with pytest.raises(NotPermitted):
        await store.mailboxes.rename_mailbox(alice.id, "a", "a/b/x")
    with pytest.raises(InvalidName):
        await store.mailboxes.rename_mailbox(alice.id, "c", "x//y")
    # An inferior's new name taken: nothing is renamed at all.
    await store.mailboxes.create_mailbox(alice.id, "e")
    await store.mailboxes.create_mailbox(alice.id, "e/b")
    with pytest.raises(AlreadyExists):
        await store.mailboxes.rename_mailbox(alice.id, "a", "e")
    with pytest.raises(AlreadyExists):
        await store.mailboxes.rename_mailbox(alice.id, "a", "d")
    assert {"a", "a/b", "c", "d", "d/b", "e", "e/b"} <= set(await names(store, alice.id))


async def test_rename_is_published(store: Store) -> None:
    alice = await account(store, "alice@example.test")
    a = await store.mailboxes.create_mailbox(alice.id, "a")
    b = await store.mailboxes.create_mailbox(alice.id, "a/b")
    changes = store.changes.subscribe(alice.id)
    await store.mailboxes.rename_mailbox(alice.id, "a", "z")
    got = [await asyncio.wait_for(anext(changes), WAIT) for _ in range(2)]
    assert {(c.kind, c.mailbox_id) for c in got} == {("rename", a.id), ("rename", b.id)}


async def test_rename_inbox_moves_its_messages(store: Store, backend: Backend) -> None:
    # RFC 9051 §6.3.6: renaming INBOX moves its messages to a new mailbox and leaves INBOX
    # empty; INBOX's inferiors are unaffected.
    alice = await account(store, "alice@example.test")
    await store.mailboxes.create_mailbox(alice.id, "INBOX/Kept")
    datas = [message(1), message(2, size=300_000), message(3)]
    for data in datas:
        await deliver(store, data, [alice])
    inbox = await store.mailboxes.get_mailbox(alice.id, INBOX)
    await store.messages.store_flags(inbox.id, [3], frozenset({"\\Seen", "$Work"}), "+")
    await store.messages.expunge(inbox.id, [1])
    inbox = await store.mailboxes.get_mailbox(alice.id, INBOX)
    rows_before = dict(backend.message_rows())
    used_before = await used(store, alice)
    changes = store.changes.subscribe(alice.id)

    await store.mailboxes.rename_mailbox(alice.id, "inbox", "Old/Mail")

    old = await store.mailboxes.get_mailbox(alice.id, "Old/Mail")
    assert "Old" in await names(store, alice.id)
    after = await store.mailboxes.get_mailbox(alice.id, INBOX)
    assert (after.id, after.uidvalidity, after.uidnext) == (inbox.id, inbox.uidvalidity, 4)
    assert after.messages == 0 and after.size == 0
    assert await store.messages.list_placements(inbox.id) == []
    assert await store.messages.expunged_since(inbox.id, inbox.highestmodseq) == [2, 3]
    assert old.uidvalidity not in (inbox.uidvalidity,)
    moved = await store.messages.list_placements(old.id)
    assert [(p.uid, p.flags) for p in moved] == [(1, frozenset()), (2, {"\\Seen", "$Work"})]
    assert [await store.messages.read_message(p.message_id) for p in moved] == datas[1:]
    assert (await store.mailboxes.get_mailbox(alice.id, "INBOX/Kept")).name == "INBOX/Kept"
    # Moved, not copied: one row per message, each referenced once; usage unchanged.
    assert backend.message_rows() == rows_before
    assert await used(store, alice) == used_before
    await check_counters(store, alice)
    got = [await asyncio.wait_for(anext(changes), WAIT) for _ in range(4)]
    assert [(c.kind, c.uids) for c in got if c.kind in ("append", "expunge")] == [
        ("append", (1, 2)),
        ("expunge", (2, 3)),
    ]
    # New mail still goes to INBOX, with the next UID.
    (new,) = await deliver(store, message(4), [alice])
    assert (new.mailbox, new.uid) == (INBOX, 4)


async def test_rename_empty_inbox(store: Store) -> None:
    alice = await account(store, "alice@example.test")
    await store.mailboxes.rename_mailbox(alice.id, INBOX, "Empty")
    assert (await store.mailboxes.get_mailbox(alice.id, "Empty")).messages == 0
    assert (await store.mailboxes.get_mailbox(alice.id, INBOX)).messages == 0


# -- subscriptions ----------------------------------------------------------------------


async def test_new_accounts_have_their_mailboxes_subscribed(store: Store) -> None:
    alice = await account(store, "alice@example.test")
    subs = await store.mailboxes.list_subscriptions(alice.id)
    assert subs == [INBOX, "Archive", "Drafts", "Junk", "Sent", "Trash"]


async def test_subscribe_and_unsubscribe(store: Store) -> None:
    alice = await account(store, "alice@example.test")
    bob = await account(store, "bob@example.test")
    await store.mailboxes.subscribe(alice.id, "Not/There/Yet")  # need not exist
    await store.mailboxes.subscribe(alice.id, "Not/There/Yet")  # twice is harmless
    await store.mailboxes.unsubscribe(alice.id, "Junk")
    await store.mailboxes.unsubscribe(alice.id, "inbox")
    assert await store.mailboxes.list_subscriptions(alice.id) == [
        "Archive",
        "Drafts",
        "Not/There/Yet",
        "Sent",
        "Trash",
    ]
    with pytest.raises(NotFound):
        await store.mailboxes.unsubscribe(alice.id, "Junk")
    await store.mailboxes.subscribe(alice.id, "Inbox")
    assert (await store.mailboxes.list_subscriptions(alice.id))[0] == INBOX
    assert "Not/There/Yet" not in await store.mailboxes.list_subscriptions(bob.id)
    with pytest.raises(InvalidName):
        await store.mailboxes.subscribe(alice.id, "a//b")


async def test_remove_account_removes_its_subscriptions(store: Store) -> None:
    alice = await account(store, "alice@example.test")
    await store.mailboxes.subscribe(alice.id, "Extra")
    await store.accounts.remove_account(alice.address)
    again = await account(store, "alice@example.test")
    assert "Extra" not in await store.mailboxes.list_subscriptions(again.id)


# -- counters and \Recent ----------------------------------------------------------------


async def test_unseen_deleted_and_recent_counts(store: Store) -> None:
    alice = await account(store, "alice@example.test")
    box = await inbox_id(store, alice)
    for i in range(5):
        await deliver(store, message(i), [alice])

    async def counts() -> tuple[int, int, int, int]:
        b = await store.mailboxes.get_mailbox(alice.id, INBOX)
        return b.messages, b.unseen, b.deleted, b.recent

    assert await counts() == (5, 5, 0, 5)
    await store.messages.store_flags(box, [1, 2, 3], frozenset({"\\Seen"}), "+")
    assert await counts() == (5, 2, 0, 5)
    await store.messages.store_flags(box, [2, 4], frozenset({"\\Deleted"}), "+")
    assert await counts() == (5, 2, 2, 5)
    await store.messages.store_flags(box, [1, 2], frozenset({"\\Flagged"}), "=")
    assert await counts() == (5, 4, 1, 5)
    await store.messages.expunge(box, [4])
    assert await counts() == (4, 3, 0, 4)
    await store.mailboxes.claim_recent(box)
    assert await counts() == (4, 3, 0, 0)
    await append(store, alice, message(9), flags=frozenset({"\\Seen", "\\Deleted"}))
    assert await counts() == (5, 3, 1, 1)
    await check_counters(store, alice)


async def test_claim_recent(store: Store) -> None:
    # IMAP4rev1 \Recent: the first session to see a message is the only one told.
    alice = await account(store, "alice@example.test")
    box = await inbox_id(store, alice)
    assert await store.mailboxes.claim_recent_range(box) == (1, 1)  # empty, nothing claimed
    for i in range(3):
        await deliver(store, message(i), [alice])
    assert await store.mailboxes.claim_recent_range(box) == (1, 4)  # UIDs 1..3 are ours
    assert await store.mailboxes.claim_recent_range(box) == (4, 4)  # nothing new
    assert await store.mailboxes.claim_recent(box) == 4
    await deliver(store, message(4), [alice])
    assert await store.mailboxes.claim_recent(box) == 4  # UID 4, for this caller
    assert await store.mailboxes.claim_recent_range(box) == (5, 5)
    with pytest.raises(NotFound):
        await store.mailboxes.claim_recent(999_999)


async def test_append_claims_recent_and_stores_structure_with_the_message(store: Store) -> None:
    # A session appending to the mailbox it has selected claims \Recent in the same
    # transaction; what others delivered before is in its range too (it sees them first).
    alice = await account(store, "alice@example.test")
    box = await inbox_id(store, alice)
    for i in range(2):
        await deliver(store, message(i), [alice])
    blob = store.messages.new_blob()
    blob.write(message(2))
    got = await store.messages.append(
        alice.id, box, blob, frozenset(), RECEIVED_AT, structure=b"parsed", claim_recent=True
    )
    assert (got.uid, got.recent) == (3, (1, 4))
    assert await store.mailboxes.claim_recent_range(box) == (4, 4)  # nothing left
    info = await store.mailboxes.get_mailbox_by_id(box)
    assert (info.recent, info.recent_uid) == (0, 4)
    by_uid = {p.uid: p for p in await store.messages.list_placements(box)}
    assert await store.messages.read_structure(by_uid[3].message_id) == b"parsed"
    # Without the options: nothing claimed, no structure.
    plain = await append(store, alice, message(3))
    assert plain.recent == (0, 0)
    by_uid = {p.uid: p for p in await store.messages.list_placements(box)}
    assert await store.messages.read_structure(by_uid[plain.uid].message_id) is None
    assert await store.mailboxes.claim_recent_range(box) == (4, 5)
    await check_counters(store, alice)


async def test_concurrent_claims_share_nothing(store: Store) -> None:
    alice = await account(store, "alice@example.test")
    box = await inbox_id(store, alice)
    for i in range(10):
        await deliver(store, message(i), [alice])
    ranges = await asyncio.gather(*(store.mailboxes.claim_recent_range(box) for _ in range(8)))
    claimed = [uid for first, end in ranges for uid in range(first, end)]
    assert sorted(claimed) == list(range(1, 11))  # each UID recent for exactly one caller


async def test_claim_below(store: Store) -> None:
    # A session claims only the messages it has been told of (RFC 3501 §2.3.2: it is the
    # first to be notified of them); later ones stay for whoever sees them first.
    alice = await account(store, "alice@example.test")
    box = await inbox_id(store, alice)
    for i in range(4):
        await deliver(store, message(i), [alice])

    async def recent() -> tuple[int, int]:
        b = await store.mailboxes.get_mailbox_by_id(box)
        return b.recent, b.recent_uid

    assert await store.mailboxes.claim_recent_range(box, 3) == (1, 3)  # UIDs 1 and 2
    assert await recent() == (2, 3)  # 3 and 4 not yet claimed
    assert await store.mailboxes.claim_recent_range(box, 2) == (3, 3)  # below: nothing
    assert await store.mailboxes.claim_recent_range(box, 3) == (3, 3)
    await store.messages.expunge(box, [3])
    assert await recent() == (1, 3)
    await deliver(store, message(5), [alice])
    # UID 3 is gone; the claim still moves past it, and counts only what is there.
    assert await store.mailboxes.claim_recent_range(box, 100) == (3, 6)
    assert await recent() == (0, 6)
    assert await store.mailboxes.claim_recent_range(box, 100) == (6, 6)
    await check_counters(store, alice)
    with pytest.raises(NotFound):
        await store.mailboxes.claim_recent_range(999_999, 5)


async def test_concurrent_bounded_claims_share_nothing(store: Store) -> None:
    # Sessions each claiming up to what they have read, while mail arrives: every UID
    # is recent for at most one, and once all have caught up, for exactly one.
    alice = await account(store, "alice@example.test")
    box = await inbox_id(store, alice)
    claimed: list[int] = []

    async def session(seen: int) -> None:
        first, end = await store.mailboxes.claim_recent_range(box, seen + 1)
        claimed.extend(range(first, end))

    for i in range(1, 13):
        await deliver(store, message(i), [alice])
        await asyncio.gather(*(session(seen) for seen in (i - 2, i - 1, i, i)))
    assert sorted(claimed) == list(range(1, 13))
    await check_counters(store, alice)


async def test_claims_across_processes_share_nothing(store: Store, backend: Backend) -> None:
    # Two worker processes' sessions with the mailbox selected claim as mail arrives.
    alice = await account(store, "alice@example.test")
    box = await inbox_id(store, alice)
    total = 30
    peer = await Peer.start(backend, "claim", alice.address, str(total))
    assert await peer.line() == "ready"
    mine: list[int] = []
    for i in range(total):
        await deliver(store, message(i), [alice])
        first, end = await store.mailboxes.claim_recent_range(box)
        mine.extend(range(first, end))
    theirs: list[int] = []
    while (line := await peer.line()) != "done":
        _, first, end = line.split()
        theirs.extend(range(int(first), int(end)))
    await peer.finish()
    assert not set(mine) & set(theirs)
    assert sorted(mine + theirs) == list(range(1, total + 1))
    await check_counters(store, alice)


async def test_claim_survives_reopen(store: Store, backend: Backend) -> None:
    alice = await account(store, "alice@example.test")
    await deliver(store, message(1), [alice])
    box = await inbox_id(store, alice)
    assert await store.mailboxes.claim_recent_range(box) == (1, 2)
    store = await backend.reopen(store)
    assert await store.mailboxes.claim_recent_range(box) == (2, 2)


async def test_mailbox_change_kinds(store: Store) -> None:
    """A subscriber hears mailbox-level changes as the kinds api.Change documents."""
    alice = await account(store, "alice@example.test")
    changes = store.changes.subscribe(alice.id)
    await store.mailboxes.create_mailbox(alice.id, "p/q")
    got = [await asyncio.wait_for(anext(changes), WAIT) for _ in range(2)]
    assert all(isinstance(c, Change) and c.kind == "create" for c in got)
    p = await store.mailboxes.get_mailbox(alice.id, "p")
    q = await store.mailboxes.get_mailbox(alice.id, "p/q")
    assert [c.mailbox_id for c in got] == [p.id, q.id]
