from __future__ import annotations

import os
import pwd
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest


def require(program: str) -> str:
    """The path of a real third-party program; ``./dev test`` installs them all."""
    path = shutil.which(program) or shutil.which(program, path="/usr/sbin:/usr/bin")
    if path is None:
        pytest.fail(f"{program} is not installed: run ./dev test, which installs the test peers")
    return path


@pytest.fixture
def maildir() -> Iterator[Path]:
    """An empty Maildir for getmail. Run as root, getmail refuses to deliver as root and
    switches to ``nobody`` (the destination's ``user``): so the Maildir is outside pytest's
    private temporary tree, owned by that user."""
    top = Path(tempfile.mkdtemp(prefix="mw-maildir-"))
    try:
        path = top / "Maildir"
        for sub in ("", "cur", "new", "tmp"):
            (path / sub).mkdir(exist_ok=True)
        if os.geteuid() == 0:
            nobody = pwd.getpwnam("nobody")
            for p in (top, path, path / "cur", path / "new", path / "tmp"):
                os.chown(p, nobody.pw_uid, nobody.pw_gid)
        yield path
    finally:
        shutil.rmtree(top, ignore_errors=True)
