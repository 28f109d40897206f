"""A real mailwright server process for integration and interop tests.

Each server gets its own data directory (``mailwright init``) and listens on a port the
kernel picks (``127.0.0.1:0``); the test learns it from the startup banner.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

BANNER = re.compile(r"SMTP \(inbound, STARTTLS\)\s+(\S+):(\d+)")
POP3_BANNER = re.compile(r"(POP3S?) \((?:STLS|implicit TLS)\)\s+(\S+):(\d+)")
IMAP_BANNER = re.compile(r"(IMAPS?) \((?:STARTTLS|implicit TLS)\)\s+(\S+):(\d+)")
HTTP_BANNER = re.compile(r"HTTP API \(/v1, /docs\)\s+(\S+):(\d+)")
HTTPS_BANNER = re.compile(r"HTTPS API \(/v1, /docs\)\s+(\S+):(\d+)")
SUBMISSION_BANNER = re.compile(r"(Submissions?) \((?:STARTTLS|implicit TLS)\)\s+(\S+):(\d+)")
STARTUP_TIMEOUT = 30.0


def mailwright(*args: str, config: Path | None = None, stdin: str | None = None) -> str:
    cmd = [sys.executable, "-m", "mailwright.cli.main"]
    if config is not None:
        cmd += ["--config", str(config)]
    result = subprocess.run(
        cmd + list(args), input=stdin, capture_output=True, text=True, timeout=60, check=False
    )
    if result.returncode != 0:
        raise RuntimeError(f"mailwright {' '.join(args)} failed: {result.stderr}")
    return result.stdout


@dataclass
class Server:
    data_dir: Path
    env_overrides: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[str] | None = None
    host: str = "127.0.0.1"
    port: int = 0
    pop3_port: int = 0
    pop3s_port: int = 0
    imap_port: int = 0
    imaps_port: int = 0
    submission_port: int = 0
    submissions_port: int = 0
    http_port: int = 0
    https_port: int = 0
    log_path: Path | None = None

    @property
    def config(self) -> Path:
        return self.data_dir / "mailwright.toml"

    @property
    def cert(self) -> Path:
        return self.data_dir / "tls" / "cert.pem"

    @classmethod
    def create(
        cls, data_dir: Path, users: tuple[str, ...] = ("alice@example.test",), **env: str
    ) -> Server:
        mailwright("init", "--data-dir", str(data_dir), "--domain", "example.test")
        for user in users:
            mailwright(
                "user",
                "add",
                user,
                "--password-stdin",
                config=data_dir / "mailwright.toml",
                stdin="secret\n",
            )
        return cls(data_dir, dict(env))

    def start(self) -> Server:
        env = dict(os.environ)
        env.pop("MAILWRIGHT_CONFIG", None)
        env["MAILWRIGHT_SMTP__LISTEN"] = '["127.0.0.1:0"]'
        env["MAILWRIGHT_POP3__LISTEN"] = '["127.0.0.1:0"]'
        env["MAILWRIGHT_POP3__LISTEN_TLS"] = '["127.0.0.1:0"]'
        env["MAILWRIGHT_IMAP__LISTEN"] = '["127.0.0.1:0"]'
        env["MAILWRIGHT_IMAP__LISTEN_TLS"] = '["127.0.0.1:0"]'
        env["MAILWRIGHT_SUBMISSION__LISTEN"] = '["127.0.0.1:0"]'
        env["MAILWRIGHT_SUBMISSION__LISTEN_TLS"] = '["127.0.0.1:0"]'
        env["MAILWRIGHT_HTTP__LISTEN"] = '["127.0.0.1:0"]'
        # No test reaches real DNS: a port where nothing answers fails every lookup fast
        # (remote mail stays queued); outbound tests point this at their own dnsmasq.
        env["MAILWRIGHT_DNS__NAMESERVERS"] = '["127.0.0.1"]'
        env["MAILWRIGHT_DNS__PORT"] = "9"
        env["MAILWRIGHT_DNS__LIFETIME"] = "2"
        env.update(self.env_overrides)
        self.log_path = self.data_dir / "server.log"
        with open(self.log_path, "a") as log:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "mailwright.cli.main",
                    "--config",
                    str(self.config),
                    "serve",
                ],
                stdout=subprocess.PIPE,
                stderr=log,
                text=True,
                env=env,
            )
        deadline = time.monotonic() + STARTUP_TIMEOUT
        assert self.proc.stdout is not None
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                raise RuntimeError(f"server exited: {self.log_path.read_text()}")
            m = BANNER.search(line)
            if m:
                self.host, self.port = m.group(1), int(m.group(2))
            m = POP3_BANNER.search(line)
            if m:
                port = int(m.group(3))
                if m.group(1) == "POP3S":
                    self.pop3s_port = port
                else:
                    self.pop3_port = port
            m = IMAP_BANNER.search(line)
            if m:
                port = int(m.group(3))
                if m.group(1) == "IMAPS":
                    self.imaps_port = port
                else:
                    self.imap_port = port
            m = SUBMISSION_BANNER.search(line)
            if m:
                port = int(m.group(3))
                if m.group(1) == "Submissions":
                    self.submissions_port = port
                else:
                    self.submission_port = port
            m = HTTP_BANNER.search(line)
            if m:
                self.http_port = int(m.group(2))
            m = HTTPS_BANNER.search(line)
            if m:
                self.https_port = int(m.group(2))
            if line.startswith("Stop with"):
                return self
        raise RuntimeError("server did not start")

    def kill(self) -> None:
        """SIGKILL: no chance to flush or clean up anything."""
        if self.proc is not None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=30)
            self._release()

    def stop(self, timeout: float = 60) -> int:
        if self.proc is None:
            return 0
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout=timeout)
        self._release()
        return code

    def close(self) -> None:
        """At the end of a test: a clean stop (which also lets coverage save its data), or
        SIGKILL if that fails; never left running."""
        if self.proc is None:
            return
        try:
            self.stop(timeout=30)
        except Exception:  # whatever went wrong, do not leave it running
            self.kill()

    def _release(self) -> None:
        if self.proc is not None and self.proc.stdout is not None:
            self.proc.stdout.close()
        self.proc = None

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def log(self) -> str:
        return self.log_path.read_text() if self.log_path else ""

    # Reading what is stored, through plain read-only SQL (never through a second
    # store instance, which could interfere with the running server).
    def db(self) -> sqlite3.Connection:
        return sqlite3.connect(f"file:{self.data_dir / 'mailwright.db'}?mode=ro", uri=True)

    def inbox(self, address: str) -> list[bytes]:
        """Every message in ``address``'s INBOX, in UID order, as stored bytes."""
        with self.db() as db:
            rows = db.execute(
                "SELECT m.body, m.blob_path FROM placements p"
                " JOIN mailboxes b ON b.id = p.mailbox_id"
                " JOIN accounts a ON a.id = b.account_id"
                " JOIN messages m ON m.id = p.message_id"
                " WHERE a.address = ? AND b.name = 'INBOX' ORDER BY p.uid",
                (address,),
            ).fetchall()
        out = []
        for body, path in rows:
            out.append(
                bytes(body) if body is not None else (self.data_dir / "blobs" / path).read_bytes()
            )
        return out


def worker_pids(server: Server) -> set[int]:
    """The server's worker processes (the supervisor's children), from /proc."""
    assert server.proc is not None
    out = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                stat = Path(f"/proc/{entry}/stat").read_text()
                if int(stat.rsplit(")", 1)[1].split()[1]) == server.proc.pid:
                    out.add(int(entry))
    return out


def worker_of(server: Server, port: int, client: socket.socket) -> int:
    """The worker process that holds the server's end (on ``port``) of ``client``'s
    IPv4 connection (Linux /proc); the server's own process when it has no workers."""
    client_port = client.getsockname()[1]
    inode = None
    for row in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = row.split()
        local, remote = (int(f.split(":")[1], 16) for f in fields[1:3])
        if local == port and remote == client_port:
            inode = fields[9]
    assert inode is not None, "the server's end of the connection is not in /proc/net/tcp"
    assert server.proc is not None
    for pid in worker_pids(server) or {server.proc.pid}:
        with contextlib.suppress(OSError):
            for fd in os.listdir(f"/proc/{pid}/fd"):
                with contextlib.suppress(OSError):
                    if os.readlink(f"/proc/{pid}/fd/{fd}") == f"socket:[{inode}]":
                        return pid
    raise AssertionError("no worker holds the connection")
