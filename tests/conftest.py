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
        if srv.proc is not None:
            try:
                srv.stop(timeout=30)  # a clean stop (also lets coverage save its data)
            except Exception:  # whatever went wrong, do not leave it running
                srv.kill()
