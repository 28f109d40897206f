"""What every CLI command module shares: its error, config loading, the store, addresses.

Kept apart from ``main`` so that command modules import it, not the ``main`` module (which
Python loads a second time as ``__main__`` under ``python -m``: two ``CliError`` classes,
and errors of the other copy would escape ``main()``'s handler).
"""

from __future__ import annotations

import argparse
import asyncio
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

from mailwright.config import ENV_CONFIG, Config, load_config
from mailwright.core.address import Address, AddressError
from mailwright.store.sqlite import SqliteStore

T = TypeVar("T")


class CliError(Exception):
    pass


def _run(coro: Awaitable[T]) -> T:
    return asyncio.run(coro)  # type: ignore[arg-type]


def _config_path(args: argparse.Namespace) -> Path:
    path = args.config or os.environ.get(ENV_CONFIG)
    if not path:
        raise CliError(f"no configuration: pass --config FILE or set {ENV_CONFIG}")
    return Path(path)


def _load(args: argparse.Namespace) -> Config:
    return load_config(_config_path(args))


def _address(text: str) -> str:
    try:
        return Address.parse(text.strip(), utf8=True).key
    except AddressError as exc:
        raise CliError(f"bad address {text!r}: {exc}") from None


async def _with_store(config: Config, fn: Callable[[SqliteStore], Awaitable[T]]) -> T:
    store = await asyncio.to_thread(SqliteStore, Path(config.data_dir), sweep=False)
    try:
        return await fn(store)
    finally:
        await store.close()
