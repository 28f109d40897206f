"""Postfix's smtp-sink as a protocol-only ceiling: it answers SMTP and stores nothing."""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

from harness import net

SMTP_SINK = "/usr/sbin/smtp-sink"


class SinkInstance:
    name = "smtp-sink"
    stores = False

    def __init__(self, workdir: str | None = None) -> None:
        self.port = net.free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self._log = tempfile.TemporaryFile(dir=workdir)  # noqa: SIM115 - closed in __exit__

    def __enter__(self) -> SinkInstance:
        # -u: smtp-sink refuses to run as root without a user to drop to.
        # Backlog 1024 so 50 connecting sessions never see a full listen queue.
        self.proc = subprocess.Popen(
            [SMTP_SINK, "-u", "nobody", f"127.0.0.1:{self.port}", "1024"],
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        try:
            net.wait_for_banner(self.port, timeout=15)
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.terminate()
                try:
                    self.proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    self.proc.kill()  # our own child, by PID
                    self.proc.wait(timeout=10)
            self.proc = None
        self._log.close()

    @property
    def root_pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def stored_count(self) -> int:
        return 0

    def log_tail(self, lines: int = 30) -> str:
        self._log.seek(0)
        text = self._log.read().decode(errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    def describe(self) -> dict[str, object]:
        return {"binary": SMTP_SINK, "port": self.port, "path": str(Path(SMTP_SINK))}

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None
