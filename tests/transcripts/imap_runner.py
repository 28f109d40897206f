"""Plays tests/transcripts/imap/*.txt: ``ImapSession.run`` over an in-memory channel.

The stack is the one ``serve.imap.imap_listener`` builds, minus the socket: the session
loop of ``access.imap`` (with its ``proto.imap`` machine), a real SQLite store with its
change feed (the local one: no other process shares the directory), and the real
``Authenticator`` (``runner.authenticator``). The store lives in memory-backed storage
where the machine has it (``runner.scratch``: its fsyncs would make a disk the slowest
part), copied from a per-process template holding the transcript's accounts
(``runner.template``). To see what the server says to a file:
``python -m tests.transcripts.imap_runner FILE``.

Directives beyond those of ``runner`` (the format is described there):
    @password ADDRESS TEXT      ADDRESS's password is TEXT, not "secret"
    @peer IP                    the client's address (default 127.0.0.1, a loopback client)
    @tls                        TLS is available: STARTTLS is offered
    @implicit-tls               the connection is TLS from the start (port 993's role)
    @handshake                  here the client does the TLS handshake STARTTLS announced
    @config imap.KEY=VALUE      also auth.KEY=VALUE
    @message ADDRESS [MAILBOX] LITERAL
                                a message delivered before the session (INBOX unless named);
                                its INTERNALDATE is 14-Nov-2023 22:13:20 +0000
    @mailbox ADDRESS NAME       a mailbox made before the session (and before @message)
    @flags ADDRESS MAILBOX UID FLAG...  a message's flags before the session
    @quota ADDRESS BYTES        the account's storage quota
Gates (each splits the client's bytes: what follows is read only once the server has read
everything before and waits for more, and the gate is done):
    @compress                   the client's bytes from here on are DEFLATE-compressed
                                (RFC 4978; one stream, a sync flush after each line); the
                                server's output after what it had written by then is
                                inflated before it is checked
    @meanwhile ACTION           another session does ACTION; the runner then lets this
                                session's change-feed watcher take it in, so the next
                                command tells it if that command may (NOOP always does)
    @during-idle ACTION         likewise, while this session idles: the runner then waits
                                until the server has written something (it tells the
                                change), so the output is the same in every play
  ACTION is one of
    deliver ADDRESS [MAILBOX] LITERAL
    expunge ADDRESS MAILBOX UID...
    flags ADDRESS MAILBOX UID MODE FLAG...     MODE: + (add), - (remove) or = (set)
Checks on the store after the exchange (as runner's @expect-stored):
    @expect-count ADDRESS MAILBOX N             MAILBOX holds N messages
    @expect-flags ADDRESS MAILBOX UID FLAG...   message UID has exactly these flags (none: no
                                                flags); the check fails if UID is gone

In the client's bytes ``<V MAILBOX>`` stands for the UIDVALIDITY of the first @account's
MAILBOX as the session starts (a QRESYNC client sends the one it knows).

Output conventions:
- every UIDVALIDITY the store handed out (they come from the clock) reads ``V``;
- a literal the server sends appears as its lines: ``S: * 1 FETCH (BODY[] {12}`` is
  followed by the lines of the 12 octets, CRLF-split like the rest of the output, and the
  literal's last line runs on into what follows it (``S: Hello)`` after a message that
  ends "Hello" without CRLF; a line of its own, ``S: )``, after one that ends with CRLF).
  Transcripts use CRLF messages, so the lines are the message's lines;
- a client literal is sent as part of the client's bytes: ``C: a APPEND INBOX {5}`` then
  ``C+ b"Hello\\r\\n"`` (the 5 octets and the CRLF that ends the command), after the
  server's ``S: + Ready for literal data`` (pipelined plays send it at once anyway);
- no line of a file ends with a space: an empty server line (a literal's blank line) is
  ``S:``, and a continuation with empty text ("+ ") is matched as ``S~ \\+[ ]``;
- APPEND without a date takes the current time as INTERNALDATE: transcripts that FETCH an
  INTERNALDATE give APPEND a date.
"""

from __future__ import annotations

import asyncio
import re
import sqlite3
import zlib
from collections.abc import Sequence
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path

from mailwright.access.imap.session import ImapSession
from mailwright.store.sqlite import SqliteStore
from tests.transcripts import runner
from tests.transcripts.runner import HOSTNAME, Gate, MemoryChannel, Outcome, Transcript

IDLE_WAIT = 5.0  # seconds the runner waits for the server to tell a change during IDLE
_VALIDITY = re.compile(rb"(?<![0-9])[0-9]{9,11}(?![0-9])")
_PLACEHOLDER = re.compile(rb"<V ([^>]+)>")


@dataclass
class Checks:
    counts: list[tuple[str, str, int]] = field(default_factory=list)
    flags: list[tuple[str, str, int, frozenset[str]]] = field(default_factory=list)


def checks_of(t: Transcript) -> Checks:
    out = Checks()
    for word, rest in t.extra:
        args = rest.split()
        if word == "expect-count":
            out.counts.append((args[0], args[1], int(args[2])))
        elif word == "expect-flags":
            out.flags.append((args[0], args[1], int(args[2]), frozenset(args[3:])))
        else:  # pragma: no cover - runner.parse lets only IMAP's directives through
            raise ValueError(f"{t.name}: unknown directive @{word}")
    return out


async def act(store: SqliteStore, action: str) -> None:
    """Another session's change (``@meanwhile``, ``@during-idle``)."""
    verb, _, rest = action.strip().partition(" ")
    if verb == "deliver":
        address, mailbox, data = runner.mailbox_bytes(rest)
        await runner.deliver(store, address, data, mailbox)
        return
    args = rest.split()
    account = await runner.account_of(store, args[0])
    box = await store.get_mailbox(account.id, args[1])
    if verb == "expunge":
        await store.expunge(box.id, [int(u) for u in args[2:]])
    elif verb == "flags":
        mode = args[3]
        if mode not in ("+", "-", "="):
            raise ValueError(f"flags: MODE is +, - or =, not {mode!r}")
        await store.store_flags(box.id, [int(args[2])], frozenset(args[4:]), mode)
    else:
        raise ValueError(f"unknown action: {action}")


async def client_phases(store: SqliteStore, t: Transcript) -> list[list[bytes]]:
    """The client's phases: ``<V MAILBOX>`` replaced, and each line after a ``@compress``
    gate DEFLATE-compressed (one raw stream, RFC 4978 §3, a sync flush after each line so
    the server can read it)."""
    validities: dict[bytes, bytes] = {}
    for phase in t.client:
        for line in phase:
            for name in _PLACEHOLDER.findall(line):
                account = await runner.account_of(store, t.accounts[0])
                box = await store.get_mailbox(account.id, name.decode())
                validities[name] = str(box.uidvalidity).encode()
    client = [
        [_PLACEHOLDER.sub(lambda m: validities[m.group(1)], line) for line in phase]
        for phase in t.client
    ]
    phases: list[list[bytes]] = [client[0]]
    deflater: zlib._Compress | None = None
    for gate, phase in zip(t.gates, client[1:], strict=True):
        if gate.kind == "compress":
            deflater = zlib.compressobj(wbits=-15)
        if deflater is None:
            phases.append(phase)
        else:
            d = deflater
            phases.append([d.compress(line) + d.flush(zlib.Z_SYNC_FLUSH) for line in phase])
    return phases


def _validities(store: SqliteStore, since: int) -> range:
    """The UIDVALIDITY values the store handed out: from the clock when it (or its
    template) was made up to its counter now."""
    with closing(sqlite3.connect(store.data_dir / runner.DB_FILE)) as db:
        (last,) = db.execute("SELECT value FROM counters WHERE name='uidvalidity'").fetchone()
    return range(since, int(last) + 1)


def normalised(output: bytes, validities: range, inflate_from: int | None) -> bytes:
    if inflate_from is not None:
        inflater = zlib.decompressobj(wbits=-15)
        output = output[:inflate_from] + inflater.decompress(output[inflate_from:])
    return _VALIDITY.sub(lambda m: b"V" if int(m.group()) in validities else m.group(), output)


async def play(t: Transcript, mode: str, tmp: Path) -> Outcome:
    """One IMAP play."""
    with runner.scratch(tmp) as where:
        return await _play(t, mode, where)


async def _play(t: Transcript, mode: str, tmp: Path) -> Outcome:
    checks = checks_of(t)
    store, since, has_accounts = runner.open_store(t, tmp)
    try:
        await runner.populate(store, t, accounts=not has_accounts)
        config = runner.config_of(t, tmp)
        session = ImapSession(
            hostname=HOSTNAME,
            config=config.imap,
            accounts=store,
            mailboxes=store,
            messages=store,
            changes=store.changes,
            authenticator=runner.authenticator(store, config),
            conn_id="transcript",
            ip=t.peer,
            tls_active=t.implicit_tls,
            tls_available=t.tls or t.implicit_tls,
        )
        inflate_from: int | None = None

        async def on_gate(gate: Gate) -> None:
            nonlocal inflate_from
            if gate.kind == "compress":
                if inflate_from is None:
                    inflate_from = len(channel.output)
            elif gate.kind == "meanwhile":
                await act(store, gate.text)
                # Let the session's change-feed watcher take the change in.
                for _ in range(5):
                    await asyncio.sleep(0)
            elif gate.kind == "during-idle":
                channel.wrote.clear()
                await act(store, gate.text)
                try:
                    await asyncio.wait_for(channel.wrote.wait(), IDLE_WAIT)
                except TimeoutError:
                    raise AssertionError(
                        f"the server told nothing during IDLE after {gate.text}"
                    ) from None
            else:  # pragma: no cover - runner.GATES lists the kinds
                raise ValueError(f"unknown gate {gate}")

        channel = MemoryChannel(
            t,
            mode,
            peer=(t.peer, 4242),
            tls=t.implicit_tls,
            on_gate=on_gate,
            phases=await client_phases(store, t),
        )
        try:
            await session.run(channel)
        except ConnectionError:
            pass  # the client went away
        finally:
            session.close()
        output = normalised(bytes(channel.output), _validities(store, since), inflate_from)
        await check_store(store, checks)
        return await runner.outcome(store, t, output)
    finally:
        await store.close()


async def check_store(store: SqliteStore, checks: Checks) -> None:
    for address, mailbox, count in checks.counts:
        account = await runner.account_of(store, address)
        box = await store.get_mailbox(account.id, mailbox)
        placements = await store.list_placements(box.id)
        assert len(placements) == count, f"{address} {mailbox}: {len(placements)} messages"
    for address, mailbox, uid, flags in checks.flags:
        account = await runner.account_of(store, address)
        box = await store.get_mailbox(account.id, mailbox)
        found = {p.uid: p.flags for p in await store.list_placements(box.id)}
        assert uid in found, f"{address} {mailbox}: no UID {uid}"
        assert found[uid] == flags, f"{address} {mailbox} UID {uid}: flags {sorted(found[uid])}"


def run(path: Path, tmp: Path) -> None:
    runner.template(runner.parse(path, "imap"))
    runner.run(path, tmp, "imap", play)


def dump(path: Path, tmp: Path, mode: str = "lines") -> str:
    """The server's output for a transcript (writing one: ``python -m
    tests.transcripts.imap_runner FILE``)."""
    t = runner.parse(path, "imap")
    return asyncio.run(play(t, mode, tmp)).output.decode("utf-8", "replace")


def _main(argv: Sequence[str]) -> None:
    import tempfile

    for name in argv:
        with tempfile.TemporaryDirectory() as tmp:
            print(dump(Path(name), Path(tmp)).replace("\r\n", "\n"), end="")


if __name__ == "__main__":
    import sys

    _main(sys.argv[1:])
