"""Plays transcript files through a protocol's full stack over an in-memory stream.

This module holds what every protocol's transcripts share — the file format, the three
ways of playing the client's bytes, the in-memory ``Channel``, the store fixtures, the
check of the server's output — and the SMTP player. ``pop3_runner`` plays POP3 (its
directives are listed there).

The SMTP stack is the one the listener runs: ``ServerConnection`` (protocol) and
``SmtpSession`` (routing, policy, a real SQLite store in a temporary directory), driven
by the same loop as ``serve.smtp.SmtpListener._serve`` minus sockets and sleeps.

File format (CONVENTIONS.md "Transcript format"), plus additions:
    # smtp/name.txt — RFC ...: what it shows      (first line)
    @domain D / @account A... / @alias SOURCE TARGET... / @tls
    @config SECTION.KEY=TOML-VALUE                 read by the real config loader
    @expect-stored ADDRESS N       after the exchange, ADDRESS's INBOX holds N messages
    @expect-body ADDRESS LITERAL   the last stored message contains the bytes literal
    @expect-copies N               the store holds N messages in all (one copy per message)
    C: text        a client line (CRLF added)
    C+ LITERAL     raw client bytes, a Python bytes literal (b"DATA\\n.\\n")
    C* N TEXT      the line TEXT repeated N times, or (TEXT starting with "x") a line of N octets
    S: text        the next server line, exactly
    S~ regex       the next server line matches
    S* regex       zero or more server lines that match
Every account's password is "secret" (a real argon2id hash, made at test cost).
Every transcript is played three ways — whole lines, byte by byte, everything at once —
and the server's output must be the same each time. A ``@handshake`` (POP3: the client's
TLS handshake) splits the client's bytes: nothing is sent across it in one piece.
"""

from __future__ import annotations

import ast
import asyncio
import functools
import itertools
import re
import sqlite3
import tomllib
from collections.abc import Awaitable, Callable
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path

from argon2 import PasswordHasher

from mailwright.config import Config, parse_config
from mailwright.intake.routing import Router
from mailwright.intake.smtp import Peer, SmtpSession, limits_from
from mailwright.proto.smtp import events as ev
from mailwright.proto.smtp.server import ServerConnection
from mailwright.store.api import INBOX, Target
from mailwright.store.sqlite import SqliteStore

MODES = ("lines", "bytes", "pipelined")
HOSTNAME = "mx.example.test"
PASSWORD = "secret"
TLS_INFO = "TLSv1.3 TLS_AES_128_GCM_SHA256"  # what the simulated handshake reports

_COMMON = {"domain", "account", "config", "tls", "expect-stored", "expect-body", "expect-copies"}
_POP3 = {
    "password",
    "peer",
    "implicit-tls",
    "handshake",
    "message",
    "arrives",
    "expunged",
    "in-use",
}
# The directives each protocol's files may use, and the config sections they may set.
DIRECTIVES = {"smtp": _COMMON | {"alias"}, "pop3": _COMMON | _POP3}
CONFIG_SECTIONS = {"smtp": {"smtp"}, "pop3": {"pop3", "auth"}}


@dataclass
class Transcript:
    name: str
    domains: list[str] = field(default_factory=list)
    accounts: list[str] = field(default_factory=list)
    passwords: dict[str, str] = field(default_factory=dict)  # other than PASSWORD
    aliases: list[tuple[str, list[str]]] = field(default_factory=list)
    config: dict[str, dict[str, object]] = field(default_factory=dict)  # section -> key -> value
    tls: bool = False  # TLS is available (STARTTLS / STLS offered)
    implicit_tls: bool = False  # the connection is TLS from the start (port 995's role)
    peer: str = "127.0.0.1"
    messages: list[tuple[str, bytes]] = field(default_factory=list)  # in INBOX before
    arrivals: list[tuple[str, bytes]] = field(default_factory=list)  # delivered at login
    expunges: list[tuple[str, int]] = field(default_factory=list)  # (address, UID) at login
    in_use: list[str] = field(default_factory=list)  # maildrops another session holds
    # The client's lines, one list per phase: a TLS handshake ends each but the last.
    client: list[list[bytes]] = field(default_factory=lambda: [[]])
    expect: list[tuple[str, str]] = field(default_factory=list)  # (kind, text)
    stored: list[tuple[str, int]] = field(default_factory=list)
    bodies: list[tuple[str, bytes]] = field(default_factory=list)
    copies: int | None = None


def _address_bytes(rest: str) -> tuple[str, bytes]:
    """``ADDRESS LITERAL``: an address and a Python bytes literal."""
    address, _, literal = rest.partition(" ")
    return address, _literal(literal)


def _literal(text: str) -> bytes:
    value = ast.literal_eval(text.strip())
    if not isinstance(value, bytes):
        raise ValueError(f"not a bytes literal: {text}")
    return value


def parse(path: Path, protocol: str = "smtp") -> Transcript:
    t = Transcript(path.name)
    allowed = DIRECTIVES[protocol]
    for raw in path.read_text(encoding="utf-8").splitlines():
        if not raw or raw.startswith("#"):
            continue
        if raw.startswith("@"):
            word, _, rest = raw[1:].partition(" ")
            args = rest.split()
            if word not in allowed:
                raise ValueError(f"{path.name}: unknown directive {raw}")
            match word:
                case "domain":
                    t.domains += args
                case "account":
                    t.accounts += args
                case "password":
                    address, _, password = rest.partition(" ")
                    t.passwords[address] = password
                case "alias":
                    t.aliases.append((args[0], args[1:]))
                case "config":
                    key, _, value = rest.partition("=")
                    section, _, name = key.strip().partition(".")
                    if section not in CONFIG_SECTIONS[protocol]:
                        raise ValueError(f"{path.name}: no such config section: {raw}")
                    value = tomllib.loads(f"v = {value.strip()}")["v"]
                    t.config.setdefault(section, {})[name] = value
                case "tls":
                    t.tls = True
                case "implicit-tls":
                    t.implicit_tls = True
                case "peer":
                    t.peer = args[0]
                case "handshake":
                    t.client.append([])
                case "message":
                    t.messages.append(_address_bytes(rest))
                case "arrives":
                    t.arrivals.append(_address_bytes(rest))
                case "expect-body":
                    t.bodies.append(_address_bytes(rest))
                case "expunged":
                    t.expunges.append((args[0], int(args[1])))
                case "in-use":
                    t.in_use += args
                case "expect-stored":
                    t.stored.append((args[0], int(args[1])))
                case "expect-copies":
                    t.copies = int(args[0])
            continue
        kind, text = raw[:2], raw[3:]
        if kind == "C:":
            t.client[-1].append(text.encode("utf-8") + b"\r\n")
        elif kind == "C+":
            t.client[-1].append(_literal(text))
        elif kind == "C*":
            count, _, line = text.partition(" ")
            if line == "x":
                t.client[-1].append(b"x" * int(count) + b"\r\n")
            else:
                t.client[-1].append((line.encode("utf-8") + b"\r\n") * int(count))
        elif kind in ("S:", "S~", "S*"):
            t.expect.append((kind, text))
        else:
            raise ValueError(f"{path.name}: cannot read line {raw!r}")
    return t


def config_of(t: Transcript, tmp: Path) -> Config:
    """The transcript's settings, read by the real loader (which checks them)."""
    return parse_config({"data_dir": str(tmp), "hostname": HOSTNAME, **t.config})


def chunks(t: Transcript, mode: str) -> list[list[bytes]]:
    """The client's reads in each phase: one per line, one per byte, or one in all."""
    out = []
    for phase in t.client:
        data = b"".join(phase)
        if mode == "lines":
            out.append(list(phase))
        elif mode == "bytes":
            out.append([data[i : i + 1] for i in range(len(data))])
        else:
            out.append([data] if data else [])
    return out


class MemoryChannel:
    """An ``access.channel.Channel`` over the transcript's client bytes.

    ``read`` returns the next chunk of the current phase, then ``b""`` (the client closes)
    after the last phase. ``discard_pending`` drops what is left of the current phase: the
    client sent it before the TLS handshake, and the server has not read it.
    ``upgrade_tls`` is the handshake: it moves on to the next phase.
    """

    def __init__(
        self,
        t: Transcript,
        mode: str,
        *,
        peer: tuple[str, int] = ("127.0.0.1", 4242),
        tls: bool = False,
    ) -> None:
        self._phases = chunks(t, mode)
        self._peer = peer
        self.output = bytearray()
        self.tls = tls  # True from the start for implicit TLS
        self.eof = False  # the client's close has been read
        self.timeouts: list[float] = []

    @property
    def peer(self) -> tuple[str, int]:
        return self._peer

    async def read(self) -> bytes:
        phase = self._phases[0]
        if phase:
            return phase.pop(0)
        if len(self._phases) > 1:
            raise AssertionError("the server waits for a command; the client, for TLS")
        self.eof = True
        return b""

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.output += data

    async def drain(self) -> None:
        return None

    def discard_pending(self) -> int:
        phase = self._phases[0]
        dropped = sum(len(c) for c in phase)
        phase.clear()
        return dropped

    async def upgrade_tls(self) -> str:
        if self.tls:
            raise AssertionError("a second TLS handshake on one connection")
        if self._phases[0]:
            raise AssertionError(f"plaintext left unread at the handshake: {self._phases[0]}")
        if len(self._phases) == 1:
            # No @handshake: the client hangs up instead of starting TLS.
            self.eof = True
            raise ConnectionResetError("the client closed instead of starting TLS")
        self._phases.pop(0)
        self.tls = True
        return TLS_INFO

    def expect_within(self, seconds: float) -> None:
        self.timeouts.append(seconds)


@functools.cache
def password_hash(password: str) -> str:
    """A real argon2id hash, at the lowest cost argon2 allows: the production
    ``verify_password`` reads the cost from the hash, so it checks this in microseconds."""
    return PasswordHasher(time_cost=1, memory_cost=8, parallelism=1).hash(password)


async def populate(store: SqliteStore, t: Transcript) -> None:
    """Domains, accounts, aliases and the messages already in INBOX."""
    for d in t.domains:
        await store.add_domain(d)
    for a in t.accounts:
        await store.add_account(a, password_hash(t.passwords.get(a, PASSWORD)))
    for source, targets in t.aliases:
        await store.add_alias(source, targets)
    for address, data in t.messages:
        await deliver(store, address, data)


_QUEUE_IDS = itertools.count(1)


async def deliver(store: SqliteStore, address: str, data: bytes) -> None:
    """``data`` into ``address``'s INBOX through the store's two-phase delivery."""
    account = await store.get_account(address)
    if account is None:
        raise ValueError(f"no account {address}")
    blob = store.new_blob()
    blob.write(data)
    await store.deliver(blob, f"T{next(_QUEUE_IDS)}", 1_700_000_000, [Target(account.id)])


def count_messages(store: SqliteStore) -> int:
    """How many messages the store holds (each once, however many mailboxes hold it)."""
    with closing(sqlite3.connect(store.data_dir / "mailwright.db")) as db:
        (count,) = db.execute("SELECT count(*) FROM messages").fetchone()
    return int(count)


@dataclass
class Outcome:
    output: bytes
    stored: dict[str, list[bytes]]
    copies: int


async def outcome(store: SqliteStore, t: Transcript, output: bytes) -> Outcome:
    """What the client was sent, and what each account's INBOX holds now."""
    stored: dict[str, list[bytes]] = {}
    for a in t.accounts:
        account = await store.get_account(a)
        if account is None:
            continue
        box = await store.get_mailbox(account.id, INBOX)
        stored[a] = [
            await store.read_message(p.message_id) for p in await store.list_placements(box.id)
        ]
    return Outcome(output, stored, count_messages(store))


async def play(t: Transcript, mode: str, tmp: Path) -> Outcome:
    """One SMTP play."""
    store = SqliteStore(tmp)
    try:
        await populate(store, t)
        config = config_of(t, tmp).smtp
        session = SmtpSession(
            hostname=HOSTNAME,
            config=config,
            router=Router(store, config.subaddress_delimiter, hostname=HOSTNAME),
            messages=store,
            peer=Peer("192.0.2.1", 4242, "transcript"),
            tls_available=t.tls,
        )
        machine = ServerConnection(limits_from(config))
        out = bytearray(machine.send_unsolicited(session.greeting()))
        channel = MemoryChannel(t, mode)
        try:
            while True:
                event = machine.next_event()
                if event is ev.NEED_DATA:
                    if channel.eof:
                        break
                    machine.receive_data(await channel.read())
                    continue
                if event is ev.CLOSED:
                    break
                reply = await session.handle(event)
                if reply is not None:
                    out += machine.send(reply)
        finally:
            session.abort()
        return await outcome(store, t, bytes(out))
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


Player = Callable[[Transcript, str, Path], Awaitable[Outcome]]


def run(path: Path, tmp: Path, protocol: str = "smtp", player: Player = play) -> None:
    """Play ``path`` three ways, compare the plays, and check the first."""
    t = parse(path, protocol)

    async def plays() -> list[Outcome]:
        # At once: each play has its own store and channel; they overlap their waits on
        # the store's threads.
        return await asyncio.gather(*(player(t, mode, tmp / mode) for mode in MODES))

    outcomes = dict(zip(MODES, asyncio.run(plays()), strict=True))
    first = outcomes["lines"]
    for mode, o in outcomes.items():
        assert _same(o.output) == _same(first.output), (
            f"{mode} play differs from line by line:\n{o.output.decode(errors='replace')}"
        )
        stored = {a: [_same(m) for m in msgs] for a, msgs in o.stored.items()}
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
