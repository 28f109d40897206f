"""The server's Prometheus metrics: what each layer counts, and the text a scrape reads.

Every worker process counts for itself, and a scrape reaches one worker (they share the
listening socket), so what it reads must be every worker's sum. prometheus_client's
multiprocess mode does that: each process keeps its values in memory-mapped files of its
own (``<kind>_<pid>.db``) under one directory per server, and a scrape reads them all.

Invariants:
- the directory (``<data_dir>/run/metrics``) is emptied at startup by the process that
  forks the workers (or the single serving process), before any value exists: files
  left by an earlier run would be added to this run's numbers;
- a worker that dies keeps its counters and histograms (its files stay, so totals never
  go backwards) and loses its gauges of live things (``livesum``: open connections),
  whose files ``process_dead`` removes;
- without a directory (a command-line tool, an ``App`` a test starts in its own process)
  the values stay in this process's memory, and a scrape reads those;
- the instruments are made on first use, after the directory is chosen, and are
  process-wide, like the files they write to: prometheus_client fixes where a value
  lives when the value is made;
- counts made on an event loop are gathered in memory and written to the instruments
  (the files) at most ``FLUSH_SECONDS`` later, in one go: a write to a file-backed value
  takes a lock and packs bytes, several times per message on the hot path. A scrape
  flushes its own process first; another worker's counts may lag by up to
  ``FLUSH_SECONDS``, and a worker killed with SIGKILL loses at most that much. Counts
  made without a running loop (command-line tools, tests) are written at once.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, TypeVar

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, values
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

# The label values made (at zero) when a process first counts, so that every series a
# dashboard asks for exists from the start (a rate over a missing series is no rate).
CONNECTION_PROTOCOLS = ("smtp", "submission", "pop3", "imap")
AUTH_PROTOCOLS = ("submission", "pop3", "imap", "http")
MESSAGE_EVENTS = ("received", "delivered", "deferred", "bounced", "expired")

# The text format Prometheus has read since 2014; our names need nothing newer.
CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4

# prometheus_client's multiprocess mode reads its directory from this variable.
_DIRECTORY_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"
# Seconds: a commit's fsync takes milliseconds; a request or commit over ten seconds is
# an outage, however much over.
_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
# Anything else a client sends as a method is one label value, not one per invention.
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


FLUSH_SECONDS = 1.0

_M = TypeVar("_M", Counter, Gauge)


class _Family(Generic[_M]):
    """A labelled metric's children, looked up once each: ``labels()`` costs as much as
    the count itself, and the label sets are few (protocols, events, methods x statuses)."""

    def __init__(self, parent: _M) -> None:
        self.parent: _M = parent
        self._children: dict[tuple[str, ...], _M] = {}

    def __call__(self, *labels: str) -> _M:
        child = self._children.get(labels)
        if child is None:
            child = self._children[labels] = self.parent.labels(*labels)
        return child


class _Instruments:
    """This process's metric objects (not registered anywhere: a scrape builds its own
    registry, of these or of every process's files)."""

    def __init__(self) -> None:
        self.connections = Counter(
            "mailwright_connections",
            "Client connections accepted (those refused over the connection caps included).",
            ["protocol"],
            registry=None,
        )
        self.connections_open = Gauge(
            "mailwright_connections_open",
            "Client connections with a session in progress.",
            ["protocol"],
            registry=None,
            multiprocess_mode="livesum",
        )
        self.messages = Counter(
            "mailwright_messages",
            "Messages received (stored), and recipients delivered, deferred, bounced, expired.",
            ["event"],
            registry=None,
        )
        self.auth_failures = Counter(
            "mailwright_auth_failures",
            "Failed logins and API keys refused.",
            ["protocol"],
            registry=None,
        )
        self.http_requests = Counter(
            "mailwright_http_requests",
            "HTTP requests answered.",
            ["method", "status"],
            registry=None,
        )
        self.http_seconds = Histogram(
            "mailwright_http_request_seconds",
            "Seconds from an HTTP request's arrival to the end of its answer.",
            registry=None,
            buckets=_BUCKETS,
        )
        self.smtp_transaction_seconds = Histogram(
            "mailwright_smtp_transaction_seconds",
            "Seconds from the end of an SMTP message's data to its 250 (the durable commit).",
            registry=None,
            buckets=_BUCKETS,
        )
        self.connection = _Family(self.connections)
        self.connection_open = _Family(self.connections_open)
        self.message = _Family(self.messages)
        self.auth_failure = _Family(self.auth_failures)
        self.http_request = _Family(self.http_requests)
        for protocol in CONNECTION_PROTOCOLS:
            self.connection(protocol)
            self.connection_open(protocol)
        for protocol in AUTH_PROTOCOLS:
            self.auth_failure(protocol)
        for event in MESSAGE_EVENTS:
            self.message(event)

    def all(self) -> tuple[Counter | Gauge | Histogram, ...]:
        return (
            self.connections,
            self.connections_open,
            self.messages,
            self.auth_failures,
            self.http_requests,
            self.http_seconds,
            self.smtp_transaction_seconds,
        )


@dataclass
class _Process:
    """Where this process counts: ``directory`` (None: in memory) and its instruments."""

    directory: Path | None = None
    instruments: _Instruments | None = None


# Process-wide by nature (see the invariants): the files are named by process id.
_process = _Process()
_making = threading.Lock()


def _instruments() -> _Instruments:
    made = _process.instruments
    if made is None:
        with _making:
            made = _process.instruments
            if made is None:
                made = _process.instruments = _Instruments()
    return made


# -- the directory -------------------------------------------------------------------


def prepare_directory(directory: Path) -> None:
    """Make ``directory`` and empty it of every process's files (at startup, before any
    worker counts: a file of an earlier run would be summed with this run's)."""
    directory.mkdir(parents=True, exist_ok=True)
    for path in directory.glob("*.db"):
        path.unlink(missing_ok=True)


def use_directory(directory: Path) -> None:
    """This process, and every process it forks afterwards, counts into files under
    ``directory`` (made by ``prepare_directory``). Call it before anything is counted."""
    # prometheus_client reads the variable each time a process opens its files (a forked
    # worker opens its own at its first count), so it is the one way to name the place.
    os.environ[_DIRECTORY_VARIABLE] = str(directory)
    # The kind of value was chosen when prometheus_client was first imported, before this
    # call could set the variable; values made from now on are file-backed.
    # (prometheus_client leaves this one, and the two below, unannotated.)
    values.ValueClass = values.MultiProcessValue()  # type: ignore[no-untyped-call]
    _process.directory = directory
    _process.instruments = None  # made again at the first count, into the files
    global _pending
    _pending = _Pending()  # nothing counted before belongs in the files


def process_dead(pid: int) -> None:
    """A worker died: its counters stay in the sums, its open connections do not."""
    if _process.directory is not None:
        mark_process_dead(pid, str(_process.directory))  # type: ignore[no-untyped-call]


# -- counting ------------------------------------------------------------------------

# A count waiting to be written: (family name on _Instruments, label values).
_Key = tuple[str, tuple[str, ...]]


class _Pending:
    """Counts made since the last flush (see the invariants)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()  # the loop adds, a scrape's thread may flush
        self.counts: dict[_Key, float] = {}
        self.observed: dict[str, list[float]] = {}
        self.timer: asyncio.TimerHandle | None = None
        self.timer_loop: asyncio.AbstractEventLoop | None = None

    def add(self, family: str, labels: tuple[str, ...], amount: float = 1.0) -> None:
        key = (family, labels)
        with self.lock:
            self.counts[key] = self.counts.get(key, 0.0) + amount
        self._soon()

    def observe(self, histogram: str, seconds: float) -> None:
        with self.lock:
            self.observed.setdefault(histogram, []).append(seconds)
        self._soon()

    def _soon(self) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self.flush()
            return
        if self.timer is not None and self.timer_loop is loop:
            return
        # (A timer of a loop that has ended will never fire: this loop takes over.)
        self.timer_loop = loop
        self.timer = loop.call_later(FLUSH_SECONDS, self._due)

    def _due(self) -> None:
        # Only the loop's own callback forgets the timer: a scrape flushes from another
        # thread, where cancelling a loop's timer is not safe (an early flush just leaves
        # the timer nothing to write).
        self.timer = None
        self.flush()

    def flush(self) -> None:
        with self.lock:
            counts, self.counts = self.counts, {}
            observed, self.observed = self.observed, {}
        if not counts and not observed:
            return
        made = _instruments()
        for (family, labels), amount in counts.items():
            if amount:
                getattr(made, family)(*labels).inc(amount)
        for histogram, values_ in observed.items():
            instrument: Histogram = getattr(made, histogram)
            for value in values_:
                instrument.observe(value)


_pending = _Pending()


def flush() -> None:
    """Write this process's pending counts now (before it stops, before a scrape)."""
    _pending.flush()


def connection_accepted(protocol: str) -> None:
    """A client connected to ``protocol``'s listener (served or refused)."""
    _pending.add("connection", (protocol,))


def connection_opened(protocol: str) -> None:
    """A connection's session began; it is open until ``connection_closed``."""
    _pending.add("connection_open", (protocol,))


def connection_closed(protocol: str) -> None:
    _pending.add("connection_open", (protocol,), -1.0)


def messages(event: str, count: int = 1) -> None:
    """``count`` messages (received) or recipients (delivered, deferred, bounced,
    expired) reached ``event``."""
    if count > 0:
        _pending.add("message", (event,), count)


def auth_failed(protocol: str) -> None:
    _pending.add("auth_failure", (protocol,))


def http_request(method: str, status: int, seconds: float) -> None:
    method = method.upper()
    _pending.add("http_request", (method if method in _METHODS else "other", str(status)))
    _pending.observe("http_seconds", seconds)


def smtp_transaction(seconds: float) -> None:
    _pending.observe("smtp_transaction_seconds", seconds)


# -- the scrape ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class QueueFacts:
    """The outbound queue as the store saw it at the scrape."""

    depth: int  # entries (one per remote recipient)
    oldest_age: float  # seconds since the oldest entry arrived; 0 when the queue is empty


class _QueueCollector:
    """The queue's gauges: facts of the store, the same whichever worker is asked."""

    def __init__(self, facts: QueueFacts) -> None:
        self._facts = facts

    def collect(self) -> Iterable[Metric]:
        yield GaugeMetricFamily(
            "mailwright_queue_depth",
            "Entries in the outbound queue (one per remote recipient).",
            value=self._facts.depth,
        )
        yield GaugeMetricFamily(
            "mailwright_queue_oldest_age_seconds",
            "Seconds since the oldest queue entry arrived (0: the queue is empty).",
            value=self._facts.oldest_age,
        )


def exposition(queue: QueueFacts | None = None) -> bytes:
    """The text a scrape reads (``CONTENT_TYPE``): every process's counts, summed, and
    ``queue``'s gauges. Reads files: call it off the event loop."""
    _pending.flush()
    made = _instruments()  # this process's series exist (at zero) even before it counts
    registry = CollectorRegistry(auto_describe=False)
    directory = _process.directory
    if directory is not None:
        MultiProcessCollector(registry, str(directory))  # type: ignore[no-untyped-call]
    else:
        for instrument in made.all():
            registry.register(instrument)
    if queue is not None:
        registry.register(_QueueCollector(queue))
    return generate_latest(registry)
