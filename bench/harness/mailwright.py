"""A throwaway mailwright instance (own data directory) for the bench.

Uses only the public CLI: ``init``, ``user add``, ``serve``. Ports and connection
limits are overridden through ``MAILWRIGHT_SMTP__*`` environment variables; stored
messages are counted by reading the SQLite ``placements`` table read-only.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import tempfile
from pathlib import Path

from harness import net
from harness.instance import ManagedInstance

PASSWORD = "bench-password-1234"


class MailwrightInstance(ManagedInstance):
    name = "mailwright"
    stores = True

    def __init__(
        self,
        binary: str,
        recipients: list[str],
        workdir: str | None = None,
        max_connections: int = 5000,
    ) -> None:
        self.binary = binary
        self.recipients = recipients
        self.max_connections = max_connections
        self.root = Path(tempfile.mkdtemp(prefix="mwbench-mailwright-", dir=workdir))
        self.data_dir = self.root / "mw"
        self.config = self.data_dir / "mailwright.toml"
        self.port = net.free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self._db: sqlite3.Connection | None = None
        self._log = None

    # -- lifecycle ---------------------------------------------------------------------
    def _cli(self, *args: str, stdin: str | None = None) -> str:
        proc = subprocess.run(
            [self.binary, *args],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if proc.returncode != 0:
            raise RuntimeError(
                f"mailwright {' '.join(args)} failed ({proc.returncode}):\n"
                f"{proc.stdout}{proc.stderr}"
            )
        return proc.stdout

    def setup(self) -> None:
        self._cli(
            "init",
            "--data-dir",
            str(self.data_dir),
            "--domain",
            "example.test",
            "--hostname",
            "mx.example.test",
        )
        for rcpt in self.recipients:
            self._cli(
                "--config",
                str(self.config),
                "user",
                "add",
                rcpt,
                "--password-stdin",
                stdin=PASSWORD + "\n",
            )

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["MAILWRIGHT_SMTP__LISTEN"] = f'["127.0.0.1:{self.port}"]'
        # Same footing as the Postfix instance, whose per-client limits are off.
        env["MAILWRIGHT_SMTP__MAX_CONNECTIONS"] = str(self.max_connections)
        env["MAILWRIGHT_SMTP__MAX_CONNECTIONS_PER_IP"] = str(self.max_connections)
        return env

    def start(self) -> None:
        self._log = open(self.root / "serve.log", "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [self.binary, "--config", str(self.config), "serve"],
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=self.env(),
        )
        try:
            net.wait_for_banner(self.port, timeout=30)
        except TimeoutError as e:
            raise RuntimeError(f"{e}\n{self.log_tail()}") from e

    def stop(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGTERM)
                try:
                    self.proc.wait(timeout=45)
                except subprocess.TimeoutExpired:
                    self.proc.kill()  # our own child, by PID
                    self.proc.wait(timeout=10)
            self.proc = None
        if self._log is not None:
            self._log.close()
            self._log = None

    # -- measurement -------------------------------------------------------------------
    @property
    def root_pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def stored_count(self) -> int:
        """Stored deliveries: rows in ``placements`` (one per message per mailbox)."""
        if self._db is None:
            uri = f"file:{self.data_dir / 'mailwright.db'}?mode=ro"
            self._db = sqlite3.connect(uri, uri=True, timeout=5)
        row = self._db.execute("SELECT count(*) FROM placements").fetchone()
        return int(row[0])

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = (self.root / "serve.log").read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def describe(self) -> dict[str, object]:
        try:
            version = self._cli("--version").strip()
        except (RuntimeError, OSError, subprocess.TimeoutExpired) as e:
            version = f"unknown ({e})"
        return {"version": version, "port": self.port, "config": self.config.read_text()}

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None
