"""Webhooks on SQLite (``store.api.Webhooks``): registrations, cursors, leases.

Invariants (beyond those of ``store.api.Webhooks``):
- event ids come from ``events``' INTEGER PRIMARY KEY and rows there are never deleted,
  and every write is a job of the one serial writer (across processes): an id is
  handed out once, and a transaction committed later holds only higher ids. That is
  what lets a cursor stand for "everything up to here was seen";
- claims run as writer jobs, so two dispatchers (in one process or several) never claim
  the same webhook while its lease is live;
- a webhook is claimed only while some event is newer than its cursor: an idle
  installation writes nothing on a dispatcher's poll.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Sequence
from typing import Any

from mailwright.store.api import Webhook
from mailwright.store.errors import NotFound
from mailwright.store.sqlite.db import Readers, Writer

_COLS = (
    "id, url, secret, types, sender_domain, created_at, cursor, next_attempt, attempts,"
    " lease_until, last_error, last_success"
)


def _webhook(row: Sequence[Any]) -> Webhook:
    return Webhook(
        id=row[0],
        url=row[1],
        secret=row[2],
        types=tuple(t for t in row[3].split(",") if t),
        sender_domain=row[4],
        created_at=row[5],
        cursor=row[6],
        next_attempt=row[7],
        attempts=row[8],
        lease_until=row[9],
        last_error=row[10],
        last_success=row[11],
    )


def _head(c: sqlite3.Connection) -> int:
    (head,) = c.execute("SELECT coalesce(max(id), 0) FROM events").fetchone()
    return int(head)


class SqliteWebhooks:
    """Mixed into ``SqliteStore``: needs its writer and readers."""

    _writer: Writer
    _readers: Readers

    async def create_webhook(
        self, url: str, secret: str, types: tuple[str, ...], sender_domain: str | None
    ) -> Webhook:
        def job(c: sqlite3.Connection) -> Webhook:
            # The cursor is read in the job that inserts the row: an event committed
            # after this one has a higher id, so the webhook gets it.
            row = c.execute(
                "INSERT INTO webhooks(url, secret, types, sender_domain, created_at, cursor)"
                f" VALUES (?, ?, ?, ?, ?, ?) RETURNING {_COLS}",
                (
                    url,
                    secret,
                    ",".join(types),
                    sender_domain.lower() if sender_domain else None,
                    time.time(),
                    _head(c),
                ),
            ).fetchone()
            return _webhook(row)

        return await self._writer.run(job)

    async def list_webhooks(self, sender_domain: str | None = None) -> list[Webhook]:
        def job(c: sqlite3.Connection) -> list[Webhook]:
            if sender_domain is None:
                rows = c.execute(f"SELECT {_COLS} FROM webhooks ORDER BY id")
            else:
                rows = c.execute(
                    f"SELECT {_COLS} FROM webhooks WHERE sender_domain=? ORDER BY id",
                    (sender_domain.lower(),),
                )
            return [_webhook(r) for r in rows]

        return await self._readers.run(job)

    async def get_webhook(self, webhook_id: int) -> Webhook | None:
        def job(c: sqlite3.Connection) -> Webhook | None:
            row = c.execute(f"SELECT {_COLS} FROM webhooks WHERE id=?", (webhook_id,)).fetchone()
            return None if row is None else _webhook(row)

        return await self._readers.run(job)

    async def delete_webhook(self, webhook_id: int) -> None:
        def job(c: sqlite3.Connection) -> None:
            row = c.execute(
                "DELETE FROM webhooks WHERE id=? RETURNING id", (webhook_id,)
            ).fetchone()
            if row is None:
                raise NotFound(f"no webhook {webhook_id}")

        await self._writer.run(job)

    async def last_event_id(self) -> int:
        return await self._readers.run(_head)

    async def claim_webhooks(self, now: float, limit: int, lease: float) -> list[Webhook]:
        def job(c: sqlite3.Connection) -> list[Webhook]:
            rows = c.execute(
                f"UPDATE webhooks SET lease_until=? WHERE id IN ("
                " SELECT id FROM webhooks"
                " WHERE next_attempt<=? AND lease_until<=? AND cursor<?"
                " ORDER BY next_attempt, id LIMIT ?"
                f") RETURNING {_COLS}",
                (now + lease, now, now, _head(c), limit),
            ).fetchall()
            # RETURNING gives no order: put them back in the order they were chosen.
            return sorted((_webhook(r) for r in rows), key=lambda w: (w.next_attempt, w.id))

        return await self._writer.run(job)

    async def settle_webhook(
        self,
        webhook_id: int,
        *,
        cursor: int | None,
        next_attempt: float,
        attempts: int,
        error: str,
    ) -> None:
        def job(c: sqlite3.Connection) -> None:
            c.execute(
                "UPDATE webhooks SET lease_until=0,"
                " cursor=CASE WHEN ? IS NULL THEN cursor ELSE max(cursor, ?) END,"
                " next_attempt=?, attempts=?, last_error=?,"
                " last_success=CASE WHEN ?='' THEN ? ELSE last_success END"
                " WHERE id=?",
                (cursor, cursor, next_attempt, attempts, error, error, time.time(), webhook_id),
            )

        await self._writer.run(job)
