"""The writer thread's commits (store/sqlite/db.py): durable by default, and without an
fsync of their own only when every job of the batch said so."""

from __future__ import annotations

import asyncio
import fcntl
import os
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest

from mailwright.store.errors import Conflict, TransientStorageError
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


def _rows(db: Path) -> list[int]:
    check = connect(db)
    try:
        return sorted(v for (v,) in check.execute("SELECT v FROM t"))
    finally:
        check.close()


def _insert_then(v: int, error: Exception | None) -> Callable[[sqlite3.Connection], int]:
    def job(c: sqlite3.Connection) -> int:
        c.execute("INSERT INTO t VALUES (?)", (v,))
        if error is not None:
            raise error
        return v

    return job


def test_a_failing_job_alone_in_its_batch_leaves_nothing_and_the_writer_goes_on(
    tmp_path: Path,
) -> None:
    # A job alone runs without a savepoint: its failure rolls back the whole transaction.
    db = tmp_path / "t.db"
    writer = Writer(db)

    async def scenario() -> None:
        await writer.run(lambda c: c.execute("CREATE TABLE t (v INTEGER)"))
        commits = writer.commits
        with pytest.raises(Conflict):
            await writer.run(_insert_then(1, Conflict("duplicate")))
        with pytest.raises(ZeroDivisionError):  # a bug in a job fails that job only
            await writer.run(_insert_then(2, ZeroDivisionError()))
        with pytest.raises(TransientStorageError):
            await writer.run(lambda c: c.execute("INSERT INTO missing VALUES (1)"))
        assert writer.commits == commits  # nothing was committed for them
        assert await writer.run(_insert_then(3, None)) == 3

    try:
        asyncio.run(scenario())
    finally:
        writer.close()
    assert _rows(db) == [3]


def test_in_a_batch_a_failing_job_rolls_back_only_its_own_changes(tmp_path: Path) -> None:
    db = tmp_path / "t.db"
    writer = Writer(db)

    async def scenario() -> None:
        await writer.run(lambda c: c.execute("CREATE TABLE t (v INTEGER)"))
        commits = writer.commits
        # Holding the installation's write lock makes the writer wait, so the three jobs
        # queued meanwhile become one batch when it is let go.
        fd = os.open(f"{db}.writelock", os.O_RDWR)
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            runs = [
                asyncio.ensure_future(writer.run(_insert_then(v, error)))
                for v, error in ((1, None), (2, Conflict("no")), (3, None))
            ]
            await asyncio.sleep(0.05)
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)
        results = await asyncio.gather(*runs, return_exceptions=True)
        assert results[0] == 1 and results[2] == 3
        assert isinstance(results[1], Conflict)
        assert writer.commits == commits + 1  # one commit for the batch

    try:
        asyncio.run(scenario())
    finally:
        writer.close()
    assert _rows(db) == [1, 3]


def test_savepoint_journals_stay_in_memory(tmp_path: Path) -> None:
    writer = Writer(tmp_path / "t.db")

    async def temp_store() -> int:
        return int(await writer.run(lambda c: c.execute("PRAGMA temp_store").fetchone()[0]))

    try:
        assert asyncio.run(temp_store()) == 2  # MEMORY
    finally:
        writer.close()
