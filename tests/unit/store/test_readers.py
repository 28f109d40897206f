"""Readers: a read runs on the loop's own thread within its budget, else on a reader thread."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest

from mailwright.store.errors import NotFound, TransientStorageError
from mailwright.store.sqlite import SqliteStore
from mailwright.store.sqlite.db import QUICK_STEPS, QUICK_TICKS
from tests.unit.store.helpers import with_store

# A recursive count: about ten VM steps a row, so this many rows is far over the budget.
_LONG = 20 * QUICK_STEPS * QUICK_TICKS
_COUNT = (
    "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i<?) SELECT count(*) FROM n"
)


def _where(c: sqlite3.Connection, sql: str, *args: object) -> tuple[int, object]:
    (value,) = c.execute(sql, args).fetchone()
    return threading.get_ident(), value


def test_a_point_read_runs_on_the_callers_thread(tmp_path: Path) -> None:
    async def go(store: SqliteStore) -> tuple[int, object]:
        return await store._readers.run(lambda c: _where(c, "SELECT count(*) FROM domains"))

    thread, value = with_store(tmp_path, go)
    assert thread == threading.get_ident()
    assert value == 0


def test_a_read_over_its_budget_is_done_again_on_a_reader_thread(tmp_path: Path) -> None:
    async def go(store: SqliteStore) -> list[tuple[int, object]]:
        run = store._readers.run
        return [
            await run(lambda c: _where(c, _COUNT, _LONG)),
            await run(lambda c: _where(c, _COUNT, 3)),  # the next one is quick again
        ]

    (long_thread, long_count), (short_thread, short_count) = with_store(tmp_path, go)
    assert long_thread != threading.get_ident()
    assert long_count == _LONG  # the whole answer, not the part done before the interrupt
    assert short_thread == threading.get_ident()
    assert short_count == 3


def test_quick_false_goes_to_a_reader_thread_at_once(tmp_path: Path) -> None:
    async def go(store: SqliteStore) -> tuple[int, object]:
        return await store._readers.run(lambda c: _where(c, "SELECT 1"), quick=False)

    thread, _ = with_store(tmp_path, go)
    assert thread != threading.get_ident()


def test_an_interrupted_transaction_does_not_pin_an_old_snapshot(tmp_path: Path) -> None:
    # A job that opened a read transaction and was interrupted must not leave the loop's
    # connection inside it: the next quick read would see the database as it was then.
    def long_in_transaction(c: sqlite3.Connection) -> object:
        c.execute("BEGIN")
        c.execute("SELECT count(*) FROM domains").fetchone()
        return _where(c, _COUNT, _LONG)[1]

    async def go(store: SqliteStore) -> list[str]:
        await store._readers.run(long_in_transaction)
        await store.add_domain("after.test")
        return [d.name for d in await store.list_domains()]

    assert with_store(tmp_path, go) == ["after.test"]


def test_a_busy_database_sends_the_read_to_a_thread_instead_of_blocking_the_loop(
    tmp_path: Path,
) -> None:
    # SQLITE_BUSY (a WAL reader meets a recovery or a connection in exclusive locking
    # mode, which a test cannot make beside the store's own): the loop's connection never
    # waits (busy_timeout 0), and the read is made again on a reader thread, which waits.
    calls: list[int] = []

    def busy_once(c: sqlite3.Connection) -> int:
        calls.append(threading.get_ident())
        if len(calls) == 1:
            exc = sqlite3.OperationalError("database is locked")
            exc.sqlite_errorcode = sqlite3.SQLITE_BUSY  # type: ignore[attr-defined]
            raise exc
        return threading.get_ident()

    async def go(store: SqliteStore) -> tuple[int, int]:
        timeout = store._readers._inline(lambda c: c.execute("PRAGMA busy_timeout").fetchone())
        return await store._readers.run(busy_once), timeout[1][0]

    thread, busy_timeout = with_store(tmp_path, go)
    assert busy_timeout == 0
    assert calls[0] == threading.get_ident()
    assert thread == calls[1] != threading.get_ident()


def test_errors_of_a_quick_read_are_the_stores_own(tmp_path: Path) -> None:
    async def go(store: SqliteStore) -> None:
        with pytest.raises(TransientStorageError):
            await store._readers.run(lambda c: c.execute("SELECT * FROM nowhere"))
        with pytest.raises(NotFound):
            await store.read_message(12345)

    with_store(tmp_path, go)


def test_expunged_since_reads_the_recent_expunges_not_the_whole_history(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Every IMAP command's sync asks which UIDs went since the session's MODSEQ: with a
    # long expunge history it must find the few new ones by the MODSEQ index, within the
    # quick read's budget, not walk the history (which would send it to a thread).
    history = 20 * QUICK_STEPS * QUICK_TICKS // 10  # far more rows than the budget reads
    to_thread: list[int] = []

    async def go(store: SqliteStore) -> list[int]:
        await store.add_domain("example.test")
        acct = await store.add_account("alice@example.test", "hash")
        box = await store.get_mailbox(acct.id, "INBOX")

        def fill(c: sqlite3.Connection) -> None:
            c.executemany(
                "INSERT INTO expunged(mailbox_id, uid, modseq) VALUES (?, ?, ?)",
                [(box.id, uid, uid) for uid in range(1, history + 3)],
            )

        await store._writer.run(fill)
        real = store._readers._call
        monkeypatch.setattr(store._readers, "_call", lambda job: to_thread.append(1) or real(job))
        return await store.expunged_since(box.id, history)

    assert with_store(tmp_path, go) == [history + 1, history + 2]
    assert to_thread == []
