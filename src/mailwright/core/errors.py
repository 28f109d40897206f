"""Errors raised on purpose. A peer's protocol mistakes are not exceptions: the machines
report them as events carrying the reply to send (``proto.smtp.events.Invalid``)."""

from __future__ import annotations


class MailwrightError(Exception):
    """Base of every error this package raises on purpose."""


class LocalProtocolError(MailwrightError):
    """We misused a protocol machine: a bug on our side, never the peer's fault."""


class ConfigError(MailwrightError):
    """The configuration is invalid; ``key`` names the offending setting."""

    def __init__(self, key: str, problem: str) -> None:
        super().__init__(f"{key}: {problem}")
        self.key = key
        self.problem = problem
