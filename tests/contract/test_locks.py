"""Maildrop locks (RFC 1939 §8): one POP3 session per maildrop, across processes and nodes."""

from __future__ import annotations

from mailwright.store.api import Store
from tests.contract.conftest import Backend
from tests.contract.helpers import account


async def test_a_held_maildrop_cannot_be_locked_again(store: Store) -> None:
    alice = await account(store, "alice@example.test")
    lease = await store.locks.lock_maildrop(alice.id)
    assert lease is not None
    assert await store.locks.lock_maildrop(alice.id) is None
    lease.release()
    again = await store.locks.lock_maildrop(alice.id)
    assert again is not None
    again.release()


async def test_maildrops_are_locked_separately(store: Store) -> None:
    alice = await account(store, "alice@example.test")
    bob = await account(store, "bob@example.test")
    a = await store.locks.lock_maildrop(alice.id)
    b = await store.locks.lock_maildrop(bob.id)
    assert a is not None and b is not None
    a.release()
    b.release()


async def test_release_twice_is_harmless(store: Store) -> None:
    alice = await account(store, "alice@example.test")
    lease = await store.locks.lock_maildrop(alice.id)
    assert lease is not None
    lease.release()
    lease.release()
    assert await store.locks.lock_maildrop(alice.id) is not None


async def test_a_second_store_on_the_same_installation_sees_the_lock(
    store: Store, backend: Backend
) -> None:
    # Another worker process or node opens the same installation through its own store.
    alice = await account(store, "alice@example.test")
    other = await backend.open()
    lease = await store.locks.lock_maildrop(alice.id)
    assert lease is not None
    assert await other.locks.lock_maildrop(alice.id) is None
    lease.release()
    theirs = await other.locks.lock_maildrop(alice.id)
    assert theirs is not None
    assert await store.locks.lock_maildrop(alice.id) is None
    theirs.release()
