"""The outbound queue and the event log (store.api.Queue): queued in the same transaction
as local delivery, leases, settling, operator actions, history."""

from __future__ import annotations

from pathlib import Path

from mailwright.store.api import (
    INBOX,
    MailEvent,
    Outbound,
    OutboundRecipient,
    QueueUpdate,
    Store,
    Target,
)
from mailwright.store.errors import NotFound, QuotaExceeded
from tests.contract.conftest import Backend
from tests.contract.helpers import RECEIVED_AT, account, inbox_id, message, queue_id

BIG = 300_000


def outbound(*rcpts: str, **kwargs: object) -> Outbound:
    return Outbound(
        sender=str(kwargs.pop("sender", "alice@example.test")),
        recipients=tuple(OutboundRecipient(r) for r in rcpts),
        **kwargs,  # type: ignore[arg-type]
    )


async def submit(
    store: Store,
    data: bytes,
    targets: list[Target],
    out: Outbound | None,
    qid: str | None = None,
    events: tuple[MailEvent, ...] = (),
) -> str:
    qid = qid or queue_id()
    blob = store.messages.new_blob()
    blob.write(data)
    await store.messages.deliver(blob, qid, RECEIVED_AT, targets, outbound=out, events=events)
    return qid


async def test_local_and_remote_recipients_share_one_stored_copy(
    store: Store, backend: Backend
) -> None:
    alice = await account(store, "alice@example.test")
    data = message(1)
    blob = store.messages.new_blob()
    blob.write(data)
    out = Outbound(
        "alice@example.test",
        (
            OutboundRecipient("a@remote.test", ("SUCCESS", "FAILURE"), "rfc822;a@remote.test"),
            OutboundRecipient("b@Other.Test"),
        ),
        envid="env-1",
        ret="HDRS",
        smtputf8=True,
        eight_bit=True,
        prefix=b"DKIM-Signature: x\r\n",
    )
    result = await store.messages.deliver(
        blob, "QID1", RECEIVED_AT, [Target(alice.id)], outbound=out
    )
    assert result.queued == 2 and len(result.delivered) == 1
    assert list(backend.message_rows().values()) == [3]
    a, b = await store.queue.list_queue()
    assert (a.recipient, a.domain, a.notify, a.orcpt) == (
        "a@remote.test",
        "remote.test",
        ("SUCCESS", "FAILURE"),
        "rfc822;a@remote.test",
    )
    assert (b.recipient, b.domain, b.notify, b.orcpt) == ("b@Other.Test", "other.test", (), None)
    assert (a.envid, a.ret, a.smtputf8, a.eight_bit, a.prefix) == (
        "env-1",
        "HDRS",
        True,
        True,
        b"DKIM-Signature: x\r\n",
    )
    assert (a.queue_id, a.sender, a.size, a.received_at, a.attempts) == (
        "QID1",
        "alice@example.test",
        len(data),
        RECEIVED_AT,
        0,
    )
    assert await store.queue.message_source(a.message_id) == data


async def test_remote_only_message_is_kept_until_its_last_entry_goes(
    store: Store, backend: Backend
) -> None:
    await submit(store, message(1, size=BIG), [], outbound("a@remote.test", "b@remote.test"))
    assert list(backend.message_rows().values()) == [2]
    assert len(backend.blob_files()) == 1
    entries = await store.queue.claim(RECEIVED_AT, 10, 60)
    source = await store.queue.message_source(entries[0].message_id)
    assert isinstance(source, Path) and source.stat().st_size == BIG
    await store.queue.update([QueueUpdate(entries[0].id, "delivered")])
    assert list(backend.message_rows().values()) == [1]
    await store.queue.update([QueueUpdate(entries[1].id, "failed")])
    assert backend.message_rows() == {} and backend.blob_files() == set()
    assert await store.queue.list_queue() == []


async def test_over_quota_locals_with_remote_recipients_still_queue(store: Store) -> None:
    alice = await account(store, "alice@example.test")
    await store.accounts.set_quota(alice.address, 10)
    blob = store.messages.new_blob()
    blob.write(message(1))
    result = await store.messages.deliver(
        blob, queue_id(), RECEIVED_AT, [Target(alice.id)], outbound=outbound("x@remote.test")
    )
    assert (result.delivered, result.over_quota, result.queued) == ([], [Target(alice.id)], 1)
    blob = store.messages.new_blob()
    blob.write(message(2))
    try:
        await store.messages.deliver(blob, queue_id(), RECEIVED_AT, [Target(alice.id)])
    except QuotaExceeded:
        pass
    else:
        raise AssertionError("no QuotaExceeded without anything to queue")


async def test_claim_leases_and_a_lapsed_lease_is_due_again(store: Store) -> None:
    await submit(store, message(1), [], outbound("a@remote.test"))
    now = RECEIVED_AT + 5
    (entry,) = await store.queue.claim(now, 10, 60)
    assert await store.queue.claim(now, 10, 60) == []  # leased
    assert await store.queue.next_due() == now + 60
    again = await store.queue.claim(now + 60, 10, 60)  # the runner died: due again
    assert [e.id for e in again] == [entry.id]


async def test_deferral_sets_the_next_attempt_and_counts(store: Store) -> None:
    await submit(store, message(1), [], outbound("a@remote.test"))
    (entry,) = await store.queue.claim(RECEIVED_AT, 10, 60)
    await store.queue.update(
        [QueueUpdate(entry.id, "deferred", RECEIVED_AT + 300, "451 4.3.0 busy", True)],
        [MailEvent(entry.queue_id, "deferred", entry.recipient, {"reply": "451 4.3.0 busy"})],
    )
    assert await store.queue.claim(RECEIVED_AT + 299, 10, 60) == []
    assert await store.queue.next_due() == RECEIVED_AT + 300
    (again,) = await store.queue.claim(RECEIVED_AT + 300, 10, 60)
    assert (again.attempts, again.last_reply, again.delay_notified) == (1, "451 4.3.0 busy", True)


async def test_claim_takes_the_oldest_first_up_to_the_limit(store: Store) -> None:
    for n in range(5):
        await submit(store, message(n), [], outbound(f"r{n}@remote.test"))
    got = await store.queue.claim(RECEIVED_AT, 3, 60)
    assert [e.recipient for e in got] == ["r0@remote.test", "r1@remote.test", "r2@remote.test"]


async def test_retry_and_delete(store: Store, backend: Backend) -> None:
    q1 = await submit(store, message(1), [], outbound("a@remote.test", "b@remote.test"))
    q2 = await submit(store, message(2), [], outbound("c@remote.test"))
    entries = await store.queue.claim(RECEIVED_AT, 10, 3600)
    await store.queue.update(
        [QueueUpdate(e.id, "deferred", RECEIVED_AT + 3600, "timeout") for e in entries]
    )
    assert await store.queue.retry(q1, RECEIVED_AT + 1) == 2
    assert {e.recipient for e in await store.queue.claim(RECEIVED_AT + 1, 10, 60)} == {
        "a@remote.test",
        "b@remote.test",
    }
    assert await store.queue.retry(None, RECEIVED_AT + 2) == 3  # also lifts the leases
    assert len(await store.queue.claim(RECEIVED_AT + 2, 10, 60)) == 3
    assert await store.queue.delete(q1) == 2
    assert [e.queue_id for e in await store.queue.list_queue()] == [q2]
    assert [(e.type, e.recipient) for e in await store.queue.events(q1)] == [
        ("deleted", "a@remote.test"),
        ("deleted", "b@remote.test"),
    ]
    assert list(backend.message_rows().values()) == [1]
    assert await store.queue.delete("nonesuch") == 0


async def test_events_by_queue_id_or_message_id(store: Store) -> None:
    alice = await account(store, "alice@example.test")
    qid = await submit(
        store,
        message(1),
        [Target(alice.id)],
        outbound("a@remote.test"),
        events=(
            MailEvent("QX", "received", message_id="<m1@example.test>", time=1.5),
            MailEvent("QX", "delivered", "alice@example.test", {"mailbox": INBOX}),
        ),
        qid="QX",
    )
    await store.queue.add_events([MailEvent(qid, "queued", "a@remote.test")])
    await submit(store, message(2), [], None, qid="QY")
    for key in ("QX", "m1@example.test", "<m1@example.test>"):
        got = await store.queue.events(key)
        assert [(e.type, e.recipient) for e in got] == [
            ("received", ""),
            ("delivered", "alice@example.test"),
            ("queued", "a@remote.test"),
        ], key
    first = (await store.queue.events("QX"))[0]
    assert (first.time, first.message_id) == (1.5, "m1@example.test")
    assert (await store.queue.events("QX"))[1].detail == {"mailbox": INBOX}
    assert await store.queue.events("nothing") == []


async def test_queue_survives_a_reopen(store: Store, backend: Backend) -> None:
    qid = await submit(store, message(1, size=BIG), [], outbound("a@remote.test"))
    store = await backend.reopen(store)
    (entry,) = await store.queue.claim(RECEIVED_AT, 10, 60)
    assert entry.queue_id == qid
    source = await store.queue.message_source(entry.message_id)
    assert isinstance(source, Path) and source.stat().st_size == BIG


async def test_message_source_of_a_missing_message(store: Store) -> None:
    try:
        await store.queue.message_source(10**9)
    except NotFound:
        return
    raise AssertionError("no NotFound")


async def test_local_expunge_leaves_the_queued_copy(store: Store, backend: Backend) -> None:
    alice = await account(store, "alice@example.test")
    data = message(1)
    await submit(store, data, [Target(alice.id)], outbound("a@remote.test"))
    box = await inbox_id(store, alice, INBOX)
    await store.messages.expunge(box, [1])
    (entry,) = await store.queue.list_queue()
    assert await store.queue.message_source(entry.message_id) == data


async def test_a_restart_lifts_the_leases_of_the_dead(store: Store, backend: Backend) -> None:
    await submit(store, message(1), [], outbound("a@remote.test"))
    await store.queue.claim(RECEIVED_AT, 10, 3600)
    store = await backend.reopen(store)  # the serving process's startup: crash recovery
    assert len(await store.queue.claim(RECEIVED_AT, 10, 60)) == 1


async def test_queue_stats_count_entries_and_find_the_oldest(store: Store) -> None:
    assert await store.queue.queue_stats() == (0, None)
    for received_at, rcpts in (
        (RECEIVED_AT + 50, ("a@remote.test",)),
        (RECEIVED_AT, ("b@x.test", "c@y.test")),
    ):
        blob = store.messages.new_blob()
        blob.write(message(1))
        await store.messages.deliver(blob, queue_id(), received_at, [], outbound=outbound(*rcpts))
    assert await store.queue.queue_stats() == (3, RECEIVED_AT)
    # A claimed (leased) entry is still in the queue; a settled one is not.
    claimed = await store.queue.claim(RECEIVED_AT + 100, 10, 60)
    oldest = [e for e in claimed if e.received_at == RECEIVED_AT]
    await store.queue.update([QueueUpdate(e.id, "delivered") for e in oldest])
    assert await store.queue.queue_stats() == (1, RECEIVED_AT + 50)
