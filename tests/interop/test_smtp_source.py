"""Postfix's smtp-source drives a small load; every accepted message is stored."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.integration.server import Server, mailwright
from tests.interop.conftest import require


def test_smtp_source_load(tmp_path: Path) -> None:
    server = Server.create(tmp_path / "mw", users=("alice@example.test",))
    # smtp-source -r N makes up recipient names; a catch-all gives them all to alice.
    mailwright("alias", "add", "@example.test", "alice@example.test", config=server.config)
    server.start()
    try:
        r = subprocess.run(
            [
                require("smtp-source"),
                "-s", "10", "-m", "300", "-l", "5120", "-r", "3", "-d",
                "-f", "load@remote.test", "-t", "user@example.test",
                f"{server.host}:{server.port}",
            ],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )  # fmt: skip
        assert r.returncode == 0, r.stdout + r.stderr
        stored = server.inbox("alice@example.test")
        assert len(stored) == 300  # three recipients of one message: one copy for alice
        assert all(len(m) > 5120 for m in stored)
    finally:
        server.kill()
