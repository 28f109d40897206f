"""Plays transcript files through a protocol's full stack over an in-memory stream.

This module holds what every protocol's transcripts share — the file format, the three
ways of playing the client's bytes, the in-memory ``Channel``, the store fixtures, the
check of the server's output — and the SMTP player. ``pop3_runner`` plays POP3 and
``imap_runner`` IMAP (their directives are listed there).

The SMTP stack is the one the listener runs: ``ServerConnection`` (protocol) and
``SmtpSession`` (routing, policy, a real SQLite store in a temporary directory), driven
by the same loop as ``serve.smtp.SmtpListener._serve`` minus sockets and sleeps. By
default the session has the port-25 role and its client is 192.0.2.1 (not loopback).

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
SMTP only:
    @submission                    the session is a submission one (RFC 6409: AUTH PLAIN and
                                   LOGIN with the real ``Authenticator`` over the store, MAIL
                                   only once authenticated, Message-ID and Date added);
                                   ``submission.*`` settings apply (``@config``). AUTH without
                                   TLS is refused (538) to a client that is not loopback,
                                   unless ``@config submission.allow_plaintext="always"``
    @peer IP                       the client's address (default 192.0.2.1)
    @handshake                     here the client does the TLS handshake that STARTTLS (with
                                   ``@tls``) announced, as ``SmtpListener._start_tls`` runs it;
                                   STARTTLS accepted with no @handshake after it: the client
                                   hangs up
    @config smtp.trusted_networks=["192.0.2.0/24"]   relay without AUTH from those networks
                                   (also ``submission.KEY=`` and ``auth.KEY=``)
    @expect-queued N [ADDRESS...]  the outbound queue holds N recipients (these, in any order)
    @expect-queue ADDRESS COLUMN=VALUE...   ADDRESS's queue entry has these values (text;
                                   ``None`` for NULL), e.g. ``notify=SUCCESS,FAILURE``
  A SASL response after a 334 is a client line like any other: the machine decides whether
  a line is a command or a response only once it has answered the line before, so the
  pipelined play (which no real client does across a 334) sees the same exchange. In a
  submission play's stored messages the Message-ID the server adds reads
  ``<QID.RANDOM@mx.example.test>`` and a Date in the fix-up's form (UTC, ``+0000``) reads
  ``Date: DATE``: both differ from play to play.
Every account's password is "secret" (a real argon2id hash, made at test cost).
Every transcript is played three ways — whole lines, byte by byte, everything at once —
and the server's output must be the same each time. A ``@handshake`` (the client's
TLS handshake) splits the client's bytes: nothing is sent across it in one piece. So does
every other *gate* (IMAP's ``@compress``, ``@meanwhile``, ``@during-idle``): the client's
bytes after a gate are read only once the server has read all those before it and waits
for more, and the protocol's player has done what the gate says.
"""

from __future__ import annotations

import ast
import asyncio
import atexit
import contextlib
import functools
import itertools
import os
import re
import shutil
import sqlite3
import tempfile
import time
import tomllib
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from argon2 import PasswordHasher

from mailwright.app import auth_limits
from mailwright.config import Config, parse_config
from mailwright.intake.routing import Router
from mailwright.intake.smtp import Peer, Relay, SmtpSession, Submission, limits_from
from mailwright.policy.auth import Authenticator, AuthThrottle, LoginCache
from mailwright.proto.smtp import events as ev
from mailwright.proto.smtp.server import ServerConnection
from mailwright.store.api import INBOX, Account, Target
from mailwright.store.sqlite import SqliteStore

MODES = ("lines", "bytes", "pipelined")
HOSTNAME = "mx.example.test"
PASSWORD = "secret"
TLS_INFO = "TLSv1.3 TLS_AES_128_GCM_SHA256"  # what the simulated handshake reports
DB_FILE = "mailwright.db"

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
_IMAP = {
    "password",
    "peer",
    "implicit-tls",
    "handshake",
    "message",
    "mailbox",
    "quota",
    "flags",
    # gates and checks read by imap_runner
    "compress",
    "meanwhile",
    "during-idle",
    "expect-flags",
    "expect-count",
}
# The directives each protocol's files may use, and the config sections they may set.
_SMTP = {"alias", "submission", "peer", "handshake", "expect-queued", "expect-queue"}
DIRECTIVES = {"smtp": _COMMON | _SMTP, "pop3": _COMMON | _POP3, "imap": _COMMON | _IMAP}
CONFIG_SECTIONS = {
    "smtp": {"smtp", "submission", "auth"},
    "pop3": {"pop3", "auth"},
    "imap": {"imap", "auth"},
}
SMTP_PEER = "192.0.2.1"  # the SMTP client's address when no @peer names one
# Directives that end a phase of the client's bytes (``Gate``); the rest of the line is
# the gate's text, for the player.
GATES = {"handshake", "compress", "meanwhile", "during-idle"}


@dataclass(frozen=True)
class Gate:
    """Between two phases of the client's bytes: ``kind`` is the directive's name
    ("handshake": the TLS handshake, which ``MemoryChannel.upgrade_tls`` passes; any
    other is passed by ``read``, which awaits the player's ``on_gate`` first)."""

    kind: str
    text: str = ""


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
    peer_given: bool = False  # a @peer line named it
    submission: bool = False  # SMTP: a submission session (@submission)
    # Made before the session: messages (address, mailbox, data), mailboxes (address, name),
    # quotas (address, octets), flags (address, mailbox, UID, flags).
    messages: list[tuple[str, str, bytes]] = field(default_factory=list)
    mailboxes: list[tuple[str, str]] = field(default_factory=list)
    quotas: list[tuple[str, int]] = field(default_factory=list)
    flags: list[tuple[str, str, int, tuple[str, ...]]] = field(default_factory=list)
    arrivals: list[tuple[str, bytes]] = field(default_factory=list)  # delivered at login
    expunges: list[tuple[str, int]] = field(default_factory=list)  # (address, UID) at login
    in_use: list[str] = field(default_factory=list)  # maildrops another session holds
    # The client's lines, one list per phase: a gate ends each but the last.
    client: list[list[bytes]] = field(default_factory=lambda: [[]])
    gates: list[Gate] = field(default_factory=list)
    extra: list[tuple[str, str]] = field(default_factory=list)  # (directive, text): the player's
    expect: list[tuple[str, str]] = field(default_factory=list)  # (kind, text)
    stored: list[tuple[str, int]] = field(default_factory=list)
    bodies: list[tuple[str, bytes]] = field(default_factory=list)
    copies: int | None = None
    queued: tuple[int, list[str]] | None = None  # @expect-queued N [ADDRESS...]
    queue_checks: list[tuple[str, dict[str, str]]] = field(default_factory=list)


def _address_bytes(rest: str) -> tuple[str, bytes]:
    """``ADDRESS LITERAL``: an address and a Python bytes literal."""
    address, _, literal = rest.partition(" ")
    return address, _literal(literal)


def mailbox_bytes(rest: str) -> tuple[str, str, bytes]:
    """``ADDRESS [MAILBOX] LITERAL``: an address, a mailbox (INBOX unless named) and a
    Python bytes literal."""
    address, _, rest = rest.strip().partition(" ")
    mailbox = INBOX
    if not rest.startswith(("b'", 'b"')):
        mailbox, _, rest = rest.partition(" ")
    return address, mailbox, _literal(rest)


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
                    t.peer_given = True
                case "submission":
                    t.submission = True
                case "expect-queued":
                    t.queued = (int(args[0]), args[1:])
                case "expect-queue":
                    t.queue_checks.append((args[0], dict(a.partition("=")[::2] for a in args[1:])))
                case "message":
                    t.messages.append(mailbox_bytes(rest))
                case "mailbox":
                    t.mailboxes.append((args[0], rest.partition(" ")[2]))
                case "quota":
                    t.quotas.append((args[0], int(args[1])))
                case "flags":
                    t.flags.append((args[0], args[1], int(args[2]), tuple(args[3:])))
                case _ if word in GATES:
                    t.gates.append(Gate(word, rest))
                    t.client.append([])
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
                case _:
                    t.extra.append((word, rest))
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


def chunks(
    t: Transcript, mode: str, phases: Sequence[list[bytes]] | None = None
) -> list[list[bytes]]:
    """The client's reads in each phase: one per line, one per byte, or one in all."""
    out = []
    for phase in t.client if phases is None else phases:
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
    ``upgrade_tls`` is the handshake: it moves on to the next phase. At any other gate
    ``read`` awaits ``on_gate(gate)``, then moves on. ``wrote`` is set by every write.
    """

    def __init__(
        self,
        t: Transcript,
        mode: str,
        *,
        peer: tuple[str, int] = ("127.0.0.1", 4242),
        tls: bool = False,
        on_gate: Callable[[Gate], Awaitable[None]] | None = None,
        phases: Sequence[list[bytes]] | None = None,
    ) -> None:
        """``phases``: the client's bytes, if not ``t.client`` (say, compressed)."""
        self._phases = chunks(t, mode, phases)
        self._gates = list(t.gates)
        self._on_gate = on_gate
        self._peer = peer
        self.output = bytearray()
        self.wrote = asyncio.Event()
        self.tls = tls  # True from the start for implicit TLS
        self.eof = False  # the client's close has been read
        self.timeouts: list[float] = []

    @property
    def peer(self) -> tuple[str, int]:
        return self._peer

    async def read(self) -> bytes:
        while True:
            phase = self._phases[0]
            if phase:
                return phase.pop(0)
            if len(self._phases) == 1:
                self.eof = True
                return b""
            gate = self._gates[0]
            if gate.kind == "handshake" or self._on_gate is None:
                raise AssertionError(f"the server waits for a command; the client, for {gate}")
            await self._on_gate(gate)
            self._gates.pop(0)
            self._phases.pop(0)

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.output += data
        self.wrote.set()

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
        if len(self._phases) == 1 or self._gates[0].kind != "handshake":
            # No @handshake: the client hangs up instead of starting TLS.
            self.eof = True
            raise ConnectionResetError("the client closed instead of starting TLS")
        self._gates.pop(0)
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


async def populate(store: SqliteStore, t: Transcript, *, accounts: bool = True) -> None:
    """Domains, accounts and quotas (unless ``accounts`` is False: the store was made from
    ``template``), aliases, mailboxes, the messages already there and their flags."""
    if accounts:
        await _populate_accounts(store, t)
    for source, targets in t.aliases:
        await store.add_alias(source, targets)
    for address, name in t.mailboxes:
        await store.create_mailbox((await account_of(store, address)).id, name)
    for address, mailbox, data in t.messages:
        await deliver(store, address, data, mailbox)
    for address, mailbox, uid, flags in t.flags:
        box = await store.get_mailbox((await account_of(store, address)).id, mailbox)
        await store.store_flags(box.id, [uid], frozenset(flags), "=")


async def _populate_accounts(store: SqliteStore, t: Transcript) -> None:
    for d in t.domains:
        await store.add_domain(d)
    for a in t.accounts:
        await store.add_account(a, password_hash(t.passwords.get(a, PASSWORD)))
    for address, quota in t.quotas:
        await store.set_quota(address, quota)


def _template_key(t: Transcript) -> tuple[object, ...]:
    return (
        tuple(t.domains),
        tuple(t.accounts),
        tuple(sorted(t.passwords.items())),
        tuple(t.quotas),
    )


_TEMPLATES: dict[tuple[object, ...], tuple[Path, int]] = {}


def template(t: Transcript) -> None:
    """Make (once per process) a data directory with ``t``'s domains, accounts and quotas:
    three plays of each of many transcripts then copy one database file instead of
    migrating a new one and adding the accounts each time. Call outside an event loop."""
    key = _template_key(t)
    if key in _TEMPLATES:
        return
    root = Path(tempfile.mkdtemp(prefix="mw-transcript-template-", dir=_scratch_root()))
    atexit.register(shutil.rmtree, root, ignore_errors=True)
    since = int(time.time())  # the UIDVALIDITY values it hands out are this or later

    async def build() -> None:
        store = SqliteStore(root, peers=False)
        try:
            await _populate_accounts(store, t)
        finally:
            await store.close()

    asyncio.run(build())
    _TEMPLATES[key] = (root, since)


def _scratch_root() -> str | None:
    """Memory-backed storage when the machine has it: the store's commits are fsynced
    (synchronous=FULL), which a transcript does not need and a disk makes slow."""
    shm = Path("/dev/shm")
    return str(shm) if shm.is_dir() and os.access(shm, os.W_OK) else None


@contextlib.contextmanager
def scratch(tmp: Path) -> Iterator[Path]:
    """A directory for one play's store: in memory (removed after) where possible, else
    ``tmp``."""
    root = _scratch_root()
    if root is None:
        yield tmp
        return
    path = Path(tempfile.mkdtemp(prefix="mw-transcript-", dir=root))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def open_store(t: Transcript, tmp: Path) -> tuple[SqliteStore, int, bool]:
    """A store in ``tmp`` for one play (without peers: no other process shares it), from
    ``t``'s template if one was made: (store, the clock when its first UIDVALIDITY was
    handed out, whether it holds the accounts already)."""
    made = _TEMPLATES.get(_template_key(t))
    if made is None:
        return SqliteStore(tmp, peers=False), int(time.time()), False
    root, since = made
    tmp.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(root / DB_FILE, tmp / DB_FILE)
    return SqliteStore(tmp, peers=False), since, True


async def account_of(store: SqliteStore, address: str) -> Account:
    account = await store.get_account(address)
    if account is None:
        raise ValueError(f"no account {address}")
    return account


async def _no_wait(seconds: float) -> None:
    return None


def authenticator(store: SqliteStore, config: Config) -> Authenticator:
    """The real ``Authenticator`` (``auth.*`` settings apply), minus the delay before a
    failed login's answer."""
    return Authenticator(
        store,
        AuthThrottle(auth_limits(config)),
        sleep=_no_wait,
        dummy_hash=password_hash("the password of nobody"),
        cache=LoginCache(slots=64, ttl=config.auth.cache_ttl),
    )


_QUEUE_IDS = itertools.count(1)


async def deliver(store: SqliteStore, address: str, data: bytes, mailbox: str = INBOX) -> None:
    """``data`` into ``address``'s ``mailbox`` through the store's two-phase delivery."""
    account = await account_of(store, address)
    blob = store.new_blob()
    blob.write(data)
    await store.deliver(blob, f"T{next(_QUEUE_IDS)}", 1_700_000_000, [Target(account.id, mailbox)])


def count_messages(store: SqliteStore) -> int:
    """How many messages the store holds (each once, however many mailboxes hold it)."""
    with closing(sqlite3.connect(store.data_dir / DB_FILE)) as db:
        (count,) = db.execute("SELECT count(*) FROM messages").fetchone()
    return int(count)


# The queue's columns an SMTP play reports (none that differs from play to play).
QUEUE_COLUMNS = ("recipient", "sender", "domain", "notify", "orcpt", "envid", "ret", "smtputf8")


def queue_rows(store: SqliteStore) -> list[dict[str, str]]:
    """The outbound queue's entries, by recipient: each column as text (NULL: "None")."""
    with closing(sqlite3.connect(store.data_dir / DB_FILE)) as db:
        rows = db.execute(f"SELECT {', '.join(QUEUE_COLUMNS)} FROM queue").fetchall()
    return sorted(
        ({c: str(v) for c, v in zip(QUEUE_COLUMNS, row, strict=True)} for row in rows),
        key=lambda r: r["recipient"],
    )


@dataclass
class Outcome:
    output: bytes
    stored: dict[str, list[bytes]]
    copies: int
    queue: list[dict[str, str]] = field(default_factory=list)  # SMTP plays: queue_rows


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


_ADDED_MESSAGE_ID = re.compile(rb"<\w{14}\.[0-9a-f]{12}@" + re.escape(HOSTNAME.encode()) + rb">")
_ADDED_DATE = re.compile(
    rb"\r\nDate: [A-Z][a-z]{2}, \d\d [A-Z][a-z]{2} \d{4} \d\d:\d\d:\d\d \+0000\r\n"
)


def _fixed_up(data: bytes) -> bytes:
    """A stored message with the Message-ID and Date a submission adds made stable."""
    data = _ADDED_MESSAGE_ID.sub(b"<QID.RANDOM@" + HOSTNAME.encode() + b">", data)
    return _ADDED_DATE.sub(b"\r\nDate: DATE\r\n", data)


async def play(t: Transcript, mode: str, tmp: Path) -> Outcome:
    """One SMTP play."""
    store = SqliteStore(tmp)
    try:
        await populate(store, t)
        full = config_of(t, tmp)
        config = full.smtp
        submission = None
        if t.submission:
            sub = full.submission
            submission = Submission(authenticator(store, full), sub.allow_plaintext, sub.sign_dkim)
        ip = t.peer if t.peer_given else SMTP_PEER
        session = SmtpSession(
            hostname=HOSTNAME,
            config=config,
            router=Router(store, config.subaddress_delimiter, hostname=HOSTNAME),
            messages=store,
            peer=Peer(ip, 4242, "transcript"),
            tls_available=t.tls,
            submission=submission,
            relay=Relay.from_config(config),
        )
        machine = ServerConnection(limits_from(config, submission=t.submission))
        out = bytearray(machine.send_unsolicited(session.greeting()))
        channel = MemoryChannel(t, mode, peer=(ip, 4242))
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
                    if isinstance(event, ev.StartTls) and reply.code == 220:
                        # As SmtpListener._start_tls: what the client pipelined behind
                        # STARTTLS is dropped, then the handshake (the next phase).
                        machine.discarded_plaintext += channel.discard_pending()
                        try:
                            info = await channel.upgrade_tls()
                        except ConnectionResetError:
                            break
                        machine.tls_started()
                        session.tls_started(info)
        finally:
            session.abort()
        result = await outcome(store, t, bytes(out))
        if t.submission:
            result.stored = {a: [_fixed_up(m) for m in ms] for a, ms in result.stored.items()}
        result.queue = queue_rows(store)
        return result
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
        assert o.queue == first.queue, f"{mode} play queued something else"
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
    if t.queued is not None:
        count, addresses = t.queued
        queued = [r["recipient"] for r in first.queue]
        assert len(queued) == count, f"{len(queued)} recipients queued, expected {count}"
        if addresses:
            assert queued == sorted(addresses), f"queued: {queued}"
    for address, columns in t.queue_checks:
        entry = next((r for r in first.queue if r["recipient"] == address), None)
        assert entry is not None, f"{address}: not queued"
        for column, value in columns.items():
            assert entry[column] == value, f"{address}: {column} is {entry[column]!r}"


def transcript_files(directory: Path, known_bugs: dict[str, str]) -> list[object]:
    """The ``*.txt`` files of ``directory`` as pytest parameters (ids: their names); those
    named in ``known_bugs`` (name -> what is wrong in src/) are strict xfails, so fixing
    the bug fails the test until its entry goes."""
    return [
        pytest.param(
            f,
            id=f.stem,
            marks=[pytest.mark.xfail(reason=known_bugs[f.stem], strict=True)]
            if f.stem in known_bugs
            else [],
        )
        for f in sorted(directory.glob("*.txt"))
    ]
