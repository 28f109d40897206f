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
class Config:
    data_dir: str
    hostname: str = "localhost"
    workers: int = 0  # worker processes; 0 = one per CPU
    smtp: SmtpConfig = field(default_factory=SmtpConfig)
    tls: TlsConfig = field(default_factory=TlsConfig)
    log: LogConfig = field(default_factory=LogConfig)
