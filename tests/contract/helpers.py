"""Small builders shared by the contract tests (backend-neutral: store.api only)."""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from mailwright.store.api import INBOX, Account, Delivered, Store, Target

if TYPE_CHECKING:
    from tests.contract.conftest import Backend

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
    targets: Sequence[Target | Account],
    *,
    qid: str | None = None,
    chunk: int = 8192,
) -> list[Delivered]:
    blob = store.messages.new_blob()
    for i in range(0, len(data), chunk):
        blob.write(data[i : i + chunk])
    resolved = [t if isinstance(t, Target) else Target(t.id) for t in targets]
    result = await store.messages.deliver(blob, qid or queue_id(), RECEIVED_AT, resolved)
    return result.delivered


async def inbox_id(store: Store, acct: Account, name: str = INBOX) -> int:
    return (await store.mailboxes.get_mailbox(acct.id, name)).id


async def append(
    store: Store,
    acct: Account,
    data: bytes,
    mailbox: str = INBOX,
    flags: frozenset[str] = frozenset(),
    internal_date: int = RECEIVED_AT,
) -> Delivered:
    box = await store.mailboxes.get_mailbox(acct.id, mailbox)
    blob = store.messages.new_blob()
    for i in range(0, len(data), 8192):
        blob.write(data[i : i + 8192])
    return await store.messages.append(acct.id, box.id, blob, flags, internal_date)


async def used(store: Store, acct: Account) -> int:
    got = await store.accounts.get_account(acct.address)
    assert got is not None
    return got.used_bytes


async def check_counters(store: Store, acct: Account) -> None:
    """Every counter the store keeps equals a recount of the placements: per mailbox the
    messages, size, unseen, deleted and recent counts, and the account's used bytes."""
    total = 0
    for box in await store.mailboxes.list_mailboxes(acct.id):
        ps = await store.messages.list_placements(box.id)
        assert box.messages == len(ps), box
        assert box.size == sum(p.size for p in ps), box
        assert box.unseen == sum(1 for p in ps if "\\Seen" not in p.flags), box
        assert box.deleted == sum(1 for p in ps if "\\Deleted" in p.flags), box
        assert box.recent == sum(1 for p in ps if p.uid >= box.recent_uid), box
        assert all(p.uid < box.uidnext and p.modseq <= box.highestmodseq for p in ps), box
        total += box.size
    assert await used(store, acct) == total


ROOT = Path(__file__).resolve().parents[2]
PEER_WAIT = 30.0  # a bound for a hung peer, never a pacing sleep


class Peer:
    """A ``tests.contract.peer`` process on the test's installation."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc

    @classmethod
    async def start(cls, backend: Backend, command: str, address: str, *args: str) -> Peer:
        path = os.environ.get("PYTHONPATH")
        env = {**os.environ, "PYTHONPATH": str(ROOT) + (os.pathsep + path if path else "")}
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tests.contract.peer",
            *backend.peer_args(),
            command,
            address,
            *args,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            cwd=ROOT,
            env=env,
        )
        return cls(proc)

    async def line(self) -> str:
        assert self.proc.stdout is not None
        raw = await asyncio.wait_for(self.proc.stdout.readline(), PEER_WAIT)
        if not raw:
            err = b""
            if self.proc.stderr is not None:
                err = await asyncio.wait_for(self.proc.stderr.read(), PEER_WAIT)
            raise AssertionError(f"peer ended: {err.decode(errors='replace')}")
        return raw.decode().rstrip("\n")

    async def expect(self, prefix: str) -> str:
        line = await self.line()
        assert line.startswith(prefix), line
        return line

    async def kill(self) -> None:
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGKILL)
        await asyncio.wait_for(self.proc.wait(), PEER_WAIT)

    async def finish(self) -> None:
        code = await asyncio.wait_for(self.proc.wait(), PEER_WAIT)
        assert code == 0, code
