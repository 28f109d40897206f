"""The configuration's shape and defaults. Every field here is documented in the README."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal


@dataclass(frozen=True, slots=True)
class LogConfig:
    format: Literal["logfmt", "json"] = "logfmt"
    level: Literal["trace", "debug", "info", "warning", "error"] = "info"


@dataclass(frozen=True, slots=True)
class TlsConfig:
    cert: str = "tls/cert.pem"  # relative paths are relative to data_dir
    key: str = "tls/key.pem"


@dataclass(frozen=True, slots=True)
class SmtpConfig:
    """The port-25 role: inbound mail for local domains."""

    listen: tuple[str, ...] = ("127.0.0.1:2525",)
    max_message_size: int = 25 * 1024 * 1024
    max_line: int = 2048
    max_data_line: int = 1024 * 1024
    max_recipients: int = 1000
    max_header_size: int = 100 * 1024
    max_mime_depth: int = 50
    max_errors: int = 20
    error_delay: float = 1.0  # seconds added to each reply past max_errors / 2
    bare_lf: Literal["reject", "normalize"] = "reject"
    eight_bit_headers: Literal["accept", "reject"] = "accept"
    idle_timeout: float = 300.0  # a whole command line must arrive within this
    tls_handshake_timeout: float = 60.0
    session_timeout: float = 1800.0
    shutdown_grace: float = 30.0
    max_connections: int = 2000
    max_connections_per_ip: int = 50
    subaddress_delimiter: str = "+"


@dataclass(frozen=True, slots=True)
class Pop3Config:
    """POP3 (RFC 1939) for clients that download and delete."""

    listen: tuple[str, ...] = ("127.0.0.1:2110",)  # STLS offered (port 110's role)
    listen_tls: tuple[str, ...] = ("127.0.0.1:2995",)  # implicit TLS (port 995's role)
    # USER/PASS and AUTH without TLS: "never", "loopback" (clients on 127.0.0.0/8, ::1)
    # or "always".
    allow_plaintext: Literal["never", "loopback", "always"] = "loopback"
    idle_timeout: float = 600.0  # RFC 1939 §3: an autologout timer of at least 10 minutes
    login_timeout: float = 60.0  # before authentication
    tls_handshake_timeout: float = 30.0
    max_line: int = 1024
    max_errors: int = 10
    max_connections: int = 1000
    max_connections_per_ip: int = 20
    shutdown_grace: float = 10.0


@dataclass(frozen=True, slots=True)
class AuthConfig:
    """Failed logins, counted across POP3, IMAP and submission and across workers."""

    window: float = 900.0  # seconds for a full bucket of failures to drain
    free_failures: int = 3  # failures answered without delay
    max_delay: float = 15.0  # the longest delay before a failure is answered
    max_ip_failures: int = 20  # per client address (IPv6: per /64) within the window
    max_user_failures: int = 10  # per user within the window
    # A successful login is remembered this long (seconds; 0: never), so a client that
    # polls every minute costs one argon2id verification per hour, not one per login.
    cache_ttl: float = 3600.0


@dataclass(frozen=True, slots=True)
class Config:
    data_dir: str
    hostname: str = "localhost"
    workers: int = 0  # worker processes; 0 = one per CPU
    smtp: SmtpConfig = field(default_factory=SmtpConfig)
    pop3: Pop3Config = field(default_factory=Pop3Config)
    auth: AuthConfig = field(default_factory=AuthConfig)
    tls: TlsConfig = field(default_factory=TlsConfig)
    log: LogConfig = field(default_factory=LogConfig)
