"""Postfix's smtp-sink as a protocol-only ceiling: it answers SMTP and stores nothing.

With ``count=True`` (the outbound bench, where it is the remote MX) it also counts the
messages it received: ``smtp-sink -c`` writes a running counter to its standard output
each time a message's final "." arrives, which a thread reads as it comes; ``wait_for``
then tells when a given total was reached.
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from harness import net
from harness.instance import end_child

SMTP_SINK = "/usr/sbin/smtp-sink"
# What "smtp-sink -c" prints after each message, session end or QUIT (CR-separated).
_COUNTER = re.compile(rb"mesg=(\d+)")


class SinkInstance:
    name = "smtp-sink"
    stores = False

    def __init__(
        self, workdir: str | None = None, count: bool = False, options: Sequence[str] = ()
    ) -> None:
        self.port = net.free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self._log = tempfile.TemporaryFile(dir=workdir)  # noqa: SIM115 - closed in __exit__
        self.count = count
        self.options = list(options)  # further smtp-sink flags (-h NAME, -a, ...)
        self._received = 0
        self._reached: dict[int, float] = {}  # target -> monotonic time it was reached
        self._targets: list[int] = []
        self._cond = threading.Condition()
        self._reader: threading.Thread | None = None

    def __enter__(self) -> SinkInstance:
        # -u: smtp-sink refuses to run as root without a user to drop to.
        # Backlog 1024 so 50 connecting sessions never see a full listen queue.
        argv = [SMTP_SINK, "-u", "nobody", *self.options]
        if self.count:
            argv.append("-c")
        self.proc = subprocess.Popen(
            [*argv, f"127.0.0.1:{self.port}", "1024"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE if self.count else self._log,
            stderr=self._log if self.count else subprocess.STDOUT,
        )
        if self.count:
            self._reader = threading.Thread(target=self._read_counter, name="sink-counter")
            self._reader.daemon = True
            self._reader.start()
        try:
            net.wait_for_banner(self.port, timeout=15)
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None:
            end_child(self.proc, 10)
            self.proc = None
        if self._reader is not None:
            self._reader.join(timeout=10)  # ends at EOF: the sink has exited
            self._reader = None
        self._log.close()

    # -- counting (count=True) ---------------------------------------------------------
    def _read_counter(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        tail = b""
        # Bounded by the process: read() returns b"" once the sink has exited.
        while chunk := os.read(fd, 65536):
            now = time.monotonic()
            found = _COUNTER.findall(tail + chunk)
            tail = chunk[-32:]
            if not found:
                continue
            with self._cond:
                value = max(self._received, int(found[-1]))
                self._received = value
                for target in self._targets:
                    if value >= target and target not in self._reached:
                        self._reached[target] = now
                self._cond.notify_all()

    def received(self) -> int:
        """Messages received so far (final "." seen), over the sink's whole life."""
        with self._cond:
            return self._received

    def expect(self, target: int) -> None:
        """Note the moment the received count reaches ``target`` (see ``wait_for``)."""
        with self._cond:
            if self._received >= target:
                self._reached.setdefault(target, time.monotonic())
            self._targets.append(target)

    def wait_for(self, target: int, timeout: float) -> float | None:
        """Block until ``target`` messages were received (``expect`` it first, before the
        load starts); the monotonic time that happened, or None after ``timeout``."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while target not in self._reached:
                left = deadline - time.monotonic()
                if left <= 0 or not self.alive():
                    return None
                self._cond.wait(min(left, 1.0))
            return self._reached[target]

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
