"""Plays transcript files through the full SMTP stack over an in-memory stream.

The stack is the one the listener runs: ``ServerConnection`` (protocol) and
``SmtpSession`` (routing, policy, a real SQLite store in a temporary directory), driven
by the same loop as ``serve.smtp.SmtpListener._serve`` minus sockets and sleeps.

File format (CONVENTIONS.md "Transcript format"), plus two additions:
    # smtp/name.txt — RFC ...: what it shows      (first line)
    @domain D / @account A / @alias SOURCE TARGET... / @config smtp.KEY=TOML-VALUE / @tls
    @expect-stored ADDRESS N       after the exchange, ADDRESS's INBOX holds N messages
    @expect-body ADDRESS LITERAL   the last stored message contains the bytes literal
    @expect-copies N               the store holds N messages in all (one copy per message)
    C: text        a client line (CRLF added)
    C+ LITERAL     raw client bytes, a Python bytes literal (b"DATA\\n.\\n")
    C* N TEXT      the line TEXT repeated N times, or (TEXT starting with "x") a line of N octets
    S: text        the next server line, exactly
    S~ regex       the next server line matches
    S* regex       zero or more server lines that match
Every transcript is played three ways — whole lines, byte by byte, everything at once —
and the server's output must be the same each time.
"""

from __future__ import annotations

import ast
import asyncio
import dataclasses
import re
import sqlite3
import tomllib
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path

from mailwright.config import SmtpConfig
from mailwright.intake.routing import Router
from mailwright.intake.smtp import Peer, SmtpSession, limits_from
from mailwright.proto.smtp import events as ev
from mailwright.proto.smtp.server import ServerConnection
from mailwright.store.sqlite import SqliteStore

MODES = ("lines", "bytes", "pipelined")


@dataclass
class Transcript:
    name: str
    domains: list[str] = field(default_factory=list)
    accounts: list[str] = field(default_factory=list)
    aliases: list[tuple[str, list[str]]] = field(default_factory=list)
    config: dict[str, object] = field(default_factory=dict)
    tls: bool = False
    client: list[bytes] = field(default_factory=list)  # one entry per client line
    expect: list[tuple[str, str]] = field(default_factory=list)  # (kind, text)
    stored: list[tuple[str, int]] = field(default_factory=list)
    bodies: list[tuple[str, bytes]] = field(default_factory=list)
    copies: int | None = None


def parse(path: Path) -> Transcript:
    t = Transcript(path.name)
    for raw in path.read_text(encoding="utf-8").splitlines():
        if not raw or raw.startswith("#"):
            continue
        if raw.startswith("@"):
            word, _, rest = raw[1:].partition(" ")
            args = rest.split()
            match word:
                case "domain":
                    t.domains += args
                case "account":
                    t.accounts += args
                case "alias":
                    t.aliases.append((args[0], args[1:]))
                case "config":
                    key, _, value = rest.partition("=")
                    section, _, name = key.strip().partition(".")
                    if section != "smtp":
                        raise ValueError(f"{path.name}: only smtp.* settings: {raw}")
                    t.config[name] = tomllib.loads(f"v = {value.strip()}")["v"]
                case "tls":
                    t.tls = True
                case "expect-stored":
                    t.stored.append((args[0], int(args[1])))
                case "expect-copies":
                    t.copies = int(args[0])
                case "expect-body":
                    address, _, literal = rest.partition(" ")
                    t.bodies.append((address, ast.literal_eval(literal.strip())))
                case _:
                    raise ValueError(f"{path.name}: unknown directive {raw}")
            continue
        kind, text = raw[:2], raw[3:]
        if kind == "C:":
            t.client.append(text.encode("utf-8") + b"\r\n")
        elif kind == "C+":
            t.client.append(ast.literal_eval(text))
        elif kind == "C*":
            count, _, line = text.partition(" ")
            if line == "x":
                t.client.append(b"x" * int(count) + b"\r\n")
            else:
                t.client.append((line.encode("utf-8") + b"\r\n") * int(count))
        elif kind in ("S:", "S~", "S*"):
            t.expect.append((kind, text))
        else:
            raise ValueError(f"{path.name}: cannot read line {raw!r}")
    return t


def chunks(t: Transcript, mode: str) -> list[bytes]:
    data = b"".join(t.client)
    if mode == "lines":
        return list(t.client)
    if mode == "bytes":
        return [data[i : i + 1] for i in range(len(data))]
    return [data]


@dataclass
class Outcome:
    output: bytes
    stored: dict[str, list[bytes]]
    copies: int


async def play(t: Transcript, mode: str, tmp: Path) -> Outcome:
    store = SqliteStore(tmp)
    try:
        for d in t.domains:
            await store.add_domain(d)
        for a in t.accounts:
            await store.add_account(a, "not-a-real-hash")
        for source, targets in t.aliases:
            await store.add_alias(source, targets)
        config = dataclasses.replace(SmtpConfig(), **t.config)  # type: ignore[arg-type]
        session = SmtpSession(
            hostname="mx.example.test",
            config=config,
            router=Router(store, config.subaddress_delimiter, hostname="mx.example.test"),
            messages=store,
            peer=Peer("192.0.2.1", 4242, "transcript"),
            tls_available=t.tls,
        )
        machine = ServerConnection(limits_from(config))
        out = bytearray(machine.send_unsolicited(session.greeting()))
        pending = [*chunks(t, mode), b""]  # b"": the client closes at the end
        try:
            while True:
                event = machine.next_event()
                if event is ev.NEED_DATA:
                    if not pending:
                        break
                    machine.receive_data(pending.pop(0))
                    continue
                if event is ev.CLOSED:
                    break
                reply = await session.handle(event)
                if reply is not None:
                    out += machine.send(reply)
        finally:
            session.abort()
        stored: dict[str, list[bytes]] = {}
        for a in t.accounts:
            account = await store.get_account(a)
            if account is None:
                continue
            box = await store.get_mailbox(account.id, "INBOX")
            stored[a] = [
                await store.read_message(p.message_id) for p in await store.list_placements(box.id)
            ]
        with closing(sqlite3.connect(tmp / "mailwright.db")) as db:
            (copies,) = db.execute("SELECT count(*) FROM messages").fetchone()
        return Outcome(bytes(out), stored, copies)
    finally:
        await store.close()


def check(t: Transcript, output: bytes) -> None:
    lines = output.decode("utf-8", "replace").split("\r\n")
    assert lines[-1] == "", f"output does not end with CRLF: {lines[-1]!r}"
    lines.pop()
    i = 0
    for kind, text in t.expect:
        if kind == "S*":
            while i < len(lines) and re.fullmatch(text, lines[i]):
                i += 1
            continue
        assert i < len(lines), (
            f"expected {kind} {text!r}, but the server said no more\n{output.decode()}"
        )
        if kind == "S:":
            assert lines[i] == text, f"line {i + 1}: expected {text!r}, got {lines[i]!r}"
        else:
            assert re.fullmatch(text, lines[i]), (
                f"line {i + 1}: {lines[i]!r} does not match {text!r}"
            )
        i += 1
    assert i == len(lines), f"unexpected server lines: {lines[i:]}"


_QUEUE_ID = re.compile(rb"(queued as| id) \w+")
_DATE = re.compile(rb"; \w{3}, \d\d \w{3} \d{4} \d\d:\d\d:\d\d [+-]\d{4}")


def _same(data: bytes) -> bytes:
    """Queue ids and arrival times differ from play to play; nothing else may."""
    return _DATE.sub(b"; DATE", _QUEUE_ID.sub(rb"\1 QID", data))


def run(path: Path, tmp: Path) -> None:
    t = parse(path)
    outcomes = {mode: asyncio.run(play(t, mode, tmp / mode)) for mode in MODES}
    first = outcomes["lines"]
    for mode, outcome in outcomes.items():
        assert _same(outcome.output) == _same(first.output), (
            f"{mode} play differs from line by line"
        )
        stored = {a: [_same(m) for m in msgs] for a, msgs in outcome.stored.items()}
        expected = {a: [_same(m) for m in msgs] for a, msgs in first.stored.items()}
        assert stored == expected, f"{mode} play stored something else"
    check(t, first.output)
    for address, count in t.stored:
        assert len(first.stored.get(address, [])) == count, (
            f"{address}: {len(first.stored.get(address, []))} stored"
        )
    if t.copies is not None:
        assert first.copies == t.copies, f"{first.copies} stored copies, expected {t.copies}"
    for address, needle in t.bodies:
        assert first.stored.get(address), f"{address}: nothing stored"
        assert needle in first.stored[address][-1], (
            f"{address}: {needle!r} not in the stored message"
        )
