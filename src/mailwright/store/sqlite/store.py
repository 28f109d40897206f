"""The embedded SQLite store (the default): one database file plus a blob directory."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import time
from collections.abc import Sequence
from pathlib import Path

from mailwright.store.api import (
    DEFAULT_MAILBOXES,
    Account,
    Alias,
    BlobWriter,
    Change,
    Delivered,
    Domain,
    Lease,
    MailboxInfo,
    Placement,
    RecipientLookup,
    Target,
)
from mailwright.store.errors import Conflict, NotFound, QuotaExceeded, StoreError
from mailwright.store.feed import LocalChangeFeed
from mailwright.store.sqlite.blob import INLINE_MAX, SqliteBlobWriter
from mailwright.store.sqlite.db import Readers, Writer
from mailwright.store.sqlite.lease import FileLease

DB_NAME = "mailwright.db"
BLOB_DIR = "blobs"
LOCK_DIR = "locks"


def _now() -> int:
    return int(time.time())


def _uidvalidity(c: sqlite3.Connection) -> int:
    # RFC 3501 §2.3.1.1: never the same value twice for a name (migration 0002); starts
    # from the clock so it also differs from anything a rebuilt database handed out.
    (value,) = c.execute(
        "UPDATE counters SET value=max(value + 1, ?) WHERE name='uidvalidity' RETURNING value",
        (_now(),),
    ).fetchone()
    return int(value)


def _domain_of(address: str) -> str:
    return address.rsplit("@", 1)[1]


def _account(row: tuple[int, str, str, int | None, int]) -> Account:
    return Account(row[0], row[1], row[2], row[3], row[4])


_ACCOUNT_COLS = "id, address, password_hash, quota_bytes, used_bytes"
_MAILBOX_COLS = (
    "id, name, uidvalidity, uidnext, highestmodseq, special_use, message_count, total_size"
)


class SqliteStore:
    """Implements ``store.api.Store`` (accounts, mailboxes, messages, changes) on SQLite."""

    def __init__(self, data_dir: Path, *, inline_max: int = INLINE_MAX, sweep: bool = True) -> None:
        """Open (creating and migrating) the store. ``sweep`` cleans up after a crash; only
        the process that serves may do it, since it deletes files no committed row uses
        (a CLI command opening the store beside a running server passes ``sweep=False``)."""
        self.data_dir = data_dir
        self._blob_root = data_dir / BLOB_DIR
        self._inline_max = inline_max
        data_dir.mkdir(parents=True, exist_ok=True)
        self._blob_root.mkdir(exist_ok=True)
        self._writer = Writer(data_dir / DB_NAME)
        self._readers = Readers(data_dir / DB_NAME)
        self._feed = LocalChangeFeed()
        self.accounts = self
        self.mailboxes = self
        self.messages = self
        self.changes = self._feed
        self.locks = self
        self._lock_dir = data_dir / LOCK_DIR
        self._lock_dir.mkdir(exist_ok=True)
        if sweep:
            self._sweep()

    @property
    def commits(self) -> int:
        return self._writer.commits

    async def close(self) -> None:
        await asyncio.to_thread(self._close)

    def _close(self) -> None:
        self._readers.close()
        self._writer.close()

    def _sweep(self) -> None:
        """Remove what a crash can leave: spill files never finished, blobs never committed."""
        tmp = self._blob_root / "tmp"
        if tmp.is_dir():
            for f in tmp.iterdir():
                f.unlink(missing_ok=True)
        conn = sqlite3.connect(self.data_dir / DB_NAME)
        try:
            referenced = {
                p
                for (p,) in conn.execute(
                    "SELECT blob_path FROM messages WHERE blob_path IS NOT NULL"
                )
            }
        finally:
            conn.close()
        for sub in self._blob_root.iterdir():
            if sub.name == "tmp" or not sub.is_dir():
                continue
            for f in sub.iterdir():
                if f"{sub.name}/{f.name}" not in referenced:
                    f.unlink(missing_ok=True)

    # -- domains ---------------------------------------------------------------

    async def add_domain(self, name: str) -> None:
        def job(c: sqlite3.Connection) -> None:
            if c.execute("SELECT 1 FROM domains WHERE name=?", (name,)).fetchone():
                raise Conflict(f"domain {name} already exists")
            c.execute("INSERT INTO domains(name, created_at) VALUES (?, ?)", (name, _now()))

        await self._writer.run(job)

    async def remove_domain(self, name: str) -> None:
        def job(c: sqlite3.Connection) -> None:
            row = c.execute("SELECT id FROM domains WHERE name=?", (name,)).fetchone()
            if row is None:
                raise NotFound(f"no domain {name}")
            (users,) = c.execute("SELECT count(*) FROM accounts WHERE domain_id=?", row).fetchone()
            if users:
                raise Conflict(f"domain {name} still has {users} user(s); remove them first")
            c.execute("DELETE FROM aliases WHERE domain_id=?", row)
            c.execute("DELETE FROM domains WHERE id=?", row)

        await self._writer.run(job)

    async def list_domains(self) -> list[Domain]:
        def job(c: sqlite3.Connection) -> list[Domain]:
            return [Domain(n) for (n,) in c.execute("SELECT name FROM domains ORDER BY name")]

        return await self._readers.run(job)

    # -- accounts --------------------------------------------------------------

    async def add_account(self, address: str, password_hash: str) -> Account:
        def job(c: sqlite3.Connection) -> Account:
            domain = c.execute(
                "SELECT id FROM domains WHERE name=?", (_domain_of(address),)
            ).fetchone()
            if domain is None:
                raise NotFound(f"domain {_domain_of(address)} is not a local domain")
            if c.execute("SELECT 1 FROM accounts WHERE address=?", (address,)).fetchone():
                raise Conflict(f"user {address} already exists")
            if c.execute("SELECT 1 FROM aliases WHERE source=?", (address,)).fetchone():
                raise Conflict(f"{address} is already an alias")
            cur = c.execute(
                "INSERT INTO accounts(address, domain_id, password_hash, created_at)"
                " VALUES (?, ?, ?, ?)",
                (address, domain[0], password_hash, _now()),
            )
            account_id = cur.lastrowid or 0
            for name, special in DEFAULT_MAILBOXES:
                c.execute(
                    "INSERT INTO mailboxes(account_id, name, uidvalidity, special_use)"
                    " VALUES (?, ?, ?, ?)",
                    (account_id, name, _uidvalidity(c), special),
                )
            return Account(account_id, address, password_hash, None, 0)

        return await self._writer.run(job)

    async def set_password(self, address: str, password_hash: str) -> None:
        def job(c: sqlite3.Connection) -> None:
            cur = c.execute(
                "UPDATE accounts SET password_hash=? WHERE address=?", (password_hash, address)
            )
            if cur.rowcount == 0:
                raise NotFound(f"no user {address}")

        await self._writer.run(job)

    async def remove_account(self, address: str) -> None:
        def job(c: sqlite3.Connection) -> list[str]:
            row = c.execute("SELECT id FROM accounts WHERE address=?", (address,)).fetchone()
            if row is None:
                raise NotFound(f"no user {address}")
            boxes = [b for (b,) in c.execute("SELECT id FROM mailboxes WHERE account_id=?", row)]
            orphaned: list[str] = []
            for box in boxes:
                orphaned += _drop_placements(c, box, None)
                c.execute("DELETE FROM expunged WHERE mailbox_id=?", (box,))
                c.execute("DELETE FROM mailboxes WHERE id=?", (box,))
            c.execute("DELETE FROM accounts WHERE id=?", row)
            return orphaned

        for path in await self._writer.run(job):
            (self._blob_root / path).unlink(missing_ok=True)

    async def get_account(self, address: str) -> Account | None:
        def job(c: sqlite3.Connection) -> Account | None:
            row = c.execute(
                f"SELECT {_ACCOUNT_COLS} FROM accounts WHERE address=?", (address,)
            ).fetchone()
            return _account(row) if row else None

        return await self._readers.run(job)

    async def list_accounts(self, domain: str | None = None) -> list[Account]:
        def job(c: sqlite3.Connection) -> list[Account]:
            if domain is None:
                rows = c.execute(f"SELECT {_ACCOUNT_COLS} FROM accounts ORDER BY address")
            else:
                rows = c.execute(
                    f"SELECT {_ACCOUNT_COLS} FROM accounts WHERE address LIKE ? ESCAPE '\\'"
                    " ORDER BY address",
                    ("%@" + domain.replace("%", "\\%").replace("_", "\\_"),),
                )
            return [_account(r) for r in rows]

        return await self._readers.run(job)

    # -- aliases ---------------------------------------------------------------

    async def add_alias(self, source: str, targets: Sequence[str]) -> None:
        def job(c: sqlite3.Connection) -> None:
            domain = c.execute(
                "SELECT id FROM domains WHERE name=?", (_domain_of(source),)
            ).fetchone()
            if domain is None:
                raise NotFound(f"domain {_domain_of(source)} is not a local domain")
            if c.execute("SELECT 1 FROM accounts WHERE address=?", (source,)).fetchone():
                raise Conflict(f"{source} is a user; an alias cannot have the same address")
            for target in targets:
                if c.execute(
                    "SELECT 1 FROM aliases WHERE source=? AND target=?", (source, target)
                ).fetchone():
                    raise Conflict(f"alias {source} -> {target} already exists")
                c.execute(
                    "INSERT INTO aliases(source, target, domain_id) VALUES (?, ?, ?)",
                    (source, target, domain[0]),
                )

        await self._writer.run(job)

    async def remove_alias(self, source: str, target: str | None = None) -> None:
        def job(c: sqlite3.Connection) -> None:
            if target is None:
                cur = c.execute("DELETE FROM aliases WHERE source=?", (source,))
            else:
                cur = c.execute("DELETE FROM aliases WHERE source=? AND target=?", (source, target))
            if cur.rowcount == 0:
                raise NotFound(f"no alias {source}" + (f" -> {target}" if target else ""))

        await self._writer.run(job)

    async def list_aliases(self, domain: str | None = None) -> list[Alias]:
        def job(c: sqlite3.Connection) -> list[Alias]:
            rows = c.execute("SELECT source, target FROM aliases ORDER BY source, target")
            out: dict[str, list[str]] = {}
            for source, target in rows:
                if domain is None or _domain_of(source) == domain:
                    out.setdefault(source, []).append(target)
            return [Alias(s, tuple(t)) for s, t in out.items()]

        return await self._readers.run(job)

    async def lookup_recipient(self, key: str, base_key: str | None) -> RecipientLookup:
        def job(c: sqlite3.Connection) -> RecipientLookup:
            domain = _domain_of(key)
            if not c.execute("SELECT 1 FROM domains WHERE name=?", (domain,)).fetchone():
                return RecipientLookup(local_domain=False)
            for candidate in (key, base_key):
                if candidate is None:
                    continue
                row = c.execute(
                    f"SELECT {_ACCOUNT_COLS} FROM accounts WHERE address=?", (candidate,)
                ).fetchone()
                if row:
                    return RecipientLookup(True, account=_account(row))
                targets = [
                    t
                    for (t,) in c.execute("SELECT target FROM aliases WHERE source=?", (candidate,))
                ]
                if targets:
                    return RecipientLookup(True, alias_targets=tuple(targets))
            catch_all = [
                t
                for (t,) in c.execute("SELECT target FROM aliases WHERE source=?", ("@" + domain,))
            ]
            return RecipientLookup(True, alias_targets=tuple(catch_all))

        return await self._readers.run(job)

    # -- mailboxes -------------------------------------------------------------

    async def list_mailboxes(self, account_id: int) -> list[MailboxInfo]:
        def job(c: sqlite3.Connection) -> list[MailboxInfo]:
            rows = c.execute(
                f"SELECT {_MAILBOX_COLS} FROM mailboxes WHERE account_id=? ORDER BY name != 'INBOX', name",
                (account_id,),
            )
            return [MailboxInfo(*r) for r in rows]

        return await self._readers.run(job)

    async def get_mailbox(self, account_id: int, name: str) -> MailboxInfo:
        def job(c: sqlite3.Connection) -> MailboxInfo:
            row = c.execute(
                f"SELECT {_MAILBOX_COLS} FROM mailboxes WHERE account_id=? AND name=?",
                (account_id, name),
            ).fetchone()
            if row is None:
                raise NotFound(f"no mailbox {name}")
            return MailboxInfo(*row)

        return await self._readers.run(job)

    async def create_mailbox(
        self, account_id: int, name: str, special_use: str | None = None
    ) -> MailboxInfo:
        def job(c: sqlite3.Connection) -> MailboxInfo:
            if c.execute(
                "SELECT 1 FROM mailboxes WHERE account_id=? AND name=?", (account_id, name)
            ).fetchone():
                raise Conflict(f"mailbox {name} already exists")
            validity = _uidvalidity(c)
            cur = c.execute(
                "INSERT INTO mailboxes(account_id, name, uidvalidity, special_use) VALUES (?,?,?,?)",
                (account_id, name, validity, special_use),
            )
            return MailboxInfo(cur.lastrowid or 0, name, validity, 1, 1, special_use, 0, 0)

        return await self._writer.run(job)

    # -- messages --------------------------------------------------------------

    def new_blob(self) -> SqliteBlobWriter:
        return SqliteBlobWriter(self._blob_root, self._inline_max)

    async def deliver(
        self, blob: BlobWriter, queue_id: str, received_at: int, targets: Sequence[Target]
    ) -> list[Delivered]:
        if not isinstance(blob, SqliteBlobWriter):
            raise StoreError("blob from another store")
        if not targets:
            blob.abort()
            return []
        inline = blob.inline
        if inline is None:
            # Phase one: the body file is durable before any row points at it.
            await asyncio.to_thread(blob.finish, queue_id)
        size = blob.size
        blob_path = blob.final_path

        def job(c: sqlite3.Connection) -> list[Delivered]:
            cur = c.execute(
                "INSERT INTO messages(queue_id, size, received_at, body, blob_path, refcount)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (queue_id, size, received_at, inline, blob_path, len(targets)),
            )
            message_id = cur.lastrowid
            out = []
            for t in targets:
                quota = c.execute(
                    "UPDATE accounts SET used_bytes=used_bytes+? WHERE id=?"
                    " RETURNING quota_bytes, used_bytes",
                    (size, t.account_id),
                ).fetchone()
                if quota is None:
                    raise NotFound(f"account {t.account_id} is gone")
                if quota[0] is not None and quota[1] > quota[0]:
                    raise QuotaExceeded(f"account {t.account_id} over quota")
                row = c.execute(
                    "UPDATE mailboxes SET uidnext=uidnext+1, highestmodseq=highestmodseq+1,"
                    " message_count=message_count+1, total_size=total_size+?"
                    " WHERE account_id=? AND name=? RETURNING id, uidnext-1, highestmodseq",
                    (size, t.account_id, t.mailbox),
                ).fetchone()
                if row is None:
                    raise NotFound(f"account {t.account_id} has no mailbox {t.mailbox}")
                box, uid, modseq = row
                c.execute(
                    "INSERT INTO placements(mailbox_id, uid, message_id, modseq, internal_date)"
                    " VALUES (?, ?, ?, ?, ?)",
                    (box, uid, message_id, modseq, received_at),
                )
                out.append((Delivered(t.account_id, t.mailbox, uid, modseq), box))
            return out  # type: ignore[return-value]

        try:
            result: list[tuple[Delivered, int]] = await self._writer.run(job)  # type: ignore[arg-type]
        except Exception:
            # The job was rolled back: its file is ours to remove. Not on cancellation
            # (BaseException): the queued job may still commit a row that needs the file;
            # if it does not, the startup sweep removes the orphan.
            if blob_path is not None:
                (self._blob_root / blob_path).unlink(missing_ok=True)
            raise
        for d, box in result:
            self._feed.publish(Change(d.account_id, box, d.modseq, "append", (d.uid,)))
        return [d for d, _ in result]

    async def list_placements(self, mailbox_id: int) -> list[Placement]:
        def job(c: sqlite3.Connection) -> list[Placement]:
            rows = c.execute(
                "SELECT p.uid, p.message_id, p.flags, p.modseq, p.internal_date, m.size"
                " FROM placements p JOIN messages m ON m.id = p.message_id"
                " WHERE p.mailbox_id=? ORDER BY p.uid",
                (mailbox_id,),
            )
            return [
                Placement(uid, mid, frozenset(flags.split()), modseq, date, size)
                for uid, mid, flags, modseq, date, size in rows
            ]

        return await self._readers.run(job)

    async def read_message(self, message_id: int) -> bytes:
        def job(c: sqlite3.Connection) -> tuple[bytes | None, str | None]:
            row = c.execute(
                "SELECT body, blob_path FROM messages WHERE id=?", (message_id,)
            ).fetchone()
            if row is None:
                raise NotFound(f"no message {message_id}")
            return row[0], row[1]

        body, path = await self._readers.run(job)
        if body is not None:
            return bytes(body)
        try:
            return await asyncio.to_thread((self._blob_root / str(path)).read_bytes)
        except FileNotFoundError:
            # Expunged (row and file) between our read of the row and of the file.
            raise NotFound(f"no message {message_id}") from None

    async def store_flags(
        self, mailbox_id: int, uids: Sequence[int], flags: frozenset[str], mode: str
    ) -> int:
        """Set (``mode`` "="), add ("+") or remove ("-") flags; returns the new MODSEQ."""

        def job(c: sqlite3.Connection) -> tuple[int, int, list[int]]:
            account_id, modseq = _bump(c, mailbox_id)
            changed = []
            for uid in uids:
                row = c.execute(
                    "SELECT flags FROM placements WHERE mailbox_id=? AND uid=?", (mailbox_id, uid)
                ).fetchone()
                if row is None:
                    continue
                current = frozenset(row[0].split())
                new = flags if mode == "=" else current | flags if mode == "+" else current - flags
                if new != current:
                    c.execute(
                        "UPDATE placements SET flags=?, modseq=? WHERE mailbox_id=? AND uid=?",
                        (" ".join(sorted(new)), modseq, mailbox_id, uid),
                    )
                    changed.append(uid)
            return account_id, modseq, changed

        account_id, modseq, changed = await self._writer.run(job)
        if changed:
            self._feed.publish(Change(account_id, mailbox_id, modseq, "flags", tuple(changed)))
        return modseq

    async def expunge(self, mailbox_id: int, uids: Sequence[int]) -> int:
        def job(c: sqlite3.Connection) -> tuple[int, int, list[str], list[int]]:
            account_id, modseq = _bump(c, mailbox_id)
            present = [
                uid
                for uid in dict.fromkeys(uids)
                if c.execute(
                    "SELECT 1 FROM placements WHERE mailbox_id=? AND uid=?", (mailbox_id, uid)
                ).fetchone()
            ]
            orphaned = _drop_placements(c, mailbox_id, present, modseq)
            return account_id, modseq, orphaned, present

        account_id, modseq, orphaned, gone = await self._writer.run(job)
        for path in orphaned:
            (self._blob_root / path).unlink(missing_ok=True)
        if gone:  # only UIDs that were there: a client must not be told of others
            self._feed.publish(Change(account_id, mailbox_id, modseq, "expunge", tuple(gone)))
        return modseq

    async def lock_maildrop(self, account_id: int) -> Lease | None:
        # flock: per open file, so it excludes other sessions of this process as well as
        # other workers, and the kernel drops it when a holder dies (no stale locks).
        return FileLease.try_acquire(self._lock_dir / f"maildrop-{account_id}")

    async def expunged_since(self, mailbox_id: int, modseq: int) -> list[int]:
        def job(c: sqlite3.Connection) -> list[int]:
            rows = c.execute(
                "SELECT uid FROM expunged WHERE mailbox_id=? AND modseq>? ORDER BY uid",
                (mailbox_id, modseq),
            )
            return [u for (u,) in rows]

        return await self._readers.run(job)


def _bump(c: sqlite3.Connection, mailbox_id: int) -> tuple[int, int]:
    row = c.execute(
        "UPDATE mailboxes SET highestmodseq=highestmodseq+1 WHERE id=?"
        " RETURNING account_id, highestmodseq",
        (mailbox_id,),
    ).fetchone()
    if row is None:
        raise NotFound(f"no mailbox {mailbox_id}")
    return row[0], row[1]


def _drop_placements(
    c: sqlite3.Connection, mailbox_id: int, uids: list[int] | None, modseq: int | None = None
) -> list[str]:
    """Delete placements (all when ``uids`` is None); returns blob files now unreferenced."""
    if uids is None:
        rows = c.execute(
            "SELECT uid, message_id FROM placements WHERE mailbox_id=?", (mailbox_id,)
        ).fetchall()
    else:
        rows = []
        for uid in uids:
            r = c.execute(
                "SELECT uid, message_id FROM placements WHERE mailbox_id=? AND uid=?",
                (mailbox_id, uid),
            ).fetchone()
            if r:
                rows.append(r)
    orphaned: list[str] = []
    for uid, message_id in rows:
        size, account_id = c.execute(
            "SELECT m.size, b.account_id FROM messages m, mailboxes b WHERE m.id=? AND b.id=?",
            (message_id, mailbox_id),
        ).fetchone()
        c.execute("DELETE FROM placements WHERE mailbox_id=? AND uid=?", (mailbox_id, uid))
        c.execute(
            "UPDATE mailboxes SET message_count=message_count-1, total_size=total_size-? WHERE id=?",
            (size, mailbox_id),
        )
        c.execute("UPDATE accounts SET used_bytes=used_bytes-? WHERE id=?", (size, account_id))
        if modseq is not None:
            c.execute(
                "INSERT OR REPLACE INTO expunged(mailbox_id, uid, modseq) VALUES (?, ?, ?)",
                (mailbox_id, uid, modseq),
            )
        left = c.execute(
            "UPDATE messages SET refcount=refcount-1 WHERE id=? RETURNING refcount, blob_path",
            (message_id,),
        ).fetchone()
        if left[0] <= 0:
            c.execute("DELETE FROM messages WHERE id=?", (message_id,))
            if left[1]:
                orphaned.append(left[1])
    return orphaned


def open_store(data_dir: Path | str) -> SqliteStore:
    return SqliteStore(Path(os.fspath(data_dir)))
