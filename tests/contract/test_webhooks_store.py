"""Webhooks in the store (store.api.Webhooks): registrations, a new webhook's cursor at the
newest event, claims that hold across store instances, settling outcomes."""

from __future__ import annotations

import pytest

from mailwright.store.api import INBOX, ApiSend, EventQuery, MailEvent, Store, Target, Webhooks
from mailwright.store.errors import NotFound
from tests.contract.conftest import Backend
from tests.contract.helpers import RECEIVED_AT, account, message, queue_id

NOW = 1_800_000_000.0
LEASE = 60.0


def hooks(store: Store) -> Webhooks:
    # Not (yet) a property of the Store protocol: every backend object plays this part too.
    webhooks: Webhooks = store.webhooks  # type: ignore[attr-defined]
    return webhooks


async def sent(store: Store, domain: str = "example.test") -> str:
    """A message sent through the API with an arrival and a queued event; its queue id."""
    bob = await account(store, f"bob{queue_id()}@{domain}")
    qid = queue_id()
    blob = store.messages.new_blob()
    blob.write(message())
    await store.messages.deliver(
        blob,
        qid,
        RECEIVED_AT,
        [Target(bob.id, INBOX)],
        events=[MailEvent(qid, "received"), MailEvent(qid, "queued", "x@remote.test")],
        send=ApiSend(1, domain),
    )
    return qid


async def test_webhooks_are_created_listed_found_and_deleted(store: Store) -> None:
    w = hooks(store)
    a = await w.create_webhook("https://a.test/hook", "whsec_a", (), None)
    b = await w.create_webhook(
        "http://b.test/h?x=1", "whsec_b", ("delivered", "bounced"), "Example.TEST"
    )
    assert (a.url, a.secret, a.types, a.sender_domain) == (
        "https://a.test/hook",
        "whsec_a",
        (),
        None,
    )
    assert b.types == ("delivered", "bounced") and b.sender_domain == "example.test"
    assert a.created_at > 0 and b.id != a.id
    assert (a.attempts, a.next_attempt, a.lease_until, a.last_error, a.last_success) == (
        0,
        0.0,
        0.0,
        "",
        None,
    )
    assert await w.list_webhooks() == [a, b]
    assert await w.list_webhooks("example.test") == [b]
    assert await w.list_webhooks("EXAMPLE.test") == [b]
    assert await w.list_webhooks("other.test") == []
    assert await w.get_webhook(b.id) == b
    assert await w.get_webhook(999_999) is None
    await w.delete_webhook(a.id)
    assert await w.list_webhooks() == [b]
    assert await w.get_webhook(a.id) is None
    with pytest.raises(NotFound):
        await w.delete_webhook(a.id)


async def test_a_new_webhook_starts_at_the_newest_event(store: Store) -> None:
    w = hooks(store)
    assert await w.last_event_id() == 0
    first = await w.create_webhook("https://a.test/", "s", (), None)
    assert first.cursor == 0
    await sent(store)
    await store.queue.add_events([MailEvent(queue_id(), "deferred", "c@remote.test")])
    rows = await store.api.query_events(EventQuery())
    head = await w.last_event_id()
    # The newest event need not be an API send's: the cursor is past every event.
    assert rows and head > rows[-1].id
    second = await w.create_webhook("https://b.test/", "s", (), None)
    assert second.cursor == head


async def test_claim_takes_only_webhooks_with_newer_events(store: Store) -> None:
    w = hooks(store)
    await sent(store)
    hook = await w.create_webhook("https://a.test/", "s", (), None)
    # Nothing after its cursor: not claimed, so an idle dispatcher writes nothing.
    assert await w.claim_webhooks(NOW, 10, LEASE) == []
    await sent(store)
    [claimed] = await w.claim_webhooks(NOW, 10, LEASE)
    assert claimed.id == hook.id and claimed.cursor == hook.cursor
    assert claimed.lease_until == NOW + LEASE


async def test_a_lease_holds_across_store_instances_until_it_lapses(
    store: Store, backend: Backend
) -> None:
    w = hooks(store)
    hook = await w.create_webhook("https://a.test/", "s", (), None)
    await sent(store)
    other = hooks(await backend.open())  # a second process's store, same installation
    assert [h.id for h in await w.claim_webhooks(NOW, 10, LEASE)] == [hook.id]
    assert await w.claim_webhooks(NOW + 1, 10, LEASE) == []
    assert await other.claim_webhooks(NOW + LEASE - 1, 10, LEASE) == []
    # The holder died without settling: the lease lapses by itself.
    [again] = await other.claim_webhooks(NOW + LEASE, 10, LEASE)
    assert again.id == hook.id and again.lease_until == NOW + 2 * LEASE
    assert await w.claim_webhooks(NOW + LEASE + 1, 10, LEASE) == []


async def test_claim_takes_the_earliest_due_up_to_the_limit(store: Store) -> None:
    w = hooks(store)
    made = [await w.create_webhook(f"https://{n}.test/", "s", (), None) for n in "abc"]
    await sent(store)
    # "a" failed and waits; "b" and "c" are due now.
    await w.claim_webhooks(NOW, 1, LEASE)
    await w.settle_webhook(made[0].id, cursor=None, next_attempt=NOW + 30, attempts=1, error="x")
    assert [h.id for h in await w.claim_webhooks(NOW, 1, LEASE)] == [made[1].id]
    assert [h.id for h in await w.claim_webhooks(NOW, 5, LEASE)] == [made[2].id]
    assert await w.claim_webhooks(NOW + 29, 5, LEASE) == []
    assert [h.id for h in await w.claim_webhooks(NOW + 30, 5, LEASE)] == [made[0].id]


async def test_settle_records_failures_and_successes(store: Store) -> None:
    w = hooks(store)
    hook = await w.create_webhook("https://a.test/", "s", ("delivered",), None)
    await sent(store)
    head = await w.last_event_id()
    await w.claim_webhooks(NOW, 10, LEASE)
    await w.settle_webhook(
        hook.id, cursor=None, next_attempt=NOW + 5, attempts=1, error="HTTP 500 oops"
    )
    failed = await w.get_webhook(hook.id)
    assert failed is not None
    assert (failed.cursor, failed.attempts, failed.next_attempt) == (hook.cursor, 1, NOW + 5)
    assert (failed.last_error, failed.last_success, failed.lease_until) == (
        "HTTP 500 oops",
        None,
        0,
    )
    # The lease is lifted at once: due again at its next attempt, not when the lease ends.
    assert [h.id for h in await w.claim_webhooks(NOW + 5, 10, LEASE)] == [hook.id]
    await w.settle_webhook(hook.id, cursor=head, next_attempt=0, attempts=0, error="")
    done = await w.get_webhook(hook.id)
    assert done is not None
    assert (done.cursor, done.attempts, done.last_error, done.lease_until) == (head, 0, "", 0)
    assert done.last_success is not None and done.last_success > 0
    # Caught up: nothing to claim until a newer event.
    assert await w.claim_webhooks(NOW + 6, 10, LEASE) == []
    # A cursor never moves backwards, and a later failure keeps the time of the success.
    await w.settle_webhook(hook.id, cursor=hook.cursor, next_attempt=NOW + 9, attempts=1, error="e")
    later = await w.get_webhook(hook.id)
    assert later is not None and later.cursor == head
    assert later.last_success == done.last_success and later.last_error == "e"


async def test_settling_a_deleted_webhook_is_harmless(store: Store) -> None:
    w = hooks(store)
    hook = await w.create_webhook("https://a.test/", "s", (), None)
    await w.delete_webhook(hook.id)
    await w.settle_webhook(hook.id, cursor=5, next_attempt=0, attempts=0, error="")
    assert await w.list_webhooks() == []


async def test_webhooks_survive_a_reopen(store: Store, backend: Backend) -> None:
    hook = await hooks(store).create_webhook("https://a.test/", "s", ("bounced",), "example.test")
    store = await backend.reopen(store)
    assert await hooks(store).list_webhooks() == [hook]
