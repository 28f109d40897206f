"""A throwaway mailwright instance (own data directory) for the bench.

Uses only the public CLI: ``init``, ``user add``, ``serve``. Ports and connection
limits are overridden through ``MAILWRIGHT_SMTP__*`` environment variables; stored
messages are counted by reading the SQLite ``placements`` table read-only. POP3 and
IMAP settings come from ``MAILWRIGHT_POP3__*`` and ``MAILWRIGHT_IMAP__*`` variables
too (``pop3_env``, ``imap_env``); an instance without them binds no POP3 or IMAP port.
``submission=True`` adds a plaintext submission listener (the outbound bench; AUTH
without TLS is allowed from loopback by default) and ``extra_env`` any further
``MAILWRIGHT_*`` overrides (DNS, outbound port); the outbound queue is read from the
``queue`` and ``events`` tables, read-only.
"""

from __future__ import annotations

import os
import smtplib
import sqlite3
import subprocess
import tempfile
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from harness import net
from harness.instance import ManagedInstance, end_child

PASSWORD = "bench-password-1234"
SEED_SENDER = "bench-sender@example.test"


def pop3_env(port: int | None, max_connections: int = 5000) -> dict[str, str]:
    """Environment overrides for mailwright's ``[pop3]`` settings (config/model.py
    ``Pop3Config``): plaintext POP3 on loopback, or (``port=None``) no POP3 listener at
    all, so an SMTP-only instance never binds the default POP3 ports. Connection limits
    are raised as for SMTP: 50 clients share 127.0.0.1, and Dovecot has no per-IP limit."""
    if port is None:
        return {"MAILWRIGHT_POP3__LISTEN": "[]", "MAILWRIGHT_POP3__LISTEN_TLS": "[]"}
    return {
        "MAILWRIGHT_POP3__LISTEN": f'["127.0.0.1:{port}"]',
        "MAILWRIGHT_POP3__LISTEN_TLS": "[]",
        "MAILWRIGHT_POP3__ALLOW_PLAINTEXT": "always",  # USER/PASS without TLS, like Dovecot here
        "MAILWRIGHT_POP3__MAX_CONNECTIONS": str(max_connections),
        "MAILWRIGHT_POP3__MAX_CONNECTIONS_PER_IP": str(max_connections),
    }


def imap_env(port: int | None, max_connections: int = 5000) -> dict[str, str]:
    """Environment overrides for mailwright's ``[imap]`` settings (config/model.py
    ``ImapConfig``), as ``pop3_env`` does for POP3: plaintext IMAP on loopback with
    the connection limits raised (every bench client comes from 127.0.0.1; Dovecot has
    no per-IP limit), or (``port=None``) no IMAP listener at all, so the other benches'
    instances never bind the default IMAP ports."""
    if port is None:
        return {"MAILWRIGHT_IMAP__LISTEN": "[]", "MAILWRIGHT_IMAP__LISTEN_TLS": "[]"}
    return {
        "MAILWRIGHT_IMAP__LISTEN": f'["127.0.0.1:{port}"]',
        "MAILWRIGHT_IMAP__LISTEN_TLS": "[]",
        "MAILWRIGHT_IMAP__ALLOW_PLAINTEXT": "always",  # LOGIN without TLS, like Dovecot here
        "MAILWRIGHT_IMAP__MAX_CONNECTIONS": str(max_connections),
        "MAILWRIGHT_IMAP__MAX_CONNECTIONS_PER_IP": str(max_connections),
    }


class MailwrightInstance(ManagedInstance):
    name = "mailwright"
    label = "mailwright"
    stores = True

    def __init__(
        self,
        binary: str,
        recipients: list[str],
        workdir: str | None = None,
        max_connections: int = 5000,
        pop3: bool = False,
        imap: bool = False,
        submission: bool = False,
        extra_env: Mapping[str, str] | None = None,
    ) -> None:
        self.binary = binary
        self.recipients = recipients
        self.max_connections = max_connections
        self.root = Path(tempfile.mkdtemp(prefix="mwbench-mailwright-", dir=workdir))
        self.data_dir = self.root / "mw"
        self.config = self.data_dir / "mailwright.toml"
        self.port = net.free_port()  # SMTP
        self.pop3_port = net.free_port() if pop3 else None
        self.imap_port = net.free_port() if imap else None
        self.submission_port = net.free_port() if submission else None
        self.extra_env = dict(extra_env or {})
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

    def seed(self, messages: list[bytes], threads: int = 4) -> None:
        """Deliver every message to every user's INBOX through the SMTP listener.

        One transaction per message and user (no shared multi-recipient copies),
        a few connections in parallel; smtplib dot-stuffs. Waits until all are
        stored (mailwright answers 250 only after the commit, so this is quick)."""
        base = self.stored_count()
        jobs = [(user, msg) for user in self.recipients for msg in messages]

        def deliver(part: list[tuple[str, bytes]]) -> None:
            with smtplib.SMTP("127.0.0.1", self.port, local_hostname="seed.bench.test") as s:
                for user, msg in part:
                    s.sendmail(SEED_SENDER, [user], msg)

        # Split by user, so each INBOX fills in corpus order (the POP3 message numbers).
        by_user = [
            [(u, m) for u in self.recipients[i::threads] for m in messages] for i in range(threads)
        ]
        with ThreadPoolExecutor(max_workers=threads) as pool:
            for f in [pool.submit(deliver, part) for part in by_user if part]:
                f.result()
        target = base + len(jobs)
        deadline = time.monotonic() + 120
        while self.stored_count() < target:
            if time.monotonic() > deadline or not self.alive():
                raise RuntimeError(
                    f"only {self.stored_count() - base} of {len(jobs)} seeded messages stored"
                    f"\n{self.log_tail()}"
                )
            time.sleep(0.05)

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["MAILWRIGHT_SMTP__LISTEN"] = f'["127.0.0.1:{self.port}"]'
        if self.submission_port is not None:
            env["MAILWRIGHT_SUBMISSION__LISTEN"] = f'["127.0.0.1:{self.submission_port}"]'
            env["MAILWRIGHT_SUBMISSION__LISTEN_TLS"] = "[]"
        env.setdefault("MAILWRIGHT_SUBMISSION__LISTEN", "[]")
        env.setdefault("MAILWRIGHT_SUBMISSION__LISTEN_TLS", "[]")
        env.setdefault("MAILWRIGHT_HTTP__LISTEN", "[]")
        # Same footing as the Postfix instance, whose per-client limits are off.
        env["MAILWRIGHT_SMTP__MAX_CONNECTIONS"] = str(self.max_connections)
        env["MAILWRIGHT_SMTP__MAX_CONNECTIONS_PER_IP"] = str(self.max_connections)
        env.update(pop3_env(self.pop3_port, self.max_connections))
        env.update(imap_env(self.imap_port, self.max_connections))
        env.update(self.extra_env)
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
            if self.submission_port is not None:
                net.wait_for_banner(self.submission_port, timeout=30)
            if self.pop3_port is not None:
                net.wait_for_greeting(self.pop3_port, prefix="+OK", timeout=30)
            if self.imap_port is not None:
                net.wait_for_imap(self.imap_port, timeout=30)
        except TimeoutError as e:
            raise RuntimeError(f"{e}\n{self.log_tail()}") from e

    def stop(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None
        if self.proc is not None:
            end_child(self.proc, 45)
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
        row = self._database().execute("SELECT count(*) FROM placements").fetchone()
        return int(row[0])

    def queued_count(self) -> int:
        """Entries waiting in the outbound queue (one per remote recipient)."""
        row = self._database().execute("SELECT count(*) FROM queue").fetchone()
        return int(row[0])

    def event_count(self, kind: str) -> int:
        """Rows of one type in ``events`` ("delivered": one per recipient the remote took)."""
        row = self._database().execute("SELECT count(*) FROM events WHERE type = ?", (kind,))
        return int(row.fetchone()[0])

    def _database(self) -> sqlite3.Connection:
        if self._db is None:
            uri = f"file:{self.data_dir / 'mailwright.db'}?mode=ro"
            self._db = sqlite3.connect(uri, uri=True, timeout=5)
        return self._db

    def password_params(self) -> str:
        """The scheme and cost parameters of the stored hashes (not the hashes)."""
        try:
            row = self._database().execute("SELECT password_hash FROM accounts LIMIT 1").fetchone()
        except sqlite3.Error as e:
            return f"? ({e})"
        text = str(row[0]) if row else ""
        return text.rsplit("$", 2)[0] if text.count("$") >= 3 else "?"

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
        out: dict[str, object] = {
            "version": version,
            "port": self.port,
            "pop3_port": self.pop3_port,
            "imap_port": self.imap_port,
            "password_params": self.password_params(),
            "config": self.config.read_text(),
        }
        if self.submission_port is not None:
            out["submission_port"] = self.submission_port
        if self.extra_env:
            out["env"] = {k: v for k, v in self.extra_env.items() if "PASSWORD" not in k}
        return out

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None
