"""Typed configuration: one TOML file, ``MAILWRIGHT_*`` environment overrides, frozen dataclasses.

Loaded once by the composition root; each component gets its slice through its constructor.
May import: mailwright.core.
"""

from mailwright.config.loader import ENV_CONFIG, load_config, parse_config
from mailwright.config.model import (
    AuthConfig,
    Config,
    ImapConfig,
    LogConfig,
    Pop3Config,
    QueueConfig,
    SmtpConfig,
    SubmissionConfig,
    TlsConfig,
)

__all__ = [
    "ENV_CONFIG",
    "AuthConfig",
    "Config",
    "ImapConfig",
    "LogConfig",
    "Pop3Config",
    "QueueConfig",
    "SmtpConfig",
    "SubmissionConfig",
    "TlsConfig",
    "load_config",
    "parse_config",
]
