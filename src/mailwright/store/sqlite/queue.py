"""The outbound queue and the event log on SQLite (``store.api.Queue``).

Invariants (beyond those of ``store.api.Queue``):
- a queue row holds one reference to its message (``messages.refcount``); the row and
  its reference go in one job (``release_message``), and a blob file is unlinked only
  after the commit that dropped its last reference;
- a lease is a time (``lease_until``), not a lock: a runner that dies leaves entries that
  are due again once it passes, in whichever process claims them next.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal, cast

from mailwright.store.api import MailEvent, Outbound, QueueEntry, QueueUpdate
from mailwright.store.errors import NotFound
from mailwright.store.sqlite.db import Readers, Writer

_ENTRY_COLS = (
    "q.id, q.queue_id, q.message_id, q.sender, q.recipient, q.domain, q.notify, q.orcpt,"
    " q.envid, q.ret, q.smtputf8, q.eight_bit, q.prefix, m.size, q.received_at,"
    " q.next_attempt, q.attempts, q.last_reply, q.delay_notified"
)
_ENTRY_FROM = " FROM queue q JOIN messages m ON m.id = q.message_id"


def _entry(row: Sequence[Any]) -> QueueEntry:
    return QueueEntry(
        id=row[0],
        queue_id=row[1],
        message_id=row[2],
        sender=row[3],
        recipient=row[4],
        domain=row[5],
        notify=tuple(v for v in row[6].split(",") if v),
        orcpt=row[7],
        envid=row[8],
        ret=cast(Literal["FULL", "HDRS"] | None, row[9]),
        smtputf8=bool(row[10]),
        eight_bit=bool(row[11]),
        prefix=bytes(row[12]),
        size=row[13],
        received_at=row[14],
        next_attempt=row[15],
        attempts=row[16],
        last_reply=row[17],
        delay_notified=bool(row[18]),
    )


EVENT_COLS = "id, time, queue_id, message_id, recipient, type, detail"


def event_from_row(row: Sequence[Any]) -> MailEvent:
    """An ``events`` row, selected as ``EVENT_COLS``."""
    return MailEvent(
        queue_id=row[2],
        type=row[5],
        recipient=row[4],
        detail=json.loads(row[6]),
        message_id=row[3],
        time=row[1],
        id=row[0],
    )


def insert_events(c: sqlite3.Connection, events: Sequence[MailEvent]) -> None:
    if not events:
        return
    now = time.time()
    c.executemany(
        "INSERT INTO events(time, queue_id, message_id, recipient, type, detail)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        [
            (
                e.time or now,
                e.queue_id,
                e.message_id.strip().strip("<>"),
                e.recipient,
                e.type,
                json.dumps(dict(e.detail), ensure_ascii=False, sort_keys=True)
                if e.detail
                else "{}",
            )
            for e in events
        ],
    )


def insert_queue(
    c: sqlite3.Connection, message_id: int, queue_id: str, received_at: int, out: Outbound
) -> int:
    """Queue ``out``'s recipients for ``message_id`` (the caller counts the references)."""
    c.executemany(
        "INSERT INTO queue(message_id, queue_id, sender, recipient, domain, notify, orcpt,"
        " envid, ret, smtputf8, eight_bit, prefix, received_at, next_attempt)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            (
                message_id,
                queue_id,
                out.sender,
                r.address,
                r.address.rsplit("@", 1)[-1].lower(),
                ",".join(r.notify),
                r.orcpt,
                out.envid,
                out.ret,
                int(out.smtputf8),
                int(out.eight_bit),
                out.prefix,
                received_at,
                received_at,
            )
            for r in out.recipients
        ],
    )
    return len(out.recipients)


def release_message(c: sqlite3.Connection, message_id: int, n: int) -> str | None:
    """Drop ``n`` references to a message; when none is left, the row goes and its blob
    file (returned, to unlink after the commit) with it."""
    row = c.execute(
        "UPDATE messages SET refcount=refcount-? WHERE id=? RETURNING refcount, blob_path",
        (n, message_id),
    ).fetchone()
    if row is None:
        return None
    left, path = row
    if left <= 0:
        c.execute("DELETE FROM messages WHERE id=?", (message_id,))
        return str(path) if path else None
    return None


def _remove(c: sqlite3.Connection, where: str, args: Sequence[object]) -> tuple[list[str], int]:
    rows = c.execute(f"DELETE FROM queue WHERE {where} RETURNING message_id", args).fetchall()
    counts: dict[int, int] = {}
    for (message_id,) in rows:
        counts[message_id] = counts.get(message_id, 0) + 1
    paths = [p for m, n in counts.items() if (p := release_message(c, m, n)) is not None]
    return paths, len(rows)


class SqliteQueue:
    """Mixed into ``SqliteStore``: needs its writer, readers and blob root."""

    _writer: Writer
    _readers: Readers
    _blob_root: Path

    def _unlink(self, paths: list[str]) -> None:
        raise NotImplementedError  # SqliteStore's

    async def claim(self, now: int, limit: int, lease: int) -> list[QueueEntry]:
        def job(c: sqlite3.Connection) -> list[QueueEntry]:
            ids = [
                i
                for (i,) in c.execute(
                    "SELECT id FROM queue WHERE next_attempt<=? AND lease_until<=?"
                    " ORDER BY next_attempt, id LIMIT ?",
                    (now, now, limit),
                )
            ]
            if not ids:
                return []
            marks = ",".join("?" * len(ids))
            c.execute(f"UPDATE queue SET lease_until=? WHERE id IN ({marks})", (now + lease, *ids))
            rows = c.execute(
                f"SELECT {_ENTRY_COLS}{_ENTRY_FROM} WHERE q.id IN ({marks}) ORDER BY q.id", ids
            ).fetchall()
            return [_entry(r) for r in rows]

        # A lease keeps the other processes' runners off these entries while this one
        # lives; after a power cut no runner lives, and a lost lease only makes them due
        # at once, which they are anyway. So the claim need not wait for an fsync.
        return await self._writer.run(job, durable=False)

    async def next_due(self) -> int | None:
        def job(c: sqlite3.Connection) -> int | None:
            # A leased entry is due again when its lease runs out (its runner died).
            (value,) = c.execute("SELECT min(max(next_attempt, lease_until)) FROM queue").fetchone()
            return None if value is None else int(value)

        return await self._readers.run(job)

    async def queue_stats(self) -> tuple[int, int | None]:
        def job(c: sqlite3.Connection) -> tuple[int, int | None]:
            count, oldest = c.execute("SELECT count(*), min(received_at) FROM queue").fetchone()
            return int(count), None if oldest is None else int(oldest)

        return await self._readers.run(job)

    async def update(
        self, updates: Sequence[QueueUpdate], events: Sequence[MailEvent] = ()
    ) -> None:
        def job(c: sqlite3.Connection) -> list[str]:
            paths: list[str] = []
            for u in updates:
                if u.outcome == "deferred":
                    c.execute(
                        "UPDATE queue SET next_attempt=?, attempts=attempts+1, last_reply=?,"
                        " delay_notified=max(delay_notified, ?), lease_until=0 WHERE id=?",
                        (u.next_attempt, u.reply, int(u.delay_notified), u.entry_id),
                    )
                else:
                    paths += _remove(c, "id=?", (u.entry_id,))[0]
            insert_events(c, events)
            return paths

        self._unlink(await self._writer.run(job))

    async def list_queue(self, queue_id: str | None = None) -> list[QueueEntry]:
        def job(c: sqlite3.Connection) -> list[QueueEntry]:
            if queue_id is None:
                rows = c.execute(f"SELECT {_ENTRY_COLS}{_ENTRY_FROM} ORDER BY q.id").fetchall()
            else:
                rows = c.execute(
                    f"SELECT {_ENTRY_COLS}{_ENTRY_FROM} WHERE q.queue_id=? ORDER BY q.id",
                    (queue_id,),
                ).fetchall()
            return [_entry(r) for r in rows]

        return await self._readers.run(job, quick=False)

    async def retry(self, queue_id: str | None, now: int) -> int:
        def job(c: sqlite3.Connection) -> int:
            if queue_id is None:
                cur = c.execute("UPDATE queue SET next_attempt=?, lease_until=0", (now,))
            else:
                cur = c.execute(
                    "UPDATE queue SET next_attempt=?, lease_until=0 WHERE queue_id=?",
                    (now, queue_id),
                )
            return cur.rowcount

        return await self._writer.run(job)

    async def delete(self, queue_id: str) -> int:
        def job(c: sqlite3.Connection) -> tuple[list[str], int]:
            rcpts = [
                r for (r,) in c.execute("SELECT recipient FROM queue WHERE queue_id=?", (queue_id,))
            ]
            insert_events(c, [MailEvent(queue_id, "deleted", r) for r in rcpts])
            return _remove(c, "queue_id=?", (queue_id,))

        paths, n = await self._writer.run(job)
        self._unlink(paths)
        return n

    async def add_events(self, events: Sequence[MailEvent]) -> None:
        def job(c: sqlite3.Connection) -> None:
            insert_events(c, events)

        await self._writer.run(job)

    async def events(self, key: str) -> list[MailEvent]:
        mid = key.strip().strip("<>")

        def job(c: sqlite3.Connection) -> list[MailEvent]:
            rows = c.execute(
                f"SELECT {EVENT_COLS} FROM events"
                " WHERE queue_id=? OR queue_id IN"
                " (SELECT queue_id FROM events WHERE message_id=? AND message_id!='')"
                " ORDER BY id",
                (key, mid),
            ).fetchall()
            return [event_from_row(r) for r in rows]

        return await self._readers.run(job, quick=False)

    async def message_source(self, message_id: int) -> bytes | Path:
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
        return self._blob_root / str(path)
