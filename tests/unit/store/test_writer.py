"""The writer thread's commits (store/sqlite/db.py): durable by default, and without an
fsync of their own only when every job of the batch said so."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from pathlib import Path

from mailwright.store.sqlite.db import Writer, connect

FULL, OFF = 2, 0


def _synchronous(c: sqlite3.Connection) -> int:
    return int(c.execute("PRAGMA synchronous").fetchone()[0])


def test_lazy_batches_skip_the_fsync_and_durable_ones_keep_it(tmp_path: Path) -> None:
    db = tmp_path / "t.db"
    writer = Writer(db)

    async def scenario() -> None:
        await writer.run(lambda c: c.execute("CREATE TABLE IF NOT EXISTS t (v INTEGER)"))

        def insert(v: int) -> Callable[[sqlite3.Connection], int]:
            def job(c: sqlite3.Connection) -> int:
                c.execute("INSERT INTO t VALUES (?)", (v,))
                return _synchronous(c)

            return job

        assert await writer.run(insert(1)) == FULL
        assert await writer.run(insert(2), durable=False) == OFF
        # A batch with one durable job is durable for all of it.
        together = await asyncio.gather(writer.run(insert(3), durable=False), writer.run(insert(4)))
        assert together[0] == together[1]
        assert await writer.run(insert(5)) == FULL  # back to FULL after a lazy batch

    try:
        asyncio.run(scenario())
    finally:
        writer.close()
    check = connect(db)
    try:
        assert sorted(v for (v,) in check.execute("SELECT v FROM t")) == [1, 2, 3, 4, 5]
    finally:
        check.close()
