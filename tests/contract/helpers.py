"""Small builders shared by the contract tests (backend-neutral: store.api only)."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

from mailwright.store.api import INBOX, Account, Delivered, Store, Target

_ids = itertools.count(1)
RECEIVED_AT = 1_700_000_000
HASH = "$argon2id$v=19$m=65536,t=3,p=4$c2FsdA$aGFzaA"  # shape only; never verified here


def queue_id() -> str:
    return f"Q{next(_ids):013d}"


def message(n: int = 0, size: int = 0) -> bytes:
    """A message, exactly ``size`` bytes when given; every line differs, so a misplaced
    or repeated chunk shows."""
    head = f"From: a@remote.test\r\nSubject: message {n}\r\n\r\n".encode()
    if size <= len(head):
        return head + b"hi\r\n"
    lines = b"".join(b"%07d\r\n" % i for i in range(size // 9 + 1))
    return head + lines[: size - len(head)]


async def account(store: Store, address: str) -> Account:
    domain = address.rsplit("@", 1)[1]
    if domain not in {d.name for d in await store.accounts.list_domains()}:
        await store.accounts.add_domain(domain)
    return await store.accounts.add_account(address, HASH)


async def deliver(
    store: Store,
    data: bytes,
    targets: Sequence[Target] | Sequence[Account],
    *,
    qid: str | None = None,
    chunk: int = 8192,
) -> list[Delivered]:
    blob = store.messages.new_blob()
    for i in range(0, len(data), chunk):
        blob.write(data[i : i + chunk])
    resolved = [t if isinstance(t, Target) else Target(t.id) for t in targets]
    return await store.messages.deliver(blob, qid or queue_id(), RECEIVED_AT, resolved)


async def inbox_id(store: Store, acct: Account, name: str = INBOX) -> int:
    return (await store.mailboxes.get_mailbox(acct.id, name)).id
