"""An IMAP session (RFC 3501, RFC 9051): login, mailboxes, the selected mailbox, IDLE.

Invariants:
- the session loop lives here, over a ``Channel``, so transcript tests run this very
  loop in memory, as the listener runs it over a socket;
- every byte goes through ``proto.imap.ServerConnection`` (COMPRESS applies to all);
- the selected mailbox is a ``MailboxView``: other sessions' changes reach the client
  only through ``_sync``, at the end of a command or while idling, and expunges never
  during FETCH, STORE or SEARCH by sequence number (RFC 9051 §7.5.1);
- the change feed marks the view dirty; NOOP, CHECK and IDLE read the store whatever it
  says (another process's change may still be on its way);
- a password is accepted without TLS only where ``allow_plaintext`` says so; otherwise
  LOGINDISABLED is advertised and no AUTH= mechanism (RFC 9051 §6.2.3);
- APPEND's message streams into a store blob: memory is bounded whatever its size.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import logging
import re
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Literal as TypingLiteral

from mailwright.access.channel import Channel
from mailwright.access.imap import fetch as fetching
from mailwright.access.imap.content import Content
from mailwright.access.imap.search import Candidate, Searcher
from mailwright.access.imap.view import (
    Exists,
    Expunge,
    FlagsChanged,
    MailboxView,
    Recent,
    RecentSource,
    Update,
    Vanished,
)
from mailwright.config import ImapConfig
from mailwright.core.log import event as log_event
from mailwright.message.structure import analyze
from mailwright.policy.auth import Authenticator, plaintext_allowed
from mailwright.policy.sasl import Outcome, SaslExchange
from mailwright.proto.imap import command as c
from mailwright.proto.imap import events as ev
from mailwright.proto.imap import mutf7
from mailwright.proto.imap import response as r
from mailwright.proto.imap.numset import SequenceSet, compress_uids
from mailwright.proto.imap.response import Atom, Response, Value
from mailwright.proto.imap.server import Limits, ServerConnection
from mailwright.proto.sasl.mechanism import Credentials
from mailwright.store.api import (
    INBOX,
    RECENT,
    Account,
    Accounts,
    BlobWriter,
    Change,
    ChangeFeed,
    Mailboxes,
    MailboxInfo,
    Messages,
    superiors,
)
from mailwright.store.errors import (
    AlreadyExists,
    HasChildren,
    InvalidName,
    NotFound,
    NotPermitted,
    QuotaExceeded,
    StoreError,
)

log = logging.getLogger("mailwright.imap")

SEP = "/"
SYSTEM_FLAGS = ("\\Answered", "\\Flagged", "\\Deleted", "\\Seen", "\\Draft")
_CANONICAL = {f.lower(): f for f in SYSTEM_FLAGS}
_FLUSH = 64 * 1024
_SASL = ("PLAIN", "LOGIN")
_BASE_CAPS = ("IMAP4rev1", "IMAP4rev2", "SASL-IR", "ID", "ENABLE")
_AUTHED_CAPS = (
    "IMAP4rev1",
    "IMAP4rev2",
    "LITERAL+",
    "SASL-IR",
    "ID",
    "ENABLE",
    "IDLE",
    "NAMESPACE",
    "UNSELECT",
    "UIDPLUS",
    "MOVE",
    "CHILDREN",
    "LIST-EXTENDED",
    "LIST-STATUS",
    "SPECIAL-USE",
    "STATUS=SIZE",
    "ESEARCH",
    "SEARCHRES",
    "CONDSTORE",
    "QRESYNC",
    "QUOTA",
    "QUOTA=RES-STORAGE",
    "SORT",
    "SORT=DISPLAY",
    "THREAD=REFERENCES",
    "THREAD=ORDEREDSUBJECT",
    "BINARY",
    "UNKNOWN-CTE",
    "COMPRESS=DEFLATE",
)
_HASCHILDREN = r.Code("HASCHILDREN")  # RFC 9051 §7.1
_ENABLEABLE = frozenset({"CONDSTORE", "QRESYNC", "IMAP4REV2"})


def canonical_flag(flag: str) -> str:
    """A system flag in its canonical spelling (\\SEEN is \\Seen: RFC 9051 §9, the
    grammar's strings are case-insensitive); anything else as given."""
    return _CANONICAL.get(flag.lower(), flag)


class ImapSession:
    def __init__(
        self,
        *,
        hostname: str,
        config: ImapConfig,
        accounts: Accounts,
        mailboxes: Mailboxes,
        messages: Messages,
        changes: ChangeFeed,
        authenticator: Authenticator,
        conn_id: str,
        ip: str,
        tls_active: bool,
        tls_available: bool,
    ) -> None:
        self.hostname = hostname
        self.config = config
        self.accounts = accounts
        self.mailboxes = mailboxes
        self.messages = messages
        self.changes = changes
        self.authenticator = authenticator
        self.conn_id = conn_id
        self.ip = ip
        self.tls_available = tls_available
        self.tls_info: str | None = None
        self.account: Account | None = None
        self.machine = ServerConnection(
            Limits(
                max_line=config.max_line,
                max_literal=config.max_literal,
                max_errors=config.max_errors,
            ),
            tls_active=tls_active,
        )
        self.view: MailboxView | None = None
        self.enabled: set[str] = set()
        self.fetched = 0
        self.appended = 0
        self._sasl: SaslExchange | None = None
        self._auth_tag = ""
        self._append: _Append | None = None
        self._idle_tag: str | None = None
        self._wake = asyncio.Event()
        self._watch: asyncio.Task[None] | None = None
        self._read: asyncio.Task[bytes] | None = None
        self._saved: list[int] = []  # RFC 5182: the last SEARCH RETURN (SAVE), as UIDs
        self._saving: set[asyncio.Task[None]] = set()  # structure cache writes in flight

    # -- the loop ----------------------------------------------------------------

    async def run(self, channel: Channel) -> None:
        machine = self.machine
        caps = r.capability_code(self._capabilities())
        out = bytearray(
            machine.send_unsolicited(
                r.untagged_status("OK", f"{self.hostname} IMAP mailwright ready", caps)
            )
        )
        self._expect(channel)
        try:
            while True:
                event = machine.next_event()
                if event is ev.NEED_DATA:
                    if out:
                        channel.write(out)
                        out.clear()
                        await channel.drain()
                    machine.receive_data(await self._next_input(channel))
                    continue
                if event is ev.CLOSED:
                    break
                self._expect(channel)
                out += await self._handle(event, channel, out)
                if len(out) >= _FLUSH:
                    channel.write(out)
                    out.clear()
                    await channel.drain()
        finally:
            if out:
                with contextlib.suppress(ConnectionError):
                    channel.write(out)
                    await channel.drain()
            self.close()

    async def _next_input(self, channel: Channel) -> bytes:
        """The next bytes from the client; while idling, changes are told as they come."""
        if self._idle_tag is None or self.view is None:
            return await channel.read()
        if self._read is None:
            self._read = asyncio.ensure_future(channel.read())
        while True:
            wake = asyncio.ensure_future(self._wake.wait())
            try:
                done, _ = await asyncio.wait(
                    {self._read, wake}, return_when=asyncio.FIRST_COMPLETED
                )
            finally:
                wake.cancel()
            if self._read in done:
                task, self._read = self._read, None
                return task.result()
            self._wake.clear()
            updates = await self._updates(expunge_allowed=True)
            if updates:
                channel.write(self.machine.send(*updates))
                await channel.drain()

    def close(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
            self._watch = None
        if self._read is not None:
            self._read.cancel()
            self._read = None
        if self._append is not None:
            self._append.blob.abort()
            self._append = None

    def notice(self, kind: TypingLiteral["timeout", "shutdown"]) -> bytes:
        text = "Autologout; idle for too long" if kind == "timeout" else "Server shutting down"
        return self.machine.send_unsolicited(r.bye(text))

    def summary(self) -> dict[str, object]:
        return {
            "user": self.account.address if self.account else "",
            "fetched": self.fetched,
            "appended": self.appended,
        }

    def _expect(self, channel: Channel) -> None:
        cfg = self.config
        channel.expect_within(cfg.idle_timeout if self.account else cfg.login_timeout)

    # -- capabilities ------------------------------------------------------------

    @property
    def _plaintext_ok(self) -> bool:
        return self.machine.tls_active or plaintext_allowed(self.config.allow_plaintext, self.ip)

    def _capabilities(self) -> list[str]:
        if self.account is not None:
            caps = list(_AUTHED_CAPS)
            if self.machine.compressing:
                caps.remove("COMPRESS=DEFLATE")
            return caps
        caps = [*_BASE_CAPS, "LITERAL-"]
        if self.tls_available and not self.machine.tls_active:
            caps.append("STARTTLS")
        if self._plaintext_ok:
            caps += [f"AUTH={m}" for m in _SASL]
        else:
            caps.append("LOGINDISABLED")
        return caps

    @property
    def _utf8(self) -> bool:
        return bool(self.enabled & {"IMAP4REV2", "UTF8=ACCEPT"})

    @property
    def _condstore(self) -> bool:
        return bool(self.enabled & {"CONDSTORE", "QRESYNC"})

    def _name_in(self, name: str) -> str:
        """A mailbox name from the client, as stored (UTF-8, INBOX case-folded)."""
        if not self._utf8:
            name = mutf7.decode(name)
        if name.upper() == INBOX or name.upper().startswith(INBOX + SEP):
            name = INBOX + name[len(INBOX) :]
        return name

    def _name_out(self, name: str) -> str:
        return name if self._utf8 else mutf7.encode(name)

    # -- dispatch ----------------------------------------------------------------

    async def _handle(self, event: ev.Event, channel: Channel, out: bytearray) -> bytes:
        machine = self.machine
        match event:
            case ev.Invalid():
                return machine.send(event.response)
            case ev.NeedLiteral():
                return await self._literal(event)
            case ev.AppendData(chunk):
                if self._append is not None:
                    self._append.write(chunk)
                return b""
            case ev.AppendEnd():
                return await self._append_end(event)
            case ev.AuthResponse():
                return await self._auth_step(event)
            case ev.Done(tag):
                self._idle_tag = None
                updates = await self._updates(expunge_allowed=True)
                return machine.send(*updates, r.tagged(tag, "OK", "IDLE terminated"))
        try:
            return await self._command(event, channel, out)
        except mutf7.MUtf7Error:
            tag = getattr(event, "tag", None) or "*"
            return machine.send(r.tagged(tag, "BAD", "Invalid mailbox name encoding"))
        except StoreError as exc:
            log_event(log, logging.ERROR, "imap.store_error", conn=self.conn_id, error=str(exc))
            tag = getattr(event, "tag", None) or "*"
            return machine.send(
                r.tagged(tag, "NO", "Temporary storage failure, try again", r.UNAVAILABLE)
            )

    async def _command(self, cmd: object, channel: Channel, out: bytearray) -> bytes:
        machine = self.machine
        match cmd:
            case c.Capability(tag):
                return machine.send(
                    r.capability(self._capabilities()), r.tagged(tag, "OK", "CAPABILITY completed")
                )
            case c.Noop(tag) | c.Check(tag):
                updates = await self._updates(expunge_allowed=True, force=True)
                verb = "NOOP" if isinstance(cmd, c.Noop) else "CHECK"
                return machine.send(*updates, r.tagged(tag, "OK", f"{verb} completed"))
            case c.Logout(tag):
                machine.logout()
                return machine.send(
                    r.bye(f"{self.hostname} logging out"), r.tagged(tag, "OK", "LOGOUT completed")
                )
            case c.StartTls(tag):
                return await self._starttls(tag, channel, out)
            case c.Compress(tag, mechanism):
                if mechanism.upper() != "DEFLATE":
                    return machine.send(
                        r.tagged(tag, "NO", "Unknown compression mechanism", r.CANNOT)
                    )
                if machine.compressing:
                    return machine.send(
                        r.tagged(tag, "NO", "Already compressing", r.COMPRESSIONACTIVE)
                    )
                data = machine.send(r.tagged(tag, "OK", "DEFLATE active"))
                channel.write(bytes(out) + data)
                out.clear()
                await channel.drain()
                machine.compress_started()
                return b""
            case c.Login(tag, user, password):
                return await self._login(tag, user, password)
            case c.Authenticate(tag, mechanism, initial):
                return await self._auth_start(tag, mechanism, initial)
            case c.Enable(tag, caps):
                return self._enable(tag, caps)
            case c.Id(tag):
                params = {"name": "mailwright", "vendor": "mailwright"}
                return machine.send(r.id_response(params), r.tagged(tag, "OK", "ID completed"))
            case c.Namespace(tag):
                return machine.send(
                    r.namespace([("", SEP)], None, None), r.tagged(tag, "OK", "NAMESPACE completed")
                )
            case c.Select() | c.Examine():
                return await self._select(cmd)
            case c.Create(tag, name):
                return await self._create(tag, name)
            case c.Delete(tag, name):
                return await self._delete(tag, name)
            case c.Rename(tag, old, new):
                return await self._rename(tag, old, new)
            case c.Subscribe(tag, name):
                await self.mailboxes.subscribe(self._account_id, self._name_in(name))
                return await self._done(tag, "SUBSCRIBE completed")
            case c.Unsubscribe(tag, name):
                await self.mailboxes.unsubscribe(self._account_id, self._name_in(name))
                return await self._done(tag, "UNSUBSCRIBE completed")
            case c.List():
                return await self._list(cmd)
            case c.Lsub(tag, reference, pattern):
                return await self._lsub(tag, reference, pattern)
            case c.Status(tag, name, items):
                return await self._status(tag, name, items)
            case c.Append():
                # The message follows as AppendData into a blob; AppendEnd completes it.
                self._append = _Append(cmd, self.messages.new_blob())
                return b""
            case c.Close(tag):
                return await self._close(tag, expunge=True)
            case c.Unselect(tag):
                return await self._close(tag, expunge=False)
            case c.Expunge(tag, uid_set):
                return await self._expunge(tag, uid_set)
            case c.Search():
                return await self._search(cmd)
            case c.Sort():
                return await self._sort(cmd)
            case c.Thread():
                return await self._thread(cmd)
            case c.Fetch():
                return await self._fetch(cmd)
            case c.Store():
                return await self._store(cmd)
            case c.Copy() | c.Move():
                return await self._copy(cmd)
            case c.Idle(tag):
                self._idle_tag = tag
                updates = await self._updates(expunge_allowed=True, force=True)
                return machine.send_continuation("idling") + (
                    machine.send(*updates) if updates else b""
                )
            case c.GetQuota(tag, root):
                return await self._getquota(tag, root)
            case c.GetQuotaRoot(tag, name):
                return await self._getquotaroot(tag, name)
            case c.SetQuota(tag):
                return machine.send(
                    r.tagged(tag, "NO", "Quotas are set by the administrator", r.NOPERM)
                )
        tag = getattr(cmd, "tag", "*")  # pragma: no cover - every command is matched above
        return machine.send(r.tagged(tag, "BAD", "Command not implemented"))

    def _selected(self) -> MailboxView:
        if self.view is None:  # pragma: no cover - the state table allows these only when selected
            raise RuntimeError("no mailbox selected")
        return self.view

    @property
    def _account_id(self) -> int:
        if self.account is None:  # pragma: no cover - the state table allows these only after login
            raise RuntimeError("not logged in")
        return self.account.id

    def _touched(self, mailbox_id: int) -> None:
        """This session changed ``mailbox_id``: if it is the selected one, the client
        hears of it with this command's answer (RFC 9051 §6.3.12: "the normal new
        message actions"), not only once the change feed gets round to it."""
        if self.view is not None and self.view.mailbox_id == mailbox_id:
            self.view.dirty = True

    async def _done(self, tag: str, text: str, code: r.Code | None = None) -> bytes:
        """A tagged OK, after the updates the selected mailbox owes the client."""
        updates = await self._updates(expunge_allowed=True)
        return self.machine.send(*updates, r.tagged(tag, "OK", text, code))

    # -- STARTTLS ----------------------------------------------------------------

    async def _starttls(self, tag: str, channel: Channel, out: bytearray) -> bytes:
        machine = self.machine
        if not self.tls_available:
            return machine.send(r.tagged(tag, "NO", "TLS is not available", r.CANNOT))
        # RFC 9051 §6.2.1: what the client pipelined behind STARTTLS is never a command;
        # dropped before the answer goes out, since what arrives after it is the handshake.
        machine.discarded_plaintext += channel.discard_pending()
        channel.write(bytes(out) + machine.send(r.tagged(tag, "OK", "Begin TLS negotiation now")))
        out.clear()
        await channel.drain()
        self.tls_info = await channel.upgrade_tls()
        machine.tls_started()
        log_event(
            log,
            logging.INFO,
            "imap.tls",
            conn=self.conn_id,
            tls=self.tls_info,
            discarded=machine.discarded_plaintext,
        )
        return b""

    # -- login -------------------------------------------------------------------

    def _no_plaintext(self, tag: str) -> bytes:
        return self.machine.send(
            r.tagged(
                tag, "NO", "Plaintext authentication disallowed without TLS", r.PRIVACYREQUIRED
            )
        )

    async def _login(self, tag: str, user: str, password: str) -> bytes:
        if not self._plaintext_ok:
            return self._no_plaintext(tag)
        result = await self.authenticator.authenticate(
            user, password, self.ip, conn=self.conn_id, protocol="imap"
        )
        if not result.ok or result.account is None:
            return self.machine.send(
                r.tagged(tag, "NO", "Authentication failed", r.AUTHENTICATIONFAILED)
            )
        self.account = result.account
        self.machine.authenticated()
        self._watch = asyncio.ensure_future(self._watch_changes(self.account.id))
        log_event(log, logging.INFO, "imap.login", conn=self.conn_id, user=self.account.address)
        caps = r.capability_code(self._capabilities())
        return self.machine.send(r.tagged(tag, "OK", "Logged in", caps))

    async def _auth_start(self, tag: str, mechanism: str, initial: bytes | None) -> bytes:
        if not self._plaintext_ok:
            return self._no_plaintext(tag)
        exchange = SaslExchange.start(mechanism)
        if exchange is None:
            return self.machine.send(
                r.tagged(tag, "NO", "Unsupported authentication mechanism", r.CANNOT)
            )
        self._auth_tag = tag
        self._sasl = exchange
        return await self._sasl_outcome(exchange.step(initial, initial=True))

    async def _auth_step(self, event: ev.AuthResponse) -> bytes:
        exchange, self._sasl = self._sasl, None
        if event.data is None:
            return self.machine.send(r.tagged(self._auth_tag, "BAD", "Authentication cancelled"))
        if exchange is None:  # pragma: no cover - the machine yields these only during AUTHENTICATE
            return self._sasl_failed("no exchange")
        self._sasl = exchange
        return await self._sasl_outcome(exchange.step(event.data))

    async def _sasl_outcome(self, outcome: Outcome) -> bytes:
        if isinstance(outcome, str):
            return self.machine.send_continuation(outcome)
        self._sasl = None
        if isinstance(outcome, Credentials):
            return await self._login(self._auth_tag, outcome.username, outcome.password)
        return self._sasl_failed(outcome.reason)

    def _sasl_failed(self, reason: str) -> bytes:
        self._sasl = None
        log_event(log, logging.INFO, "imap.sasl_failed", conn=self.conn_id, reason=reason)
        return self.machine.send(
            r.tagged(self._auth_tag, "NO", "Authentication failed", r.AUTHENTICATIONFAILED)
        )

    def _enable(self, tag: str, caps: tuple[str, ...]) -> bytes:
        newly = []
        for cap in caps:
            up = cap.upper()
            if up in _ENABLEABLE and up not in self.enabled:
                self.enabled.add(up)
                newly.append(cap)
        if "QRESYNC" in self.enabled:
            self.enabled.add("CONDSTORE")  # RFC 7162 §3.2.3: QRESYNC implies CONDSTORE
        return self.machine.send(r.enabled(newly), r.tagged(tag, "OK", "ENABLE completed"))

    async def _watch_changes(self, account_id: int) -> None:
        subscription: AsyncIterator[Change] = self.changes.subscribe(account_id)
        try:
            async for change in subscription:
                view = self.view
                if view is None or change.mailbox_id not in (view.mailbox_id, 0):
                    continue
                # This session's own change, already in the view (``own_change``): no
                # need to read the store again for it.
                if change.mailbox_id and change.modseq and change.modseq <= view.known_modseq:
                    continue
                view.dirty = True
                self._wake.set()
        finally:
            closer = getattr(subscription, "close", None)
            if closer is not None:
                closer()

    # -- the selected mailbox ----------------------------------------------------

    async def _updates(self, *, expunge_allowed: bool, force: bool = False) -> list[Response]:
        view = self.view
        if view is None:
            return []
        out: list[Response] = []
        if view.dirty or force:
            found = await view.sync(
                self.messages, expunge_allowed=expunge_allowed, qresync="QRESYNC" in self.enabled
            )
            # RFC 9051 has no \Recent: an IMAP4rev2 client is never sent RECENT.
            rev2 = "IMAP4REV2" in self.enabled
            out = [self._render(u) for u in found if not (rev2 and isinstance(u, Recent))]
        if view.take_new_keywords():
            out[:0] = self._flag_lists(view)
        return out

    def _flag_lists(self, view: MailboxView) -> list[Response]:
        """FLAGS and PERMANENTFLAGS again, when a keyword new to the mailbox appeared
        (RFC 3501 §7.2.6: the client records the latest FLAGS), before the FETCH
        responses that show it."""
        flags, permanent = _flag_names(view)
        return [
            r.flags(flags),
            r.untagged_status(
                "OK",
                "Limited" if view.read_only else "Flags permitted",
                r.PERMANENTFLAGS(permanent),
            ),
        ]

    def _flag_atoms(
        self, uid: int, flags: frozenset[str], view: MailboxView | None = None
    ) -> list[Value]:
        """A message's FLAGS as this session shows them: with \\Recent when the message is
        recent in this session (RFC 3501 §2.3.2; IMAP4rev2 has none, RFC 9051 Appendix E).
        ``view``: the mailbox being opened, before it is the selected one."""
        if view is None:
            view = self.view
        if view is not None and uid in view.recent and "IMAP4REV2" not in self.enabled:
            flags = flags | {RECENT}
        return fetching.flag_atoms(flags)

    def _flags_in(self, flags: tuple[str, ...], mailbox_id: int | None) -> frozenset[str]:
        """Flags a client gives (STORE, APPEND): system flags in their canonical spelling
        whatever the case (\\SEEN is \\Seen), \\Recent dropped (no client sets it), and
        keyword names case-insensitive (RFC 3501 §2.3.2): a keyword the selected mailbox
        already has is spelled as the mailbox first stored it (as Dovecot does; the store
        keeps each message's first spelling too, ``store.api.merge_flags``)."""
        wanted = [canonical_flag(f) for f in flags if f.lower() != "\\recent"]
        view = self.view
        if view is not None and view.mailbox_id == mailbox_id:
            return view.spell(wanted)
        out: dict[str, str] = {}
        for f in wanted:
            out.setdefault(f.lower(), f)
        return frozenset(out.values())

    def _recent_source(self, mailbox_id: int, read_only: bool) -> RecentSource:
        """Where the view learns which messages are \\Recent in this session (RFC 3501
        §2.3.2): a read-write session claims them in the store, so each is recent in one
        session only, whatever the process; a read-only one (EXAMINE, RFC 3501 §6.3.2)
        shows those no session has claimed yet and takes nothing."""
        mailboxes = self.mailboxes

        async def claim(below: int) -> tuple[int, int]:
            try:
                return await mailboxes.claim_recent_range(mailbox_id, below)
            except NotFound:  # deleted meanwhile: nothing is recent any more
                return 0, 0

        async def peek(below: int) -> tuple[int, int]:
            try:
                info = await mailboxes.get_mailbox_by_id(mailbox_id)
            except NotFound:
                return 0, 0
            return info.recent_uid, min(info.uidnext, below)

        return peek if read_only else claim

    def _render(self, u: Update) -> Response:
        match u:
            case Exists(n):
                return r.exists(n)
            case Recent(n):
                return r.recent(n)
            case Expunge(seq):
                return r.expunge(seq)
            case Vanished(uids):
                return r.vanished(compress_uids(uids))
            case FlagsChanged(seq, uid, flags, modseq):
                items: list[tuple[str, Value]] = [
                    ("UID", uid),
                    ("FLAGS", self._flag_atoms(uid, flags)),
                ]
                if self._condstore:
                    items.append(("MODSEQ", [modseq]))
                return r.fetch(seq, items)
        raise TypeError(u)  # pragma: no cover

    async def _select(self, cmd: c.Select | c.Examine) -> bytes:
        machine = self.machine
        tag = cmd.tag
        read_only = isinstance(cmd, c.Examine)
        if cmd.qresync is not None and "QRESYNC" not in self.enabled:
            # RFC 7162 §3.2.3: the QRESYNC parameter only after ENABLE QRESYNC.
            return machine.send(r.tagged(tag, "BAD", "QRESYNC is not enabled"))
        out = b""
        if self.view is not None:
            self.view = None
            machine.unselected()
            # RFC 7162 §3.2.11: a QRESYNC client learns that the old mailbox is closed.
            if "QRESYNC" in self.enabled:
                out += machine.send(r.untagged_status("OK", "Previous mailbox closed", r.CLOSED))
        if cmd.condstore:
            self.enabled.add("CONDSTORE")
        name = self._name_in(cmd.mailbox)
        try:
            info = await self.mailboxes.get_mailbox(self._account_id, name)
        except NotFound:
            return out + machine.send(r.tagged(tag, "NO", "Mailbox does not exist", r.NONEXISTENT))
        placements = await self.messages.list_placements(info.id)
        # IMAP4rev1 \Recent: the messages no session has been told of are this one's alone
        # (claimed after the read: up to the last UID read, and no further).
        source = self._recent_source(info.id, read_only)
        recent = await source(placements[-1].uid + 1) if placements else (0, 0)
        view = MailboxView(
            info, placements, read_only=read_only, recent=recent, recent_source=source
        )
        responses: list[Response] = []
        flags, permanent = _flag_names(view)
        responses.append(r.flags(flags))
        responses.append(r.exists(view.exists))
        if "IMAP4REV2" not in self.enabled:
            responses.append(r.recent(len(view.recent)))
        responses.append(
            r.untagged_status(
                "OK", "Limited" if read_only else "Flags permitted", r.PERMANENTFLAGS(permanent)
            )
        )
        responses.append(r.untagged_status("OK", "UIDs valid", r.UIDVALIDITY(info.uidvalidity)))
        responses.append(r.untagged_status("OK", "Predicted next UID", r.UIDNEXT(view.uidnext)))
        unseen = next(
            (i for i, u in enumerate(view.uids, 1) if "\\Seen" not in view.messages[u].flags), None
        )
        if unseen is not None and "IMAP4REV2" not in self.enabled:
            responses.append(
                r.untagged_status("OK", f"Message {unseen} is first unseen", r.UNSEEN(unseen))
            )
        if self._condstore:
            responses.append(
                r.untagged_status(
                    "OK", "Highest", r.HIGHESTMODSEQ(max(info.highestmodseq, view.max_modseq()))
                )
            )
        if cmd.qresync is not None:
            responses += await self._qresync(view, cmd.qresync)
        if "IMAP4REV2" in self.enabled:
            # RFC 9051 §6.3.2: a LIST response with the mailbox's name (REQUIRED).
            responses.append(r.list_mailbox([], SEP, self._name_out(info.name)))
        self.view = view
        machine.selected(read_only)
        code = r.READ_ONLY if read_only else r.READ_WRITE
        verb = "EXAMINE" if read_only else "SELECT"
        return out + machine.send(*responses, r.tagged(tag, "OK", f"{verb} completed", code))

    async def _qresync(self, view: MailboxView, q: c.QresyncParams) -> list[Response]:
        """RFC 7162 §3.2.5: what changed since the client's MODSEQ, when its UIDVALIDITY holds."""
        if q.uidvalidity != view.info.uidvalidity:
            return []
        top = view.uids[-1] if view.uids else 0
        gone = await self.messages.expunged_since(view.mailbox_id, q.modseq)
        if q.known_uids is not None:
            gone = [u for u in gone if q.known_uids.contains(u, max(top, max(gone, default=0)))]
        out: list[Response] = []
        if gone:
            out.append(r.vanished(compress_uids(gone), earlier=True))
        for seq, uid in enumerate(view.uids, 1):
            p = view.messages[uid]
            if p.modseq > q.modseq and (q.known_uids is None or q.known_uids.contains(uid, top)):
                out.append(
                    r.fetch(
                        seq,
                        [
                            ("UID", uid),
                            ("FLAGS", self._flag_atoms(uid, p.flags, view)),
                            ("MODSEQ", [p.modseq]),
                        ],
                    )
                )
        return out

    async def _close(self, tag: str, *, expunge: bool) -> bytes:
        view = self.view
        if view is not None and expunge and not view.read_only:
            doomed = [u for u in view.uids if "\\Deleted" in view.messages[u].flags]
            if doomed:
                await self.messages.expunge(view.mailbox_id, doomed)
        self.view = None
        self.machine.unselected()
        return self.machine.send(
            r.tagged(tag, "OK", "CLOSE completed" if expunge else "UNSELECT completed")
        )

    def _resolve(self, numbers: SequenceSet, uid: bool) -> list[tuple[int, int]] | None:
        """(seq, uid) pairs a set names, in order; None when a sequence number is out of
        range (RFC 9051 §6.4.8 for UIDs: numbers that name nothing are ignored)."""
        view = self.view
        if view is None:  # pragma: no cover - the state table allows these only when selected
            return []
        if numbers.saved:
            saved = set(self._saved)
            return [(s, u) for s, u in enumerate(view.uids, 1) if u in saved]
        if uid:
            top = view.uids[-1] if view.uids else 0
            out = []
            for lo, hi in numbers.resolve(top):
                for seq in range(max(1, _bisect(view.uids, lo)), len(view.uids) + 1):
                    u = view.uids[seq - 1]
                    if u > hi:
                        break
                    out.append((seq, u))
            return out
        if view.exists == 0:
            return None
        pairs: list[tuple[int, int]] = []
        for lo, hi in numbers.resolve(view.exists):
            if hi > view.exists:
                return None
            pairs.extend((s, view.uids[s - 1]) for s in range(lo, hi + 1))
        return pairs

    def _bad_set(self, tag: str) -> bytes:
        return self.machine.send(r.tagged(tag, "BAD", "Invalid message sequence number"))

    # -- FETCH -------------------------------------------------------------------

    async def _fetch(self, cmd: c.Fetch) -> bytes:
        machine, view = self.machine, self._selected()
        if cmd.vanished and "QRESYNC" not in self.enabled:
            # RFC 7162 §3.2.3: VANISHED only after ENABLE QRESYNC.
            return machine.send(r.tagged(cmd.tag, "BAD", "QRESYNC is not enabled"))
        pairs = self._resolve(cmd.set, cmd.uid)
        if pairs is None:
            return self._bad_set(cmd.tag)
        items = list(cmd.items)
        if cmd.uid and not any(isinstance(i, c.Uid) for i in items):
            items.insert(0, c.Uid())
        condstore = self._condstore or cmd.changedsince is not None
        if cmd.changedsince is not None:
            self.enabled.add("CONDSTORE")
            if not any(isinstance(i, c.ModSeq) for i in items):
                items.append(c.ModSeq())
        if any(isinstance(i, c.ModSeq) for i in items):
            self.enabled.add("CONDSTORE")
        seen_uids = (
            [u for _, u in pairs if "\\Seen" not in view.messages[u].flags]
            if (not view.read_only and any(fetching.sets_seen(i) for i in items))
            else []
        )
        new_modseq: dict[int, int] = {}
        if seen_uids:
            result = await self.messages.store_flags(
                view.mailbox_id, seen_uids, frozenset({"\\Seen"}), "+"
            )
            for uid, flags, modseq in result.changed:
                view.set_flags(uid, flags, modseq)
                new_modseq[uid] = modseq
            if result.changed:
                view.own_change(result.modseq)
        out = bytearray()
        if cmd.vanished and cmd.changedsince is not None:
            # RFC 7162 §3.2.6: the UIDs of the set expunged since CHANGEDSINCE, first.
            top = max(view.uids[-1] if view.uids else 0, 1)
            gone = [
                u
                for u in await self.messages.expunged_since(view.mailbox_id, cmd.changedsince)
                if cmd.set.contains(u, max(top, u))
            ]
            if gone:
                out += machine.send(r.vanished(compress_uids(gone), earlier=True))
        for seq, uid in pairs:
            p = view.messages.get(uid)
            if p is None:
                continue
            if cmd.changedsince is not None and p.modseq <= cmd.changedsince:
                continue
            content = Content(self.messages, p.message_id, self._saving)
            values: list[tuple[str, Value]] = []
            flags_sent = False
            try:
                for item in items:
                    match item:
                        case c.Uid():
                            values.append(("UID", uid))
                        case c.Flags():
                            values.append(("FLAGS", self._flag_atoms(uid, p.flags)))
                            flags_sent = True
                        case c.InternalDate():
                            values.append(("INTERNALDATE", fetching.date_time(p.internal_date)))
                        case c.Rfc822Size():
                            values.append(("RFC822.SIZE", p.size))
                        case c.ModSeq():
                            values.append(("MODSEQ", [p.modseq]))
                        case _:
                            values.append((item.name, await fetching.item_value(item, content)))
            except fetching.NoSuchPart:
                return bytes(out) + machine.send(
                    r.tagged(cmd.tag, "NO", "Unknown Content-Transfer-Encoding", r.UNKNOWN_CTE)
                )
            except NotFound:
                continue  # expunged by another session meanwhile: nothing to say about it
            if uid in new_modseq and not flags_sent:
                # RFC 9051 §6.4.5: \Seen set by this FETCH is reported with it (and
                # RFC 7162 §3.2.4: with its UID once QRESYNC is enabled).
                if "QRESYNC" in self.enabled and not any(n == "UID" for n, _ in values):
                    values.insert(0, ("UID", uid))
                values.append(("FLAGS", self._flag_atoms(uid, p.flags)))
                if condstore and not any(n == "MODSEQ" for n, _ in values):
                    values.append(("MODSEQ", [p.modseq]))
            out += machine.send(r.fetch(seq, values))
            self.fetched += 1
        updates = await self._updates(expunge_allowed=cmd.uid)
        return bytes(out) + machine.send(*updates, r.tagged(cmd.tag, "OK", "FETCH completed"))

    # -- STORE -------------------------------------------------------------------

    async def _store(self, cmd: c.Store) -> bytes:
        machine, view = self.machine, self._selected()
        if view.read_only:
            return machine.send(r.tagged(cmd.tag, "NO", "Mailbox is read-only", r.READ_ONLY))
        pairs = self._resolve(cmd.set, cmd.uid)
        if pairs is None:
            return self._bad_set(cmd.tag)
        if cmd.unchangedsince is not None:
            self.enabled.add("CONDSTORE")
        flags = self._flags_in(cmd.flags, view.mailbox_id)
        mode = {"": "=", "+": "+", "-": "-"}[cmd.mode]
        uids = [u for _, u in pairs]
        result = await self.messages.store_flags(
            view.mailbox_id, uids, flags, mode, unchangedsince=cmd.unchangedsince
        )
        changed = {uid: (f, m) for uid, f, m in result.changed}
        for uid, f, m in (*result.changed, *result.unchanged):
            view.set_flags(uid, f, m)
        if changed:
            view.own_change(result.modseq)
        out = bytearray()
        if view.take_new_keywords():
            out += machine.send(*self._flag_lists(view))
        for seq, uid in pairs:
            if uid in result.failed:
                continue
            p = view.messages.get(uid)
            if p is None:
                continue
            # RFC 9051 §6.4.6: without .SILENT, the new flags of each message; RFC 7162
            # §3.1.3: with UNCHANGEDSINCE, also those of .SILENT ones whose MODSEQ moved.
            if cmd.silent and not (
                self._condstore and uid in changed and cmd.unchangedsince is not None
            ):
                continue
            values: list[tuple[str, Value]] = []
            if cmd.uid or "QRESYNC" in self.enabled:  # RFC 7162 §3.2.4: always UID then
                values.append(("UID", uid))
            values.append(("FLAGS", self._flag_atoms(uid, p.flags)))
            if self._condstore:
                values.append(("MODSEQ", [p.modseq]))
            out += machine.send(r.fetch(seq, values))
        updates = await self._updates(expunge_allowed=cmd.uid)
        if result.failed:
            failed = (
                sorted(result.failed)
                if cmd.uid
                else sorted(s for s, u in pairs if u in result.failed)
            )
            code = r.MODIFIED(compress_uids(failed))
            return bytes(out) + machine.send(
                *updates, r.tagged(cmd.tag, "OK", "Conditional STORE failed", code)
            )
        return bytes(out) + machine.send(*updates, r.tagged(cmd.tag, "OK", "STORE completed"))

    # -- COPY / MOVE -------------------------------------------------------------

    async def _copy(self, cmd: c.Copy | c.Move) -> bytes:
        machine, view = self.machine, self._selected()
        move = isinstance(cmd, c.Move)
        verb = "MOVE" if move else "COPY"
        if move and view.read_only:
            return machine.send(r.tagged(cmd.tag, "NO", "Mailbox is read-only", r.READ_ONLY))
        pairs = self._resolve(cmd.set, cmd.uid)
        if pairs is None:
            return self._bad_set(cmd.tag)
        try:
            dest = await self.mailboxes.get_mailbox(self._account_id, self._name_in(cmd.mailbox))
        except NotFound:
            return machine.send(r.tagged(cmd.tag, "NO", "Mailbox does not exist", r.TRYCREATE))
        uids = [u for _, u in pairs]
        if not uids:
            return await self._done(cmd.tag, f"{verb} completed")
        try:
            if move:
                mapping = await self.messages.move(view.mailbox_id, uids, dest.id)
            else:
                mapping = await self.messages.copy(view.mailbox_id, uids, dest.id)
        except QuotaExceeded:
            return machine.send(r.tagged(cmd.tag, "NO", "Over quota", r.OVERQUOTA))
        self._touched(dest.id)
        code = None
        if mapping:
            code = r.COPYUID(
                dest.uidvalidity,
                Atom(compress_uids(s for s, _ in mapping)),
                Atom(compress_uids(d for _, d in mapping)),
            )
        if not move:
            return await self._done(cmd.tag, f"{verb} completed", code)
        # RFC 6851 §4.3: COPYUID goes in an untagged OK before the expunges.
        responses: list[Response] = []
        if code is not None:
            responses.append(r.untagged_status("OK", "Moved", code))
        moved = [s for s, _ in mapping]
        view.expunged.update(moved)
        responses += [
            self._render(u) for u in view.take_expunges(qresync="QRESYNC" in self.enabled)
        ]
        responses += await self._updates(expunge_allowed=True)
        return machine.send(*responses, r.tagged(cmd.tag, "OK", "MOVE completed"))

    # -- EXPUNGE -----------------------------------------------------------------

    async def _expunge(self, tag: str, uid_set: SequenceSet | None) -> bytes:
        machine, view = self.machine, self._selected()
        if view.read_only:
            return machine.send(r.tagged(tag, "NO", "Mailbox is read-only", r.READ_ONLY))
        doomed = [u for u in view.uids if "\\Deleted" in view.messages[u].flags]
        if uid_set is not None:
            top = view.uids[-1] if view.uids else 0
            doomed = [u for u in doomed if uid_set.contains(u, top)]
        modseq = 0
        if doomed:
            modseq = await self.messages.expunge(view.mailbox_id, doomed)
            view.expunged.update(doomed)
            view.own_change(modseq)
        responses = [self._render(u) for u in view.take_expunges(qresync="QRESYNC" in self.enabled)]
        responses += await self._updates(expunge_allowed=True)
        code = r.HIGHESTMODSEQ(modseq) if self._condstore and modseq else None
        return machine.send(*responses, r.tagged(tag, "OK", "EXPUNGE completed", code))

    # -- SEARCH / SORT / THREAD --------------------------------------------------

    def _searcher(self) -> Searcher:
        return Searcher(self._selected(), self.messages, self._saved, saving=self._saving)

    def _charset_ok(self, charset: str | None) -> bool:
        return charset is None or charset.upper() in r.SUPPORTED_CHARSETS

    def _bad_charset(self, tag: str) -> bytes:
        code = r.BADCHARSET(list(r.SUPPORTED_CHARSETS))
        return self.machine.send(r.tagged(tag, "NO", "Unsupported charset", code))

    async def _search(self, cmd: c.Search) -> bytes:
        machine = self.machine
        if not self._charset_ok(cmd.charset):
            return self._bad_charset(cmd.tag)
        if _uses_modseq(cmd.key):
            self.enabled.add("CONDSTORE")
        found = await self._searcher().search(cmd.key)
        numbers = [m.uid if cmd.uid else m.seq for m in found]
        modseq = (
            max((m.placement.modseq for m in found), default=None)
            if _uses_modseq(cmd.key)
            else None
        )
        responses: list[Response] = []
        opts = cmd.return_opts
        if opts is None and "IMAP4REV2" in self.enabled:
            opts = ("ALL",)
        if opts is not None:
            esearch = self._esearch(cmd.tag, cmd.uid, opts, found, numbers, modseq)
            if esearch is not None:
                responses.append(esearch)
        else:
            responses.append(r.search(numbers, modseq))
        updates = await self._updates(expunge_allowed=cmd.uid)
        return machine.send(*responses, *updates, r.tagged(cmd.tag, "OK", "SEARCH completed"))

    def _esearch(
        self,
        tag: str,
        uid: bool,
        opts: tuple[str, ...],
        found: list[Candidate],
        numbers: list[int],
        modseq: int | None,
    ) -> Response | None:
        """The ESEARCH response, or None for RETURN (SAVE) alone (RFC 5182 §2.1)."""
        wanted = {o.upper() for o in opts} or {"ALL"}
        if "SAVE" in wanted:
            wanted.discard("SAVE")
            # RFC 5182 §2.1: with MIN and/or MAX only those are saved, else every match.
            saved = found
            if found and wanted & {"MIN", "MAX"} and not wanted & {"ALL", "COUNT"}:
                ends = []
                if "MIN" in wanted:
                    ends.append(found[0] if not uid else min(found, key=lambda m: m.uid))
                if "MAX" in wanted:
                    ends.append(found[-1] if not uid else max(found, key=lambda m: m.uid))
                saved = sorted({m.uid: m for m in ends}.values(), key=lambda m: m.uid)
            self._saved[:] = [m.uid for m in saved]
            if not wanted:
                return None
        items: list[tuple[str, int | str]] = []
        if "MIN" in wanted and numbers:
            items.append(("MIN", min(numbers)))
        if "MAX" in wanted and numbers:
            items.append(("MAX", max(numbers)))
        if "ALL" in wanted and numbers:
            items.append(("ALL", compress_uids(numbers)))
        if "COUNT" in wanted:
            items.append(("COUNT", len(numbers)))
        if modseq is not None and numbers:
            items.append(("MODSEQ", modseq))
        return r.esearch(tag, uid, items)

    async def _sort(self, cmd: c.Sort) -> bytes:
        machine = self.machine
        if not self._charset_ok(cmd.charset):
            return self._bad_charset(cmd.tag)
        searcher = self._searcher()
        found = await searcher.sort(await searcher.search(cmd.key), cmd.criteria)
        numbers = [m.uid if cmd.uid else m.seq for m in found]
        responses: list[Response] = []
        if cmd.return_opts is not None:
            esort = self._esearch(cmd.tag, cmd.uid, cmd.return_opts, found, numbers, None)
            if esort is not None:
                responses.append(esort)
        else:
            responses.append(r.search(numbers, verb="SORT"))
        updates = await self._updates(expunge_allowed=cmd.uid)
        return machine.send(*responses, *updates, r.tagged(cmd.tag, "OK", "SORT completed"))

    async def _thread(self, cmd: c.Thread) -> bytes:
        machine = self.machine
        if not self._charset_ok(cmd.charset):
            return self._bad_charset(cmd.tag)
        searcher = self._searcher()
        searcher.uid_numbers = cmd.uid
        threads = await searcher.thread(await searcher.search(cmd.key), cmd.algorithm.upper())
        updates = await self._updates(expunge_allowed=cmd.uid)
        return machine.send(
            r.thread(threads), *updates, r.tagged(cmd.tag, "OK", "THREAD completed")
        )

    # -- mailboxes ---------------------------------------------------------------

    async def _create(self, tag: str, name: str) -> bytes:
        stored = self._name_in(name).rstrip(SEP)
        if not stored or stored == INBOX:
            return self.machine.send(r.tagged(tag, "NO", "Mailbox already exists", r.ALREADYEXISTS))
        try:
            await self.mailboxes.create_mailbox(self._account_id, stored)
        except AlreadyExists:
            return self.machine.send(r.tagged(tag, "NO", "Mailbox already exists", r.ALREADYEXISTS))
        except InvalidName as exc:
            return self.machine.send(
                r.tagged(tag, "NO", f"Invalid mailbox name: {_short(exc)}", r.CANNOT)
            )
        return await self._done(tag, "CREATE completed")

    async def _delete(self, tag: str, name: str) -> bytes:
        stored = self._name_in(name)
        if self.view is not None and self.view.info.name == stored:
            # Deleting the selected mailbox: it is closed first (RFC 9051 §6.3.5 leaves it open).
            self.view = None
            self.machine.unselected()
        try:
            await self.mailboxes.delete_mailbox(self._account_id, stored)
        except NotFound:
            return self.machine.send(r.tagged(tag, "NO", "Mailbox does not exist", r.NONEXISTENT))
        except HasChildren:
            return self.machine.send(
                r.tagged(tag, "NO", "Mailbox has children; delete them first", _HASCHILDREN)
            )
        except NotPermitted:
            return self.machine.send(r.tagged(tag, "NO", "INBOX cannot be deleted", r.CANNOT))
        return await self._done(tag, "DELETE completed")

    async def _rename(self, tag: str, old: str, new: str) -> bytes:
        src, dst = self._name_in(old), self._name_in(new).rstrip(SEP)
        try:
            await self.mailboxes.rename_mailbox(self._account_id, src, dst)
        except NotFound:
            return self.machine.send(r.tagged(tag, "NO", "Mailbox does not exist", r.NONEXISTENT))
        except AlreadyExists:
            return self.machine.send(
                r.tagged(tag, "NO", "Target mailbox already exists", r.ALREADYEXISTS)
            )
        except (NotPermitted, InvalidName) as exc:
            return self.machine.send(r.tagged(tag, "NO", f"Cannot rename: {_short(exc)}", r.CANNOT))
        return await self._done(tag, "RENAME completed")

    async def _status(self, tag: str, name: str, items: tuple[str, ...]) -> bytes:
        try:
            info = await self.mailboxes.get_mailbox(self._account_id, self._name_in(name))
        except NotFound:
            return self.machine.send(r.tagged(tag, "NO", "Mailbox does not exist", r.NONEXISTENT))
        values = self._status_items(info, items)
        return self.machine.send(
            r.status_data(self._name_out(info.name), values),
            *(await self._updates(expunge_allowed=True)),
            r.tagged(tag, "OK", "STATUS completed"),
        )

    def _status_items(self, info: MailboxInfo, items: tuple[str, ...]) -> list[tuple[str, int]]:
        values: list[tuple[str, int]] = []
        for item in items:
            key = item.upper()
            if key == "MESSAGES":
                values.append((key, info.messages))
            elif key == "RECENT":
                values.append((key, info.recent))
            elif key == "UIDNEXT":
                values.append((key, info.uidnext))
            elif key == "UIDVALIDITY":
                values.append((key, info.uidvalidity))
            elif key == "UNSEEN":
                values.append((key, info.unseen))
            elif key == "DELETED":
                values.append((key, info.deleted))
            elif key == "SIZE":
                values.append((key, info.size))
            elif key == "HIGHESTMODSEQ":
                self.enabled.add("CONDSTORE")
                values.append((key, info.highestmodseq))
        return values

    async def _list(self, cmd: c.List) -> bytes:
        machine = self.machine
        account = self._account_id
        if cmd.patterns == ("",) and not cmd.extended:
            # RFC 9051 §6.3.9: an empty pattern asks for the delimiter and the root.
            return machine.send(
                r.list_mailbox(["\\Noselect"], SEP, ""), r.tagged(cmd.tag, "OK", "LIST completed")
            )
        boxes = await self.mailboxes.list_mailboxes(account)
        subscribed = set(await self.mailboxes.list_subscriptions(account))
        by_name = {b.name: b for b in boxes}
        names = set(by_name)
        sel = {s.upper() for s in cmd.selection}
        ret = {s.upper() for s in cmd.returns}
        if "SUBSCRIBED" in sel:
            # RFC 5258 §3.1: subscribed names, existing or not (\NonExistent).
            names = set(subscribed)
        matchers = [_pattern(self._name_in(cmd.reference + p) if p else "") for p in cmd.patterns]
        responses: list[Response] = []
        parents = {n.rsplit(SEP, 1)[0] for n in by_name if SEP in n}
        for name in sorted(names, key=lambda n: (n != INBOX, n)):
            if not any(m(name) for m in matchers):
                continue
            info = by_name.get(name)
            attrs: list[str] = []
            if info is None:
                attrs.append("\\NonExistent")
            else:
                attrs.append("\\HasChildren" if name in parents else "\\HasNoChildren")
                if info.special_use and (
                    "SPECIAL-USE" in ret or not cmd.extended or "SPECIAL-USE" in sel
                ):
                    attrs.append(info.special_use)
            if name in subscribed and ("SUBSCRIBED" in ret or "SUBSCRIBED" in sel):
                attrs.append("\\Subscribed")
            if "SPECIAL-USE" in sel and (info is None or not info.special_use):
                continue
            responses.append(r.list_mailbox(attrs, SEP, self._name_out(name)))
            if cmd.status_items and info is not None:
                responses.append(
                    r.status_data(self._name_out(name), self._status_items(info, cmd.status_items))
                )
        return machine.send(*responses, r.tagged(cmd.tag, "OK", "LIST completed"))

    async def _lsub(self, tag: str, reference: str, pattern: str) -> bytes:
        account = self._account_id
        subscribed = set(await self.mailboxes.list_subscriptions(account))
        full = self._name_in(reference + pattern)
        match = _pattern(full)
        # RFC 3501 §6.3.9: with "foo/bar" subscribed and "foo" not, LSUB "%" returns
        # "foo" flagged \Noselect: a superior stands in for a subscribed name that "%"
        # kept the pattern from reaching (one it would match were "%" a "*").
        deeper = _pattern(full.replace("%", "*"))
        found: dict[str, list[str]] = {}
        for name in subscribed:
            if match(name):
                found[name] = []
            elif deeper(name):
                for parent in superiors(name):
                    if parent not in subscribed and match(parent):
                        found[parent] = ["\\Noselect"]
        responses: list[Response] = [
            r.list_mailbox(found[n], SEP, self._name_out(n), verb="LSUB") for n in sorted(found)
        ]
        return self.machine.send(*responses, r.tagged(tag, "OK", "LSUB completed"))

    # -- APPEND ------------------------------------------------------------------

    async def _literal(self, event: ev.NeedLiteral) -> bytes:
        machine = self.machine
        if not event.append:
            return machine.accept_literal()
        if event.size > self.config.max_append_size:
            return machine.reject_literal(r.tagged(event.tag, "NO", "Message too large", r.TOOBIG))
        account = await self.accounts.get_account(self.account.address) if self.account else None
        if (
            account is not None
            and account.quota_bytes is not None
            and account.used_bytes + event.size > account.quota_bytes
        ):
            return machine.reject_literal(r.tagged(event.tag, "NO", "Over quota", r.OVERQUOTA))
        return machine.accept_literal()

    async def _append_end(self, event: ev.AppendEnd) -> bytes:
        machine = self.machine
        pending, self._append = self._append, None
        if pending is None:  # pragma: no cover - Append always precedes AppendEnd
            return machine.send(r.tagged(event.tag, "NO", "No message"))
        if not event.ok:
            pending.blob.abort()
            return machine.send(event.response or r.tagged(event.tag, "BAD", "Invalid APPEND"))
        cmd = pending.cmd
        try:
            box = await self.mailboxes.get_mailbox(self._account_id, self._name_in(cmd.mailbox))
        except NotFound:
            pending.blob.abort()
            return machine.send(r.tagged(cmd.tag, "NO", "Mailbox does not exist", r.TRYCREATE))
        when = cmd.internal_date or datetime.now(UTC)
        flags = self._flags_in(cmd.flags, box.id)
        # Into the selected mailbox (read-write), the new message is \Recent here: this
        # session sees it first (RFC 3501 §6.3.11). The claim and the parsed structure
        # are written with the message, not as writes of their own afterwards.
        view = self.view if self.view is not None and self.view.mailbox_id == box.id else None
        claim = view is not None and not view.read_only
        structure = None if pending.copy is None else analyze(bytes(pending.copy)).to_bytes()
        try:
            delivered = await self.messages.append(
                self._account_id,
                box.id,
                pending.blob,
                flags,
                int(when.timestamp()),
                structure=structure,
                claim_recent=claim,
            )
        except QuotaExceeded:
            return machine.send(r.tagged(cmd.tag, "NO", "Over quota", r.OVERQUOTA))
        if view is not None and claim:
            view.claimed_ahead(delivered.recent)
        self.appended += 1
        self._touched(box.id)
        code = r.APPENDUID(box.uidvalidity, delivered.uid)
        return await self._done(cmd.tag, "APPEND completed", code)

    # -- QUOTA -------------------------------------------------------------------

    async def _quota(self) -> list[tuple[str, int, int]]:
        account = await self.accounts.get_account(self.account.address) if self.account else None
        if account is None or account.quota_bytes is None:
            return []
        # RFC 9208 §5.1: STORAGE in units of 1024 octets.
        return [("STORAGE", (account.used_bytes + 1023) // 1024, account.quota_bytes // 1024)]

    async def _getquota(self, tag: str, root: str) -> bytes:
        if root != "":
            return self.machine.send(r.tagged(tag, "NO", "No such quota root", r.NONEXISTENT))
        resources = await self._quota()
        if not resources:
            return self.machine.send(r.tagged(tag, "NO", "No quota", r.NONEXISTENT))
        return self.machine.send(r.quota("", resources), r.tagged(tag, "OK", "GETQUOTA completed"))

    async def _getquotaroot(self, tag: str, name: str) -> bytes:
        try:
            await self.mailboxes.get_mailbox(self._account_id, self._name_in(name))
        except NotFound:
            return self.machine.send(r.tagged(tag, "NO", "Mailbox does not exist", r.NONEXISTENT))
        resources = await self._quota()
        responses: list[Response] = [r.quotaroot(name, [""] if resources else [])]
        if resources:
            responses.append(r.quota("", resources))
        return self.machine.send(*responses, r.tagged(tag, "OK", "GETQUOTAROOT completed"))


# An APPEND up to this size is parsed as it completes and its structure stored with it
# (a write fewer than parsing at its first FETCH); larger ones are parsed then.
_PARSE_AT_APPEND = 64 * 1024


def _flag_names(view: MailboxView) -> tuple[list[str], list[Value]]:
    """The FLAGS list of a mailbox (system flags and its keywords) and its PERMANENTFLAGS
    (those and \\*: new keywords allowed; none for a read-only mailbox)."""
    flags = [*SYSTEM_FLAGS, *sorted(view.keywords.values())]
    permanent: list[Value] = []
    if not view.read_only:
        permanent = [*(Atom(f) for f in flags), Atom("\\*")]
    return flags, permanent


class _Append:
    """An APPEND on its way: its bytes go to ``blob``; a message of at most
    ``_PARSE_AT_APPEND`` octets is also kept, to be parsed once at the end."""

    __slots__ = ("blob", "cmd", "copy")

    def __init__(self, cmd: c.Append, blob: BlobWriter) -> None:
        self.cmd = cmd
        self.blob = blob
        self.copy: bytearray | None = bytearray()

    def write(self, chunk: bytes) -> None:
        self.blob.write(chunk)
        if self.copy is not None:
            self.copy += chunk
            if len(self.copy) > _PARSE_AT_APPEND:
                self.copy = None  # parsed at its first FETCH instead


def _bisect(uids: list[int], uid: int) -> int:
    """The sequence number of the first message with a UID of at least ``uid``."""
    return bisect.bisect_left(uids, uid) + 1


def _uses_modseq(key: c.SearchKey) -> bool:
    match key:
        case c.ModSeqKey():
            return True
        case c.Not(inner):
            return _uses_modseq(inner)
        case c.And(keys) | c.Or(keys):
            return any(_uses_modseq(k) for k in keys)
    return False


def _pattern(pattern: str) -> Callable[[str], bool]:
    """A LIST pattern (RFC 9051 §6.3.9): ``*`` matches anything, ``%`` anything but the
    hierarchy delimiter."""
    regex = "".join(
        ".*" if ch == "*" else "[^/]*" if ch == "%" else re.escape(ch) for ch in pattern
    )
    compiled = re.compile(regex + r"\Z", re.DOTALL)
    return lambda name: compiled.match(name) is not None


def _short(exc: Exception) -> str:
    return str(exc).replace("\r", " ").replace("\n", " ")[:100]
