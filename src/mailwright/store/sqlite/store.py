"""The embedded SQLite store (the default): one database file plus a blob directory.

Invariants (beyond those of ``store.api``):
- every write is one job on the writer thread (``db.Writer``), so a job's reads and writes
  are atomic and serial across every process of the installation;
- the counters of a mailbox row (``message_count``, ``total_size``, ``unseen_count``,
  ``deleted_count``) and ``accounts.used_bytes`` change in the same job as the placements
  they count; ``_place`` and ``_drop`` are the only code that adds or removes placements;
- ids of messages, mailboxes and accounts come from ``counters`` and are never reused;
- blob files are unlinked only after the commit that dropped their last reference;
- changes are published only after the commit (``_publish``), locally and to the other
  processes (``store.feed.PeerRelay``).
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import json
import os
import sqlite3
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from mailwright.core.ids import new_queue_id
from mailwright.store.api import (
    DEFAULT_MAILBOXES,
    DELETED,
    INBOX,
    SEEN,
    SEPARATOR,
    Account,
    Alias,
    ApiSend,
    BlobWriter,
    Change,
    Delivered,
    DeliveryResult,
    Domain,
    FlagResult,
    Lease,
    MailboxInfo,
    MailEvent,
    Outbound,
    Placement,
    RecipientLookup,
    Target,
    mailbox_name,
    merge_flags,
    normalize_flags,
    superiors,
)
from mailwright.store.api import special_use as _special_use
from mailwright.store.errors import (
    AlreadyExists,
    Conflict,
    HasChildren,
    InvalidName,
    NotFound,
    NotPermitted,
    QuotaExceeded,
    StoreError,
    TransientStorageError,
)
from mailwright.store.feed import LocalChangeFeed, PeerRelay
from mailwright.store.sqlite.api import SqliteApi, insert_send
from mailwright.store.sqlite.blob import INLINE_MAX, SqliteBlobWriter
from mailwright.store.sqlite.db import Readers, Writer
from mailwright.store.sqlite.lease import FileLease
from mailwright.store.sqlite.queue import (
    SqliteQueue,
    insert_events,
    insert_queue,
    release_message,
)
from mailwright.store.sqlite.webhooks import SqliteWebhooks

DB_NAME = "mailwright.db"
BLOB_DIR = "blobs"
LOCK_DIR = "locks"
FEED_DIR = "run/feed"
# Is a file under blobs/ still a message's body? (The startup sweep asks it of each file,
# by the index on blob_path: never a read of the whole messages table.)
BLOB_REFERENCED = "SELECT 1 FROM messages WHERE blob_path=?"

# A placement row as _select_placements reads it.
_Row = tuple[int, int, str, int, int, int]  # uid, message_id, flags, modseq, date, size


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


def _peek_recent(c: sqlite3.Connection, mailbox_id: int, below: int | None) -> tuple[int, int]:
    """The UIDs not yet claimed as \\Recent, first <= uid < end (end at most ``below``)."""
    row = c.execute(
        "SELECT recent_uid, uidnext FROM mailboxes WHERE id=?", (mailbox_id,)
    ).fetchone()
    if row is None:
        raise NotFound(f"no mailbox {mailbox_id}")
    first, end = int(row[0]), int(row[1])
    if below is not None:
        end = min(end, below)
    return first, max(first, end)


def _claim_recent(c: sqlite3.Connection, mailbox_id: int, below: int | None) -> tuple[int, int]:
    """Claim what ``_peek_recent`` sees, inside a write transaction (BEGIN IMMEDIATE): a
    claim by another session or process in between is seen, so no UID is claimed twice."""
    first, end = _peek_recent(c, mailbox_id, below)
    if first < end:
        (claimed,) = c.execute(
            "SELECT COUNT(*) FROM placements WHERE mailbox_id=? AND uid>=? AND uid<?",
            (mailbox_id, first, end),
        ).fetchone()
        c.execute(
            "UPDATE mailboxes SET recent_uid=?, recent_count=recent_count-? WHERE id=?",
            (end, claimed, mailbox_id),
        )
    return first, end


def _next_id(c: sqlite3.Connection, counter: str) -> int:
    (value,) = c.execute(
        "UPDATE counters SET value=value + 1 WHERE name=? RETURNING value", (counter,)
    ).fetchone()
    return int(value)


def _domain_of(address: str) -> str:
    return address.rsplit("@", 1)[1]


def _account(row: tuple[int, str, str, int | None, int]) -> Account:
    return Account(row[0], row[1], row[2], row[3], row[4])


def _flags_text(flags: frozenset[str]) -> str:
    return " ".join(sorted(flags))


def _flagset(text: str, cache: dict[str, frozenset[str]]) -> frozenset[str]:
    # Most messages share a handful of flag combinations: parse each once per call.
    flags = cache.get(text)
    if flags is None:
        flags = cache[text] = frozenset(text.split())
    return flags


def _unseen(flags: frozenset[str]) -> int:
    return 0 if SEEN in flags else 1


def _deleted(flags: frozenset[str]) -> int:
    return 1 if DELETED in flags else 0


def _children_range(name: str) -> tuple[str, str]:
    """Names strictly under ``name`` sort between these two (BINARY collation): every
    such name starts with name + "/", and "0" is the character after "/"."""
    return name + SEPARATOR, name + chr(ord(SEPARATOR) + 1)


_ACCOUNT_COLS = "id, address, password_hash, quota_bytes, used_bytes"
_MAILBOX_COLS = (
    "b.id, b.name, b.uidvalidity, b.uidnext, b.highestmodseq, b.special_use,"
    " b.message_count, b.total_size, b.unseen_count, b.deleted_count, b.recent_count,"
    " b.recent_uid"
)
_PLACEMENT_SELECT = (
    "SELECT p.uid, p.message_id, p.flags, p.modseq, p.internal_date, p.size"
    " FROM placements p WHERE p.mailbox_id=?"
)


class SqliteStore(SqliteQueue, SqliteApi, SqliteWebhooks):
    """Implements ``store.api.Store`` (accounts, mailboxes, messages, changes, queue, the
    HTTP API's tables) on SQLite."""

    def __init__(
        self,
        data_dir: Path,
        *,
        inline_max: int = INLINE_MAX,
        sweep: bool = True,
        peers: bool = True,
    ) -> None:
        """Open (creating and migrating) the store. ``sweep`` cleans up after a crash; only
        the process that serves may do it, since it deletes files no committed row uses
        (a CLI command opening the store beside a running server passes ``sweep=False``).
        ``peers``: exchange changes with the other processes using this data directory."""
        self.data_dir = data_dir
        self._blob_root = data_dir / BLOB_DIR
        self._inline_max = inline_max
        data_dir.mkdir(parents=True, exist_ok=True)
        self._blob_root.mkdir(exist_ok=True)
        self._writer = Writer(data_dir / DB_NAME)
        self._readers = Readers(data_dir / DB_NAME)
        self._feed = LocalChangeFeed()
        self._relay = PeerRelay(data_dir / FEED_DIR, self._feed) if peers else None
        self.accounts = self
        self.mailboxes = self
        self.messages = self
        self.changes = self._feed
        self.locks = self
        self.queue = self
        self.api = self
        self.webhooks = self
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
        if self._relay is not None:
            self._relay.close()
        self._readers.close()
        self._writer.close()

    def _publish(self, changes: list[Change]) -> None:
        """After the commit: to this process's subscribers and to the other processes."""
        if not changes:
            return
        self._feed.publish_many(changes)
        if self._relay is not None:
            self._relay.send(changes)

    def _unlink(self, paths: list[str]) -> None:
        for path in paths:
            (self._blob_root / path).unlink(missing_ok=True)

    def _sweep(self) -> None:
        """Remove what a crash can leave: spill files never finished, blobs never committed,
        queue leases of runners that are gone."""
        tmp = self._blob_root / "tmp"
        if tmp.is_dir():
            for f in tmp.iterdir():
                f.unlink(missing_ok=True)
        conn = sqlite3.connect(self.data_dir / DB_NAME)
        try:
            # Whoever held a lease died with the server: its entries are due at once, not
            # when the lease would have lapsed (a delivery attempt may have been cut short).
            with conn:
                conn.execute("UPDATE queue SET lease_until=0 WHERE lease_until>0")
                conn.execute("UPDATE webhooks SET lease_until=0 WHERE lease_until>0")
                conn.execute("UPDATE api_scheduled SET lease_until=0 WHERE lease_until>0")
            for sub in self._blob_root.iterdir():
                if sub.name == "tmp" or not sub.is_dir():
                    continue
                for f in sub.iterdir():
                    if not conn.execute(BLOB_REFERENCED, (f"{sub.name}/{f.name}",)).fetchone():
                        f.unlink(missing_ok=True)
        finally:
            conn.close()

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
            account_id = _next_id(c, "account_id")
            c.execute(
                "INSERT INTO accounts(id, address, domain_id, password_hash, created_at)"
                " VALUES (?, ?, ?, ?, ?)",
                (account_id, address, domain[0], password_hash, _now()),
            )
            for name, special in DEFAULT_MAILBOXES:
                _insert_mailbox(c, account_id, name, special)
                c.execute(
                    "INSERT INTO subscriptions(account_id, name) VALUES (?, ?)", (account_id, name)
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

    async def set_quota(self, address: str, quota_bytes: int | None) -> None:
        if quota_bytes is not None and quota_bytes < 0:
            raise ValueError("a quota cannot be negative")

        def job(c: sqlite3.Connection) -> None:
            cur = c.execute(
                "UPDATE accounts SET quota_bytes=? WHERE address=?", (quota_bytes, address)
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
                orphaned += _drop(c, box, _select_placements(c, box, None), None)
                c.execute("DELETE FROM expunged WHERE mailbox_id=?", (box,))
                c.execute("DELETE FROM mailboxes WHERE id=?", (box,))
            c.execute("DELETE FROM subscriptions WHERE account_id=?", row)
            c.execute("DELETE FROM accounts WHERE id=?", row)
            return orphaned

        self._unlink(await self._writer.run(job))

    async def get_account(self, address: str) -> Account | None:
        def job(c: sqlite3.Connection) -> Account | None:
            row = c.execute(
                f"SELECT {_ACCOUNT_COLS} FROM accounts WHERE address=?", (address,)
            ).fetchone()
            return _account(row) if row else None

        return await self._readers.run(job)

    async def get_account_by_id(self, account_id: int) -> Account | None:
        def job(c: sqlite3.Connection) -> Account | None:
            row = c.execute(
                f"SELECT {_ACCOUNT_COLS} FROM accounts WHERE id=?", (account_id,)
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
                f"SELECT {_MAILBOX_COLS} FROM mailboxes b WHERE b.account_id=?"
                " ORDER BY b.name != 'INBOX', b.name",
                (account_id,),
            )
            return [MailboxInfo(*r) for r in rows]

        return await self._readers.run(job)

    async def get_mailbox(self, account_id: int, name: str) -> MailboxInfo:
        name = mailbox_name(name)

        def job(c: sqlite3.Connection) -> MailboxInfo:
            row = c.execute(
                f"SELECT {_MAILBOX_COLS} FROM mailboxes b WHERE b.account_id=? AND b.name=?",
                (account_id, name),
            ).fetchone()
            if row is None:
                raise NotFound(f"no mailbox {name}")
            return MailboxInfo(*row)

        return await self._readers.run(job)

    async def get_mailbox_by_id(self, mailbox_id: int) -> MailboxInfo:
        return await self._readers.run(lambda c: _mailbox_info(c, mailbox_id))

    async def create_mailbox(
        self, account_id: int, name: str, special_use: str | None = None
    ) -> MailboxInfo:
        name = mailbox_name(name)
        use = _special_use(special_use)

        def job(c: sqlite3.Connection) -> tuple[MailboxInfo, list[Change]]:
            _require_account(c, account_id)
            if _mailbox_id(c, account_id, name) is not None:
                raise AlreadyExists(f"mailbox {name} already exists")
            made = _create_superiors(c, account_id, name)
            box = _insert_mailbox(c, account_id, name, use)
            made.append(Change(account_id, box, 1, "create", ()))
            return _mailbox_info(c, box), made

        info, changes = await self._writer.run(job)
        self._publish(changes)
        return info

    async def delete_mailbox(self, account_id: int, name: str) -> None:
        name = mailbox_name(name)
        if name == INBOX:
            raise NotPermitted("INBOX cannot be deleted")

        def job(c: sqlite3.Connection) -> tuple[list[str], Change]:
            box = _mailbox_id(c, account_id, name)
            if box is None:
                raise NotFound(f"no mailbox {name}")
            low, high = _children_range(name)
            if c.execute(
                "SELECT 1 FROM mailboxes WHERE account_id=? AND name>? AND name<? LIMIT 1",
                (account_id, low, high),
            ).fetchone():
                raise HasChildren(f"mailbox {name} has inferior mailboxes; delete them first")
            (modseq,) = c.execute(
                "SELECT highestmodseq + 1 FROM mailboxes WHERE id=?", (box,)
            ).fetchone()
            orphaned = _drop(c, box, _select_placements(c, box, None), None)
            c.execute("DELETE FROM expunged WHERE mailbox_id=?", (box,))
            c.execute("DELETE FROM mailboxes WHERE id=?", (box,))
            return orphaned, Change(account_id, box, modseq, "delete", ())

        orphaned, change = await self._writer.run(job)
        self._unlink(orphaned)
        self._publish([change])

    async def rename_mailbox(self, account_id: int, old: str, new: str) -> None:
        old, new = mailbox_name(old), mailbox_name(new)

        def job(c: sqlite3.Connection) -> list[Change]:
            box = _mailbox_id(c, account_id, old)
            if box is None:
                raise NotFound(f"no mailbox {old}")
            if _mailbox_id(c, account_id, new) is not None:
                raise AlreadyExists(f"mailbox {new} already exists")
            if new.startswith(old + SEPARATOR):
                raise NotPermitted(f"cannot rename {old} to a name under itself")
            if old == INBOX:
                return _rename_inbox(c, account_id, box, new)
            low, high = _children_range(old)
            moves = [(box, new)] + [
                (child, new + child_name[len(old) :])
                for child, child_name in c.execute(
                    "SELECT id, name FROM mailboxes WHERE account_id=? AND name>? AND name<?",
                    (account_id, low, high),
                )
            ]
            for _, target in moves[1:]:
                if _mailbox_id(c, account_id, target) is not None:
                    raise AlreadyExists(f"mailbox {target} already exists")
            changes = _create_superiors(c, account_id, new)
            c.executemany("UPDATE mailboxes SET name=? WHERE id=?", [(n, i) for i, n in moves])
            for i, _ in moves:
                (modseq,) = c.execute(
                    "SELECT highestmodseq FROM mailboxes WHERE id=?", (i,)
                ).fetchone()
                changes.append(Change(account_id, i, modseq, "rename", ()))
            return changes

        self._publish(await self._writer.run(job))

    async def subscribe(self, account_id: int, name: str) -> None:
        name = mailbox_name(name)

        def job(c: sqlite3.Connection) -> None:
            _require_account(c, account_id)
            c.execute(
                "INSERT OR IGNORE INTO subscriptions(account_id, name) VALUES (?, ?)",
                (account_id, name),
            )

        await self._writer.run(job)

    async def unsubscribe(self, account_id: int, name: str) -> None:
        name = mailbox_name(name)

        def job(c: sqlite3.Connection) -> None:
            cur = c.execute(
                "DELETE FROM subscriptions WHERE account_id=? AND name=?", (account_id, name)
            )
            if cur.rowcount == 0:
                raise NotFound(f"{name} is not subscribed")

        await self._writer.run(job)

    async def list_subscriptions(self, account_id: int) -> list[str]:
        def job(c: sqlite3.Connection) -> list[str]:
            rows = c.execute(
                "SELECT name FROM subscriptions WHERE account_id=? ORDER BY name != 'INBOX', name",
                (account_id,),
            )
            return [n for (n,) in rows]

        return await self._readers.run(job)

    async def claim_recent(self, mailbox_id: int) -> int:
        return (await self.claim_recent_range(mailbox_id))[0]

    async def claim_recent_range(
        self, mailbox_id: int, below: int | None = None
    ) -> tuple[int, int]:
        first, end = await self._readers.run(lambda c: _peek_recent(c, mailbox_id, below))
        if first >= end:
            # Nothing to claim, so no write. A message delivered since the read has a UID
            # >= end: not ours, and still there for the next claim.
            return end, end

        def claim(c: sqlite3.Connection) -> tuple[int, int]:
            return _claim_recent(c, mailbox_id, below)

        # Which session saw a message first is not worth an fsync: lost in a power cut,
        # the message is merely recent once more.
        return await self._writer.run(claim, durable=False)

    # -- messages --------------------------------------------------------------

    def new_blob(self) -> SqliteBlobWriter:
        return SqliteBlobWriter(self._blob_root, self._inline_max)

    async def _finish_blob(
        self, blob: BlobWriter, name: str
    ) -> tuple[SqliteBlobWriter, bytes | None]:
        """Phase one of two: a spilled body is durable under its final name before any
        row points at it. Returns the writer and the inline body (None: in a file)."""
        if not isinstance(blob, SqliteBlobWriter):
            raise StoreError("blob from another store")
        inline = blob.inline  # read first: a finished writer no longer knows
        if inline is None:
            try:
                await asyncio.to_thread(blob.finish, name)
            except OSError as exc:  # disk full, I/O error: nothing above sees OSError
                blob.abort()
                raise TransientStorageError(f"cannot store message: {exc}") from exc
        return blob, inline

    def _forget_blob(self, blob: SqliteBlobWriter) -> None:
        # The job was rolled back: its file is ours to remove. Not on cancellation
        # (BaseException): the queued job may still commit a row that needs the file; if
        # it does not, the startup sweep removes the orphan.
        if blob.final_path is not None:
            (self._blob_root / blob.final_path).unlink(missing_ok=True)

    async def deliver(
        self,
        blob: BlobWriter,
        queue_id: str,
        received_at: int,
        targets: Sequence[Target],
        *,
        outbound: Outbound | None = None,
        events: Sequence[MailEvent] = (),
        send: ApiSend | None = None,
    ) -> DeliveryResult:
        if not isinstance(blob, SqliteBlobWriter):
            raise StoreError("blob from another store")
        remote = outbound if outbound is not None and outbound.recipients else None
        if not targets and remote is None:
            blob.abort()
            return DeliveryResult([])
        try:
            names = [mailbox_name(t.mailbox) for t in targets]
        except InvalidName:
            blob.abort()
            raise
        _, inline = await self._finish_blob(blob, queue_id)
        blob_path, size = blob.final_path, blob.size
        references = len(targets) + (len(remote.recipients) if remote is not None else 0)

        def job(
            c: sqlite3.Connection,
        ) -> tuple[list[Delivered], list[Target], list[Change], int, int]:
            message_id = _next_id(c, "message_id")
            # Counted as if every target had room: one statement less on the hot path,
            # corrected below in the rare case that an account was full.
            c.execute(
                "INSERT INTO messages(id, queue_id, size, received_at, body, blob_path, refcount)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (message_id, queue_id, size, received_at, inline, blob_path, references),
            )
            delivered: list[Delivered] = []
            over: list[Target] = []
            changes: list[Change] = []
            for t, name in zip(targets, names, strict=True):
                if not _charge(c, t.account_id, size):
                    over.append(t)  # this account is full; the others still get it
                    continue
                row = c.execute(
                    "UPDATE mailboxes SET uidnext=uidnext+1, highestmodseq=highestmodseq+1,"
                    " message_count=message_count+1, total_size=total_size+?,"
                    " unseen_count=unseen_count+1, recent_count=recent_count+1"
                    " WHERE account_id=? AND name=? RETURNING id, uidnext-1, highestmodseq",
                    (size, t.account_id, name),
                ).fetchone()
                if row is None:
                    raise NotFound(f"account {t.account_id} has no mailbox {name}")
                box, uid, modseq = row
                c.execute(
                    "INSERT INTO placements(mailbox_id, uid, message_id, modseq, internal_date,"
                    " size) VALUES (?, ?, ?, ?, ?, ?)",
                    (box, uid, message_id, modseq, received_at, size),
                )
                delivered.append(Delivered(t.account_id, name, uid, modseq))
                changes.append(Change(t.account_id, box, modseq, "append", (uid,)))
            queued = 0
            if remote is not None:
                queued = insert_queue(c, message_id, queue_id, received_at, remote)
            if not delivered and not queued:
                raise QuotaExceeded("every recipient's mailbox is over quota")
            if over:
                c.execute(
                    "UPDATE messages SET refcount=? WHERE id=?",
                    (len(delivered) + queued, message_id),
                )
            insert_events(c, events)
            if send is not None:
                insert_send(c, queue_id, send)
            return delivered, over, changes, queued, message_id

        try:
            delivered, over, changes, queued, message_id = await self._writer.run(job)
        except Exception:
            self._forget_blob(blob)
            raise
        self._publish(changes)
        return DeliveryResult(delivered, over, queued, message_id)

    async def append(
        self,
        account_id: int,
        mailbox_id: int,
        blob: BlobWriter,
        flags: frozenset[str],
        internal_date: int,
        *,
        structure: bytes | None = None,
        claim_recent: bool = False,
    ) -> Delivered:
        try:
            flags = normalize_flags(flags)
        except InvalidName:
            blob.abort()
            raise
        queue_id = new_queue_id()
        sblob, inline = await self._finish_blob(blob, queue_id)
        blob_path, size = sblob.final_path, sblob.size

        def job(c: sqlite3.Connection) -> tuple[Delivered, Change]:
            row = c.execute(
                "SELECT name FROM mailboxes WHERE id=? AND account_id=?", (mailbox_id, account_id)
            ).fetchone()
            if row is None:
                raise NotFound(f"account {account_id} has no mailbox {mailbox_id}")
            if not _charge(c, account_id, size):
                raise QuotaExceeded(f"account {account_id} over quota")
            message_id = _next_id(c, "message_id")
            c.execute(
                "INSERT INTO messages(id, queue_id, size, received_at, body, blob_path, refcount,"
                " structure) VALUES (?, ?, ?, ?, ?, ?, 1, ?)",
                (message_id, queue_id, size, _now(), inline, blob_path, structure),
            )
            (uid,), modseq = _place(c, mailbox_id, [(message_id, flags, internal_date, size)])
            # One transaction instead of three: the structure and the \Recent claim would
            # otherwise follow as writes of their own.
            recent = _claim_recent(c, mailbox_id, uid + 1) if claim_recent else (0, 0)
            return (
                Delivered(account_id, row[0], uid, modseq, recent),
                Change(account_id, mailbox_id, modseq, "append", (uid,)),
            )

        try:
            delivered, change = await self._writer.run(job)
        except Exception:
            self._forget_blob(sblob)
            raise
        self._publish([change])
        return delivered

    async def copy(
        self, src_mailbox_id: int, uids: Sequence[int], dst_mailbox_id: int
    ) -> list[tuple[int, int]]:
        return await self._transfer(src_mailbox_id, uids, dst_mailbox_id, move=False)

    async def move(
        self, src_mailbox_id: int, uids: Sequence[int], dst_mailbox_id: int
    ) -> list[tuple[int, int]]:
        return await self._transfer(src_mailbox_id, uids, dst_mailbox_id, move=True)

    async def _transfer(
        self, src: int, uids: Sequence[int], dst: int, *, move: bool
    ) -> list[tuple[int, int]]:
        def job(c: sqlite3.Connection) -> tuple[list[tuple[int, int]], list[Change]]:
            src_account = _mailbox_account(c, src)
            dst_account = _mailbox_account(c, dst)
            rows = _select_placements(c, src, uids)
            if not rows:
                return [], []
            mapping, changes = _transfer_rows(c, src, src_account, rows, dst, dst_account, move)
            if not move or src_account != dst_account:
                # The operation adds to the destination account: it must fit. (A move
                # within one account adds nothing, so a full account can still clean up.)
                quota, used = c.execute(
                    "SELECT quota_bytes, used_bytes FROM accounts WHERE id=?", (dst_account,)
                ).fetchone()
                if quota is not None and used > quota:
                    raise QuotaExceeded(f"account {dst_account} over quota")
            return mapping, changes

        mapping, changes = await self._writer.run(job)
        self._publish(changes)
        return mapping

    async def list_placements(self, mailbox_id: int) -> list[Placement]:
        def job(c: sqlite3.Connection) -> list[Placement]:
            rows = c.execute(_PLACEMENT_SELECT + " ORDER BY p.uid", (mailbox_id,))
            return _placements(rows)

        return await self._readers.run(job)

    async def changed_since(self, mailbox_id: int, modseq: int) -> list[Placement]:
        def job(c: sqlite3.Connection) -> list[Placement]:
            # By the MODSEQ index, then sorted: without statistics SQLite would walk the
            # whole mailbox in UID order to find the few changed rows.
            rows = c.execute(
                _PLACEMENT_SELECT.replace(
                    "FROM placements p", "FROM placements p INDEXED BY placements_modseq"
                )
                + " AND p.modseq>? ORDER BY p.uid",
                (mailbox_id, modseq),
            )
            return _placements(rows)

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

    async def read_message_range(self, message_id: int, start: int, end: int) -> bytes:
        start = max(start, 0)
        length = max(end - start, 0)

        def job(c: sqlite3.Connection) -> tuple[bytes | None, str | None]:
            # substr() on a BLOB counts bytes, 1-based; only the slice leaves SQLite.
            row = c.execute(
                "SELECT CASE WHEN body IS NOT NULL THEN substr(body, ?, ?) END, blob_path"
                " FROM messages WHERE id=?",
                (start + 1, length, message_id),
            ).fetchone()
            if row is None:
                raise NotFound(f"no message {message_id}")
            return row[0], row[1]

        if length == 0:
            await self._readers.run(job)  # still NotFound for a message that is gone
            return b""
        body, path = await self._readers.run(job)
        if body is not None:
            return bytes(body)

        def read() -> bytes:
            with open(self._blob_root / str(path), "rb") as f:
                f.seek(start)
                return f.read(length)

        try:
            return await asyncio.to_thread(read)
        except FileNotFoundError:
            raise NotFound(f"no message {message_id}") from None

    async def read_structure(self, message_id: int) -> bytes | None:
        def job(c: sqlite3.Connection) -> bytes | None:
            row = c.execute("SELECT structure FROM messages WHERE id=?", (message_id,)).fetchone()
            if row is None:
                raise NotFound(f"no message {message_id}")
            return None if row[0] is None else bytes(row[0])

        return await self._readers.run(job)

    async def save_structure(self, message_id: int, data: bytes) -> None:
        def job(c: sqlite3.Connection) -> None:
            cur = c.execute("UPDATE messages SET structure=? WHERE id=?", (bytes(data), message_id))
            if cur.rowcount == 0:
                raise NotFound(f"no message {message_id}")

        await self._writer.run(job, durable=False)  # a cache: parsed again if lost

    async def store_flags(
        self,
        mailbox_id: int,
        uids: Sequence[int],
        flags: frozenset[str],
        mode: str,
        unchangedsince: int | None = None,
    ) -> FlagResult:
        """Set (``mode`` "="), add ("+") or remove ("-") flags; see ``store.api``."""
        if mode not in ("=", "+", "-"):
            raise ValueError(f"bad flag mode {mode!r}")
        flags = normalize_flags(flags)

        def job(c: sqlite3.Connection) -> tuple[FlagResult, Change | None]:
            account_id = _mailbox_account(c, mailbox_id)
            cache: dict[str, frozenset[str]] = {}
            changed: list[tuple[int, frozenset[str], frozenset[str]]] = []
            unchanged: list[tuple[int, frozenset[str], int]] = []
            failed: list[int] = []
            for uid, _mid, text, modseq, _date, _size in _select_placements(c, mailbox_id, uids):
                current = _flagset(text, cache)
                if unchangedsince is not None and modseq > unchangedsince:
                    failed.append(uid)  # RFC 7162 §3.1.3: changed since the client looked
                    continue
                new = merge_flags(current, flags, mode)
                if new == current:
                    unchanged.append((uid, current, modseq))
                else:
                    changed.append((uid, new, current))
            if not changed:
                (highest,) = c.execute(
                    "SELECT highestmodseq FROM mailboxes WHERE id=?", (mailbox_id,)
                ).fetchone()
                return FlagResult([], failed, highest, unchanged), None
            modseq = _bump(c, mailbox_id)
            c.executemany(
                "UPDATE placements SET flags=?, modseq=? WHERE mailbox_id=? AND uid=?",
                [(_flags_text(new), modseq, mailbox_id, uid) for uid, new, _ in changed],
            )
            unseen = sum(_unseen(new) - _unseen(old) for _, new, old in changed)
            deleted = sum(_deleted(new) - _deleted(old) for _, new, old in changed)
            c.execute(
                "UPDATE mailboxes SET unseen_count=unseen_count+?, deleted_count=deleted_count+?"
                " WHERE id=?",
                (unseen, deleted, mailbox_id),
            )
            result = FlagResult(
                [(uid, new, modseq) for uid, new, _ in changed], failed, modseq, unchanged
            )
            change = Change(
                account_id, mailbox_id, modseq, "flags", tuple(u for u, _, _ in changed)
            )
            return result, change

        # Flags are not worth an fsync of their own (as with Dovecot's default): they
        # survive a crash of the server at once, and a power cut once the next message
        # or expunge is committed.
        result, change = await self._writer.run(job, durable=False)
        if change is not None:
            self._publish([change])
        return result

    async def expunge(self, mailbox_id: int, uids: Sequence[int]) -> int:
        def job(c: sqlite3.Connection) -> tuple[int, list[str], Change | None]:
            account_id = _mailbox_account(c, mailbox_id)
            rows = _select_placements(c, mailbox_id, uids)
            if not rows:
                (highest,) = c.execute(
                    "SELECT highestmodseq FROM mailboxes WHERE id=?", (mailbox_id,)
                ).fetchone()
                return highest, [], None
            modseq = _bump(c, mailbox_id)
            orphaned = _drop(c, mailbox_id, rows, modseq)
            # Only UIDs that were there: a client must not be told of others.
            gone = tuple(r[0] for r in rows)
            return modseq, orphaned, Change(account_id, mailbox_id, modseq, "expunge", gone)

        modseq, orphaned, change = await self._writer.run(job)
        self._unlink(orphaned)
        if change is not None:
            self._publish([change])
        return modseq

    async def lock_maildrop(self, account_id: int) -> Lease | None:
        # flock: per open file, so it excludes other sessions of this process as well as
        # other workers, and the kernel drops it when a holder dies (no stale locks).
        return FileLease.try_acquire(self._lock_dir / f"maildrop-{account_id}")

    async def expunged_since(self, mailbox_id: int, modseq: int) -> list[int]:
        def job(c: sqlite3.Connection) -> list[int]:
            # By the MODSEQ index, as changed_since: the primary key's order (UID) would
            # walk the mailbox's whole expunge history.
            rows = c.execute(
                "SELECT uid FROM expunged INDEXED BY expunged_modseq"
                " WHERE mailbox_id=? AND modseq>? ORDER BY uid",
                (mailbox_id, modseq),
            )
            return [u for (u,) in rows]

        return await self._readers.run(job)


# -- helpers run inside writer (or reader) jobs ----------------------------------------


def _require_account(c: sqlite3.Connection, account_id: int) -> None:
    if c.execute("SELECT 1 FROM accounts WHERE id=?", (account_id,)).fetchone() is None:
        raise NotFound(f"no account {account_id}")


def _mailbox_id(c: sqlite3.Connection, account_id: int, name: str) -> int | None:
    row = c.execute(
        "SELECT id FROM mailboxes WHERE account_id=? AND name=?", (account_id, name)
    ).fetchone()
    return None if row is None else int(row[0])


def _mailbox_account(c: sqlite3.Connection, mailbox_id: int) -> int:
    row = c.execute("SELECT account_id FROM mailboxes WHERE id=?", (mailbox_id,)).fetchone()
    if row is None:
        raise NotFound(f"no mailbox {mailbox_id}")
    return int(row[0])


def _mailbox_info(c: sqlite3.Connection, mailbox_id: int) -> MailboxInfo:
    row = c.execute(
        f"SELECT {_MAILBOX_COLS} FROM mailboxes b WHERE b.id=?", (mailbox_id,)
    ).fetchone()
    if row is None:
        raise NotFound(f"no mailbox {mailbox_id}")
    return MailboxInfo(*row)


def _insert_mailbox(c: sqlite3.Connection, account_id: int, name: str, use: str | None) -> int:
    box = _next_id(c, "mailbox_id")
    c.execute(
        "INSERT INTO mailboxes(id, account_id, name, uidvalidity, special_use)"
        " VALUES (?, ?, ?, ?, ?)",
        (box, account_id, name, _uidvalidity(c), use),
    )
    return box


def _create_superiors(c: sqlite3.Connection, account_id: int, name: str) -> list[Change]:
    """RFC 9051 §6.3.4/§6.3.6: make the missing superiors of ``name`` (plain mailboxes)."""
    made = []
    for parent in superiors(name):
        if _mailbox_id(c, account_id, parent) is None:
            box = _insert_mailbox(c, account_id, parent, None)
            made.append(Change(account_id, box, 1, "create", ()))
    return made


def _rename_inbox(c: sqlite3.Connection, account_id: int, inbox: int, new: str) -> list[Change]:
    """RFC 9051 §6.3.6: every message of INBOX moves to a new mailbox ``new``; INBOX stays,
    empty, with its UIDVALIDITY and UIDNEXT (so its UIDs are never reused)."""
    changes = _create_superiors(c, account_id, new)
    box = _insert_mailbox(c, account_id, new, None)
    changes.append(Change(account_id, box, 1, "create", ()))
    rows = _select_placements(c, inbox, None)
    if rows:
        changes += _transfer_rows(c, inbox, account_id, rows, box, account_id, move=True)[1]
    return changes


def _bump(c: sqlite3.Connection, mailbox_id: int) -> int:
    """The mailbox's next MODSEQ (one per operation that changes it)."""
    row = c.execute(
        "UPDATE mailboxes SET highestmodseq=highestmodseq+1 WHERE id=? RETURNING highestmodseq",
        (mailbox_id,),
    ).fetchone()
    if row is None:
        raise NotFound(f"no mailbox {mailbox_id}")
    return int(row[0])


def _charge(c: sqlite3.Connection, account_id: int, size: int) -> bool:
    """Add ``size`` to the account's usage if it fits its quota; False (and nothing
    changed) if it does not. ``NotFound`` if the account is gone."""
    if c.execute(
        "UPDATE accounts SET used_bytes=used_bytes+? WHERE id=?"
        " AND (quota_bytes IS NULL OR used_bytes+? <= quota_bytes) RETURNING 1",
        (size, account_id, size),
    ).fetchone():
        return True
    _require_account(c, account_id)
    return False


def _select_placements(
    c: sqlite3.Connection, mailbox_id: int, uids: Sequence[int] | None
) -> list[_Row]:
    """The placements ``uids`` (every one when None) that exist, by UID, each once."""
    if uids is None:
        return c.execute(_PLACEMENT_SELECT + " ORDER BY p.uid", (mailbox_id,)).fetchall()
    wanted = sorted({u for u in uids if 0 < u < 2**63})
    if not wanted:
        return []
    low, high = wanted[0], wanted[-1]
    if high - low < 4 * len(wanted):
        # Dense (1:*, a range): one scan of the primary key between the ends.
        keep = set(wanted)
        rows = c.execute(
            _PLACEMENT_SELECT + " AND p.uid BETWEEN ? AND ? ORDER BY p.uid",
            (mailbox_id, low, high),
        )
        return [r for r in rows if r[0] in keep]
    # Sparse: one primary-key lookup per UID.
    return c.execute(
        _PLACEMENT_SELECT + " AND p.uid IN (SELECT value FROM json_each(?)) ORDER BY p.uid",
        (mailbox_id, json.dumps(wanted)),
    ).fetchall()


def _placements(rows: Sequence[_Row] | sqlite3.Cursor) -> list[Placement]:
    cache: dict[str, frozenset[str]] = {}
    make = _new_placement
    return [
        make(uid, mid, _flagset(flags, cache), modseq, date, size)
        for uid, mid, flags, modseq, date, size in rows
    ]


def _placement_factory() -> Callable[[int, int, frozenset[str], int, int, int], Placement]:
    """``Placement(...)`` at half the cost: a frozen dataclass's ``__init__`` goes through
    ``object.__setattr__`` by name for each field; this sets the slots directly. Listing
    100k messages builds 100k of them (a test checks the result equals the real thing)."""
    new = object.__new__
    names = ("uid", "message_id", "flags", "modseq", "internal_date", "size")
    if tuple(f.name for f in dataclasses.fields(Placement)) != names:
        return Placement  # the record changed shape: be correct rather than fast
    s0, s1, s2, s3, s4, s5 = (getattr(Placement, f).__set__ for f in names)

    def make(
        uid: int, mid: int, flags: frozenset[str], modseq: int, date: int, size: int
    ) -> Placement:
        p: Placement = new(Placement)
        s0(p, uid)
        s1(p, mid)
        s2(p, flags)
        s3(p, modseq)
        s4(p, date)
        s5(p, size)
        return p

    return make


_new_placement = _placement_factory()


def _place(
    c: sqlite3.Connection,
    mailbox_id: int,
    items: Sequence[tuple[int, frozenset[str], int, int]],
) -> tuple[list[int], int]:
    """Insert placements (message id, flags, internal date, size) under the next UIDs and
    one new MODSEQ, keeping the mailbox's counters. The caller keeps refcounts and
    ``used_bytes``."""
    n = len(items)
    first, modseq = c.execute(
        "UPDATE mailboxes SET uidnext=uidnext+?, highestmodseq=highestmodseq+1,"
        " message_count=message_count+?, recent_count=recent_count+?, total_size=total_size+?,"
        " unseen_count=unseen_count+?, deleted_count=deleted_count+?"
        " WHERE id=? RETURNING uidnext-?, highestmodseq",
        (
            n,
            n,
            n,  # new UIDs are >= UIDNEXT >= recent_uid: recent until claimed
            sum(i[3] for i in items),
            sum(_unseen(i[1]) for i in items),
            sum(_deleted(i[1]) for i in items),
            mailbox_id,
            n,
        ),
    ).fetchone()
    uids = list(range(first, first + n))
    c.executemany(
        "INSERT INTO placements(mailbox_id, uid, message_id, flags, modseq, internal_date,"
        " size) VALUES (?, ?, ?, ?, ?, ?, ?)",
        [
            (mailbox_id, uid, mid, _flags_text(flags), modseq, date, size)
            for uid, (mid, flags, date, size) in zip(uids, items, strict=True)
        ],
    )
    return uids, modseq


def _transfer_rows(
    c: sqlite3.Connection,
    src: int,
    src_account: int,
    rows: list[_Row],
    dst: int,
    dst_account: int,
    move: bool,
) -> tuple[list[tuple[int, int]], list[Change]]:
    """Copy (and for a move, then expunge) placements ``rows`` of ``src`` into ``dst``:
    the messages are shared (refcount), not stored again."""
    cache: dict[str, frozenset[str]] = {}
    items = [(mid, _flagset(text, cache), date, size) for _, mid, text, _, date, size in rows]
    new_uids, modseq = _place(c, dst, items)
    # References first, so that the source's drop below never frees a shared message.
    c.executemany(
        "UPDATE messages SET refcount=refcount+? WHERE id=?",
        [(n, mid) for mid, n in collections.Counter(r[1] for r in rows).items()],
    )
    c.execute(
        "UPDATE accounts SET used_bytes=used_bytes+? WHERE id=?",
        (sum(r[5] for r in rows), dst_account),
    )
    changes = [Change(dst_account, dst, modseq, "append", tuple(new_uids))]
    if move:
        expunged = _bump(c, src)
        _drop(c, src, rows, expunged)
        changes.append(Change(src_account, src, expunged, "expunge", tuple(r[0] for r in rows)))
    return list(zip((r[0] for r in rows), new_uids, strict=True)), changes


def _drop(
    c: sqlite3.Connection, mailbox_id: int, rows: list[_Row], modseq: int | None
) -> list[str]:
    """Delete placements ``rows`` (from ``_select_placements``) of one mailbox, keeping its
    counters and the account's usage; with ``modseq``, record them as expunged (QRESYNC).
    Returns the blob files no message references any more (unlink after the commit)."""
    if not rows:
        return []
    cache: dict[str, frozenset[str]] = {}
    c.executemany(
        "DELETE FROM placements WHERE mailbox_id=? AND uid=?", [(mailbox_id, r[0]) for r in rows]
    )
    size = sum(r[5] for r in rows)
    (recent_uid,) = c.execute(
        "SELECT recent_uid FROM mailboxes WHERE id=?", (mailbox_id,)
    ).fetchone()
    c.execute(
        "UPDATE mailboxes SET message_count=message_count-?, total_size=total_size-?,"
        " recent_count=recent_count-?, unseen_count=unseen_count-?,"
        " deleted_count=deleted_count-? WHERE id=?",
        (
            len(rows),
            size,
            sum(1 for r in rows if r[0] >= recent_uid),
            sum(_unseen(_flagset(r[2], cache)) for r in rows),
            sum(_deleted(_flagset(r[2], cache)) for r in rows),
            mailbox_id,
        ),
    )
    c.execute(
        "UPDATE accounts SET used_bytes=used_bytes-?"
        " WHERE id=(SELECT account_id FROM mailboxes WHERE id=?)",
        (size, mailbox_id),
    )
    if modseq is not None:
        c.executemany(
            "INSERT OR REPLACE INTO expunged(mailbox_id, uid, modseq) VALUES (?, ?, ?)",
            [(mailbox_id, r[0], modseq) for r in rows],
        )
    counts = collections.Counter(r[1] for r in rows)
    return [p for m, n in counts.items() if (p := release_message(c, m, n)) is not None]


def open_store(data_dir: Path | str) -> SqliteStore:
    return SqliteStore(Path(os.fspath(data_dir)))
