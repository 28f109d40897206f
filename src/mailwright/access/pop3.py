"""A POP3 session (RFC 1939): login, a snapshot of the user's INBOX, download, delete at QUIT.

Invariants:
- the maildrop is the user's INBOX, seen as it was at login: mail that arrives later
  waits for the next session (RFC 1939 §5: message numbers are fixed for a session);
- one session per maildrop at a time, across workers (``store.locks``); a second one
  gets ``-ERR [IN-USE]`` (RFC 2449 §8.1.1);
- DELE only marks; the marked messages are expunged in the UPDATE state, after QUIT. A
  connection that drops, times out or is shut down deletes nothing (RFC 1939 §6);
- LIST and STAT sizes are the stored octets, which are exactly what RETR sends before
  dot-stuffing (stored messages are CRLF lines);
- UIDL is ``UIDVALIDITY.UID``: stable across sessions, and the same identity IMAP uses;
- a password is accepted without TLS only where ``allow_plaintext`` says so; then USER,
  PASS and AUTH are not even offered.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from typing import Literal

from mailwright.access.channel import Channel
from mailwright.config import Pop3Config
from mailwright.core.log import event as log_event
from mailwright.policy.auth import Authenticator, plaintext_allowed
from mailwright.policy.sasl import Outcome, SaslExchange
from mailwright.proto.pop3 import events as ev
from mailwright.proto.pop3 import replies
from mailwright.proto.pop3.replies import Continuation, Pop3Reply, Response
from mailwright.proto.pop3.server import Limits, ServerConnection, encode_message
from mailwright.proto.sasl.mechanism import Credentials
from mailwright.store.api import INBOX, Account, Lease, Locks, Mailboxes, Messages
from mailwright.store.errors import NotFound, StoreError

log = logging.getLogger("mailwright.pop3")

_FLUSH = 64 * 1024  # write pipelined replies out once this much is waiting
_SASL = ("PLAIN", "LOGIN")


@dataclass(slots=True)
class _Message:
    uid: int
    message_id: int
    size: int
    deleted: bool = False


class Pop3Session:
    def __init__(
        self,
        *,
        hostname: str,
        config: Pop3Config,
        mailboxes: Mailboxes,
        messages: Messages,
        locks: Locks,
        authenticator: Authenticator,
        conn_id: str,
        ip: str,
        tls_active: bool,
        tls_available: bool,
    ) -> None:
        self.hostname = hostname
        self.config = config
        self.mailboxes = mailboxes
        self.messages = messages
        self.locks = locks
        self.authenticator = authenticator
        self.conn_id = conn_id
        self.ip = ip
        self.tls_available = tls_available
        self.tls_info: str | None = None
        self.account: Account | None = None
        self.retrieved = 0
        self.removed = 0
        self.machine = ServerConnection(
            Limits(max_line=config.max_line, max_errors=config.max_errors),
            tls_active=tls_active,
        )
        self._lease: Lease | None = None
        self._mailbox_id = 0
        self._uidvalidity = 0
        self._messages: list[_Message] = []
        self._sasl: SaslExchange | None = None

    # -- the loop ----------------------------------------------------------------

    async def run(self, channel: Channel) -> None:
        """Serve one connection until QUIT, close or error; the caller closes the channel."""
        machine = self.machine
        greeting = replies.GREETING.with_text(f"{self.hostname} POP3 mailwright ready")
        out = bytearray(machine.send_unsolicited(greeting))
        self._expect(channel)
        try:
            while True:
                event = machine.next_event()
                if event is ev.NEED_DATA:
                    if out:
                        channel.write(out)
                        out.clear()
                        await channel.drain()
                    machine.receive_data(await channel.read())
                    continue
                if event is ev.CLOSED:
                    break
                self._expect(channel)
                if isinstance(event, ev.Stls):
                    out += await self._stls(channel, out)
                    continue
                out += await self._handle(event)
                if len(out) >= _FLUSH:
                    channel.write(out)
                    out.clear()
                    await channel.drain()
            if out:
                with contextlib.suppress(ConnectionError):
                    channel.write(out)
                    await channel.drain()
        finally:
            self.close()

    def close(self) -> None:
        """Give the maildrop back. Nothing marked deleted is removed here: only QUIT does."""
        if self._lease is not None:
            self._lease.release()
            self._lease = None

    def notice(self, kind: Literal["timeout", "shutdown"]) -> bytes:
        """A closing notice (timeout, shutdown): its bytes; the session is over."""
        reply = replies.TIMEOUT if kind == "timeout" else replies.SHUTTING_DOWN
        return self.machine.send_unsolicited(reply)

    def summary(self) -> dict[str, object]:
        return {
            "user": self.account.address if self.account else "",
            "retrieved": self.retrieved,
            "deleted": self.removed,
        }

    def _expect(self, channel: Channel) -> None:
        cfg = self.config
        channel.expect_within(cfg.idle_timeout if self.account else cfg.login_timeout)

    # -- commands --------------------------------------------------------------------

    async def _handle(self, event: ev.Event) -> bytes:
        machine = self.machine
        match event:
            case ev.Capa():
                return machine.send(self._capa())
            case ev.User():
                return machine.send(replies.USER_OK if self._plaintext_ok else self._no_plain)
            case ev.Pass(password):
                return machine.send(await self._login(machine.user or "", password))
            case ev.Auth(mechanism, initial):
                return machine.send(await self._auth_start(mechanism, initial))
            case ev.AuthResponse():
                return machine.send(await self._auth_step(event))
            case ev.Stat():
                live = [m for m in self._messages if not m.deleted]
                return machine.send(Pop3Reply(True, f"{len(live)} {sum(m.size for m in live)}"))
            case ev.List(None):
                listing = [f"{i} {m.size}" for i, m in self._live()]
                return machine.send_multiline(replies.SCAN_LISTING_FOLLOWS, listing)
            case ev.List(number):
                found = self._get(number)
                if isinstance(found, Pop3Reply):
                    return machine.send(found)
                return machine.send(Pop3Reply(True, f"{number} {found.size}"))
            case ev.Uidl(None):
                listing = [f"{i} {self._uidl(m)}" for i, m in self._live()]
                return machine.send_multiline(replies.UIDL_FOLLOWS, listing)
            case ev.Uidl(number):
                found = self._get(number)
                if isinstance(found, Pop3Reply):
                    return machine.send(found)
                return machine.send(Pop3Reply(True, f"{number} {self._uidl(found)}"))
            case ev.Retr(number):
                return await self._retrieve(number, None)
            case ev.Top(number, lines):
                return await self._retrieve(number, lines)
            case ev.Dele(number):
                found = self._get(number)
                if isinstance(found, Pop3Reply):
                    return machine.send(found)
                found.deleted = True
                return machine.send(replies.DELETED)
            case ev.Rset():
                for m in self._messages:
                    m.deleted = False
                return machine.send(replies.RESET_OK)
            case ev.Noop():
                return machine.send(replies.OK)
            case ev.Quit():
                return machine.send(await self._quit())
            case ev.Invalid(reply):
                return machine.send(reply)
        raise AssertionError(f"unhandled POP3 event {event!r}")  # pragma: no cover

    @property
    def _plaintext_ok(self) -> bool:
        return self.machine.tls_active or plaintext_allowed(self.config.allow_plaintext, self.ip)

    @property
    def _no_plain(self) -> Pop3Reply:
        return replies.TLS_REQUIRED if self.tls_available else replies.AUTH_FAILED

    def _capa(self) -> Pop3Reply:
        # RFC 2449 §5: what is announced in AUTHORIZATION is announced after login too.
        login = self._plaintext_ok
        return replies.capa(
            user=login,
            stls=self.tls_available and not self.machine.tls_active,
            sasl=_SASL if login else (),
            implementation="mailwright",
        )

    def _live(self) -> list[tuple[int, _Message]]:
        return [(i, m) for i, m in enumerate(self._messages, 1) if not m.deleted]

    def _get(self, number: int | None) -> _Message | Pop3Reply:
        if number is None or not 1 <= number <= len(self._messages):
            return replies.NO_SUCH_MESSAGE
        message = self._messages[number - 1]
        return replies.MESSAGE_ALREADY_DELETED if message.deleted else message

    def _uidl(self, message: _Message) -> str:
        return f"{self._uidvalidity}.{message.uid}"

    async def _retrieve(self, number: int, lines: int | None) -> bytes:
        machine = self.machine
        found = self._get(number)
        if isinstance(found, Pop3Reply):
            return machine.send(found)
        try:
            data = await self.messages.read_message(found.message_id)
        except NotFound:
            # Expunged by another protocol (IMAP) since login: the number stays, the
            # message is gone.
            return machine.send(Pop3Reply(False, "Message was removed by another session"))
        except StoreError as exc:
            log_event(log, logging.ERROR, "pop3.store_error", conn=self.conn_id, error=str(exc))
            return machine.send(replies.SYS_TEMP)
        # TODO(read streaming): read_message returns the whole message; a streaming read
        # will feed MessageEncoder chunk by chunk instead.
        if lines is None:
            self.retrieved += 1
            head = Pop3Reply(True, f"{found.size} octets")
            return machine.send(head) + encode_message(data)
        return machine.send(replies.MESSAGE_FOLLOWS) + encode_message(data, lines)

    async def _quit(self) -> Pop3Reply:
        if self.account is None:
            return replies.BYE.with_text(f"{self.hostname} closing connection")
        doomed = [m.uid for m in self._messages if m.deleted]
        try:
            if doomed:
                await self.messages.expunge(self._mailbox_id, doomed)
        except StoreError as exc:
            log_event(log, logging.ERROR, "pop3.store_error", conn=self.conn_id, error=str(exc))
            return replies.NOT_ALL_REMOVED
        finally:
            # This answer ends the session: free the maildrop before it is sent, or a
            # client that reconnects as soon as it reads it could be told [IN-USE].
            self.close()
        self.removed = len(doomed)
        return replies.BYE.with_text(f"{self.hostname} closing connection ({len(doomed)} deleted)")

    # -- login -----------------------------------------------------------------------

    async def _auth_start(self, mechanism: str, initial: str | None) -> Response:
        if not self._plaintext_ok:
            return self._no_plain
        exchange = SaslExchange.start(mechanism)
        if exchange is None:
            return replies.UNKNOWN_MECHANISM
        self._sasl = exchange
        return await self._sasl_outcome(exchange.step(initial, initial=True))

    async def _auth_step(self, event: ev.AuthResponse) -> Response:
        exchange, self._sasl = self._sasl, None
        if event.cancelled:
            return replies.AUTH_CANCELLED
        if exchange is None:  # pragma: no cover - the machine only yields these during AUTH
            return replies.AUTH_FAILED
        self._sasl = exchange
        return await self._sasl_outcome(exchange.step(event.data))

    async def _sasl_outcome(self, outcome: Outcome) -> Response:
        if isinstance(outcome, str):
            return Continuation(outcome)
        self._sasl = None
        if isinstance(outcome, Credentials):
            return await self._login(outcome.username, outcome.password)
        return await self._fail_sasl(outcome.reason)

    async def _fail_sasl(self, reason: str) -> Pop3Reply:
        self._sasl = None
        log_event(log, logging.INFO, "pop3.sasl_failed", conn=self.conn_id, reason=reason)
        return replies.AUTH_FAILED

    async def _login(self, username: str, password: str) -> Pop3Reply:
        if not self._plaintext_ok:
            return self._no_plain
        result = await self.authenticator.authenticate(
            username, password, self.ip, conn=self.conn_id, protocol="pop3"
        )
        if not result.ok or result.account is None:
            return replies.AUTH_FAILED
        account = result.account
        lease = await self.locks.lock_maildrop(account.id)
        if lease is None:
            log_event(log, logging.INFO, "pop3.in_use", conn=self.conn_id, user=account.address)
            return replies.IN_USE
        try:
            box = await self.mailboxes.get_mailbox(account.id, INBOX)
            placements = await self.messages.list_placements(box.id)
        except StoreError as exc:
            lease.release()
            log_event(log, logging.ERROR, "pop3.store_error", conn=self.conn_id, error=str(exc))
            return replies.SYS_TEMP
        self._lease = lease
        self.account = account
        self._mailbox_id = box.id
        self._uidvalidity = box.uidvalidity
        self._messages = [_Message(p.uid, p.message_id, p.size) for p in placements]
        total = sum(m.size for m in self._messages)
        log_event(
            log,
            logging.INFO,
            "pop3.login",
            conn=self.conn_id,
            user=account.address,
            messages=len(self._messages),
        )
        return replies.LOGGED_IN.with_text(
            f"Logged in: {len(self._messages)} messages ({total} octets)"
        )

    # -- STLS ------------------------------------------------------------------------

    async def _stls(self, channel: Channel, out: bytearray) -> bytes:
        machine = self.machine
        if not self.tls_available:
            return machine.send(replies.TLS_UNAVAILABLE)
        # RFC 2595 §4: what the client pipelined behind STLS is never read as a command.
        # Dropped before the answer goes out: what arrives after it is the handshake.
        machine.discarded_plaintext += channel.discard_pending()
        channel.write(out + machine.send(replies.BEGIN_TLS))
        out.clear()
        await channel.drain()
        self.tls_info = await channel.upgrade_tls()
        machine.tls_started()
        log_event(
            log,
            logging.INFO,
            "pop3.tls",
            conn=self.conn_id,
            tls=self.tls_info,
            discarded=machine.discarded_plaintext,
        )
        return b""
