"""What every server instance of the bench shares: its lifecycle."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Self


class ManagedInstance:
    """``with`` runs setup → start, and stop → cleanup on the way out (also when start
    fails half-way). Subclasses provide ``root``, ``setup``, ``start`` and ``stop``."""

    root: Path

    def setup(self) -> None:
        raise NotImplementedError

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def cleanup(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> Self:
        try:
            self.setup()
            self.start()
        except BaseException:
            self.stop()
            self.cleanup()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
        self.cleanup()
