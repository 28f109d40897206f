"""The HTTP API's tables on SQLite (``store.api.Api``): keys, sends, event queries.

Invariants (beyond those of ``store.api.Api``):
- a send's row and its tags are inserted by ``insert_send`` inside the job that stores
  its message (``SqliteStore.deliver``), never on their own;
- only events of messages with an ``api_sends`` row are listed by ``query_events``.
"""

from __future__ import annotations

import json
import secrets
import sqlite3
import time
from collections.abc import Sequence
from typing import Any

from mailwright.store.api import (
    ApiKey,
    ApiSend,
    ApiTemplate,
    EventQuery,
    MailEvent,
    ScheduledSend,
    Suppression,
)
from mailwright.store.errors import DuplicateRequest, NotFound
from mailwright.store.sqlite.db import Readers, Writer
from mailwright.store.sqlite.queue import event_from_row, insert_events

_KEY_COLS = (
    "id, name, prefix, scopes, sender_domain, created_at, revoked_at, daily_quota, rate_limit"
)
_SEND_COLS = (
    "queue_id, key_id, sender_domain, idempotency_key, fingerprint, metadata, created_at,"
    " recipients"
)
_TEMPLATE_COLS = "id, name, subject, text, html, sender_domain, created_at, updated_at"
_SUPPRESSION_COLS = "address, reason, detail, queue_id, created_at"
_SCHEDULED_COLS = (
    "queue_id, key_id, sender_domain, due, request, idempotency_key, fingerprint, created_at,"
    " attempts, last_error"
)
MAX_EVENTS = 1000  # a page of events at most


def _key(row: Sequence[Any]) -> ApiKey:
    return ApiKey(
        id=row[0],
        name=row[1],
        prefix=row[2],
        scopes=frozenset(s for s in row[3].split(",") if s),
        sender_domain=row[4],
        created_at=row[5],
        revoked=row[6] is not None,
        daily_quota=row[7],
        rate_limit=row[8],
    )


def _send(c: sqlite3.Connection, row: Sequence[Any]) -> ApiSend:
    tags = c.execute("SELECT tag FROM api_tags WHERE queue_id=? ORDER BY tag", (row[0],))
    return ApiSend(
        queue_id=row[0],
        key_id=row[1],
        sender_domain=row[2],
        idempotency_key=row[3],
        fingerprint=row[4],
        metadata=json.loads(row[5]),
        created_at=row[6],
        recipients=row[7],
        tags=tuple(t for (t,) in tags),
    )


def insert_send(c: sqlite3.Connection, queue_id: str, send: ApiSend) -> None:
    """Record an API send (in the job that stores its message)."""
    try:
        c.execute(
            f"INSERT INTO api_sends({_SEND_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                queue_id,
                send.key_id,
                send.sender_domain.lower(),
                send.idempotency_key,
                send.fingerprint,
                json.dumps(dict(send.metadata), ensure_ascii=False, sort_keys=True),
                send.created_at or time.time(),
                send.recipients,
            ),
        )
    except sqlite3.IntegrityError:
        raise DuplicateRequest(
            f"idempotency key {send.idempotency_key!r} was used for another message"
        ) from None
    c.executemany(
        "INSERT OR IGNORE INTO api_tags(tag, queue_id) VALUES (?, ?)",
        [(tag, queue_id) for tag in send.tags],
    )


class SqliteApi:
    """Mixed into ``SqliteStore``: needs its writer and readers."""

    _writer: Writer
    _readers: Readers

    async def create_key(
        self,
        name: str,
        prefix: str,
        secret_hash: bytes,
        scopes: frozenset[str],
        sender_domain: str | None,
        *,
        daily_quota: int | None = None,
        rate_limit: int | None = None,
    ) -> ApiKey:
        def job(c: sqlite3.Connection) -> ApiKey:
            row = c.execute(
                "INSERT INTO api_keys(name, prefix, secret_hash, scopes, sender_domain,"
                " created_at, daily_quota, rate_limit) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
                f" RETURNING {_KEY_COLS}",
                (
                    name,
                    prefix,
                    secret_hash,
                    ",".join(sorted(scopes)),
                    sender_domain.lower() if sender_domain else None,
                    time.time(),
                    daily_quota,
                    rate_limit,
                ),
            ).fetchone()
            return _key(row)

        return await self._writer.run(job)

    async def set_key_limits(
        self, key_id: int, daily_quota: int | None, rate_limit: int | None
    ) -> ApiKey:
        def job(c: sqlite3.Connection) -> ApiKey:
            row = c.execute(
                f"UPDATE api_keys SET daily_quota=?, rate_limit=? WHERE id=? RETURNING {_KEY_COLS}",
                (daily_quota, rate_limit, key_id),
            ).fetchone()
            if row is None:
                raise NotFound(f"no API key {key_id}")
            return _key(row)

        return await self._writer.run(job)

    async def usage(self, key_id: int, since: float) -> tuple[int, int]:
        def job(c: sqlite3.Connection) -> tuple[int, int]:
            row = c.execute(
                "SELECT count(*), coalesce(sum(recipients), 0) FROM api_sends"
                " WHERE key_id=? AND created_at >= ?",
                (key_id, since),
            ).fetchone()
            return int(row[0]), int(row[1])

        return await self._readers.run(job, quick=False)

    async def key_by_hash(self, secret_hash: bytes) -> ApiKey | None:
        def job(c: sqlite3.Connection) -> ApiKey | None:
            row = c.execute(
                f"SELECT {_KEY_COLS} FROM api_keys WHERE secret_hash=?", (secret_hash,)
            ).fetchone()
            return None if row is None else _key(row)

        return await self._readers.run(job)

    async def list_keys(self) -> list[ApiKey]:
        def job(c: sqlite3.Connection) -> list[ApiKey]:
            return [_key(r) for r in c.execute(f"SELECT {_KEY_COLS} FROM api_keys ORDER BY id")]

        return await self._readers.run(job)

    async def revoke_key(self, key_id: int) -> None:
        def job(c: sqlite3.Connection) -> None:
            row = c.execute(
                "UPDATE api_keys SET revoked_at=coalesce(revoked_at, ?) WHERE id=? RETURNING id",
                (time.time(), key_id),
            ).fetchone()
            if row is None:
                raise NotFound(f"no API key {key_id}")

        await self._writer.run(job)

    async def find_send(self, key_id: int, idempotency_key: str) -> ApiSend | None:
        def job(c: sqlite3.Connection) -> ApiSend | None:
            row = c.execute(
                f"SELECT {_SEND_COLS} FROM api_sends WHERE key_id=? AND idempotency_key=?",
                (key_id, idempotency_key),
            ).fetchone()
            return None if row is None else _send(c, row)

        return await self._readers.run(job)

    async def get_send(self, queue_id: str) -> ApiSend | None:
        def job(c: sqlite3.Connection) -> ApiSend | None:
            row = c.execute(
                f"SELECT {_SEND_COLS} FROM api_sends WHERE queue_id=?", (queue_id,)
            ).fetchone()
            return None if row is None else _send(c, row)

        return await self._readers.run(job)

    async def save_template(self, template: ApiTemplate) -> ApiTemplate:
        now = time.time()

        def job(c: sqlite3.Connection) -> ApiTemplate:
            row = c.execute(
                f"INSERT INTO api_templates({_TEMPLATE_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT(id) DO UPDATE SET name=excluded.name, subject=excluded.subject,"
                " text=excluded.text, html=excluded.html, updated_at=excluded.updated_at"
                f" RETURNING {_TEMPLATE_COLS}",
                (
                    template.id,
                    template.name,
                    template.subject,
                    template.text,
                    template.html,
                    template.sender_domain,
                    template.created_at or now,
                    template.updated_at or now,
                ),
            ).fetchone()
            return ApiTemplate(*row)

        return await self._writer.run(job)

    async def get_template(self, template_id: str) -> ApiTemplate | None:
        def job(c: sqlite3.Connection) -> ApiTemplate | None:
            row = c.execute(
                f"SELECT {_TEMPLATE_COLS} FROM api_templates WHERE id=?", (template_id,)
            ).fetchone()
            return None if row is None else ApiTemplate(*row)

        return await self._readers.run(job)

    async def list_templates(self, sender_domain: str | None = None) -> list[ApiTemplate]:
        def job(c: sqlite3.Connection) -> list[ApiTemplate]:
            if sender_domain is None:
                rows = c.execute(f"SELECT {_TEMPLATE_COLS} FROM api_templates ORDER BY id")
            else:
                rows = c.execute(
                    f"SELECT {_TEMPLATE_COLS} FROM api_templates WHERE sender_domain=? ORDER BY id",
                    (sender_domain.lower(),),
                )
            return [ApiTemplate(*r) for r in rows]

        return await self._readers.run(job)

    async def delete_template(self, template_id: str) -> None:
        def job(c: sqlite3.Connection) -> None:
            if c.execute("DELETE FROM api_templates WHERE id=?", (template_id,)).rowcount == 0:
                raise NotFound(f"no template {template_id}")

        await self._writer.run(job)

    async def record_send(self, queue_id: str, send: ApiSend, events: Sequence[MailEvent]) -> None:
        def job(c: sqlite3.Connection) -> None:
            insert_send(c, queue_id, send)
            insert_events(c, events)

        await self._writer.run(job)

    async def suppress(
        self, entries: Sequence[Suppression], events: Sequence[MailEvent] = ()
    ) -> None:
        now = time.time()

        def job(c: sqlite3.Connection) -> None:
            c.executemany(
                f"INSERT OR REPLACE INTO suppressions({_SUPPRESSION_COLS}) VALUES (?, ?, ?, ?, ?)",
                [
                    (e.address.lower(), e.reason, e.detail, e.queue_id, e.created_at or now)
                    for e in entries
                ],
            )
            insert_events(c, events)

        await self._writer.run(job)

    async def unsuppress(self, address: str) -> None:
        def job(c: sqlite3.Connection) -> None:
            gone = c.execute("DELETE FROM suppressions WHERE address=?", (address.lower(),))
            if gone.rowcount == 0:
                raise NotFound(f"{address} is not suppressed")

        await self._writer.run(job)

    async def suppressed(self, addresses: Sequence[str]) -> dict[str, Suppression]:
        keys = sorted({a.lower() for a in addresses})

        def job(c: sqlite3.Connection) -> dict[str, Suppression]:
            out: dict[str, Suppression] = {}
            for i in range(0, len(keys), 500):
                part = keys[i : i + 500]
                rows = c.execute(
                    f"SELECT {_SUPPRESSION_COLS} FROM suppressions"
                    f" WHERE address IN ({','.join('?' * len(part))})",
                    part,
                )
                for r in rows:
                    out[r[0]] = Suppression(*r)
            return out

        if not keys:
            return {}
        return await self._readers.run(job)

    async def list_suppressions(self, after: str = "", limit: int = 100) -> list[Suppression]:
        def job(c: sqlite3.Connection) -> list[Suppression]:
            rows = c.execute(
                f"SELECT {_SUPPRESSION_COLS} FROM suppressions WHERE address > ?"
                " ORDER BY address LIMIT ?",
                (after.lower(), max(1, min(limit, MAX_EVENTS))),
            )
            return [Suppression(*r) for r in rows]

        return await self._readers.run(job)

    async def secret(self, name: str) -> bytes:
        def read(c: sqlite3.Connection) -> bytes | None:
            row = c.execute("SELECT value FROM api_secrets WHERE name=?", (name,)).fetchone()
            return None if row is None else bytes(row[0])

        found = await self._readers.run(read)
        if found is not None:
            return found
        fresh = secrets.token_bytes(32)

        def make(c: sqlite3.Connection) -> bytes:
            # Another process may have made it meanwhile: theirs wins, everywhere.
            c.execute("INSERT OR IGNORE INTO api_secrets(name, value) VALUES (?, ?)", (name, fresh))
            return bytes(
                c.execute("SELECT value FROM api_secrets WHERE name=?", (name,)).fetchone()[0]
            )

        return await self._writer.run(make)

    async def get_key(self, key_id: int) -> ApiKey | None:
        def job(c: sqlite3.Connection) -> ApiKey | None:
            row = c.execute(f"SELECT {_KEY_COLS} FROM api_keys WHERE id=?", (key_id,)).fetchone()
            return None if row is None else _key(row)

        return await self._readers.run(job)

    async def schedule_send(self, entry: ScheduledSend) -> None:
        def job(c: sqlite3.Connection) -> None:
            try:
                c.execute(
                    f"INSERT INTO api_scheduled({_SCHEDULED_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 0, '')",
                    (
                        entry.queue_id,
                        entry.key_id,
                        entry.sender_domain.lower(),
                        entry.due,
                        entry.request,
                        entry.idempotency_key,
                        entry.fingerprint,
                        entry.created_at or time.time(),
                    ),
                )
            except sqlite3.IntegrityError:
                raise DuplicateRequest(
                    f"idempotency key {entry.idempotency_key!r} was used for another message"
                ) from None

        await self._writer.run(job)

    async def get_scheduled(self, queue_id: str) -> ScheduledSend | None:
        def job(c: sqlite3.Connection) -> ScheduledSend | None:
            row = c.execute(
                f"SELECT {_SCHEDULED_COLS} FROM api_scheduled WHERE queue_id=?", (queue_id,)
            ).fetchone()
            return None if row is None else ScheduledSend(*row)

        return await self._readers.run(job)

    async def find_scheduled(self, key_id: int, idempotency_key: str) -> ScheduledSend | None:
        def job(c: sqlite3.Connection) -> ScheduledSend | None:
            row = c.execute(
                f"SELECT {_SCHEDULED_COLS} FROM api_scheduled WHERE key_id=? AND idempotency_key=?",
                (key_id, idempotency_key),
            ).fetchone()
            return None if row is None else ScheduledSend(*row)

        return await self._readers.run(job)

    async def next_scheduled(self) -> float | None:
        def job(c: sqlite3.Connection) -> float | None:
            (due,) = c.execute("SELECT min(due) FROM api_scheduled").fetchone()
            return None if due is None else float(due)

        return await self._readers.run(job)

    async def claim_scheduled(self, now: float, limit: int, lease: float) -> list[ScheduledSend]:
        def job(c: sqlite3.Connection) -> list[ScheduledSend]:
            rows = c.execute(
                f"UPDATE api_scheduled SET lease_until=? WHERE queue_id IN"
                " (SELECT queue_id FROM api_scheduled WHERE due <= ? AND lease_until <= ?"
                f" ORDER BY due LIMIT ?) RETURNING {_SCHEDULED_COLS}",
                (now + lease, now, now, limit),
            ).fetchall()
            return sorted((ScheduledSend(*r) for r in rows), key=lambda e: e.due)

        return await self._writer.run(job)

    async def settle_scheduled(
        self, queue_id: str, *, retry_at: float | None = None, error: str = ""
    ) -> None:
        def job(c: sqlite3.Connection) -> None:
            if retry_at is None:
                c.execute("DELETE FROM api_scheduled WHERE queue_id=?", (queue_id,))
            else:
                c.execute(
                    "UPDATE api_scheduled SET due=?, lease_until=0, attempts=attempts+1,"
                    " last_error=? WHERE queue_id=?",
                    (retry_at, error[:500], queue_id),
                )

        await self._writer.run(job)

    async def cancel_scheduled(self, queue_id: str) -> bool:
        now = time.time()

        def job(c: sqlite3.Connection) -> bool:
            gone = c.execute(
                "DELETE FROM api_scheduled WHERE queue_id=? AND lease_until <= ?", (queue_id, now)
            )
            return gone.rowcount > 0

        return await self._writer.run(job)

    async def query_events(self, query: EventQuery) -> list[MailEvent]:
        where = ["e.id > ?"]
        args: list[object] = [query.after]
        if query.queue_id is not None:
            where.append("e.queue_id = ?")
            args.append(query.queue_id)
        if query.recipient is not None:
            where.append("e.recipient = ?")
            args.append(query.recipient)
        if query.types:
            where.append(f"e.type IN ({','.join('?' * len(query.types))})")
            args.extend(query.types)
        if query.tag is not None:
            where.append("e.queue_id IN (SELECT queue_id FROM api_tags WHERE tag = ?)")
            args.append(query.tag)
        if query.since is not None:
            where.append("e.time >= ?")
            args.append(query.since)
        if query.until is not None:
            where.append("e.time < ?")
            args.append(query.until)
        if query.sender_domain is not None:
            where.append("s.sender_domain = ?")
            args.append(query.sender_domain.lower())
        args.append(max(1, min(query.limit, MAX_EVENTS)))
        sql = (
            "SELECT e.id, e.time, e.queue_id, e.message_id, e.recipient, e.type, e.detail"
            " FROM events e JOIN api_sends s ON s.queue_id = e.queue_id"
            f" WHERE {' AND '.join(where)} ORDER BY e.id LIMIT ?"
        )

        def job(c: sqlite3.Connection) -> list[MailEvent]:
            return [event_from_row(r) for r in c.execute(sql, args)]

        return await self._readers.run(job, quick=False)
