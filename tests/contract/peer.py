"""Another process on the same installation, for the contract tests that need two (the
change feed across processes, durability under SIGKILL).

    python -m tests.contract.peer BACKEND INSTALLATION COMMAND ADDRESS [ARG...]

Commands (each line of output is flushed at once; the test reads them):
  deliver ADDRESS [N]     deliver N messages to ADDRESS's INBOX: "delivered UID" each
  listen ADDRESS          subscribe, print "ready", then print the first change as JSON
  append ADDRESS SIZE...  append one message of each SIZE: "acked UID MESSAGE_ID" each,
                          then "done", then wait to be killed
  shuffle ADDRESS         move every message INBOX → Archive → INBOX …: "round N" each,
                          until killed
  claim ADDRESS UID       print "ready", then claim INBOX's \\Recent messages over and
                          over: "claimed FIRST END" for each non-empty claim, "done" once
                          UID is no longer recent for anyone
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

from mailwright.store.api import INBOX, Account, Store
from tests.contract.helpers import append, deliver, message

LISTEN_TIMEOUT = 30.0


async def open_store(backend: str, installation: str) -> Store:
    if backend == "sqlite":
        from mailwright.store.sqlite import SqliteStore

        return await asyncio.to_thread(SqliteStore, Path(installation), sweep=False)
    raise SystemExit(f"unknown backend {backend}")


def say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


async def main(backend: str, installation: str, command: str, address: str, *args: str) -> None:
    store = await open_store(backend, installation)
    try:
        acct = await store.accounts.get_account(address)
        if acct is None:
            raise SystemExit(f"no account {address}")
        await run(store, acct, command, args)
    finally:
        await store.close()


async def run(store: Store, acct: Account, command: str, args: tuple[str, ...]) -> None:
    if command == "deliver":
        for i in range(int(args[0]) if args else 1):
            (d,) = await deliver(store, message(1000 + i), [acct])
            say(f"delivered {d.uid}")
    elif command == "listen":
        changes = store.changes.subscribe(acct.id)
        say("ready")
        change = await asyncio.wait_for(anext(changes), LISTEN_TIMEOUT)
        say(json.dumps([change.account_id, change.mailbox_id, change.modseq, change.kind,
                        list(change.uids)]))  # fmt: skip
    elif command == "append":
        box = await store.mailboxes.get_mailbox(acct.id, INBOX)
        for n, size in enumerate(args):
            d = await append(store, acct, message(n, size=int(size)))
            (p,) = [p for p in await store.messages.list_placements(box.id) if p.uid == d.uid]
            say(f"acked {d.uid} {p.message_id}")
        say("done")
        await asyncio.Event().wait()
    elif command == "shuffle":
        a = (await store.mailboxes.get_mailbox(acct.id, INBOX)).id
        b = (await store.mailboxes.get_mailbox(acct.id, "Archive")).id
        n = 0
        while True:
            uids = [p.uid for p in await store.messages.list_placements(a)]
            await store.messages.move(a, uids, b)
            n += 1
            say(f"round {n}")
            a, b = b, a
    elif command == "claim":
        box = (await store.mailboxes.get_mailbox(acct.id, INBOX)).id
        last = int(args[0])
        say("ready")
        deadline = asyncio.get_running_loop().time() + LISTEN_TIMEOUT
        while asyncio.get_running_loop().time() < deadline:
            first, end = await store.mailboxes.claim_recent_range(box)
            if first < end:
                say(f"claimed {first} {end}")
            if (await store.mailboxes.get_mailbox_by_id(box)).recent_uid > last:
                break
        say("done")
    else:
        raise SystemExit(f"unknown command {command}")


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:]))
