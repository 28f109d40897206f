"""Message bytes on their way into the SQLite store.

A body up to ``inline_max`` stays in memory and is stored inline in the database row
(one group-commit fsync covers it). A larger body spills to a file under
``blobs/tmp/``; before the database commit that references it, the file is fsynced and
renamed into ``blobs/<xx>/`` and the directory fsynced. Memory per writer is therefore
bounded by ``inline_max`` whatever the message size.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import BinaryIO

INLINE_MAX = 128 * 1024


class SqliteBlobWriter:
    def __init__(self, root: Path, inline_max: int = INLINE_MAX) -> None:
        self._root = root
        self._inline_max = inline_max
        self._memory = bytearray()
        self._file: BinaryIO | None = None
        self._tmp_path: Path | None = None
        self._size = 0
        self.final_path: str | None = None  # relative to root, once finished

    @property
    def size(self) -> int:
        return self._size

    @property
    def inline(self) -> bytes | None:
        return bytes(self._memory) if self._file is None else None

    def write(self, data: bytes) -> None:
        self._size += len(data)
        if self._file is None:
            self._memory += data
            if len(self._memory) <= self._inline_max:
                return
            tmp_dir = self._root / "tmp"
            tmp_dir.mkdir(parents=True, exist_ok=True)
            self._tmp_path = tmp_dir / uuid.uuid4().hex
            self._file = open(self._tmp_path, "wb")  # noqa: SIM115 - closed in finish/abort
            data = bytes(self._memory)
            self._memory = bytearray()
        self._file.write(data)

    def finish(self, name: str) -> None:
        """Make a spilled body durable under its final name (blocking: run off the loop)."""
        if self._file is None or self._tmp_path is None:
            return
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        self._file = None
        # Unique even when a queue id is delivered twice: replacing a committed file
        # that another row references would lose that message if this delivery fails.
        rel = f"{name[-2:]}/{name}.{self._tmp_path.name[:12]}"
        final = self._root / rel
        final.parent.mkdir(parents=True, exist_ok=True)
        os.replace(self._tmp_path, final)
        _fsync_dir(final.parent)
        self.final_path = rel

    def abort(self) -> None:
        self._memory = bytearray()
        if self._file is not None:
            self._file.close()
            self._file = None
        if self._tmp_path is not None:
            self._tmp_path.unlink(missing_ok=True)
            self._tmp_path = None


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
