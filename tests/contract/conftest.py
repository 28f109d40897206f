"""The storage contract: every backend runs every test in this directory.

A backend is a ``Backend`` harness: it opens stores (inside the test's event loop, so a
backend whose connections belong to a loop — asyncpg — works too) and answers the few
questions the API cannot (how many message rows, which blob files, how many commits).
To add PostgreSQL, write its harness and append it to ``BACKENDS``; skip it there when no
server is available.

Tests are ``async def``; ``pytest_pyfunc_call`` below runs each one on the per-test
``asyncio.Runner`` that also opened and will close its store (no pytest-asyncio).
"""

from __future__ import annotations

import asyncio
import inspect
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from mailwright.store.api import Store
from mailwright.store.sqlite import SqliteStore


class Backend:
    """What the contract suite needs from a backend beyond ``store.api``."""

    name = "?"

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self._open: list[Any] = []

    async def _open_store(self) -> Any:
        raise NotImplementedError

    async def open(self) -> Store:
        store = await self._open_store()
        self._open.append(store)
        return store  # type: ignore[no-any-return]

    async def close(self, store: Store) -> None:
        if store in self._open:
            self._open.remove(store)
            await store.close()

    async def reopen(self, store: Store) -> Store:
        """Close ``store`` and open the same installation again."""
        await self.close(store)
        return await self.open()

    async def close_all(self) -> None:
        while self._open:
            await self.close(self._open[-1])

    def message_rows(self) -> dict[int, int]:
        """Stored messages: id → how many placements reference it (its refcount)."""
        raise NotImplementedError

    def peer_args(self) -> list[str]:
        """How ``tests.contract.peer``, run in another process, opens this installation."""
        raise NotImplementedError

    def blob_files(self) -> set[str]:
        """Message files outside the database (empty for a backend keeping bodies inside)."""
        raise NotImplementedError

    def commits(self, store: Store) -> int:
        """How many durable commits the store has made (group commit makes fewer)."""
        raise NotImplementedError


class SqliteBackend(Backend):
    name = "sqlite"

    async def _open_store(self) -> SqliteStore:
        return await asyncio.to_thread(SqliteStore, self.tmp_path / "data")

    def _query(self, sql: str) -> list[Any]:
        conn = sqlite3.connect(self.tmp_path / "data" / "mailwright.db")
        try:
            return conn.execute(sql).fetchall()
        finally:
            conn.close()

    def message_rows(self) -> dict[int, int]:
        return dict(self._query("SELECT id, refcount FROM messages"))

    def peer_args(self) -> list[str]:
        return ["sqlite", str(self.tmp_path / "data")]

    def blob_files(self) -> set[str]:
        root = self.tmp_path / "data" / "blobs"
        return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}

    def commits(self, store: Store) -> int:
        assert isinstance(store, SqliteStore)
        return store.commits


BACKENDS: list[Any] = [pytest.param(SqliteBackend, id="sqlite")]


@pytest.fixture(autouse=True)
def runner() -> Iterator[asyncio.Runner]:
    with asyncio.Runner() as r:
        yield r


@pytest.fixture(params=BACKENDS)
def backend(
    request: pytest.FixtureRequest, tmp_path: Path, runner: asyncio.Runner
) -> Iterator[Backend]:
    factory: Callable[[Path], Backend] = request.param
    b = factory(tmp_path)
    try:
        yield b
    finally:
        runner.run(b.close_all())


@pytest.fixture
def store(backend: Backend, runner: asyncio.Runner) -> Store:
    return runner.run(backend.open())


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    if not inspect.iscoroutinefunction(pyfuncitem.obj):
        return None
    runner: asyncio.Runner = pyfuncitem.funcargs["runner"]  # type: ignore[assignment]
    names = pyfuncitem._fixtureinfo.argnames
    runner.run(pyfuncitem.obj(**{n: pyfuncitem.funcargs[n] for n in names}))
    return True
