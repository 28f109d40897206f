"""What every server instance of the bench shares: its lifecycle."""

from __future__ import annotations

import shutil
import signal
import subprocess
from pathlib import Path
from typing import Self


def end_child(proc: subprocess.Popen[bytes], timeout: float, sig: int = signal.SIGTERM) -> None:
    """Ask a child of ours to stop (``sig``; a master stops its own children), and kill
    it, by its PID, if it has not within ``timeout`` seconds."""
    if proc.poll() is not None:
        return
    proc.send_signal(sig)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


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
