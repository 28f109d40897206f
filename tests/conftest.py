"""Fixtures shared by every test tier."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.server import Server


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    srv = Server.create(tmp_path / "mw", users=("alice@example.test", "bob@example.test")).start()
    try:
        yield srv
    finally:
        srv.close()
