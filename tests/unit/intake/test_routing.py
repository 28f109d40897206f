"""Router over a real SqliteStore: sub-addresses, alias chains, loops, catch-alls, dedupe."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import pytest

from mailwright.core.address import Address
from mailwright.intake.routing import _MAX_DEPTH, Route, Router
from mailwright.store.api import Target
from mailwright.store.sqlite import SqliteStore

T = TypeVar("T")


class World:
    """A store with example.test (alice, bob, carol) and other.test (dave)."""

    def __init__(self, store: SqliteStore) -> None:
        self.store = store
        self.ids: dict[str, int] = {}

    async def setup(self) -> None:
        for domain in ("example.test", "other.test"):
            await self.store.add_domain(domain)
        for user in ("alice@example.test", "bob@example.test", "carol@example.test",
                     "dave@other.test"):  # fmt: skip
            self.ids[user.split("@")[0]] = (await self.store.add_account(user, "h")).id

    async def alias(self, source: str, *targets: str) -> None:
        await self.store.add_alias(source, list(targets))

    def targets(self, *names: str) -> tuple[Target, ...]:
        return tuple(Target(self.ids[n]) for n in names)


def run(tmp_path: Path, fn: Callable[[World], Awaitable[T]]) -> T:
    async def go() -> T:
        store = await asyncio.to_thread(SqliteStore, tmp_path)
        try:
            world = World(store)
            await world.setup()
            return await fn(world)
        finally:
            await store.close()

    return asyncio.run(go())


async def route(world: World, address: str, delimiter: str = "+") -> Route:
    return await Router(world.store, delimiter).route(Address.parse(address, utf8=True))


def test_exact_account(tmp_path: Path) -> None:
    async def go(w: World) -> None:
        r = await route(w, "alice@example.test")
        assert r.local_domain and r.known and r.targets == w.targets("alice")
        assert r.quotas == ((None, 0),)  # no quota, nothing stored yet
        assert (await route(w, "dave@other.test")).targets == w.targets("dave")

    run(tmp_path, go)


def test_case_is_folded(tmp_path: Path) -> None:
    async def go(w: World) -> None:
        assert (await route(w, "Alice@EXAMPLE.Test")).targets == w.targets("alice")

    run(tmp_path, go)


def test_non_local_domain(tmp_path: Path) -> None:
    async def go(w: World) -> None:
        r = await route(w, "alice@remote.test")
        assert r == Route(False) and not r.known

    run(tmp_path, go)


def test_a_foreign_domain_is_looked_up_once_for_many_addresses(tmp_path: Path) -> None:
    class Counting:
        def __init__(self, store: SqliteStore) -> None:
            self.store = store
            self.lookups = 0

        async def lookup_recipient(self, key: str, base: str | None) -> object:
            self.lookups += 1
            return await self.store.lookup_recipient(key, base)

    async def go(w: World) -> None:
        now = [0.0]
        counting = Counting(w.store)
        router = Router(counting, clock=lambda: now[0])  # type: ignore[arg-type]
        for n in range(5):
            assert not (await router.route(Address.parse(f"u{n}@Remote.test"))).local_domain
        assert counting.lookups == 1
        now[0] += 6  # past the cache time: a domain added meanwhile is seen
        await w.store.add_domain("remote.test")
        assert (await router.route(Address.parse("u9@remote.test"))).local_domain
        assert counting.lookups == 2

    run(tmp_path, go)


def test_unknown_local_user(tmp_path: Path) -> None:
    async def go(w: World) -> None:
        r = await route(w, "nobody@example.test")
        assert r == Route(True, ()) and not r.known

    run(tmp_path, go)


# -- sub-addressing (RFC 5233) ---------------------------------------------------------


def test_sub_address_reaches_the_base_account(tmp_path: Path) -> None:
    async def go(w: World) -> None:
        assert (await route(w, "alice+lists@example.test")).targets == w.targets("alice")
        assert (await route(w, "alice+a+b@example.test")).targets == w.targets("alice")
        assert (await route(w, "alice+@example.test")).targets == w.targets("alice")

    run(tmp_path, go)


def test_other_delimiter_and_none(tmp_path: Path) -> None:
    async def go(w: World) -> None:
        assert (await route(w, "alice-x@example.test", "-")).targets == w.targets("alice")
        assert not (await route(w, "alice+x@example.test", "-")).known
        assert not (await route(w, "alice+x@example.test", "")).known
        assert (await route(w, "alice@example.test", "")).targets == w.targets("alice")

    run(tmp_path, go)


def test_no_base_before_the_delimiter(tmp_path: Path) -> None:
    async def go(w: World) -> None:
        router = Router(w.store)
        assert router.keys(Address.parse("+alice@example.test")) == ("+alice@example.test", None)
        assert not (await route(w, "+alice@example.test")).known

    run(tmp_path, go)


def test_quoted_local_part_is_not_sub_addressed(tmp_path: Path) -> None:
    async def go(w: World) -> None:
        address = Address.parse('"alice+x"@example.test')
        assert Router(w.store).keys(address) == ('"alice+x"@example.test', None)
        assert not (await route(w, '"alice+x"@example.test')).known

    run(tmp_path, go)


def test_exact_account_with_delimiter_wins(tmp_path: Path) -> None:
    async def go(w: World) -> None:
        tagged = await w.store.add_account("alice+work@example.test", "h")
        assert (await route(w, "alice+work@example.test")).targets == (Target(tagged.id),)
        assert (await route(w, "alice+home@example.test")).targets == w.targets("alice")

    run(tmp_path, go)


def test_sub_addressed_alias(tmp_path: Path) -> None:
    async def go(w: World) -> None:
        await w.alias("team@example.test", "bob@example.test")
        assert (await route(w, "team+x@example.test")).targets == w.targets("bob")

    run(tmp_path, go)


# -- aliases ----------------------------------------------------------------------------


def test_alias_with_several_targets(tmp_path: Path) -> None:
    async def go(w: World) -> None:
        await w.alias("team@example.test", "alice@example.test", "bob@example.test",
                      "dave@other.test")  # fmt: skip
        r = await route(w, "team@example.test")
        assert sorted(r.targets, key=lambda t: t.account_id) == sorted(
            w.targets("alice", "bob", "dave"), key=lambda t: t.account_id
        )

    run(tmp_path, go)


def test_alias_chain(tmp_path: Path) -> None:
    async def go(w: World) -> None:
        await w.alias("a@example.test", "b@example.test")
        await w.alias("b@example.test", "c@other.test")
        await w.alias("c@other.test", "carol@example.test")
        assert (await route(w, "a@example.test")).targets == w.targets("carol")

    run(tmp_path, go)


def test_alias_target_with_sub_address(tmp_path: Path) -> None:
    async def go(w: World) -> None:
        await w.alias("lists@example.test", "bob+lists@example.test")
        assert (await route(w, "lists@example.test")).targets == w.targets("bob")

    run(tmp_path, go)


def test_chain_depth_is_bounded(tmp_path: Path) -> None:
    async def go(w: World) -> tuple[Route, Route]:
        # hop1 -> hop2 -> ... -> hop{N} -> alice, with N = _MAX_DEPTH + 1.
        last = _MAX_DEPTH + 1
        for i in range(1, last):
            await w.alias(f"hop{i}@example.test", f"hop{i + 1}@example.test")
        await w.alias(f"hop{last}@example.test", "alice@example.test")
        # A chain of _MAX_DEPTH aliases resolves; one more does not.
        return await route(w, "hop2@example.test"), await route(w, "hop1@example.test")

    within, beyond = run(tmp_path, go)
    assert within.known
    assert beyond == Route(True, ())


def test_alias_loop_terminates(tmp_path: Path) -> None:
    async def go(w: World) -> None:
        await w.alias("x@example.test", "y@example.test")
        await w.alias("y@example.test", "x@example.test")
        await w.alias("self@example.test", "self@example.test")
        assert await route(w, "x@example.test") == Route(True, ())
        assert await route(w, "self@example.test") == Route(True, ())

    run(tmp_path, go)


def test_alias_loop_still_delivers_to_accounts_on_it(tmp_path: Path) -> None:
    async def go(w: World) -> None:
        await w.alias("x@example.test", "y@example.test", "alice@example.test")
        await w.alias("y@example.test", "x@example.test", "bob@example.test")
        r = await route(w, "x@example.test")
        assert set(r.targets) == set(w.targets("alice", "bob"))

    run(tmp_path, go)


def test_same_account_reached_twice_gets_one_copy(tmp_path: Path) -> None:
    async def go(w: World) -> None:
        await w.alias("list@example.test", "alice@example.test")
        await w.alias("team@example.test", "alice@example.test", "list@example.test",
                      "alice+team@example.test", "bob@example.test")  # fmt: skip
        r = await route(w, "team@example.test")
        assert len(r.targets) == 2
        assert set(r.targets) == set(w.targets("alice", "bob"))

    run(tmp_path, go)


def test_diamond_of_aliases(tmp_path: Path) -> None:
    async def go(w: World) -> None:
        await w.alias("top@example.test", "left@example.test", "right@example.test")
        await w.alias("left@example.test", "shared@example.test")
        await w.alias("right@example.test", "shared@example.test", "carol@example.test")
        await w.alias("shared@example.test", "bob@example.test")
        r = await route(w, "top@example.test")
        assert set(r.targets) == set(w.targets("bob", "carol")) and len(r.targets) == 2

    run(tmp_path, go)


def test_bad_and_remote_alias_targets_are_skipped(tmp_path: Path) -> None:
    async def go(w: World) -> None:
        await w.alias("mixed@example.test", "not an address", "someone@remote.test",
                      "bob@example.test")  # fmt: skip
        assert (await route(w, "mixed@example.test")).targets == w.targets("bob")

    run(tmp_path, go)


# -- catch-all --------------------------------------------------------------------------


def test_catch_all(tmp_path: Path) -> None:
    async def go(w: World) -> None:
        await w.alias("@example.test", "carol@example.test")
        assert (await route(w, "anything@example.test")).targets == w.targets("carol")
        assert (await route(w, "x+y@example.test")).targets == w.targets("carol")
        # Real accounts and other domains are untouched.
        assert (await route(w, "alice@example.test")).targets == w.targets("alice")
        assert not (await route(w, "nobody@other.test")).known

    run(tmp_path, go)


def test_catch_all_to_an_alias(tmp_path: Path) -> None:
    async def go(w: World) -> None:
        await w.alias("team@example.test", "alice@example.test", "bob@example.test")
        await w.alias("@other.test", "team@example.test")
        r = await route(w, "whoever@other.test")
        assert set(r.targets) == set(w.targets("alice", "bob"))

    run(tmp_path, go)


def test_catch_all_pointing_into_its_own_domain_terminates(tmp_path: Path) -> None:
    async def go(w: World) -> None:
        await w.alias("@example.test", "missing@example.test")
        assert await route(w, "whoever@example.test") == Route(True, ())

    run(tmp_path, go)


@pytest.mark.parametrize("address", ["postmaster@example.test", "Postmaster@example.test"])
def test_postmaster_is_just_an_alias(tmp_path: Path, address: str) -> None:
    async def go(w: World) -> None:
        await w.alias("postmaster@example.test", "alice@example.test")
        assert (await route(w, address)).targets == w.targets("alice")

    run(tmp_path, go)


def test_a_long_path_does_not_hide_a_short_one(tmp_path: Path) -> None:
    # "shared" is first met at the end of a long chain, where its own targets are past the
    # depth limit, and again two hops from the top: the short path must still deliver.
    async def go(w: World) -> Route:
        await w.alias("top@example.test", "hop1@example.test", "near@example.test")
        for i in range(1, _MAX_DEPTH - 1):
            await w.alias(f"hop{i}@example.test", f"hop{i + 1}@example.test")
        await w.alias(f"hop{_MAX_DEPTH - 1}@example.test", "shared@example.test")
        await w.alias("near@example.test", "shared@example.test")
        await w.alias("shared@example.test", "alice@example.test")
        return await route(w, "top@example.test")

    assert run(tmp_path, go).targets != ()
