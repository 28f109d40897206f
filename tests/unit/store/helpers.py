"""Run a coroutine against a fresh SqliteStore inside one event loop (no pytest-asyncio)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

from mailwright.store.sqlite import SqliteStore

T = TypeVar("T")


def with_store(data_dir: Path, fn: Callable[[SqliteStore], Awaitable[T]], **kwargs: Any) -> T:
    async def go() -> T:
        store = await asyncio.to_thread(SqliteStore, data_dir, **kwargs)
        try:
            return await fn(store)
        finally:
            await store.close()

    return asyncio.run(go())
