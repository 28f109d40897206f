"""The HTTP API's part of the store (store.api.Api): keys, each send recorded with its
message in one transaction, Idempotency-Keys unique per key, event queries."""

from __future__ import annotations

import hashlib

import pytest

from mailwright.store.api import (
    INBOX,
    ApiSend,
    ApiTemplate,
    EventQuery,
    MailEvent,
    ScheduledSend,
    Store,
    Suppression,
    Target,
)
from mailwright.store.errors import DuplicateRequest, NotFound
from tests.contract.conftest import Backend
from tests.contract.helpers import RECEIVED_AT, account, message, queue_id


def secret(n: int) -> bytes:
    return hashlib.sha256(f"key{n}".encode()).digest()


async def send(
    store: Store,
    send: ApiSend,
    targets: list[Target],
    *,
    qid: str | None = None,
    events: tuple[str, ...] = ("received",),
) -> str:
    qid = qid or queue_id()
    blob = store.messages.new_blob()
    blob.write(message())
    await store.messages.deliver(
        blob,
        qid,
        RECEIVED_AT,
        targets,
        events=[MailEvent(qid, t, "bob@example.test" if t != "received" else "") for t in events],
        send=send,
    )
    return qid


async def test_keys_are_found_by_hash_listed_and_revoked(store: Store) -> None:
    key = await store.api.create_key("ci", "mw_abc", secret(1), frozenset({"send"}), None)
    other = await store.api.create_key("", "mw_def", secret(2), frozenset({"read"}), "Example.TEST")
    assert other.sender_domain == "example.test"
    found = await store.api.key_by_hash(secret(1))
    assert found == key and found.scopes == {"send"} and not found.revoked
    assert await store.api.key_by_hash(secret(3)) is None
    await store.api.revoke_key(key.id)
    await store.api.revoke_key(key.id)  # twice is harmless
    revoked = await store.api.key_by_hash(secret(1))
    assert revoked is not None and revoked.revoked
    assert [k.id for k in await store.api.list_keys()] == [key.id, other.id]
    with pytest.raises(NotFound):
        await store.api.revoke_key(999_999)


async def test_a_send_is_recorded_with_its_message(store: Store, backend: Backend) -> None:
    bob = await account(store, "bob@example.test")
    record = ApiSend(1, "example.test", "idem-1", "f1", ("a", "b", "a"), {"order": "7"})
    qid = await send(store, record, [Target(bob.id, INBOX)])
    got = await store.api.get_send(qid)
    assert got is not None
    assert (got.queue_id, got.key_id, got.idempotency_key, got.fingerprint) == (
        qid,
        1,
        "idem-1",
        "f1",
    )
    assert got.tags == ("a", "b") and got.metadata == {"order": "7"} and got.created_at > 0
    assert await store.api.find_send(1, "idem-1") == got
    assert await store.api.find_send(2, "idem-1") is None
    assert await store.api.get_send("nope") is None


async def test_an_idempotency_key_names_one_message_per_key(store: Store, backend: Backend) -> None:
    bob = await account(store, "bob@example.test")
    await send(store, ApiSend(1, "example.test", "same"), [Target(bob.id, INBOX)])
    rows = backend.message_rows()
    with pytest.raises(DuplicateRequest):
        await send(store, ApiSend(1, "example.test", "same"), [Target(bob.id, INBOX)])
    # Nothing of the refused one is stored: no message, no placement.
    assert backend.message_rows() == rows
    box = await store.mailboxes.get_mailbox(bob.id, INBOX)
    assert box.messages == 1
    # Another key, or no Idempotency-Key at all, is another message.
    await send(store, ApiSend(2, "example.test", "same"), [Target(bob.id, INBOX)])
    await send(store, ApiSend(1, "example.test"), [Target(bob.id, INBOX)])
    await send(store, ApiSend(1, "example.test"), [Target(bob.id, INBOX)])
    assert (await store.mailboxes.get_mailbox(bob.id, INBOX)).messages == 4


async def test_event_queries_filter_and_page(store: Store) -> None:
    bob = await account(store, "bob@example.test")
    a = await send(store, ApiSend(1, "example.test", tags=("t1",)), [Target(bob.id, INBOX)])
    b = await send(
        store,
        ApiSend(1, "other.test", tags=("t2",)),
        [Target(bob.id, INBOX)],
        events=("received", "queued"),
    )
    # Events of mail that did not come through the API are not listed.
    await store.queue.add_events([MailEvent("smtp-one", "received")])
    every = await store.api.query_events(EventQuery())
    assert [(e.queue_id, e.type) for e in every] == [
        (a, "received"),
        (b, "received"),
        (b, "queued"),
    ]
    assert [e.queue_id for e in await store.api.query_events(EventQuery(tag="t2"))] == [b, b]
    assert [e.type for e in await store.api.query_events(EventQuery(types=("queued",)))] == [
        "queued"
    ]
    assert [e.queue_id for e in await store.api.query_events(EventQuery(queue_id=a))] == [a]
    assert len(await store.api.query_events(EventQuery(recipient="bob@example.test"))) == 1
    assert [
        e.queue_id for e in await store.api.query_events(EventQuery(sender_domain="Other.test"))
    ] == [b, b]
    first = await store.api.query_events(EventQuery(limit=2))
    rest = await store.api.query_events(EventQuery(after=first[-1].id, limit=2))
    assert [e.id for e in first + rest] == [e.id for e in every]
    t = every[0].time
    assert len(await store.api.query_events(EventQuery(since=t, until=t + 3600))) == 3
    assert await store.api.query_events(EventQuery(until=t)) == []


async def test_templates_are_saved_replaced_listed_and_deleted(store: Store) -> None:
    first = await store.api.save_template(
        ApiTemplate("welcome", "Welcome", "Hi {{ name }}", "Text", None, None, 0, 0)
    )
    assert first.created_at > 0 and first.updated_at == first.created_at
    other = await store.api.save_template(
        ApiTemplate("other", "", "S", None, "<p>h</p>", "other.test", 0, 0)
    )
    replaced = await store.api.save_template(
        ApiTemplate(
            "welcome",
            "Welcome 2",
            "Hello {{ name }}",
            None,
            "<b>x</b>",
            None,
            0,
            first.updated_at + 5,
        )
    )
    assert replaced.created_at == first.created_at and replaced.updated_at == first.updated_at + 5
    assert (replaced.name, replaced.subject, replaced.text, replaced.html) == (
        "Welcome 2",
        "Hello {{ name }}",
        None,
        "<b>x</b>",
    )
    assert await store.api.get_template("welcome") == replaced
    assert await store.api.get_template("nope") is None
    assert [t.id for t in await store.api.list_templates()] == ["other", "welcome"]
    assert await store.api.list_templates("Other.test") == [other]
    await store.api.delete_template("other")
    with pytest.raises(NotFound):
        await store.api.delete_template("other")
    assert [t.id for t in await store.api.list_templates()] == ["welcome"]


async def test_the_suppression_list(store: Store) -> None:
    await store.api.suppress(
        [
            Suppression("Ann@Example.org", "manual", "asked by phone"),
            Suppression("b@x.test", "unsubscribe"),
        ]
    )
    got = await store.api.suppressed(["ann@example.org", "ANN@example.org", "c@x.test"])
    assert list(got) == ["ann@example.org"]
    assert (got["ann@example.org"].reason, got["ann@example.org"].detail) == (
        "manual",
        "asked by phone",
    )
    assert got["ann@example.org"].created_at > 0
    assert await store.api.suppressed([]) == {}
    first = await store.api.list_suppressions(limit=1)
    rest = await store.api.list_suppressions(after=first[-1].address)
    assert [s.address for s in first + rest] == ["ann@example.org", "b@x.test"]
    await store.api.unsuppress("ANN@example.org")
    with pytest.raises(NotFound):
        await store.api.unsuppress("ann@example.org")
    assert list(await store.api.suppressed(["ann@example.org", "b@x.test"])) == ["b@x.test"]


async def test_a_hard_bounce_of_an_api_send_suppresses_its_recipient(store: Store) -> None:
    bob = await account(store, "bob@example.test")
    api_send = await send(store, ApiSend(1, "example.test"), [Target(bob.id, INBOX)])
    await store.queue.add_events(
        [
            MailEvent(api_send, "bounced", "Gone@Remote.test", {"reply": "550 5.1.1 no such user"}),
            MailEvent(api_send, "bounced", "bob@example.test", {"reply": "mailbox full"}),
            MailEvent(api_send, "deferred", "slow@remote.test", {"reply": "451 later"}),
            # Mail that did not come through the API does not touch the list.
            MailEvent("smtp-one", "bounced", "other@remote.test", {"reply": "550 no"}),
        ]
    )
    got = await store.api.suppressed(
        ["gone@remote.test", "bob@example.test", "slow@remote.test", "other@remote.test"]
    )
    assert list(got) == ["gone@remote.test"]
    assert (got["gone@remote.test"].reason, got["gone@remote.test"].queue_id) == (
        "bounce",
        api_send,
    )
    assert got["gone@remote.test"].detail == "550 5.1.1 no such user"


async def test_a_send_without_a_message_is_recorded(store: Store) -> None:
    await store.api.record_send(
        "q-dropped",
        ApiSend(1, "example.test", "idem"),
        [MailEvent("q-dropped", "dropped", "a@x.test")],
    )
    found = await store.api.find_send(1, "idem")
    assert found is not None and found.queue_id == "q-dropped"
    assert [e.type for e in await store.queue.events("q-dropped")] == ["dropped"]
    with pytest.raises(DuplicateRequest):
        await store.api.record_send("q-other", ApiSend(1, "example.test", "idem"), [])


async def test_secrets_are_made_once(store: Store, backend: Backend) -> None:
    first = await store.api.secret("links")
    assert len(first) == 32 and await store.api.secret("links") == first
    assert await store.api.secret("other") != first
    store = await backend.reopen(store)
    assert await store.api.secret("links") == first


async def test_key_limits_and_usage(store: Store) -> None:
    key = await store.api.create_key(
        "", "mw_lim", secret(9), frozenset({"send"}), None, daily_quota=100, rate_limit=5
    )
    assert (key.daily_quota, key.rate_limit) == (100, 5)
    changed = await store.api.set_key_limits(key.id, None, 7)
    assert (changed.daily_quota, changed.rate_limit) == (None, 7)
    assert await store.api.key_by_hash(secret(9)) == changed
    with pytest.raises(NotFound):
        await store.api.set_key_limits(999_999, 1, 1)
    bob = await account(store, "bob@example.test")
    await send(
        store,
        ApiSend(key.id, "example.test", recipients=3, created_at=1000.0),
        [Target(bob.id, INBOX)],
    )
    await send(
        store,
        ApiSend(key.id, "example.test", recipients=2, created_at=2000.0),
        [Target(bob.id, INBOX)],
    )
    await send(store, ApiSend(key.id + 1, "example.test", recipients=9), [Target(bob.id, INBOX)])
    assert await store.api.usage(key.id, 0) == (2, 5)
    assert await store.api.usage(key.id, 1500.0) == (1, 2)
    assert await store.api.usage(key.id, 3000.0) == (0, 0)


async def test_held_sends_are_claimed_settled_and_cancelled(store: Store) -> None:
    req = '{"from": "a@example.test", "to": ["b@example.test"], "text": "x"}'
    assert await store.api.next_scheduled() is None
    await store.api.schedule_send(ScheduledSend("q1", 1, "Example.test", 100.0, req, "idem-1", "f"))
    await store.api.schedule_send(ScheduledSend("q2", 1, "example.test", 200.0, req))
    with pytest.raises(DuplicateRequest):
        await store.api.schedule_send(ScheduledSend("q3", 1, "example.test", 300.0, req, "idem-1"))
    assert await store.api.next_scheduled() == 100.0
    held = await store.api.get_scheduled("q1")
    assert held is not None and held.sender_domain == "example.test" and held.created_at > 0
    assert await store.api.find_scheduled(1, "idem-1") == held
    assert await store.api.find_scheduled(2, "idem-1") is None
    # Only what is due, each claimed once while its lease holds.
    assert [e.queue_id for e in await store.api.claim_scheduled(150.0, 10, 1000.0)] == ["q1"]
    assert await store.api.claim_scheduled(150.0, 10, 60.0) == []
    assert [e.queue_id for e in await store.api.claim_scheduled(250.0, 10, 60.0)] == ["q2"]
    # A claimed one cannot be cancelled; a settled retry can be claimed again later.
    await store.api.settle_scheduled("q2", retry_at=400.0, error="storage trouble")
    again = await store.api.get_scheduled("q2")
    assert again is not None and (again.due, again.attempts, again.last_error) == (
        400.0,
        1,
        "storage trouble",
    )
    assert [e.queue_id for e in await store.api.claim_scheduled(400.0, 10, 60.0)] == ["q2"]
    await store.api.settle_scheduled("q2")
    assert await store.api.get_scheduled("q2") is None
    await store.api.schedule_send(ScheduledSend("q4", 1, "example.test", 10**10, req))
    assert await store.api.cancel_scheduled("q4")
    assert not await store.api.cancel_scheduled("q4")
    key = await store.api.create_key("", "mw_g", secret(5), frozenset({"send"}), None)
    assert await store.api.get_key(key.id) == key
    assert await store.api.get_key(999_999) is None
