"""Plays tests/transcripts/pop3/*.txt: ``Pop3Session.run`` over an in-memory channel.

The stack is the one ``serve.pop3.pop3_listener`` builds, minus the socket: the
session loop of ``access.pop3``, a real SQLite store in a temporary directory, and the
real ``Authenticator`` with its throttle and login cache (``auth.*`` settings apply).
Passwords are argon2id hashes at test cost (``runner.password_hash``); the delay before a
failed login's answer is not slept.

Directives beyond those of ``runner`` (the format is described there):
    @password ADDRESS TEXT     ADDRESS's password is TEXT (the rest of the line), not "secret"
    @peer IP                   the client's address (default 127.0.0.1, a loopback client)
    @tls                       TLS is available: STLS is offered
    @implicit-tls              the connection is TLS from the start (port 995's role)
    @handshake                 here the client does the TLS handshake that STLS announced;
                               STLS accepted with no @handshake after it: the client hangs up
    @message ADDRESS LITERAL   a message (bytes literal) in ADDRESS's INBOX before the session
    @arrives ADDRESS LITERAL   a message delivered during the session, right after the
                               login has read the maildrop
    @expunged ADDRESS UID      likewise, another session (IMAP) expunges UID from ADDRESS's INBOX
    @in-use ADDRESS            another session holds ADDRESS's maildrop throughout
In the server's output every INBOX's UIDVALIDITY (taken from the clock) reads ``V``: a
UIDL is ``V.uid``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

from mailwright.access.pop3 import Pop3Session
from mailwright.store.api import INBOX, Lease, Placement
from mailwright.store.sqlite import SqliteStore
from tests.transcripts import runner
from tests.transcripts.runner import HOSTNAME, MemoryChannel, Outcome, Transcript


class BusyStore(SqliteStore):
    """A store that other sessions change just after a POP3 login has read its maildrop:
    ``arrivals`` are delivered, ``expunges`` (address, UID) removed from INBOX."""

    arrivals: Sequence[tuple[str, bytes]] = ()
    expunges: Sequence[tuple[str, int]] = ()

    async def list_placements(self, mailbox_id: int) -> list[Placement]:
        placements = await super().list_placements(mailbox_id)
        arrivals, self.arrivals = self.arrivals, ()
        expunges, self.expunges = self.expunges, ()
        for address, data in arrivals:
            await runner.deliver(self, address, data)
        for address, uid in expunges:
            account = await self.get_account(address)
            assert account is not None
            await self.expunge((await self.get_mailbox(account.id, INBOX)).id, [uid])
        return placements


async def play(t: Transcript, mode: str, tmp: Path) -> Outcome:
    """One POP3 play."""
    store = BusyStore(tmp)
    leases: list[Lease] = []
    try:
        await runner.populate(store, t)
        validities = []
        for address in t.accounts:
            account = await store.get_account(address)
            assert account is not None
            validities.append((await store.get_mailbox(account.id, INBOX)).uidvalidity)
            if address in t.in_use:
                lease = await store.lock_maildrop(account.id)
                assert lease is not None
                leases.append(lease)
        config = runner.config_of(t, tmp)
        authenticator = runner.authenticator(store, config)
        session = Pop3Session(
            hostname=HOSTNAME,
            config=config.pop3,
            mailboxes=store,
            messages=store,
            locks=store,
            authenticator=authenticator,
            conn_id="transcript",
            ip=t.peer,
            tls_active=t.implicit_tls,
            tls_available=t.tls or t.implicit_tls,
        )
        channel = MemoryChannel(t, mode, peer=(t.peer, 4242), tls=t.implicit_tls)
        store.arrivals, store.expunges = t.arrivals, t.expunges
        try:
            await session.run(channel)
        except ConnectionError:
            pass  # the client went away (as serve.pop3 logs "pop3.lost")
        finally:
            session.close()
            store.arrivals, store.expunges = (), ()
        output = bytes(channel.output)
        if validities:
            # Each INBOX's UIDVALIDITY comes from the clock: the same in no two plays.
            numbers = "|".join(str(v) for v in validities)
            output = re.sub(rb"(?<![0-9])(%s)\.(?=[0-9])" % numbers.encode(), b"V.", output)
        return await runner.outcome(store, t, output)
    finally:
        for lease in leases:
            lease.release()
        await store.close()


def run(path: Path, tmp: Path) -> None:
    runner.run(path, tmp, "pop3", play)
