"""Webhooks: the events of API sends, POSTed as signed JSON to registered URLs.

Each POST carries a JSON array of events (the shape of ``GET /v1/events``) and the headers
``Mailwright-Webhook-Id``, ``Mailwright-Timestamp`` (Unix seconds) and
``Mailwright-Signature: v1=<hex HMAC-SHA256(secret, "<timestamp>." + body)>``; receivers
check it with ``verify`` (the rule ``sign`` makes), which also refuses old timestamps so a
captured POST cannot be replayed later.

Invariants:
- a webhook's events go out in id order, at least once: its cursor moves past an event
  only when a POST holding it (or a read that found nothing it wanted) ended well, and
  every failure sends the same events again, from the same cursor, after the retry
  schedule's delay. Receivers tell repeats apart by the events' ids;
- a webhook is claimed (leased, across processes) by one dispatcher at a time, so its
  POSTs never overlap or overtake each other;
- at most ``concurrency`` POSTs are in flight per process, each in a thread of the
  dispatcher's own pool (never the event loop's default executor), and the loop does not
  wait for them: a slow receiver holds up only itself;
- only http and https URLs are fetched, through no proxy, and no redirect is followed (a
  3xx is a failure): a redirect could carry signed events to a place nobody registered;
- a POST goes only to a public address, or to one inside ``allowed_networks`` (the
  operator's ``webhooks.allowed_networks``): loopback, private, link-local and other
  special addresses are refused otherwise, so an API key cannot make the server reach
  its own host or network. The check is made on the addresses the host name resolves to
  when connecting, and the connection goes to the address checked (no second lookup a
  DNS answer could change in between).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import http.client
import ipaddress
import json
import logging
import socket
import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor

from mailwright.api.models import EventOut
from mailwright.api.views import expand
from mailwright.core.log import event as log_event
from mailwright.store.api import Api, EventQuery, MailEvent, Webhook, Webhooks
from mailwright.store.errors import StoreError

log = logging.getLogger("mailwright.webhooks")

USER_AGENT = "mailwright-webhooks/1"
SIGNATURE_VERSION = "v1"
TOLERANCE = 300  # seconds: how old a signed timestamp ``verify`` still accepts
RETRY_SCHEDULE: tuple[float, ...] = (5, 30, 120, 600, 1800, 3600)
_ERROR_CHARS = 200  # of a receiver's answer kept as the webhook's last error
_READ_LIMIT = 4096  # bytes of an answer read at most: only its first words are kept
_MAX_TIMESTAMP_DIGITS = 12


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The ``Mailwright-Signature`` value for ``body`` sent at ``timestamp``."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"{SIGNATURE_VERSION}={mac.hexdigest()}"


def verify(
    secret: str,
    timestamp: int | str,
    body: bytes,
    signature: str,
    *,
    now: float,
    tolerance: float = TOLERANCE,
) -> bool:
    """Is ``signature`` (the header's value) ``sign(secret, timestamp, body)``, made within
    ``tolerance`` seconds of ``now``? A timestamp further off either way is refused: an
    old one may be a replay, and one from the future would stay valid too long. The header
    may list several values separated by commas (a receiver rotating its secret): one
    match is enough. The comparison takes the same time whatever the values."""
    if isinstance(timestamp, str):
        text = timestamp.strip()
        if not (text.isascii() and text.isdigit()) or len(text) > _MAX_TIMESTAMP_DIGITS:
            return False
        timestamp = int(text)
    if abs(now - timestamp) > tolerance:
        return False
    expected = sign(secret, timestamp, body).encode()
    matched = False
    for candidate in signature.split(","):
        # Every candidate is compared (no early exit), each in constant time.
        matched |= hmac.compare_digest(candidate.strip().encode(), expected)
    return matched


def payload(events: Sequence[EventOut]) -> bytes:
    """The body of one POST: the events as a JSON array, in order."""
    return json.dumps(
        [e.model_dump() for e in events], ensure_ascii=False, separators=(",", ":")
    ).encode()


def wanted(webhook: Webhook, rows: Sequence[MailEvent]) -> list[EventOut]:
    """The API events of ``rows`` (stored rows, in id order) that ``webhook`` wants."""
    return [e for row in rows for e in expand(row) if not webhook.types or e.type in webhook.types]


def retry_delay(schedule: Sequence[float], attempts: int) -> float:
    """Seconds to wait after a failure when ``attempts`` failures came before it; the
    schedule's last value repeats."""
    return float(schedule[min(attempts, len(schedule) - 1)])


def _printable(text: str) -> str:
    # A receiver's answer ends up in log lines and in the API: no control characters.
    return "".join(ch if ch.isprintable() else " " for ch in text).strip()


Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class AddressRefused(OSError):
    """The receiver's address is one webhooks may not reach."""


def reachable(address: str, allowed: Sequence[Network]) -> bool:
    """May a webhook POST go to ``address``? Public (globally routable, not multicast)
    addresses may; any other only inside ``allowed``."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped  # ::ffff:127.0.0.1 is 127.0.0.1
    if ip.is_global and not ip.is_multicast:
        return True
    return any(ip.version == net.version and ip in net for net in allowed)


def _connect(conn: http.client.HTTPConnection, allowed: Sequence[Network]) -> socket.socket:
    """A socket to the first address of ``conn.host`` that is reachable and answers."""
    refused: list[str] = []
    error: OSError | None = None
    for family, kind, proto, _name, sockaddr in socket.getaddrinfo(
        conn.host, conn.port, type=socket.SOCK_STREAM
    ):
        if not reachable(str(sockaddr[0]), allowed):
            refused.append(str(sockaddr[0]))
            continue
        sock = socket.socket(family, kind, proto)
        try:
            if isinstance(conn.timeout, int | float):
                sock.settimeout(conn.timeout)
            sock.connect(sockaddr)
        except OSError as exc:
            sock.close()
            error = exc
            continue
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock
    if error is not None:
        raise error
    raise AddressRefused(
        f"{conn.host} is {', '.join(refused) or 'no address'}, which webhooks may not reach"
        " (webhooks.allowed_networks)"
    )


def _connections(
    allowed: Sequence[Network],
) -> tuple[type[http.client.HTTPConnection], type[http.client.HTTPSConnection]]:
    class Plain(http.client.HTTPConnection):
        def connect(self) -> None:
            self.sock = _connect(self, allowed)

    class Secure(http.client.HTTPSConnection):
        def connect(self) -> None:
            self.sock = _connect(self, allowed)
            # As http.client does, with the name checked against the certificate.
            self.sock = self._context.wrap_socket(  # type: ignore[attr-defined]
                self.sock, server_hostname=self.host
            )

    return Plain, Secure


class _HttpHandler(urllib.request.HTTPHandler):
    def __init__(self, connection: type[http.client.HTTPConnection]) -> None:
        super().__init__()
        self._connection = connection

    def http_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        return self.do_open(self._connection, req)


class _HttpsHandler(urllib.request.HTTPSHandler):
    def __init__(
        self, connection: type[http.client.HTTPSConnection], context: ssl.SSLContext
    ) -> None:
        super().__init__(context=context)
        self._connection = connection

    def https_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        return self.do_open(self._connection, req, context=self._context)  # type: ignore[attr-defined]


def opener(
    context: ssl.SSLContext | None = None, allowed: Sequence[Network] = ()
) -> urllib.request.OpenerDirector:
    """An HTTP(S) client that follows no redirect, uses no proxy and connects only where
    ``reachable`` allows: with no redirect handler, a 3xx goes to the default error
    handler like any other non-2xx answer, and with only these handlers any other scheme
    is an error."""
    plain, secure = _connections(tuple(allowed))
    director = urllib.request.OpenerDirector()
    for handler in (
        _HttpHandler(plain),
        _HttpsHandler(secure, context or ssl.create_default_context()),
        urllib.request.HTTPDefaultErrorHandler(),
        urllib.request.HTTPErrorProcessor(),
    ):
        director.add_handler(handler)
    return director


def post(
    director: urllib.request.OpenerDirector,
    url: str,
    body: bytes,
    headers: Mapping[str, str],
    timeout: float,
) -> str:
    """POST ``body`` (blocking: run it in a thread). Returns "" for a 2xx answer, else
    what went wrong: the status and the start of the answer, or the error."""
    request = urllib.request.Request(url, data=body, headers=dict(headers), method="POST")
    try:
        with director.open(request, timeout=timeout) as response:
            response.read(_READ_LIMIT)
    except urllib.error.HTTPError as exc:
        with exc:
            text = exc.read(_READ_LIMIT).decode("utf-8", "replace")
        return f"HTTP {exc.code} {_printable(text)[:_ERROR_CHARS]}".strip()
    except urllib.error.URLError as exc:
        reason = exc.reason
        if isinstance(reason, BaseException):
            return _printable(f"{type(reason).__name__}: {reason}")[:_ERROR_CHARS]
        return _printable(str(reason))[:_ERROR_CHARS]
    except (OSError, http.client.HTTPException, ValueError) as exc:
        # OSError: timeouts and resets after the connection was made; HTTPException: an
        # answer that is not HTTP; ValueError: a URL urllib cannot use.
        return _printable(f"{type(exc).__name__}: {exc}")[:_ERROR_CHARS]
    return ""


class WebhookDispatcher:
    """Claims due webhooks, POSTs each one's new events, settles the outcome."""

    def __init__(
        self,
        webhooks: Webhooks,
        api: Api,
        *,
        poll_interval: float = 1.0,
        batch: int = 100,
        timeout: float = 10.0,
        retry_schedule: Sequence[float] = RETRY_SCHEDULE,
        clock: Callable[[], float] = time.time,
        concurrency: int = 8,
        lease: float | None = None,
        ssl_context: ssl.SSLContext | None = None,
        allowed_networks: Sequence[Network] = (),
    ) -> None:
        if poll_interval <= 0 or batch <= 0 or timeout <= 0 or concurrency <= 0:
            raise ValueError("poll_interval, batch, timeout and concurrency must be positive")
        if not retry_schedule or any(d < 0 for d in retry_schedule):
            raise ValueError("retry_schedule must be a non-empty list of delays")
        self.webhooks = webhooks
        self.api = api
        self.poll_interval = poll_interval
        self.batch = batch
        self.timeout = timeout
        self.retry_schedule = tuple(retry_schedule)
        self.clock = clock
        self.concurrency = concurrency
        # A claim must outlast the read, the POST (whose timeout applies to each socket
        # operation, so the dispatcher also bounds the whole at twice it) and the settle.
        self.lease = lease if lease is not None else max(60.0, 4 * timeout)
        self._opener = opener(ssl_context, allowed_networks)
        self._pool = ThreadPoolExecutor(
            max_workers=concurrency, thread_name_prefix="mailwright-webhook"
        )
        self._wake = asyncio.Event()
        self._stopping = False
        self._task: asyncio.Task[None] | None = None
        # In-flight deliveries, each with the wake-up count when it was claimed.
        self._inflight: dict[asyncio.Task[bool], int] = {}
        self._wakes = 0  # wake() calls so far
        self._saturated = False  # the last claim took every free slot: more may be due

    # -- life ----------------------------------------------------------------------------

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="webhook-dispatcher")

    def wake(self) -> None:
        """Events were recorded in this process: look now, not at the next poll."""
        self._wakes += 1
        self._wake.set()

    async def stop(self, grace: float = 10.0) -> None:
        """Stop claiming; let POSTs in flight end within ``grace`` seconds, then cancel
        them (their webhooks' leases lapse and the same events go out again later)."""
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._inflight:
            _done, pending = await asyncio.wait(set(self._inflight), timeout=grace)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending)
        # A thread still blocked in a POST ends by its socket timeout; nobody waits for it.
        self._pool.shutdown(wait=False, cancel_futures=True)

    async def idle(self) -> None:
        """Wait until no POST is in flight (tests)."""
        while self._inflight:
            await asyncio.wait(set(self._inflight))

    # -- the loop ------------------------------------------------------------------------

    async def _loop(self) -> None:
        while not self._stopping:
            try:
                await self.run_once()
            except StoreError as exc:
                log_event(log, logging.ERROR, "webhook.store_error", error=str(exc))
            except Exception:
                # Boundary: a bug in one round must not end webhook delivery for the life
                # of the process; the next poll tries again.
                log.exception("webhook.crash")
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.poll_interval):
                    await self._wake.wait()
            self._wake.clear()

    async def run_once(self) -> int:
        """Claim what is due (as many as there are free slots) and start POSTing; returns
        how many webhooks were claimed."""
        free = self.concurrency - len(self._inflight)
        if free <= 0 or self._stopping:
            return 0
        # Read before the claim, so before every read of events that follows: anything
        # with an id up to here is visible to those reads (ids grow in commit order).
        head = await self.webhooks.last_event_id()
        now = self.clock()
        # A claim is a write (a transaction, under the lock every process shares): look
        # first, with a read, whether any webhook could be claimed. Most polls find none.
        if not any(
            w.cursor < head and w.next_attempt <= now and w.lease_until <= now
            for w in await self.webhooks.list_webhooks()
        ):
            return 0
        claimed = await self.webhooks.claim_webhooks(now, free, self.lease)
        self._saturated = len(claimed) >= free
        for webhook in claimed:
            task = asyncio.create_task(self._deliver(webhook, head), name=f"webhook-{webhook.id}")
            self._inflight[task] = self._wakes
            task.add_done_callback(self._done)
        return len(claimed)

    def _done(self, task: asyncio.Task[bool]) -> None:
        claimed_at = self._inflight.pop(task, self._wakes)
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            # The store failed: the lease lapses and the same events go out again.
            log_event(log, logging.ERROR, "webhook.store_error", error=str(exc))
            return
        # Look again at once if this webhook has more waiting, if other webhooks were left
        # for want of a slot, or if a wake-up came meanwhile: the round it caused could not
        # claim this webhook (leased here), so its new events would wait for the poll.
        if task.result() or self._saturated or self._wakes != claimed_at:
            self._wake.set()

    # -- one webhook ---------------------------------------------------------------------

    async def _deliver(self, webhook: Webhook, head: int) -> bool:
        """One round for one claimed webhook; True if it has more events waiting."""
        try:
            rows = await self.api.query_events(
                EventQuery(
                    after=webhook.cursor, limit=self.batch, sender_domain=webhook.sender_domain
                )
            )
            if not rows:
                # None of its own up to ``head`` (read before this query): skip to there, so
                # the events of other senders are not scanned again at every poll.
                await self._settle_ok(webhook, max(webhook.cursor, head))
                return False
            events = wanted(webhook, rows)
            error = await self._post(webhook, events) if events else ""
        except StoreError:
            raise
        except Exception as exc:
            # Boundary: a bug with one webhook must retry it later, not hold its lease or
            # end the dispatcher.
            log.exception("webhook.crash", extra={"fields": {"webhook": webhook.id}})
            error = f"internal error: {type(exc).__name__}"
        if error:
            await self._settle_failed(webhook, error)
            return False
        await self._settle_ok(webhook, rows[-1].id)
        log_event(log, logging.DEBUG, "webhook.delivered", webhook=webhook.id, events=len(rows))
        return len(rows) >= self.batch

    async def _post(self, webhook: Webhook, events: Sequence[EventOut]) -> str:
        body = payload(events)
        timestamp = int(self.clock())
        headers = {
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            "Mailwright-Webhook-Id": str(webhook.id),
            "Mailwright-Timestamp": str(timestamp),
            "Mailwright-Signature": sign(webhook.secret, timestamp, body),
        }
        loop = asyncio.get_running_loop()
        call = loop.run_in_executor(
            self._pool, post, self._opener, webhook.url, body, headers, self.timeout
        )
        try:
            async with asyncio.timeout(2 * self.timeout):
                return await call
        except TimeoutError:
            return f"no answer within {2 * self.timeout:g} seconds"

    async def _settle_ok(self, webhook: Webhook, cursor: int) -> None:
        await self.webhooks.settle_webhook(
            webhook.id, cursor=cursor, next_attempt=0.0, attempts=0, error=""
        )

    async def _settle_failed(self, webhook: Webhook, error: str) -> None:
        delay = retry_delay(self.retry_schedule, webhook.attempts)
        log_event(
            log,
            logging.WARNING,
            "webhook.failed",
            webhook=webhook.id,
            attempts=webhook.attempts + 1,
            retry_in=delay,
            error=error,
        )
        await self.webhooks.settle_webhook(
            webhook.id,
            cursor=None,
            next_attempt=self.clock() + delay,
            attempts=webhook.attempts + 1,
            error=error,
        )
