"""The queue runner: takes due entries from the store's queue and delivers them by MX (or
through the smarthost), retrying, bouncing and warning as RFC 5321 §4.5.4 and RFC 3461 ask.

Invariants:
- an entry is settled (``Queue.update``) as soon as its message's transaction with a host
  ends, so a crash repeats at most the transactions in flight (SMTP's own at-least-once
  window); an entry never settled is due again when its lease lapses;
- a DSN is handed to ``Notifier`` before the entries it reports on are settled: a crash
  between the two can send it twice, never lose it; nothing is ever sent about a message
  from the null sender (RFC 5321 §4.5.5);
- recipients are grouped by destination domain: one connection carries every message of a
  group in turn (RSET between), at most ``max_per_destination`` connections per domain
  and ``max_deliveries`` in all;
- a host that fails before any recipient was answered (connect, greeting, EHLO, TLS, MAIL)
  sends the recipients on to the next address and the next MX host (RFC 5321 §5.1); a
  reply about a recipient is that recipient's, whatever other hosts might say.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from mailwright.config.model import Config
from mailwright.core.log import event
from mailwright.core.reply import Reply
from mailwright.dns.resolver import Resolver, TemporaryDnsError, address_literal
from mailwright.message.dsn import (
    Action,
    DeliveryReport,
    RecipientStatus,
    build_dsn,
    notify_wants,
)
from mailwright.metrics import meter
from mailwright.outbound.client import (
    ClientSettings,
    Connection,
    Delivery,
    Destination,
    Envelope,
    MessageSource,
    Outcome,
    Prefixed,
    Recipient,
    RecipientResult,
    SessionError,
)
from mailwright.store.api import MailEvent, Queue, QueueEntry, QueueUpdate
from mailwright.store.errors import NotFound, StoreError

log = logging.getLogger("mailwright.queue")

# Stages at which a failure is the host's, not a recipient's: try the next host.
_HOST_STAGES = frozenset({"connect", "greeting", "ehlo", "starttls", "auth", "mail"})
EXPIRED_STATUS = "4.4.7"  # RFC 3463: delivery time expired
_GATHER = 0.05  # seconds between a wake-up and the claim it causes
_COUNTED = frozenset({"delivered", "deferred", "bounced", "expired"})  # metrics, per recipient


@dataclass(frozen=True, slots=True)
class Dsn:
    """A DSN ready to send: to ``to`` from the null sender, about ``queue_id``."""

    to: str
    data: bytes
    queue_id: str  # of the message it reports on


# Hands a DSN to the message pipeline (local mailbox or the queue again).
Notifier = Callable[[Dsn], Awaitable[None]]
Connector = Callable[[Destination, ClientSettings], Awaitable[Connection]]


@dataclass(slots=True)
class _Attempt:
    """One message's entries for one destination, and what became of each."""

    entries: list[QueueEntry]
    results: dict[int, RecipientResult]  # entry id -> final result for this attempt
    delivery: Delivery | None = None
    vanished: bool = False  # deleted from the queue meanwhile: nothing to settle

    def open_entries(self) -> list[QueueEntry]:
        if self.vanished:
            return []
        return [e for e in self.entries if e.id not in self.results]


def retry_delay(schedule: Sequence[float], attempts: int) -> float:
    """Seconds to wait after the ``attempts``-th failed attempt (1-based); the schedule's
    last value repeats."""
    return schedule[min(max(attempts, 1), len(schedule)) - 1]


def wants(entry: QueueEntry, kind: str) -> bool:
    """Does the entry's sender want a DSN of ``kind``? (``notify_wants``)"""
    return notify_wants(entry.sender, entry.notify, kind)


class QueueRunner:
    def __init__(
        self,
        *,
        queue: Queue,
        resolver: Resolver,
        config: Config,
        notifier: Notifier,
        clock: Callable[[], float] = time.time,
        connect: Connector = Connection.open,
    ) -> None:
        self.queue = queue
        self.resolver = resolver
        self.config = config
        self.notifier = notifier
        self.clock = clock
        self.connect = connect
        self._wake = asyncio.Event()
        self._stopping = False
        self._task: asyncio.Task[None] | None = None
        self._deliveries: set[asyncio.Task[None]] = set()
        self._all = asyncio.Semaphore(config.queue.max_deliveries)
        self._per_domain: dict[str, asyncio.Semaphore] = {}
        self._claimed: set[int] = set()  # entry ids in flight here
        # Open sessions between deliveries, by destination: the next messages to the same
        # place reuse one instead of a lookup, a connect, a greeting and an EHLO (Postfix's
        # connection cache does the same).
        self._pool: dict[str, list[tuple[Connection, float]]] = {}
        self._reaper: asyncio.Task[None] | None = None

    # -- life ----------------------------------------------------------------------------

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="queue-runner")
        self._reaper = asyncio.create_task(self._reap(), name="queue-connection-reaper")

    def wake(self) -> None:
        """New entries were queued in this process: look now, not at the next poll."""
        self._wake.set()

    async def stop(self, grace: float = 10.0) -> None:
        """Stop claiming; let deliveries in flight finish within ``grace`` seconds, then
        cancel them (their entries' leases lapse and they are tried again later)."""
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._deliveries:
            _done, pending = await asyncio.wait(self._deliveries, timeout=grace)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending)
        if self._reaper is not None:
            self._reaper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reaper
        await self._close_idle(everything=True)

    # -- the connection cache ------------------------------------------------------------

    def _take(self, key: str) -> Connection | None:
        idle = self._pool.get(key)
        now = time.monotonic()
        while idle:
            conn, until = idle.pop()
            if conn.usable and until > now:
                return conn
            conn.abort()
        return None

    async def _give(self, key: str, conn: Connection) -> None:
        keep = self.config.queue.connection_cache_time
        if self._stopping or keep <= 0 or not conn.usable:
            await conn.quit()
            return
        self._pool.setdefault(key, []).append((conn, time.monotonic() + keep))

    async def _close_idle(self, *, everything: bool = False) -> None:
        """QUIT the cached sessions whose time is up (or all of them)."""
        now = time.monotonic()
        for key in list(self._pool):
            keep: list[tuple[Connection, float]] = []
            gone: list[tuple[Connection, float]] = []
            for conn, until in self._pool[key]:
                (gone if everything or until <= now else keep).append((conn, until))
            if keep:
                self._pool[key] = keep
            else:
                del self._pool[key]
            for conn, _ in gone:
                await conn.quit()

    async def _reap(self) -> None:
        while True:
            await asyncio.sleep(max(self.config.queue.connection_cache_time / 2, 0.2))
            await self._close_idle()

    async def idle(self) -> None:
        """Wait until no delivery is in flight (tests, ``queue flush``)."""
        while self._deliveries:
            await asyncio.wait(set(self._deliveries))

    async def _loop(self) -> None:
        cfg = self.config.queue
        while not self._stopping:
            try:
                taken = await self.run_once()
            except StoreError as exc:
                event(log, logging.ERROR, "queue.store_error", error=str(exc))
                taken = 0
            if taken >= cfg.batch:
                continue  # more may be due right now
            delay = cfg.poll_interval
            with contextlib.suppress(StoreError):
                due = await self.queue.next_due()
                if due is not None:
                    delay = min(delay, max(due - self.clock(), 0.0))
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(delay, 0.05)):
                    await self._wake.wait()
                    # Woken by a commit: let the commits of other sessions land too, so
                    # one claim (one transaction) takes them all and they share sessions.
                    await asyncio.sleep(_GATHER)

    async def run_once(self) -> int:
        """Claim what is due and start delivering it; returns how many entries."""
        cfg = self.config.queue
        now = int(self.clock())
        entries = [
            e
            for e in await self.queue.claim(now, cfg.batch, int(cfg.lease))
            if e.id not in self._claimed
        ]
        groups: dict[str, list[QueueEntry]] = {}
        for e in entries:
            self._claimed.add(e.id)
            groups.setdefault(e.domain, []).append(e)
        for domain, group in groups.items():
            by_message: dict[int, list[QueueEntry]] = {}
            for e in group:
                by_message.setdefault(e.message_id, []).append(e)
            messages = list(by_message.values())
            # Several connections to one domain when it has many messages.
            lanes = min(len(messages), self.config.queue.max_per_destination)
            for lane in range(lanes):
                task = asyncio.create_task(self._deliver_domain(domain, messages[lane::lanes]))
                self._deliveries.add(task)
                task.add_done_callback(self._deliveries.discard)
        return len(entries)

    # -- one destination -----------------------------------------------------------------

    async def _deliver_domain(self, domain: str, messages: list[list[QueueEntry]]) -> None:
        sem = self._per_domain.setdefault(
            domain, asyncio.Semaphore(self.config.queue.max_per_destination)
        )
        attempts = [_Attempt(m, {}) for m in messages]
        try:
            async with self._all, sem:
                await self._attempt_domain(domain, attempts)
        except Exception as exc:
            # Boundary: a bug here must defer these entries, not lose them or the runner.
            log.exception("queue.crash", extra={"fields": {"domain": domain}})
            reply = Reply(451, "4.3.0", f"internal error: {type(exc).__name__}")
            for a in attempts:
                self._fill(a, reply, "connect", remote=False, host="")
                await self._settle(a)
        finally:
            for m in messages:
                for e in m:
                    self._claimed.discard(e.id)

    async def _attempt_domain(self, domain: str, attempts: list[_Attempt]) -> None:
        smart = self.config.outbound.smarthost
        key = "[smarthost]" if smart.host else domain
        cached = self._take(key)
        if cached is not None:
            await self._send_all(cached, key, attempts)
            if not any(a.open_entries() for a in attempts):
                return
        if smart.host:
            dest, settings = ClientSettings.for_smarthost(self.config)
            hosts: list[tuple[str, ClientSettings]] = [(dest.host, settings)]
            port = dest.port
        else:
            mx = await self.resolver.mx_hosts(domain)
            if not mx.hosts:
                code = 550 if mx.permanent else 451
                reply = Reply(code, mx.enhanced_status, mx.reason or f"no mail host for {domain}")
                for a in attempts:
                    self._fill(a, reply, "connect", remote=False, host="")
                    await self._settle(a)
                return
            settings = ClientSettings.for_domain(self.config, domain)
            hosts = [(h.name, settings) for h in mx.hosts]
            port = self.config.outbound.port
        problem = Reply(451, "4.4.1", f"no mail host of {domain} could be reached")
        for name, settings in hosts:
            pending = [a for a in attempts if a.open_entries()]
            if not pending:
                break
            literal = address_literal(name)
            try:
                addresses = [literal] if literal else await self.resolver.addresses(name)
            except TemporaryDnsError as exc:
                problem = Reply(451, "4.4.3", f"cannot resolve {name}: {exc}")
                continue
            if not addresses:
                problem = Reply(451, "4.4.4", f"{name} has no address")
                continue
            for address in addresses:
                pending = [a for a in attempts if a.open_entries()]
                if not pending:
                    break
                got = await self._attempt_host(
                    Destination(name, address, port), settings, key, pending
                )
                if got is not None:
                    problem = got
        for a in attempts:
            if a.open_entries():
                self._fill(a, problem, "connect", remote=False, host="")
                await self._settle(a)

    async def _attempt_host(
        self, dest: Destination, settings: ClientSettings, key: str, attempts: list[_Attempt]
    ) -> Reply | None:
        """Send each message over one connection. Returns the host's problem when some
        recipients are left for the next host, else None."""
        try:
            conn = await self.connect(dest, settings)
        except SessionError as exc:
            return exc.reply
        return await self._send_all(conn, key, attempts)

    async def _send_all(self, conn: Connection, key: str, attempts: list[_Attempt]) -> Reply | None:
        """Send each message with open entries over ``conn``, then give it back to the
        cache (or QUIT it). Returns the host's problem when recipients are left over."""
        problem: Reply | None = None
        dest = conn.destination
        # A message is settled while the next one is sent: the session need not wait for
        # the store's commit (each entry stays claimed here until its settling is done).
        settling: list[asyncio.Task[None]] = []
        try:
            for a in attempts:
                entries = a.open_entries()
                if not entries:
                    continue
                if not conn.usable:
                    problem = problem or Reply(421, "4.4.2", f"connection to {dest} lost")
                    break
                content = await self._content(a.entries[0])
                if content is None:  # the message vanished (deleted by an operator)
                    a.vanished = True
                    continue
                first = entries[0]
                envelope = Envelope(
                    sender=first.sender,
                    recipients=tuple(Recipient(e.recipient, e.notify, e.orcpt) for e in entries),
                    eight_bit=first.eight_bit,
                    smtputf8=first.smtputf8,
                    ret=first.ret,
                    envid=first.envid,
                    queue_id=first.queue_id,
                )
                delivery = await conn.send(envelope, content)
                a.delivery = delivery
                host_trouble = False
                for e, r in zip(entries, delivery.results, strict=True):
                    if r.outcome is Outcome.DEFERRED and r.stage in _HOST_STAGES:
                        host_trouble = True
                        problem = r.reply
                    else:
                        a.results[e.id] = r
                if not host_trouble:
                    settling.append(asyncio.create_task(self._settle(a)))
        except BaseException:
            conn.abort()
            raise
        finally:
            if settling:
                await asyncio.gather(*settling)
        await self._give(key, conn)
        return problem

    async def _content(self, entry: QueueEntry) -> MessageSource | None:
        try:
            source = await self.queue.message_source(entry.message_id)
        except NotFound:
            return None
        return Prefixed(entry.prefix, source) if entry.prefix else source

    def _fill(self, a: _Attempt, reply: Reply, stage: str, *, remote: bool, host: str) -> None:
        outcome = Outcome.FAILED if reply.code >= 500 else Outcome.DEFERRED
        for e in a.open_entries():
            a.results[e.id] = RecipientResult(
                e.recipient,
                outcome,
                reply,
                stage,  # type: ignore[arg-type]
                remote,
                host,
            )

    # -- settling ------------------------------------------------------------------------

    async def _settle(self, a: _Attempt) -> None:
        """Record what became of ``a``'s entries: queue updates, events, DSNs."""
        cfg = self.config.queue
        now = self.clock()
        updates: list[QueueUpdate] = []
        events: list[MailEvent] = []
        report: dict[Action, list[tuple[QueueEntry, RecipientResult]]] = {}
        for e in a.entries:
            r = a.results.get(e.id)
            if r is None or a.vanished:
                continue
            detail = {"host": r.host, "reply": r.diagnostic, "attempt": str(e.attempts + 1)}
            if a.delivery is not None and a.delivery.tls:
                detail["tls"] = a.delivery.tls
            if r.outcome is Outcome.DELIVERED:
                updates.append(QueueUpdate(e.id, "delivered"))
                events.append(MailEvent(e.queue_id, "delivered", e.recipient, detail))
                # RFC 3461 §5.2.2: the next hop did not take NOTIFY, so we report "relayed".
                dsn_passed = a.delivery is not None and a.delivery.dsn
                if wants(e, "SUCCESS") and not dsn_passed:
                    report.setdefault("relayed", []).append((e, r))
            elif r.outcome is Outcome.FAILED:
                updates.append(QueueUpdate(e.id, "failed", reply=r.diagnostic))
                events.append(MailEvent(e.queue_id, "bounced", e.recipient, detail))
                if wants(e, "FAILURE"):
                    report.setdefault("failed", []).append((e, r))
            elif now - e.received_at >= cfg.max_age:
                updates.append(QueueUpdate(e.id, "failed", reply=r.diagnostic))
                events.append(MailEvent(e.queue_id, "expired", e.recipient, detail))
                if wants(e, "FAILURE"):
                    report.setdefault("failed", []).append((e, _expired(r)))
            else:
                delay = retry_delay(cfg.retry_schedule, e.attempts + 1)
                warn = (
                    cfg.delay_warning > 0
                    and not e.delay_notified
                    and now - e.received_at >= cfg.delay_warning
                    and wants(e, "DELAY")
                )
                updates.append(QueueUpdate(e.id, "deferred", int(now + delay), r.diagnostic, warn))
                detail["next_attempt"] = str(int(now + delay))
                events.append(MailEvent(e.queue_id, "deferred", e.recipient, detail))
                if warn:
                    report.setdefault("delayed", []).append((e, r))
                    events.append(MailEvent(e.queue_id, "delayed", e.recipient, {}))
        for ev in events:
            if ev.type in ("delivered", "bounced") and ev.detail.get("host"):
                continue  # the client logged this reply of that host already
            event(
                log,
                logging.INFO,
                f"queue.{ev.type}",
                queue_id=ev.queue_id,
                rcpt=ev.recipient,
                **{k: v for k, v in ev.detail.items() if k in ("host", "reply", "next_attempt")},
            )
        for action, items in report.items():
            await self._notify(action, items)
        try:
            await self.queue.update(updates, events)
        except StoreError as exc:
            # The leases lapse and these recipients are tried again: at least once.
            event(log, logging.ERROR, "queue.update_failed", error=str(exc))
        else:
            # Counted once settled: an attempt whose settling failed is made again.
            for ev in events:
                if ev.type in _COUNTED:
                    meter.messages(ev.type)
        for e in a.entries:
            self._claimed.discard(e.id)

    async def _notify(
        self, action: Action, items: list[tuple[QueueEntry, RecipientResult]]
    ) -> None:
        first = items[0][0]
        cfg = self.config.queue
        statuses = [
            RecipientStatus(
                final_recipient=e.recipient,
                action=action,
                status=r.reply.status or _default_status(r.reply.code),
                original_recipient=e.orcpt,
                remote_mta=r.host.split("[", 1)[0].split(":", 1)[0] if r.remote else None,
                diagnostic=r.diagnostic,
                diagnostic_type="smtp" if r.remote else "x-local",
                last_attempt=datetime.fromtimestamp(self.clock(), UTC),
                will_retry_until=(
                    datetime.fromtimestamp(e.received_at + cfg.max_age, UTC)
                    if action == "delayed"
                    else None
                ),
            )
            for e, r in items
        ]
        report = DeliveryReport(
            reporting_mta=self.config.hostname,
            to=first.sender,
            recipients=statuses,
            envid=first.envid,
            arrival_date=datetime.fromtimestamp(first.received_at, UTC),
            ret=first.ret,
            smtputf8=first.smtputf8,
        )
        try:
            source = await self.queue.message_source(first.message_id)
        except NotFound:
            source = b""
        data = await asyncio.to_thread(_build, report, source)
        try:
            await self.notifier(Dsn(first.sender, data, first.queue_id))
        except Exception as exc:
            # Boundary: a DSN that cannot be stored is logged; the delivery outcome it
            # reports is recorded all the same (the events keep the history).
            event(log, logging.ERROR, "queue.dsn_failed", queue_id=first.queue_id, error=str(exc))
        else:
            event(
                log,
                logging.INFO,
                "queue.dsn",
                queue_id=first.queue_id,
                action=action,
                to=first.sender,
                rcpt=",".join(e.recipient for e, _ in items),
            )


def _build(report: DeliveryReport, source: bytes | Path) -> bytes:
    if isinstance(source, bytes):
        return build_dsn(report, source)
    with open(source, "rb") as f:
        return build_dsn(report, f)


def _default_status(code: int) -> str:
    return "5.0.0" if code >= 500 else "4.0.0" if code >= 400 else "2.0.0"


def _expired(r: RecipientResult) -> RecipientResult:
    reply = Reply(550, EXPIRED_STATUS, f"delivery time expired; last problem: {r.diagnostic}")
    return RecipientResult(r.recipient, Outcome.FAILED, reply, r.stage, False, r.host)
