"""Locks that hold across processes on one machine: ``flock`` on a file per lock.

A lock belongs to an open file description, so two sessions in one process exclude each
other as two processes do; the kernel releases it when the holder's process dies, so a
SIGKILLed worker never leaves a maildrop locked.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path


class FileLease:
    def __init__(self, fd: int) -> None:
        self._fd: int | None = fd

    @classmethod
    def try_acquire(cls, path: Path) -> FileLease | None:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        return cls(fd)

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            # Closing the descriptor drops the lock; the file stays for the next holder
            # (deleting it would let two holders lock two different files of one name).
            with contextlib.suppress(OSError):
                os.close(fd)
