"""POP3 load client for the bench; runs as its own process so its CPU is measured apart.

    python pop3_client.py < job.json > result.json

The job (JSON on stdin): ``port``, ``users`` (one concurrent client per user),
``password``, ``sessions`` (total for this run, drawn from one shared counter so all
clients stay busy until the end), ``duration`` (seconds after which no new session
starts), ``grace`` (seconds sessions in flight then get before they count as failed),
``expect_messages``, ``corpus`` (directory of NN.eml files) and ``check_content``. Each session: greeting, USER, PASS,
STAT, LIST, UIDL, RETR of every message, QUIT; never DELE, so the mailbox stays for
the next session. Only the standard library (and uvloop when installed).

Every RETR is checked against its LIST size (roughly: servers may count a few octets
differently) and STAT against LIST; with ``check_content`` each message is un-stuffed
and compared byte for byte with the corpus (a server may prepend trace headers, so the
corpus message must be the retrieved message's tail).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

END = b"\r\n.\r\n"  # end of a multi-line response (RFC 1939 §3)
SEQ_HEADER = b"\r\nX-Bench-Seq: "
MAX_ERRORS = 10


class SessionError(Exception):
    pass


class Stats:
    def __init__(self) -> None:
        self.sessions = 0
        self.failed = 0
        self.messages = 0
        self.retr_bytes = 0  # RETR responses as read off the wire (stuffed)
        self.message_bytes = 0  # un-stuffed message octets
        self.size_mismatches = 0
        self.content_checked = 0
        self.content_mismatches = 0
        self.login_s: list[float] = []
        self.session_s: list[float] = []
        self.errors: list[str] = []

    def error(self, text: str) -> None:
        if len(self.errors) < MAX_ERRORS:
            self.errors.append(text)


async def _line(reader: asyncio.StreamReader, what: str) -> bytes:
    line = await reader.readline()
    if not line.startswith(b"+OK"):
        raise SessionError(f"{what}: {line[:200]!r}")
    return line


async def _multi(reader: asyncio.StreamReader, what: str) -> tuple[bytes, bytes]:
    """Status line and body (still dot-stuffed; ends with CRLF, the "." line dropped)."""
    first = await _line(reader, what)
    # Every multi-line answer here is non-empty, so the body ends with CRLF "." CRLF.
    body = await reader.readuntil(END)
    return first, body[:-3]


def _unstuffed_len(body: bytes) -> int:
    # RFC 1939 §3: a line starting with "." is sent with one more "." in front.
    return len(body) - body.count(b"\r\n..") - (1 if body.startswith(b"..") else 0)


def _unstuff(body: bytes) -> bytes:
    out = body.replace(b"\r\n..", b"\r\n.")
    return out[1:] if out.startswith(b"..") else out


async def session(job: dict[str, Any], user: str, stats: Stats, corpus: list[bytes]) -> None:
    t0 = time.perf_counter()
    reader, writer = await asyncio.open_connection("127.0.0.1", job["port"], limit=1 << 22)
    try:
        await _line(reader, "greeting")
        t_login = time.perf_counter()
        writer.write(f"USER {user}\r\n".encode())
        await _line(reader, "USER")
        writer.write(f"PASS {job['password']}\r\n".encode())
        await _line(reader, "PASS")
        login = time.perf_counter() - t_login
        writer.write(b"STAT\r\n")
        stat = (await _line(reader, "STAT")).split()
        count, total = int(stat[1]), int(stat[2])
        if count != job["expect_messages"]:
            raise SessionError(f"STAT says {count} messages, expected {job['expect_messages']}")
        writer.write(b"LIST\r\n")
        _, listing = await _multi(reader, "LIST")
        sizes = [int(line.split()[1]) for line in listing.split(b"\r\n") if line]
        if len(sizes) != count or sum(sizes) != total:
            raise SessionError(f"LIST ({len(sizes)}, {sum(sizes)}) disagrees with STAT {stat}")
        writer.write(b"UIDL\r\n")
        _, uidl = await _multi(reader, "UIDL")
        uids = [line.split()[1] for line in uidl.split(b"\r\n") if line]
        if len(set(uids)) != count:
            raise SessionError(f"UIDL lists {len(set(uids))} distinct ids for {count} messages")
        got_bytes = got_octets = 0
        for n in range(1, count + 1):
            writer.write(b"RETR %d\r\n" % n)
            first, body = await _multi(reader, f"RETR {n}")
            got_bytes += len(first) + len(body) + 3
            octets = _unstuffed_len(body)
            got_octets += octets
            listed = sizes[n - 1]
            if abs(octets - listed) > max(64, listed // 50):
                stats.size_mismatches += 1
                stats.error(f"RETR {n}: {octets} octets, LIST said {listed}")
            if corpus:
                stats.content_checked += 1
                msg = _unstuff(body)
                at = msg.find(SEQ_HEADER)
                seq = int(msg[at + len(SEQ_HEADER) : msg.index(b"\r\n", at + 2)]) if at >= 0 else -1
                if not (0 <= seq < len(corpus) and msg.endswith(corpus[seq])):
                    stats.content_mismatches += 1
                    stats.error(f"RETR {n}: content differs from the corpus (seq {seq})")
        writer.write(b"QUIT\r\n")
        await _line(reader, "QUIT")
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
    stats.sessions += 1
    stats.messages += count
    stats.retr_bytes += got_bytes
    stats.message_bytes += got_octets
    stats.login_s.append(login)
    stats.session_s.append(time.perf_counter() - t0)


async def client(
    job: dict[str, Any],
    user: str,
    left: list[int],
    deadlines: tuple[float, float],
    stats: Stats,
    corpus: list[bytes],
) -> None:
    soft, hard = deadlines
    while left[0] > 0 and time.monotonic() < soft:
        left[0] -= 1
        try:
            async with asyncio.timeout(max(1.0, hard - time.monotonic())):
                await session(job, user, stats, corpus)
        except (SessionError, OSError, ValueError, IndexError, asyncio.IncompleteReadError) as e:
            stats.failed += 1
            stats.error(f"{user}: {type(e).__name__}: {e}")
            return  # a broken server would make the loop spin; one failure ends this client
        except TimeoutError:
            stats.failed += 1
            stats.error(f"{user}: session still running {job['grace']}s after the duration")
            return


def _ms(values: list[float], q: float) -> float | None:
    if not values:
        return None
    if len(values) == 1:
        return round(values[0] * 1000, 2)
    cut = statistics.quantiles(values, n=100, method="inclusive")
    return round(cut[int(q * 100) - 1] * 1000, 2) if q < 1 else round(max(values) * 1000, 2)


async def run(job: dict[str, Any]) -> dict[str, Any]:
    corpus: list[bytes] = []
    if job.get("check_content"):
        corpus = [p.read_bytes() for p in sorted(Path(job["corpus"]).glob("*.eml"))]
    stats = Stats()
    left = [int(job["sessions"])]
    t0 = time.monotonic()
    soft = t0 + float(job["duration"])
    deadlines = (soft, soft + float(job["grace"]))
    async with asyncio.TaskGroup() as tg:
        for user in job["users"]:
            tg.create_task(client(job, user, left, deadlines, stats, corpus))
    wall = time.monotonic() - t0
    return {
        "clients": len(job["users"]),
        "sessions_requested": int(job["sessions"]),
        "sessions": stats.sessions,
        "failed_sessions": stats.failed,
        # The count bound or the duration bound, whichever came first.
        "stopped_by": (
            "count" if left[0] <= 0 else "duration" if time.monotonic() >= soft else "failures"
        ),
        "messages": stats.messages,
        "retr_bytes": stats.retr_bytes,
        "message_bytes": stats.message_bytes,
        "wall_seconds": round(wall, 4),
        "size_mismatches": stats.size_mismatches,
        "content_checked": stats.content_checked,
        "content_mismatches": stats.content_mismatches,
        "login_ms_median": _ms(stats.login_s, 0.5),
        "login_ms_p95": _ms(stats.login_s, 0.95),
        "session_ms_median": _ms(stats.session_s, 0.5),
        "session_ms_p95": _ms(stats.session_s, 0.95),
        "errors": stats.errors,
    }


def main() -> int:
    job = json.load(sys.stdin)
    try:
        import uvloop  # the same event loop mailwright uses; less client CPU
    except ImportError:
        result = asyncio.run(run(job))
        result["event_loop"] = "asyncio"
    else:
        result = uvloop.run(run(job))
        result["event_loop"] = "uvloop"
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
