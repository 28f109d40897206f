"""Errors that carry the reply to send: public text apart from the logged reason."""

from __future__ import annotations

from mailwright.core.reply import Reply


class MailwrightError(Exception):
    """Base of every error this package raises on purpose."""


class ProtocolError(MailwrightError):
    """A protocol rule was broken. ``reply`` is what the peer is told; ``reason``
    is what the log says (it may hold detail the peer should not see)."""

    def __init__(self, reply: Reply, reason: str | None = None) -> None:
        super().__init__(reason or str(reply))
        self.reply = reply
        self.reason = reason or str(reply)


class RemoteProtocolError(ProtocolError):
    """The peer misbehaved: send ``reply`` and carry on (or close, if the reply says so)."""


class LocalProtocolError(MailwrightError):
    """We misused a protocol machine: a bug on our side, never the peer's fault."""


class ConfigError(MailwrightError):
    """The configuration is invalid; ``key`` names the offending setting."""

    def __init__(self, key: str, problem: str) -> None:
        super().__init__(f"{key}: {problem}")
        self.key = key
        self.problem = problem
