"""Aliases (one or many targets, ``@domain`` catch-alls) and recipient lookup."""

from __future__ import annotations

import pytest

from mailwright.store.api import Alias, RecipientLookup, Store
from mailwright.store.errors import Conflict, NotFound
from tests.contract.helpers import HASH, account


async def test_alias_with_several_targets(store: Store) -> None:
    await account(store, "alice@example.test")
    await account(store, "bob@example.test")
    await store.accounts.add_alias("team@example.test", ["bob@example.test", "alice@example.test"])
    assert await store.accounts.list_aliases() == [
        Alias("team@example.test", ("alice@example.test", "bob@example.test"))
    ]


async def test_alias_targets_can_be_added_later(store: Store) -> None:
    await account(store, "alice@example.test")
    await store.accounts.add_alias("team@example.test", ["alice@example.test"])
    await store.accounts.add_alias("team@example.test", ["carol@example.test"])
    (alias,) = await store.accounts.list_aliases()
    assert alias.targets == ("alice@example.test", "carol@example.test")


async def test_catch_all(store: Store) -> None:
    await account(store, "alice@example.test")
    await store.accounts.add_alias("@example.test", ["alice@example.test"])
    assert await store.accounts.list_aliases() == [Alias("@example.test", ("alice@example.test",))]


async def test_list_aliases_by_domain(store: Store) -> None:
    await account(store, "alice@a.test")
    await store.accounts.add_domain("b.test")
    await store.accounts.add_alias("x@a.test", ["alice@a.test"])
    await store.accounts.add_alias("@b.test", ["alice@a.test"])
    await store.accounts.add_alias("y@b.test", ["alice@a.test"])
    assert [a.source for a in await store.accounts.list_aliases("a.test")] == ["x@a.test"]
    assert [a.source for a in await store.accounts.list_aliases("b.test")] == [
        "@b.test",
        "y@b.test",
    ]
    assert await store.accounts.list_aliases("c.test") == []


async def test_alias_needs_a_local_domain(store: Store) -> None:
    await account(store, "alice@example.test")
    with pytest.raises(NotFound):
        await store.accounts.add_alias("x@other.test", ["alice@example.test"])


async def test_alias_cannot_shadow_an_account(store: Store) -> None:
    await account(store, "alice@example.test")
    with pytest.raises(Conflict):
        await store.accounts.add_alias("alice@example.test", ["bob@example.test"])
    assert await store.accounts.list_aliases() == []


async def test_account_cannot_shadow_an_alias(store: Store) -> None:
    await account(store, "alice@example.test")
    await store.accounts.add_alias("info@example.test", ["alice@example.test"])
    with pytest.raises(Conflict):
        await store.accounts.add_account("info@example.test", HASH)
    assert await store.accounts.get_account("info@example.test") is None


async def test_duplicate_alias_target_is_conflict_and_adds_nothing(store: Store) -> None:
    await account(store, "alice@example.test")
    await store.accounts.add_alias("team@example.test", ["alice@example.test"])
    with pytest.raises(Conflict):
        await store.accounts.add_alias(
            "team@example.test", ["bob@example.test", "alice@example.test"]
        )
    # All or nothing: bob was not added on the way to the failure.
    (alias,) = await store.accounts.list_aliases()
    assert alias.targets == ("alice@example.test",)


async def test_remove_alias_target_and_whole_alias(store: Store) -> None:
    await account(store, "alice@example.test")
    await store.accounts.add_alias("team@example.test", ["alice@example.test", "b@example.test"])
    await store.accounts.add_alias("other@example.test", ["alice@example.test"])
    await store.accounts.remove_alias("team@example.test", "b@example.test")
    assert await store.accounts.list_aliases() == [
        Alias("other@example.test", ("alice@example.test",)),
        Alias("team@example.test", ("alice@example.test",)),
    ]
    await store.accounts.remove_alias("team@example.test")
    assert [a.source for a in await store.accounts.list_aliases()] == ["other@example.test"]


async def test_remove_missing_alias_is_not_found(store: Store) -> None:
    await account(store, "alice@example.test")
    await store.accounts.add_alias("team@example.test", ["alice@example.test"])
    with pytest.raises(NotFound):
        await store.accounts.remove_alias("nope@example.test")
    with pytest.raises(NotFound):
        await store.accounts.remove_alias("team@example.test", "bob@example.test")


# -- lookup_recipient ------------------------------------------------------------


async def test_lookup_exact_account(store: Store) -> None:
    alice = await account(store, "alice@example.test")
    assert await store.accounts.lookup_recipient("alice@example.test", None) == RecipientLookup(
        True, account=alice
    )


async def test_lookup_exact_alias(store: Store) -> None:
    await account(store, "alice@example.test")
    await store.accounts.add_alias("team@example.test", ["alice@example.test", "b@example.test"])
    lookup = await store.accounts.lookup_recipient("team@example.test", None)
    assert lookup.local_domain and lookup.account is None
    assert sorted(lookup.alias_targets) == ["alice@example.test", "b@example.test"]


async def test_lookup_falls_back_to_base_key(store: Store) -> None:
    alice = await account(store, "alice@example.test")
    await store.accounts.add_alias("team@example.test", ["alice@example.test"])
    lookup = await store.accounts.lookup_recipient("alice+tag@example.test", "alice@example.test")
    assert lookup == RecipientLookup(True, account=alice)
    lookup = await store.accounts.lookup_recipient("team+x@example.test", "team@example.test")
    assert lookup.account is None and lookup.alias_targets == ("alice@example.test",)


async def test_lookup_exact_beats_base_key(store: Store) -> None:
    await account(store, "alice@example.test")
    tagged = await store.accounts.add_account("alice+list@example.test", HASH)
    lookup = await store.accounts.lookup_recipient("alice+list@example.test", "alice@example.test")
    assert lookup.account == tagged


async def test_lookup_catch_all_last(store: Store) -> None:
    alice = await account(store, "alice@example.test")
    await account(store, "bob@example.test")
    await store.accounts.add_alias("@example.test", ["bob@example.test"])
    lookup = await store.accounts.lookup_recipient("nobody@example.test", None)
    assert lookup == RecipientLookup(True, alias_targets=("bob@example.test",))
    # The catch-all never hides a real account.
    assert (await store.accounts.lookup_recipient("alice@example.test", None)).account == alice


async def test_lookup_unknown_in_local_domain(store: Store) -> None:
    await account(store, "alice@example.test")
    assert await store.accounts.lookup_recipient("nobody@example.test", None) == RecipientLookup(
        True
    )


async def test_lookup_non_local_domain(store: Store) -> None:
    await account(store, "alice@example.test")
    await store.accounts.add_alias("@example.test", ["alice@example.test"])
    assert await store.accounts.lookup_recipient("alice@remote.test", None) == RecipientLookup(
        False
    )
