"""Domains: add, list, remove, and the rules that keep them consistent."""

from __future__ import annotations

import pytest

from mailwright.store.api import Domain, Store
from mailwright.store.errors import Conflict, NotFound
from tests.contract.helpers import HASH, account


async def test_add_and_list_sorted(store: Store) -> None:
    assert await store.accounts.list_domains() == []
    for name in ("b.test", "a.test", "c.test"):
        await store.accounts.add_domain(name)
    assert await store.accounts.list_domains() == [
        Domain("a.test"),
        Domain("b.test"),
        Domain("c.test"),
    ]


async def test_duplicate_domain_is_conflict(store: Store) -> None:
    await store.accounts.add_domain("example.test")
    with pytest.raises(Conflict):
        await store.accounts.add_domain("example.test")
    assert await store.accounts.list_domains() == [Domain("example.test")]


async def test_remove_missing_domain_is_not_found(store: Store) -> None:
    with pytest.raises(NotFound):
        await store.accounts.remove_domain("nowhere.test")


async def test_remove_domain(store: Store) -> None:
    await store.accounts.add_domain("a.test")
    await store.accounts.add_domain("b.test")
    await store.accounts.remove_domain("a.test")
    assert await store.accounts.list_domains() == [Domain("b.test")]
    # Gone means gone: no users can be added to it any more.
    with pytest.raises(NotFound):
        await store.accounts.add_account("x@a.test", HASH)


async def test_remove_domain_with_users_is_conflict(store: Store) -> None:
    await account(store, "alice@example.test")
    with pytest.raises(Conflict):
        await store.accounts.remove_domain("example.test")
    assert await store.accounts.list_domains() == [Domain("example.test")]
    await store.accounts.remove_account("alice@example.test")
    await store.accounts.remove_domain("example.test")
    assert await store.accounts.list_domains() == []


async def test_remove_domain_drops_its_aliases(store: Store) -> None:
    await account(store, "alice@a.test")
    await store.accounts.add_domain("b.test")
    await store.accounts.add_alias("info@b.test", ["alice@a.test"])
    await store.accounts.add_alias("@b.test", ["alice@a.test"])
    await store.accounts.remove_domain("b.test")
    assert await store.accounts.list_aliases() == []
    # Adding the domain back does not resurrect them.
    await store.accounts.add_domain("b.test")
    lookup = await store.accounts.lookup_recipient("info@b.test", None)
    assert lookup.local_domain and lookup.account is None and lookup.alias_targets == ()
