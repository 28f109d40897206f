"""SQLite plumbing: one writer thread with group commit, and a small reader pool.

Invariants:
- every write runs on the writer thread; the writer takes every job waiting in its
  queue, runs each inside its own SAVEPOINT of one transaction, and commits once;
  with ``journal_mode=WAL`` and ``synchronous=FULL`` that commit is fsynced, so a
  job's future resolves only once its changes are on disk (group commit); a batch of
  jobs that all said ``durable=False`` (state whose loss in a power cut harms nobody,
  such as which IMAP session saw a message first) commits with ``synchronous=OFF``:
  no fsync of its own, on disk with the next durable commit (which fsyncs the whole WAL,
  frames before it included), and as consistent as any other transaction;
- one failing job rolls back its own savepoint only; the others in the batch commit (a
  job alone in its batch runs without a savepoint, and its failure rolls back all);
- writers of several processes (worker processes, the CLI) take turns through an
  ``flock`` on ``<db>.writelock`` around each transaction: a waiting writer wakes the
  moment the lock is free, where SQLite's own busy handler would sleep 1, 2, 5… ms;
- reads use connections of their own (WAL readers never wait for the writer); a read
  first runs on the calling thread (the event loop's) within a budget of SQLite VM steps
  (``QUICK_STEPS`` times ``QUICK_TICKS``, well under a millisecond), and one that needs more,
  or finds the database busy, is interrupted and run again on a reader thread: a point
  lookup costs microseconds where a hop to a thread and back costs a millisecond or more
  on a busy loop, and a scan never holds the loop for longer than the budget. A job that
  is known to scan says ``quick=False`` and goes to a thread at once. Reader jobs only
  read, so running one again after an interruption is safe;
- the WAL is checkpointed by a thread of its own (PASSIVE, outside the write lock), not
  by whichever commit crosses SQLite's threshold: a checkpoint copies megabytes into the
  database and fsyncs it, and done inside a commit it held every session waiting on that
  commit for up to 200 ms. Once the log is ``WAL_RESTART_FRAMES`` long, the thread copies
  what came in meanwhile under the write lock, so that the next commit starts the log
  over: otherwise a steady load keeps it growing without end.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import queue
import sqlite3
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar, cast

from mailwright.store.errors import Conflict, StoreError, TransientStorageError

T = TypeVar("T")
log = logging.getLogger("mailwright.store")

_MAX_BATCH = 512
_STOP = object()
_CHECKPOINT_EVERY = 64  # commits between checkpoints (and at least once a second)
WAL_RESTART_FRAMES = 4096  # a log this long (16 MiB of 4 KiB pages) is started over
QUICK_STEPS = 100  # SQLite VM instructions between checks of a read's budget on the loop
QUICK_TICKS = 40  # checks before it is interrupted and handed to a reader thread (about
# 400 rows of placements: under a millisecond with the Python objects they become)


def connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA foreign_keys=ON")
    conn.execute("PRAGMA busy_timeout=30000")
    # A WAL that grew under a burst shrinks back to this when it is next restarted.
    conn.execute("PRAGMA journal_size_limit=67108864")
    return conn


def _statements(script: str) -> list[str]:
    """A migration's statements, split where SQLite says one is complete (a trigger's body
    holds semicolons of its own)."""
    out: list[str] = []
    pending = ""
    for line in script.splitlines(keepends=True):
        pending += line
        if sqlite3.complete_statement(pending):
            out.append(pending.strip())
            pending = ""
    if pending.strip() and not all(
        part.strip().startswith("--") or not part.strip() for part in pending.splitlines()
    ):
        out.append(pending.strip())  # a last statement without its semicolon
    return out


def migrate(conn: sqlite3.Connection) -> None:
    """Apply the numbered migrations newer than ``PRAGMA user_version``."""
    (version,) = conn.execute("PRAGMA user_version").fetchone()
    files = sorted(
        (
            f
            for f in resources.files("mailwright.store.sqlite.migrations").iterdir()
            if f.name.endswith(".sql")
        ),
        key=lambda f: f.name,
    )
    for f in files:
        number = int(f.name.split("_", 1)[0])
        if number <= version:
            continue
        conn.execute("BEGIN IMMEDIATE")
        try:
            for statement in _statements(f.read_text()):
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version={number}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise


def translate(exc: sqlite3.Error) -> StoreError:
    """Driver errors become storage errors; nothing above the store sees sqlite3."""
    if isinstance(exc, sqlite3.IntegrityError):
        return Conflict(str(exc))
    return TransientStorageError(f"{type(exc).__name__}: {exc}")


class Writer:
    def __init__(self, path: Path) -> None:
        self._lock_fd = _open_lock(path)
        self._conn = connect(path)
        self._conn.execute("PRAGMA wal_autocheckpoint=0")  # the checkpoint thread's job
        # Savepoint journals in memory: SQLite copies each page a job first changes into
        # one, and past 64 KiB it spilled to a temporary file, two writes per page inside
        # the write lock (a third of a batch's writes). It holds one job's pages at a time.
        self._conn.execute("PRAGMA temp_store=MEMORY")
        with _flocked(self._lock_fd):
            migrate(self._conn)
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="mailwright-writer", daemon=True)
        self._thread.start()
        self.commits = 0  # how many fsynced commits (for metrics and tests)
        self._path = path
        self._checkpoint_due = threading.Event()
        self._closing = False
        self._checkpointer = threading.Thread(
            target=self._checkpoint_loop, name="mailwright-checkpoint", daemon=True
        )
        self._checkpointer.start()

    async def run(self, job: Callable[[sqlite3.Connection], T], *, durable: bool = True) -> T:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._queue.put((job, future, loop, durable))
        return await future

    def close(self) -> None:
        self._queue.put(_STOP)
        self._thread.join()
        self._closing = True
        self._checkpoint_due.set()
        self._checkpointer.join()
        self._conn.close()
        os.close(self._lock_fd)

    def _checkpoint_loop(self) -> None:
        conn = connect(self._path)
        # A descriptor of its own: flock() excludes open files, not threads, so on the
        # writer's descriptor this thread would never wait for its own process's writer.
        lock_fd = _open_lock(self._path)
        try:
            while True:
                self._checkpoint_due.wait(timeout=1.0)
                self._checkpoint_due.clear()
                with contextlib.suppress(sqlite3.Error):
                    _checkpoint(conn, lock_fd)
                if self._closing:
                    return
        finally:
            conn.close()
            os.close(lock_fd)

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is _STOP:
                return
            with _flocked(self._lock_fd):
                # Jobs that arrived while another process held the lock join this batch.
                batch, stop = self._drain(first)
                outcomes = self._transaction(self._conn, batch)
            self._deliver(batch, outcomes)
            if self.commits % _CHECKPOINT_EVERY == 0:
                self._checkpoint_due.set()
            if stop:
                return

    def _drain(self, first: Any) -> tuple[list[Any], bool]:
        batch = [first]
        while len(batch) < _MAX_BATCH:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is _STOP:
                return batch, True
            batch.append(item)
        return batch, False

    def _transaction(self, conn: sqlite3.Connection, batch: list[Any]) -> list[tuple[bool, Any]]:
        outcomes: list[tuple[bool, Any]] = []
        lazy = not any(durable for _job, _future, _loop, durable in batch)
        # A job alone needs no savepoint: if it fails, the whole transaction is its own.
        alone = len(batch) == 1
        try:
            if lazy:
                conn.execute("PRAGMA synchronous=OFF")  # outside a transaction, as it must be
            conn.execute("BEGIN IMMEDIATE")
            for job, _future, _loop, _durable in batch:
                if not alone:
                    conn.execute("SAVEPOINT job")
                outcome = _attempt(conn, job)
                if not outcome[0] and conn.in_transaction:
                    conn.execute("ROLLBACK" if alone else "ROLLBACK TO job")
                outcomes.append(outcome)
                if not alone:
                    conn.execute("RELEASE job")
            if conn.in_transaction:
                conn.execute("COMMIT")
                self.commits += 1
        except sqlite3.Error as exc:
            # The commit itself failed (disk full, I/O error): nobody in the batch is durable.
            log.error("store.commit_failed error=%r", exc)
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            outcomes = [(False, translate(exc))] * len(batch)
        finally:
            if lazy:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("PRAGMA synchronous=FULL")
        return outcomes

    def _deliver(self, batch: list[Any], outcomes: list[tuple[bool, Any]]) -> None:
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[Any], bool, Any]]] = {}
        for (_job, future, loop, _durable), (ok, value) in zip(batch, outcomes, strict=True):
            by_loop.setdefault(loop, []).append((future, ok, value))
        for loop, items in by_loop.items():
            # A closed loop raises RuntimeError: nobody is waiting there any more.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_resolve, items)


def _attempt(
    conn: sqlite3.Connection, job: Callable[[sqlite3.Connection], Any]
) -> tuple[bool, Any]:
    """Run one job: (True, its result) or (False, the error its caller gets)."""
    try:
        return True, job(conn)
    except sqlite3.Error as exc:
        return False, translate(exc)
    except StoreError as exc:
        return False, exc
    except Exception as exc:
        # Boundary: a bug in one job must fail that job only, not end the writer thread
        # (every later write would then wait forever).
        log.exception("store.job_failed")
        return False, exc


def _open_lock(path: Path) -> int:
    """A descriptor of ``<db>.writelock``, the file every writer ``flock``s."""
    return os.open(f"{path}.writelock", os.O_RDWR | os.O_CREAT, 0o600)


@contextlib.contextmanager
def _flocked(fd: int) -> Iterator[None]:
    """The write lock every writer of every process takes around a transaction."""
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)


def _checkpoint(conn: sqlite3.Connection, lock_fd: int) -> None:
    # PASSIVE: copies what no reader still needs, never waits for a writer or a reader;
    # the writers of every process go on committing meanwhile.
    ((_busy, frames, _copied),) = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
    if frames >= WAL_RESTART_FRAMES:
        # Under a steady load commits land while a checkpoint copies, so the log is never
        # found fully copied and SQLite never starts it over: it grew without end (a
        # gigabyte in 30,000 messages), and appending to a growing file costs the kernel
        # more than overwriting one. What came in meanwhile is copied with every writer
        # held off (milliseconds), and the next commit starts the log from its beginning.
        with _flocked(lock_fd):
            conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()


def _resolve(items: list[tuple[asyncio.Future[Any], bool, Any]]) -> None:
    for future, ok, value in items:
        if future.done():
            continue
        if ok:
            future.set_result(value)
        else:
            future.set_exception(value)


_BUSY = frozenset({sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED})


class Readers:
    def __init__(self, path: Path, threads: int = 2) -> None:
        self._path = path
        self._local = threading.local()
        self._conns: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="mailwright-read")

    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = connect(self._path)
            self._local.conn = conn
            with self._lock:
                self._conns.append(conn)
        return conn

    async def run(self, job: Callable[[sqlite3.Connection], T], *, quick: bool = True) -> T:
        """Run the read ``job``: first here within the budget (``quick``), else on a
        reader thread."""
        if quick:
            done, value = self._inline(job)
            if done:
                return cast(T, value)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, self._call, job)

    def _inline(self, job: Callable[[sqlite3.Connection], T]) -> tuple[bool, Any]:
        local = self._local
        conn: sqlite3.Connection | None = getattr(local, "quick", None)
        if conn is None:
            conn = connect(self._path)
            conn.execute("PRAGMA busy_timeout=0")  # never sleep on the loop: use a thread
            conn.set_progress_handler(self._tick, QUICK_STEPS)
            local.quick = conn
            with self._lock:
                self._conns.append(conn)
        local.ticks = 0
        local.interrupted = False
        try:
            return True, job(conn)
        except sqlite3.OperationalError as exc:
            if local.interrupted or (exc.sqlite_errorcode & 0xFF) in _BUSY:
                if conn.in_transaction:
                    local.ticks = 0  # a fresh budget, or the handler stops the ROLLBACK too
                    conn.execute("ROLLBACK")
                return False, None
            raise translate(exc) from exc
        except sqlite3.Error as exc:
            raise translate(exc) from exc

    def _tick(self) -> int:
        local = self._local
        local.ticks += 1
        if local.ticks > QUICK_TICKS:
            local.interrupted = True
            return 1  # SQLite stops the statement: "interrupted"
        return 0

    def _call(self, job: Callable[[sqlite3.Connection], T]) -> T:
        try:
            return job(self._conn())
        except sqlite3.Error as exc:
            raise translate(exc) from exc

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        with self._lock:
            for conn in self._conns:
                conn.close()
            self._conns.clear()
