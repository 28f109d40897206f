from __future__ import annotations

import shutil

import pytest


def require(program: str) -> str:
    """The path of a real third-party program; ``./dev test`` installs them all."""
    path = shutil.which(program) or shutil.which(program, path="/usr/sbin:/usr/bin")
    if path is None:
        pytest.fail(f"{program} is not installed: run ./dev test, which installs the test peers")
    return path
