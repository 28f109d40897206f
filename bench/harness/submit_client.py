"""Submission load generator for the outbound bench; its own process, so its CPU is apart.

    python submit_client.py < job.json > result.json

The job (JSON on stdin): ``port``; ``username`` and ``password`` (AUTH PLAIN once per
session; ``password`` null: no AUTH); ``sender``; ``domain`` and ``recipients`` (the
recipients of each message, ``r<k>@<domain>``, k counting on over all messages);
``messages`` (the total, drawn from one shared counter so every session stays busy to
the end); ``sessions`` (concurrent connections); ``corpus`` (a directory of *.eml
files, sent in turn, each with an ``X-Bench-Id`` header in front); ``pipelining``
(send RSET, MAIL, the RCPTs and DATA as one group when the server offers PIPELINING,
RFC 2920); ``timeout`` (seconds for any one reply). Only the standard library.

A session: greeting, EHLO, AUTH PLAIN, then transactions until the counter runs out —
MAIL, RCPT..., DATA, the message (dot-stuffed, RFC 5321 §4.5.2), "." — with RSET before
each one after the first, and QUIT. A reply other than the expected one ends that
session (its message counts as failed; the others go on). Every time is
``time.monotonic()`` — on Linux one clock for all processes, so the harness can set the
client's first connect against the moment the MX received the last message.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

MAX_ERRORS = 10


class SessionError(Exception):
    pass


class Job:
    def __init__(self, job: dict[str, Any]) -> None:
        self.port = int(job["port"])
        self.username: str = job.get("username") or ""
        self.password: str | None = job.get("password")
        self.sender: str = job["sender"]
        self.domain: str = job["domain"]
        self.recipients = int(job["recipients"])
        self.total = int(job["messages"])
        self.sessions = int(job["sessions"])
        self.pipelining = bool(job.get("pipelining", True))
        self.timeout = float(job.get("timeout", 60))
        self.bodies = [_stuff(p.read_bytes()) for p in sorted(Path(job["corpus"]).glob("*.eml"))]
        if not self.bodies:
            raise SystemExit(f"no *.eml files in {job['corpus']}")
        self.next = 0  # the shared counter (one event loop: no lock needed)

    def take(self) -> int | None:
        if self.next >= self.total:
            return None
        self.next += 1
        return self.next - 1


class Stats:
    def __init__(self) -> None:
        self.sent = 0  # final 250 after the data
        self.failed = 0
        self.bytes = 0
        self.sessions_done = 0
        self.last_250 = 0.0
        self.latencies: list[float] = []  # MAIL written -> final 250 read
        self.auth: list[float] = []  # AUTH written -> 235 read
        self.errors: list[str] = []
        self.extensions: list[str] = []
        self.pipelined = False

    def error(self, text: str) -> None:
        if len(self.errors) < MAX_ERRORS:
            self.errors.append(text)


def _stuff(data: bytes) -> bytes:
    """The message as DATA carries it: CRLF line ends, a leading "." doubled, ending CRLF."""
    data = data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    if not data.endswith(b"\r\n"):
        data += b"\r\n"
    data = data.replace(b"\r\n.", b"\r\n..")
    return b"." + data if data.startswith(b".") else data


async def _reply(reader: asyncio.StreamReader, timeout: float) -> tuple[int, list[bytes]]:
    """One (possibly multi-line) reply: its code and its lines."""
    lines: list[bytes] = []
    async with asyncio.timeout(timeout):
        while len(lines) < 1000:
            line = await reader.readline()
            if len(line) < 4 or not line[:3].isdigit():
                raise SessionError(f"bad reply line {line[:200]!r}")
            lines.append(line.rstrip(b"\r\n"))
            if line[3:4] != b"-":
                return int(line[:3]), lines
    raise SessionError("a reply of more than 1000 lines")


async def _expect(
    reader: asyncio.StreamReader, code: int, what: str, timeout: float
) -> list[bytes]:
    got, lines = await _reply(reader, timeout)
    if got != code:
        raise SessionError(f"{what}: {b' / '.join(lines)[:300]!r}")
    return lines


async def session(job: Job, stats: Stats, index: int) -> None:
    reader, writer = await asyncio.wait_for(
        asyncio.open_connection("127.0.0.1", job.port), job.timeout
    )
    current: int | None = None
    try:
        await _expect(reader, 220, "greeting", job.timeout)
        writer.write(f"EHLO client{index}.bench.test\r\n".encode())
        lines = await _expect(reader, 250, "EHLO", job.timeout)
        extensions = [
            text for ln in lines[1:] if (text := ln[4:].decode("ascii", "replace").upper().strip())
        ]
        if index == 0:
            stats.extensions = extensions
        pipelining = job.pipelining and "PIPELINING" in {e.split()[0] for e in extensions}
        stats.pipelined = stats.pipelined or pipelining
        if job.password is not None:
            # RFC 4616: authzid NUL authcid NUL passwd, in one initial response (RFC 4954 §4).
            token = f"\0{job.username}\0{job.password}".encode()
            t = time.monotonic()
            writer.write(b"AUTH PLAIN " + base64.b64encode(token) + b"\r\n")
            await _expect(reader, 235, "AUTH PLAIN", job.timeout)
            stats.auth.append(time.monotonic() - t)
        first = True
        while (current := job.take()) is not None:
            body = job.bodies[current % len(job.bodies)]
            rcpts = [f"r{current * job.recipients + j}@{job.domain}" for j in range(job.recipients)]
            commands: list[tuple[bytes, int, str]] = []
            if not first:
                commands.append((b"RSET\r\n", 250, "RSET"))
            commands.append((f"MAIL FROM:<{job.sender}>\r\n".encode(), 250, "MAIL"))
            commands += [(f"RCPT TO:<{r}>\r\n".encode(), 250, f"RCPT {r}") for r in rcpts]
            commands.append((b"DATA\r\n", 354, "DATA"))
            t = time.monotonic()
            if pipelining:
                writer.write(b"".join(c for c, _, _ in commands))
                for _, code, what in commands:
                    await _expect(reader, code, what, job.timeout)
            else:
                for command, code, what in commands:
                    writer.write(command)
                    await _expect(reader, code, what, job.timeout)
            header = f"X-Bench-Id: {current}\r\n".encode()
            writer.write(header + body + b".\r\n")
            await writer.drain()
            await _expect(reader, 250, "end of data", job.timeout)
            now = time.monotonic()
            stats.sent += 1
            stats.bytes += len(header) + len(body)
            stats.latencies.append(now - t)
            stats.last_250 = max(stats.last_250, now)
            current = None
            first = False
        writer.write(b"QUIT\r\n")
        await _expect(reader, 221, "QUIT", job.timeout)
        stats.sessions_done += 1
    finally:
        if current is not None:
            stats.failed += 1
        writer.close()
        with contextlib.suppress(OSError, TimeoutError):
            await asyncio.wait_for(writer.wait_closed(), 5)


async def run(job: Job) -> dict[str, Any]:
    stats = Stats()
    start = time.monotonic()

    async def guarded(i: int) -> None:
        try:
            await session(job, stats, i)
        except (SessionError, OSError, TimeoutError) as e:
            stats.error(f"session {i}: {type(e).__name__}: {e}")

    await asyncio.gather(*(guarded(i) for i in range(job.sessions)))
    end = stats.last_250 or time.monotonic()
    lat = sorted(stats.latencies)
    return {
        "start": start,
        "end": end,
        "wall_seconds": round(end - start, 4),
        "messages": stats.sent,
        "failed": stats.failed,
        "not_sent": job.total - stats.sent - stats.failed,
        "message_bytes": stats.bytes,
        "sessions_completed": stats.sessions_done,
        "pipelining": stats.pipelined,
        "extensions": stats.extensions,
        "latency_ms_median": round(statistics.median(lat) * 1000, 2) if lat else None,
        "latency_ms_p95": round(lat[int(len(lat) * 0.95) - 1] * 1000, 2) if lat else None,
        "auth_ms_median": round(statistics.median(stats.auth) * 1000, 2) if stats.auth else None,
        "errors": stats.errors,
    }


def main() -> int:
    job = Job(json.load(sys.stdin))
    result = asyncio.run(run(job))
    json.dump(result, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
