"""SQLite-only behaviour: blob files on disk, the startup sweep, the writer thread,
migrations and cancellation. The backend-neutral rules live in tests/contract/."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from pathlib import Path

import pytest

from mailwright.store.api import INBOX, Account, Target
from mailwright.store.errors import Conflict, NotFound, TransientStorageError
from mailwright.store.sqlite import SqliteStore
from mailwright.store.sqlite.db import _statements, connect, migrate
from mailwright.store.sqlite.store import BLOB_REFERENCED
from tests.unit.store.helpers import with_store

BIG = b"".join(b"%07d\r\n" % i for i in range(40_000))  # 320 000 bytes: spilled


async def _alice(store: SqliteStore) -> Account:
    await store.add_domain("example.test")
    return await store.add_account("alice@example.test", "hash")


async def _deliver(store: SqliteStore, data: bytes, acct: Account, qid: str) -> None:
    blob = store.new_blob()
    blob.write(data)
    await store.deliver(blob, qid, 0, [Target(acct.id)])


def _db(tmp_path: Path) -> sqlite3.Connection:
    return sqlite3.connect(tmp_path / "mailwright.db")


def test_large_body_lives_in_a_file_under_blobs_xx(tmp_path: Path) -> None:
    async def go(store: SqliteStore) -> bytes:
        acct = await _alice(store)
        await _deliver(store, BIG, acct, "QUEUEIDLARGE7")
        await _deliver(store, b"Subject: small\r\n\r\nhi\r\n", acct, "QUEUEIDSMALL1")
        (p, _) = await store.list_placements((await store.get_mailbox(acct.id, INBOX)).id)
        return await store.read_message(p.message_id)

    assert with_store(tmp_path, go) == BIG
    rows = (
        _db(tmp_path).execute("SELECT queue_id, body IS NULL, blob_path FROM messages").fetchall()
    )
    by_qid = {q: (no_body, path) for q, no_body, path in rows}
    assert by_qid["QUEUEIDSMALL1"] == (0, None)  # inline in the row
    no_body, path = by_qid["QUEUEIDLARGE7"]
    assert no_body == 1 and path.startswith("E7/QUEUEIDLARGE7")
    assert (tmp_path / "blobs" / path).read_bytes() == BIG
    assert list((tmp_path / "blobs" / "tmp").iterdir()) == []


def test_inline_limit_is_configurable(tmp_path: Path) -> None:
    async def go(store: SqliteStore) -> None:
        acct = await _alice(store)
        await _deliver(store, b"x" * 101, acct, "Q1")

    with_store(tmp_path, go, inline_max=100)
    (path,) = _db(tmp_path).execute("SELECT blob_path FROM messages").fetchone()
    assert path is not None


def _litter(tmp_path: Path) -> tuple[Path, Path, Path]:
    """A referenced blob, an unreferenced one and a spill file, as a crash leaves them."""

    async def go(store: SqliteStore) -> None:
        await _deliver(store, BIG, await _alice(store), "QUEUEKEEP0001")

    with_store(tmp_path, go)
    (kept,) = (tmp_path / "blobs").glob("01/*")
    orphan = tmp_path / "blobs" / "zz" / "QUEUEORPHANzz.0123"
    orphan.parent.mkdir()
    orphan.write_bytes(b"never committed")
    spill = tmp_path / "blobs" / "tmp" / "0123456789abcdef"
    spill.write_bytes(b"half a message")
    return kept, orphan, spill


def test_startup_sweep_removes_spill_and_unreferenced_files(tmp_path: Path) -> None:
    kept, orphan, spill = _litter(tmp_path)

    async def read(store: SqliteStore) -> bytes:
        box = await store.get_mailbox(1, INBOX)
        (p,) = await store.list_placements(box.id)
        return await store.read_message(p.message_id)

    assert with_store(tmp_path, read) == BIG
    assert kept.exists()
    assert not orphan.exists()
    assert not spill.exists()


def test_the_sweep_looks_blobs_up_by_an_index(tmp_path: Path) -> None:
    # Not a scan of messages, whose rows hold the inline bodies: with a large mail store
    # that kept a restarting server from listening for most of a minute.
    async def nothing(store: SqliteStore) -> None:
        return None

    with_store(tmp_path, nothing)
    plan = " ".join(
        row[-1] for row in _db(tmp_path).execute(f"EXPLAIN QUERY PLAN {BLOB_REFERENCED}", ("x",))
    )
    assert "INDEX messages_blob_path" in plan, plan


def test_no_sweep_when_asked(tmp_path: Path) -> None:
    # The CLI opens the store beside a running server: it must not delete the server's
    # files that are durable but not yet committed.
    kept, orphan, spill = _litter(tmp_path)

    async def nothing(store: SqliteStore) -> None:
        return None

    with_store(tmp_path, nothing, sweep=False)
    assert kept.exists() and orphan.exists() and spill.exists()


def test_migrations_are_applied_once(tmp_path: Path) -> None:
    async def nothing(store: SqliteStore) -> None:
        return None

    with_store(tmp_path, nothing)
    with_store(tmp_path, nothing)
    (version,) = _db(tmp_path).execute("PRAGMA user_version").fetchone()
    newest = max(
        int(f.name.split("_", 1)[0])
        for f in (Path(__file__).parents[3] / "src/mailwright/store/sqlite/migrations").glob(
            "*.sql"
        )
    )
    assert version == newest


def test_migration_statements_split_where_sqlite_says_they_end() -> None:
    script = (
        "-- a comment; with a semicolon\n"
        "CREATE TABLE t (a TEXT DEFAULT ';');\n"
        "CREATE TRIGGER x AFTER INSERT ON t BEGIN\n"
        "    INSERT INTO t VALUES ('1');\n"
        "    INSERT INTO t VALUES ('2');\n"
        "END;\n"
        "-- trailing comment\n"
    )
    statements = _statements(script)
    assert len(statements) == 2
    assert statements[1].startswith("CREATE TRIGGER") and statements[1].endswith("END;")
    assert _statements("CREATE TABLE u (b)") == ["CREATE TABLE u (b)"]


def test_uidvalidity_counter_starts_above_existing_mailboxes(tmp_path: Path) -> None:
    # A database made before migration 0002 keeps its values and never repeats them.
    conn = connect(tmp_path / "mailwright.db")
    conn.execute("BEGIN")
    for statement in (
        (Path(__file__).parents[3] / "src/mailwright/store/sqlite/migrations/0001_initial.sql")
        .read_text()
        .split(";\n")
    ):
        if statement.strip():
            conn.execute(statement)
    conn.execute("PRAGMA user_version=1")
    conn.execute("INSERT INTO domains VALUES (1, 'example.test', 0)")
    conn.execute("INSERT INTO accounts(id, address, domain_id, password_hash, created_at)"
                 " VALUES (1, 'a@example.test', 1, 'h', 0)")  # fmt: skip
    conn.execute("INSERT INTO mailboxes(account_id, name, uidvalidity) VALUES (1, 'INBOX', ?)",
                 (4_000_000_000,))  # fmt: skip
    conn.execute("COMMIT")
    migrate(conn)
    conn.close()

    async def go(store: SqliteStore) -> int:
        return (await store.create_mailbox(1, "New")).uidvalidity

    assert with_store(tmp_path, go) == 4_000_000_001


def test_one_failing_job_does_not_undo_its_batch(tmp_path: Path) -> None:
    async def go(store: SqliteStore) -> list[object]:
        await store.add_domain("example.test")
        gate = threading.Event()
        blocker = asyncio.ensure_future(store._writer.run(lambda c: gate.wait(10)))
        jobs = [
            store.add_account("a@example.test", "h"),
            store.add_account("a@example.test", "h"),  # Conflict, in the same batch
            store._writer.run(lambda c: c.execute("INSERT INTO nowhere VALUES (1)")),
            store._writer.run(lambda c: 1 // 0),  # a bug, not a storage error
            store.add_account("b@example.test", "h"),
        ]
        tasks = [asyncio.ensure_future(j) for j in jobs]
        await asyncio.sleep(0)  # let every job reach the writer's queue
        gate.set()
        await blocker
        return list(await asyncio.gather(*tasks, return_exceptions=True))

    results = with_store(tmp_path, go)
    assert isinstance(results[0], Account)
    assert isinstance(results[1], Conflict)
    assert isinstance(results[2], TransientStorageError)
    assert isinstance(results[3], ZeroDivisionError)
    assert isinstance(results[4], Account)
    assert {a for (a,) in _db(tmp_path).execute("SELECT address FROM accounts")} == {
        "a@example.test",
        "b@example.test",
    }


def test_writer_survives_a_buggy_job(tmp_path: Path) -> None:
    async def go(store: SqliteStore) -> list[str]:
        with pytest.raises(KeyError):
            await store._writer.run(lambda c: {}["missing"])
        await store.add_domain("still.works")
        return [d.name for d in await store.list_domains()]

    assert with_store(tmp_path, go) == ["still.works"]


def test_reader_errors_are_storage_errors(tmp_path: Path) -> None:
    async def go(store: SqliteStore) -> None:
        with pytest.raises(TransientStorageError):
            await store._readers.run(lambda c: c.execute("SELECT * FROM nowhere"))

    with_store(tmp_path, go)


def test_cancelled_delivery_never_leaves_a_row_without_its_file(tmp_path: Path) -> None:
    # A session cancelled (client gone, timeout) while its delivery waits for the writer:
    # the queued job may still commit, so the file it references must stay.
    async def go(store: SqliteStore) -> tuple[list[int], bytes | None]:
        acct = await _alice(store)
        gate = threading.Event()
        queued = asyncio.Event()
        blocker = asyncio.ensure_future(store._writer.run(lambda c: gate.wait(10)))
        real_run = store._writer.run

        async def run(job):  # type: ignore[no-untyped-def]
            queued.set()
            return await real_run(job)

        store._writer.run = run  # type: ignore[method-assign]
        task = asyncio.ensure_future(_deliver(store, BIG, acct, "QUEUECANCEL01"))
        await asyncio.wait_for(queued.wait(), 10)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        gate.set()
        await blocker
        store._writer.run = real_run  # type: ignore[method-assign]
        await store.list_domains()
        await store.add_domain("after.test")  # runs after the cancelled job's batch
        box = await store.get_mailbox(acct.id, INBOX)
        placements = await store.list_placements(box.id)
        body = await store.read_message(placements[0].message_id) if placements else None
        return [p.uid for p in placements], body

    uids, body = with_store(tmp_path, go)
    assert uids == [1] and body == BIG


def test_read_message_whose_file_vanished_is_not_found(tmp_path: Path) -> None:
    async def go(store: SqliteStore) -> None:
        acct = await _alice(store)
        await _deliver(store, BIG, acct, "QUEUEVANISH01")
        (p,) = await store.list_placements((await store.get_mailbox(acct.id, INBOX)).id)
        for f in (tmp_path / "blobs").glob("01/*"):
            f.unlink()
        with pytest.raises(NotFound):
            await store.read_message(p.message_id)

    with_store(tmp_path, go)


def test_blob_from_another_store_is_refused(tmp_path: Path) -> None:
    from mailwright.store.errors import StoreError

    class Foreign:
        size = 0

        def write(self, data: bytes) -> None: ...

        def abort(self) -> None: ...

    async def go(store: SqliteStore) -> None:
        with pytest.raises(StoreError):
            await store.deliver(Foreign(), "Q", 0, [Target(1)])

    with_store(tmp_path, go)


def test_wal_and_full_sync(tmp_path: Path) -> None:
    async def go(store: SqliteStore) -> tuple[str, int]:
        conn = store._writer._conn
        return (
            conn.execute("PRAGMA journal_mode").fetchone()[0],
            conn.execute("PRAGMA synchronous").fetchone()[0],
        )

    assert with_store(tmp_path, go) == ("wal", 2)


def _database_at_version_2(tmp_path: Path) -> None:
    conn = connect(tmp_path / "mailwright.db")
    conn.execute("BEGIN")
    for name in ("0001_initial.sql", "0002_uidvalidity.sql"):
        sql = (
            Path(__file__).parents[3] / "src/mailwright/store/sqlite/migrations" / name
        ).read_text()
        for statement in sql.split(";\n"):
            if statement.strip():
                conn.execute(statement)
    conn.execute("PRAGMA user_version=2")
    conn.execute("INSERT INTO domains VALUES (1, 'example.test', 0)")
    conn.execute("INSERT INTO accounts(id, address, domain_id, password_hash, used_bytes,"
                 " created_at) VALUES (1, 'a@example.test', 1, 'h', 30, 0)")  # fmt: skip
    conn.execute("INSERT INTO mailboxes(id, account_id, name, uidvalidity, uidnext, highestmodseq,"
                 " subscribed, message_count, total_size) VALUES (1, 1, 'INBOX', 7, 4, 9, 1, 3, 30),"
                 " (2, 1, 'Hidden', 8, 1, 1, 0, 0, 0)")  # fmt: skip
    for i, flags in enumerate(["", "\\Seen", "\\Deleted \\Seen"], start=1):
        conn.execute("INSERT INTO messages(id, queue_id, size, received_at, body, refcount)"
                     " VALUES (?, ?, 10, 0, x'41', 1)", (i, f"Q{i}"))  # fmt: skip
        conn.execute("INSERT INTO placements(mailbox_id, uid, message_id, flags, modseq,"
                     " internal_date) VALUES (1, ?, ?, ?, ?, 0)", (i, i, flags, i + 1))  # fmt: skip
    conn.execute("COMMIT")
    conn.close()


def test_migration_3_fills_what_imap_needs(tmp_path: Path) -> None:
    _database_at_version_2(tmp_path)

    async def go(store: SqliteStore) -> None:
        inbox = await store.get_mailbox(1, INBOX)
        # Counters from the existing rows; nothing already there counts as \Recent.
        assert (inbox.messages, inbox.unseen, inbox.deleted, inbox.recent) == (3, 1, 1, 0)
        assert inbox.recent_uid == 4
        assert await store.list_subscriptions(1) == [INBOX]
        assert [p.size for p in await store.list_placements(inbox.id)] == [10, 10, 10]
        # New ids continue above the old ones.
        box = await store.create_mailbox(1, "New")
        assert box.id == 3
        await _deliver(store, b"Subject: x\r\n\r\nx\r\n", Account(1, "", "", None, 0), "Q9")
        (p,) = [p for p in await store.list_placements(inbox.id) if p.uid == 4]
        assert p.message_id == 4

    with_store(tmp_path, go)
    columns = [r[1] for r in _db(tmp_path).execute("PRAGMA table_info(mailboxes)")]
    assert "subscribed" not in columns


def test_fast_placement_equals_the_dataclass() -> None:
    from mailwright.store.api import Placement
    from mailwright.store.sqlite.store import _new_placement

    made = _new_placement(1, 2, frozenset({"\\Seen"}), 3, 4, 5)
    real = Placement(1, 2, frozenset({"\\Seen"}), 3, 4, 5)
    assert type(made) is Placement
    assert made == real and hash(made) == hash(real) and repr(made) == repr(real)


def test_list_placements_reads_placements_in_uid_order_only(tmp_path: Path) -> None:
    # 100k messages: one primary-key scan, no lookup per message; changes by MODSEQ index.
    async def go(store: SqliteStore) -> None:
        await _alice(store)

    with_store(tmp_path, go)
    from mailwright.store.sqlite.store import _PLACEMENT_SELECT

    conn = _db(tmp_path)
    plan = [
        r[3]
        for r in conn.execute("EXPLAIN QUERY PLAN " + _PLACEMENT_SELECT + " ORDER BY p.uid", (1,))
    ]
    assert plan == ["SEARCH p USING PRIMARY KEY (mailbox_id=?)"]


def test_the_wal_is_checkpointed_by_its_own_thread(tmp_path: Path) -> None:
    # Commits never checkpoint (that stalled every session waiting on them); the
    # checkpoint thread copies the WAL into the database as commits go by.
    async def go(store: SqliteStore) -> tuple[int, int]:
        acct = await _alice(store)
        before = (tmp_path / "mailwright.db").stat().st_size
        body = b"Subject: x\r\n\r\n" + b"y" * 8000 + b"\r\n"
        for n in range(200):
            await _deliver(store, body, acct, f"QUEUEIDWAL{n:05d}")
        deadline = time.monotonic() + 10
        while (tmp_path / "mailwright.db").stat().st_size < before + 200 * 8000:
            assert time.monotonic() < deadline, "no checkpoint within 10 s"
            await asyncio.sleep(0.05)
        (auto,) = store._writer._conn.execute("PRAGMA wal_autocheckpoint").fetchone()
        return auto, (tmp_path / "mailwright.db").stat().st_size

    auto, size = with_store(tmp_path, go)
    assert auto == 0 and size > 200 * 8000


def test_the_wal_is_started_over_under_a_steady_load(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Commits that land while a checkpoint copies keep the log from ever being found fully
    # copied: without the catch-up under the write lock the log only grew (to gigabytes
    # under a long load) and SQLite never started it over.
    from mailwright.store.sqlite import db

    monkeypatch.setattr(db, "WAL_RESTART_FRAMES", 64)
    monkeypatch.setattr(db, "_CHECKPOINT_EVERY", 4)
    wal = tmp_path / "mailwright.db-wal"
    body = b"Subject: x\r\n\r\n" + b"y" * 8000 + b"\r\n"

    async def go(store: SqliteStore) -> int:
        acct = await _alice(store)
        largest = 0

        async def sender(n: int) -> None:
            nonlocal largest
            for k in range(150):
                await _deliver(store, body, acct, f"QUEUEIDLOAD{n:02d}{k:04d}")
                largest = max(largest, wal.stat().st_size)

        await asyncio.gather(*(sender(n) for n in range(8)))
        return largest

    largest = with_store(tmp_path, go)
    # 1,200 messages of 8 KB: the log reached 22 MB when it was never started over, and
    # stays under 1 MB when it is (the bound leaves room for a slow checkpoint thread).
    assert largest < 8_000_000, f"the log reached {largest} bytes"
