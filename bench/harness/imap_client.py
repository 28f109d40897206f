"""IMAP load client for the bench; its own process, so its CPU is measured apart.

    python imap_client.py    # job: one JSON line on stdin; then the handshake below

Modes (``job["mode"]``), N concurrent clients, one user each:

* ``sessions``: each client repeatedly connects, LOGIN, SELECT INBOX, one cycle (below),
  LOGOUT — a whole session per cycle, as imaptest runs by default;
* ``persistent``: each client logs in and selects once (untimed), then runs cycles on
  that one session; NOOP added to each cycle (a client's poll for new mail);
* ``idle``: ``sessions`` connections spread over the users, each LOGIN, SELECT INBOX,
  IDLE (the server's "+" seen), held open until the harness says go; then DONE, LOGOUT.

A cycle: ``FETCH 1:* (FLAGS UID)``; ``UID FETCH u (BODY.PEEK[HEADER])`` and
``UID FETCH v (BODY.PEEK[])`` of random messages; ``UID STORE w +FLAGS (\\Seen or
\\Flagged)``; ``APPEND INBOX`` of a corpus message (a synchronizing literal: RFC 3501
without LITERAL+); ``UID STORE o +FLAGS.SILENT (\\Deleted)`` and ``UID EXPUNGE o`` of
the oldest message, so the mailbox keeps its size. Random choices come from a
per-user seed, so every server gets the same work. Every command is one op; its
latency (command sent to tagged OK read) is recorded under its name.

Checked: every completion is OK; the mailbox holds ``expect_messages`` at every FETCH
1:*; a header fetch returns one literal ending in an empty line, a body fetch one
literal; with ``check_content`` every fetched body must end with the corpus message
its X-Bench-Seq header names (servers may prepend trace headers). Any failure ends
that client and is reported with the exchange that failed.

Handshake with the harness, so it can read the server's CPU and memory at the right
moments: the client prints ``READY start`` once set up (persistent: logged in), waits
for a line on stdin, runs the timed part, prints ``READY end``, waits for a line,
cleans up (persistent: LOGOUT) and prints the result JSON. In idle mode it prints
``READY idle`` when all sessions are idling and waits for a line before ending them.
Only the standard library (and uvloop when installed).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import re
import resource
import statistics
import sys
import time
from pathlib import Path
from typing import Any

OPS = (
    "login",
    "select",
    "fetch_flags",
    "fetch_header",
    "fetch_body",
    "store",
    "append",
    "delete",
    "expunge",
    "noop",
    "logout",
)
MAX_ERRORS = 10
SEQ_HEADER = b"X-Bench-Seq: "
_FETCH_UID = re.compile(rb"^\* \d+ FETCH \(.*?\bUID (\d+)")
_EXISTS = re.compile(rb"^\* (\d+) EXISTS")


class ImapError(Exception):
    pass


def _show(data: bytes, limit: int = 200) -> str:
    text = data.decode("latin-1")
    return repr(text if len(text) <= limit else text[:limit] + "…")


class Stats:
    def __init__(self) -> None:
        self.latency: dict[str, list[float]] = {op: [] for op in OPS}
        self.sessions = 0
        self.cycles = 0
        self.failed = 0
        self.fetched_bytes = 0
        self.appended_bytes = 0
        self.content_checked = 0
        self.connect_s: list[float] = []
        self.errors: list[str] = []

    def error(self, text: str) -> None:
        if len(self.errors) < MAX_ERRORS:
            self.errors.append(text)


class Conn:
    """One IMAP connection: tagged commands, responses read with their literals."""

    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, stats: Stats | None
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.stats = stats  # None: nothing recorded (untimed set-up and clean-up)
        self.n = 0

    @classmethod
    async def open(cls, port: int, stats: Stats | None) -> Conn:
        t0 = time.perf_counter()
        reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=1 << 22)
        conn = cls(reader, writer, stats)
        try:
            line, _ = await conn.read()
            if not line.startswith(b"* OK"):
                raise ImapError(f"greeting: {_show(line)}")
        except BaseException:
            conn.close()
            raise
        if stats is not None:
            stats.connect_s.append(time.perf_counter() - t0)
        return conn

    async def read(self) -> tuple[bytes, list[bytes]]:
        """One response: its text (literal markers kept, literal data not) and literals."""
        line = await self.reader.readuntil(b"\r\n")
        if not line.endswith(b"}\r\n"):
            return line, []
        parts = [line]
        literals: list[bytes] = []
        while line.endswith(b"}\r\n"):
            at = line.rfind(b"{")
            size = line[at + 1 : -3].rstrip(b"+")
            if at < 0 or not size.isdigit():
                break
            literals.append(await self.reader.readexactly(int(size)))
            line = await self.reader.readuntil(b"\r\n")
            parts.append(line)
        return b"".join(parts), literals

    async def run(
        self, op: str, command: bytes, literal: bytes | None = None
    ) -> tuple[list[tuple[bytes, list[bytes]]], bytes]:
        """Send one command; its untagged responses and its tagged completion (OK)."""
        self.n += 1
        tag = b"t%d" % self.n
        prefix = tag + b" "
        untagged: list[tuple[bytes, list[bytes]]] = []
        t0 = time.perf_counter()
        if literal is None:
            self.writer.write(prefix + command + b"\r\n")
        else:
            self.writer.write(prefix + command + b" {%d}\r\n" % len(literal))
            while True:  # a synchronizing literal: wait for the continuation request
                line, lits = await self.read()
                if line.startswith(b"+"):
                    break
                if line.startswith(prefix):
                    raise self._failed(op, command, untagged, line)
                untagged.append((line, lits))
            self.writer.write(literal + b"\r\n")
        while True:
            line, lits = await self.read()
            if line.startswith(prefix):
                break
            if line.startswith(b"* BYE") and op != "logout":
                raise self._failed(op, command, untagged, line)
            untagged.append((line, lits))
        elapsed = time.perf_counter() - t0
        if line[len(prefix) : len(prefix) + 3] != b"OK ":
            raise self._failed(op, command, untagged, line)
        if self.stats is not None:
            self.stats.latency[op].append(elapsed)
        return untagged, line

    async def wait_continuation(self, what: str) -> None:
        line, _ = await self.read()
        if not line.startswith(b"+"):
            raise ImapError(f"{what}: expected a continuation request, got {_show(line)}")

    @staticmethod
    def _failed(
        op: str, command: bytes, untagged: list[tuple[bytes, list[bytes]]], line: bytes
    ) -> ImapError:
        seen = " ".join(_show(u, 120) for u, _ in untagged[:5])
        return ImapError(
            f"{op}: C: {_show(command, 120)} S: {seen + ' ' if seen else ''}{_show(line)}"
        )

    def close(self) -> None:
        self.writer.close()

    async def aclose(self) -> None:
        self.writer.close()
        with contextlib.suppress(OSError, asyncio.TimeoutError):
            await asyncio.wait_for(self.writer.wait_closed(), 5)


def _quote(text: str) -> bytes:
    return b'"' + text.replace("\\", "\\\\").replace('"', '\\"').encode() + b'"'


class Client:
    """One concurrent client: one user, its random choices, the corpus to append."""

    def __init__(
        self, job: dict[str, Any], user: str, corpus: list[bytes], check: bool, stats: Stats
    ) -> None:
        self.job = job
        self.user = user
        self.corpus = corpus
        self.check = check
        self.stats = stats
        self.rng = random.Random(f"{job.get('seed', 'mwbench')}-{user}")
        self.appends = 0
        self.expect = int(job["expect_messages"])

    async def login(self, conn: Conn) -> None:
        await conn.run("login", b"LOGIN " + _quote(self.user) + b" " + _quote(self.job["password"]))

    async def select(self, conn: Conn) -> None:
        untagged, _ = await conn.run("select", b"SELECT INBOX")
        exists = [int(m.group(1)) for u, _ in untagged if (m := _EXISTS.match(u))]
        if exists[-1:] != [self.expect]:
            raise ImapError(f"SELECT INBOX: EXISTS {exists}, expected {self.expect} messages")

    async def logout(self, conn: Conn) -> None:
        untagged, _ = await conn.run("logout", b"LOGOUT")
        if not any(u.startswith(b"* BYE") for u, _ in untagged):
            raise ImapError("LOGOUT: no untagged BYE")

    async def cycle(self, conn: Conn, noop: bool) -> None:
        rng = self.rng
        untagged, _ = await conn.run("fetch_flags", b"FETCH 1:* (FLAGS UID)")
        uids = [int(m.group(1)) for u, _ in untagged if (m := _FETCH_UID.match(u))]
        if len(uids) != self.expect:
            raise ImapError(f"FETCH 1:* listed {len(uids)} messages, expected {self.expect}")
        uid = rng.choice(uids)
        untagged, _ = await conn.run("fetch_header", b"UID FETCH %d (BODY.PEEK[HEADER])" % uid)
        lits = [lit for _, ls in untagged for lit in ls]
        if len(lits) != 1 or not lits[0].endswith(b"\r\n\r\n"):
            raise ImapError(
                f"UID FETCH {uid} (BODY.PEEK[HEADER]): {len(lits)} literals, not a header"
            )
        self.stats.fetched_bytes += len(lits[0])
        uid = rng.choice(uids)
        untagged, _ = await conn.run("fetch_body", b"UID FETCH %d (BODY.PEEK[])" % uid)
        lits = [lit for _, ls in untagged for lit in ls]
        if len(lits) != 1 or not lits[0]:
            raise ImapError(f"UID FETCH {uid} (BODY.PEEK[]): {len(lits)} literals")
        self.stats.fetched_bytes += len(lits[0])
        if self.check:
            self._check_content(uid, lits[0])
        flag = rng.choice((b"\\Seen", b"\\Flagged"))
        uid = rng.choice(uids)
        await conn.run("store", b"UID STORE %d +FLAGS (%s)" % (uid, flag))
        msg = self.corpus[self.appends % len(self.corpus)]
        self.appends += 1
        await conn.run("append", b"APPEND INBOX", literal=msg)
        self.stats.appended_bytes += len(msg)
        oldest = uids[0]
        await conn.run("delete", b"UID STORE %d +FLAGS.SILENT (\\Deleted)" % oldest)
        await conn.run("expunge", b"UID EXPUNGE %d" % oldest)
        if noop:
            await conn.run("noop", b"NOOP")
        self.stats.cycles += 1

    def _check_content(self, uid: int, msg: bytes) -> None:
        at = msg.find(b"\r\n" + SEQ_HEADER)
        end = msg.find(b"\r\n", at + 2) if at >= 0 else -1
        seq = int(msg[at + 2 + len(SEQ_HEADER) : end]) if at >= 0 and end > at else -1
        if not (0 <= seq < len(self.corpus) and msg.endswith(self.corpus[seq])):
            raise ImapError(f"UID FETCH {uid} (BODY.PEEK[]): content differs from corpus {seq}")
        self.stats.content_checked += 1

    async def session(self, port: int) -> None:
        """sessions mode: one whole session (connect … LOGOUT) with one cycle."""
        conn = await Conn.open(port, self.stats)
        try:
            await self.login(conn)
            await self.select(conn)
            await self.cycle(conn, noop=False)
            await self.logout(conn)
        finally:
            await conn.aclose()
        self.stats.sessions += 1


def _ms(values: list[float], q: float) -> float | None:
    if not values:
        return None
    if len(values) == 1:
        return round(values[0] * 1000, 3)
    cut = statistics.quantiles(values, n=100, method="inclusive")
    return round(cut[int(q * 100) - 1] * 1000, 3)


def _cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


async def _handshake(phase: str) -> None:
    """Tell the harness where we are; wait (bounded) for its go-ahead line."""
    sys.stdout.write(f"READY {phase}\n")
    sys.stdout.flush()
    loop = asyncio.get_running_loop()
    async with asyncio.timeout(600):
        line = await loop.run_in_executor(None, sys.stdin.readline)
    if not line:
        raise SystemExit(f"the harness went away at {phase}")


async def _bounded(stats: Stats, user: str, hard: float, coro: Any) -> bool:
    """Run one unit of work under the hard deadline; False (and counted) on failure."""
    try:
        async with asyncio.timeout(max(1.0, hard - time.monotonic())):
            await coro
    except TimeoutError:
        stats.failed += 1
        stats.error(f"{user}: no answer before the run's hard deadline (a hang?)")
        return False
    except (
        ImapError,
        OSError,
        ValueError,
        IndexError,
        asyncio.IncompleteReadError,
        asyncio.LimitOverrunError,
    ) as e:
        stats.failed += 1
        stats.error(f"{user}: {type(e).__name__}: {e}")
        return False
    return True


async def run_load(job: dict[str, Any], corpus: list[bytes]) -> dict[str, Any]:
    """sessions or persistent mode: the timed run."""
    persistent = job["mode"] == "persistent"
    port = int(job["port"])
    stats = Stats()
    check = bool(job.get("check_content"))
    clients = [Client(job, user, corpus, check, stats) for user in job["users"]]
    grace = float(job["grace"])
    conns: dict[str, Conn] = {}

    if persistent:  # untimed: connect, log in, select

        async def setup(c: Client) -> None:
            conn = await Conn.open(port, None)
            conns[c.user] = conn
            await c.login(conn)
            await c.select(conn)
            conn.stats = stats  # from here on, every command counts

        hard = time.monotonic() + 120
        async with asyncio.TaskGroup() as tg:
            for c in clients:
                tg.create_task(_bounded(stats, c.user, hard, setup(c)))
        if stats.failed:
            return {"failed": stats.failed, "errors": stats.errors, "phase": "set-up"}

    await _handshake("start")
    left = [int(job["cycles"])]
    t0 = time.monotonic()
    cpu0 = _cpu()
    soft = t0 + float(job["duration"])
    hard = soft + grace
    ends: list[float] = []

    own = int(job.get("cycles_per_client") or 0)  # the warm-up: exactly this many each

    async def worker(c: Client) -> None:
        done = 0
        while (done < own if own else left[0] > 0) and time.monotonic() < soft:
            left[0] -= 1
            done += 1
            work = c.cycle(conns[c.user], noop=True) if persistent else c.session(port)
            if not await _bounded(stats, c.user, hard, work):
                return  # one failure ends this client (a broken server would spin)
        ends.append(time.monotonic())

    async with asyncio.TaskGroup() as tg:
        for c in clients:
            tg.create_task(worker(c))
    wall = (max(ends) if ends else time.monotonic()) - t0
    client_cpu = _cpu() - cpu0
    # The count bound or the duration bound, whichever came first (else: failures).
    ended = time.monotonic() >= soft
    stopped_by = "count" if left[0] <= 0 or own else "duration" if ended else "failures"
    await _handshake("end")

    if persistent:  # untimed: log out
        for conn in conns.values():
            conn.stats = None
        hard = time.monotonic() + 60
        async with asyncio.TaskGroup() as tg:
            for c in clients:
                if c.user in conns:
                    tg.create_task(_bounded(stats, c.user, hard, c.logout(conns[c.user])))
        for conn in conns.values():
            await conn.aclose()

    ops = {op: len(v) for op, v in stats.latency.items() if v}
    total = sum(ops.values())
    every = [x for v in stats.latency.values() for x in v]
    return {
        "mode": job["mode"],
        "clients": len(clients),
        "cycles_requested": int(job["cycles"]),
        "cycles": stats.cycles,
        "sessions": stats.sessions,
        "failed": stats.failed,
        "stopped_by": stopped_by,
        "wall_seconds": round(wall, 4),
        "ops": total,
        "ops_per_s": round(total / wall, 1) if wall > 0 else None,
        "by_command": {
            op: {
                "ops": n,
                "ops_per_s": round(n / wall, 1) if wall > 0 else None,
                "p50_ms": _ms(stats.latency[op], 0.5),
                "p99_ms": _ms(stats.latency[op], 0.99),
                "mean_ms": round(statistics.fmean(stats.latency[op]) * 1000, 3),
            }
            for op, n in ops.items()
        },
        "p50_ms": _ms(every, 0.5),
        "p99_ms": _ms(every, 0.99),
        "connect_ms_p50": _ms(stats.connect_s, 0.5),
        "connect_ms_p99": _ms(stats.connect_s, 0.99),
        "fetched_bytes": stats.fetched_bytes,
        "appended_bytes": stats.appended_bytes,
        "content_checked": stats.content_checked,
        "client_cpu_seconds": round(client_cpu, 3),
        "errors": stats.errors,
    }


async def run_idle(job: dict[str, Any]) -> dict[str, Any]:
    """idle mode: `sessions` connections LOGIN, SELECT, IDLE; held until the harness says go."""
    port = int(job["port"])
    users = list(job["users"])
    count = int(job["sessions"])
    stats = Stats()
    clients = [Client(job, users[i % len(users)], [], False, stats) for i in range(count)]
    conns: list[Conn] = []
    gate = asyncio.Semaphore(int(job.get("concurrency", 20)))
    hard = time.monotonic() + float(job["duration"])

    async def open_idle(c: Client) -> None:
        async with gate:
            conn = await Conn.open(port, stats)
            conns.append(conn)
            await c.login(conn)
            await c.select(conn)
            conn.writer.write(b"idle IDLE\r\n")
            await conn.wait_continuation("IDLE")

    t0 = time.monotonic()
    async with asyncio.TaskGroup() as tg:
        for c in clients:
            tg.create_task(_bounded(stats, c.user, hard, open_idle(c)))
    open_s = time.monotonic() - t0
    idling = count - stats.failed
    await _handshake("idle")

    ended = 0

    async def end(conn: Conn) -> None:
        nonlocal ended
        conn.writer.write(b"DONE\r\n")
        while True:
            line, _ = await conn.read()
            if line.startswith(b"idle "):
                break
        if not line.startswith(b"idle OK"):
            raise ImapError(f"DONE: {_show(line)}")
        conn.stats = None
        await Client(job, "", [], False, stats).logout(conn)
        ended += 1

    failed_before = stats.failed
    hard = time.monotonic() + 120
    async with asyncio.TaskGroup() as tg:
        for conn in conns:
            tg.create_task(_bounded(stats, "idle", hard, end(conn)))
    for conn in conns:
        await conn.aclose()
    return {
        "mode": "idle",
        "sessions_requested": count,
        "users": len(users),
        "idling": idling,
        "failed": failed_before,
        "ended_cleanly": ended,
        "end_failures": stats.failed - failed_before,
        "open_seconds": round(open_s, 2),
        "login_ms_p50": _ms(stats.latency["login"], 0.5),
        "login_ms_p99": _ms(stats.latency["login"], 0.99),
        "errors": stats.errors,
    }


async def run(job: dict[str, Any]) -> dict[str, Any]:
    if job["mode"] == "idle":
        return await run_idle(job)
    corpus = [p.read_bytes() for p in sorted(Path(job["corpus"]).glob("*.eml"))]
    if not corpus:
        raise SystemExit(f"no corpus messages in {job['corpus']}")
    return await run_load(job, corpus)


def main() -> int:
    job = json.loads(sys.stdin.readline())
    try:
        import uvloop  # the same event loop mailwright uses; less client CPU
    except ImportError:
        result = asyncio.run(run(job))
        result["event_loop"] = "asyncio"
    else:
        result = uvloop.run(run(job))
        result["event_loop"] = "uvloop"
    sys.stdout.write("RESULT " + json.dumps(result) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
