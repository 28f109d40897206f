"""Trace headers added on arrival: Return-Path and Received (RFC 5321 §4.4, RFC 3848)."""

from __future__ import annotations

import functools
import time
from datetime import UTC, datetime
from email.utils import format_datetime


@functools.lru_cache(maxsize=4)
def _format_second(second: int) -> str:
    # A pure memo: every message received in the same second shares the text.
    return format_datetime(datetime.fromtimestamp(second, UTC))


def _rfc5322_date(when: datetime | None) -> str:
    if when is not None:
        return format_datetime(when)
    return _format_second(int(time.time()))


def _clean(text: str) -> str:
    # Anything that reaches a header was checked at the protocol boundary; this is a
    # second line of defence so a header can never be split or smuggled.
    if text.isprintable() and "(" not in text and ")" not in text:
        return text  # the common case, without a pass per character
    return "".join(c for c in text if c.isprintable() and c not in "\r\n\0()")


def return_path(sender: str | None) -> bytes:
    return f"Return-Path: <{_clean(sender or '')}>\r\n".encode()


def received(
    *,
    helo: str,
    peer_ip: str,
    by: str,
    protocol: str,
    queue_id: str,
    recipient: str | None,
    when: datetime | None = None,
    tls: str | None = None,
) -> bytes:
    date = _rfc5322_date(when)
    lines = [f"Received: from {_clean(helo)} ([{_clean(peer_ip)}])"]
    by_line = f"\tby {_clean(by)} (mailwright) with {protocol} id {queue_id}"
    if tls:
        by_line += f"\r\n\t(using {_clean(tls)})"
    lines.append(by_line)
    if recipient:
        lines.append(f"\tfor <{_clean(recipient)}>; {date}")
    else:
        lines[-1] += f"; {date}"
    return ("\r\n".join(lines) + "\r\n").encode("utf-8")


def protocol_name(*, esmtp: bool, tls: bool, auth: bool, utf8: bool) -> str:
    """RFC 3848 / RFC 6531 §4.3 "with" keywords."""
    if not esmtp:
        return "SMTP"
    base = "UTF8SMTP" if utf8 else "ESMTP"
    return base + ("S" if tls else "") + ("A" if auth else "")
