"""Verdicts: the answer of every policy check."""

from __future__ import annotations

from dataclasses import dataclass

from mailwright.core.reply import Reply


@dataclass(frozen=True, slots=True)
class Accept:
    pass


@dataclass(frozen=True, slots=True)
class Reject:
    reply: Reply  # 5xx
    reason: str = ""  # for the log (a stable key such as "relay.denied")


@dataclass(frozen=True, slots=True)
class Defer:
    reply: Reply  # 4xx
    reason: str = ""


Verdict = Accept | Reject | Defer
ACCEPT = Accept()
