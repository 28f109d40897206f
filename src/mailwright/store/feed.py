"""Change feeds: sessions learn of each committed change, in this process and in every
other process sharing the installation (worker processes, the CLI).

``LocalChangeFeed`` — in one process. Backends publish after commit. A bounded queue per
subscriber: a subscriber that falls behind gets a "resync" change (re-read the store)
instead of unbounded memory. Invariants:
- ``subscribe`` registers at once, not at the first ``__anext__``, so a session that
  subscribes, then reads the mailbox, then waits, misses no change made in between (an
  async generator would register only when first iterated);
- a subscriber's queue belongs to the event loop it subscribed on; ``publish`` from
  another loop or thread hands the change to that loop (``call_soon_threadsafe``).

``PeerRelay`` — between processes on one machine. Each store process binds a Unix
datagram socket ``<pid>-<random>.sock`` in a shared directory (``<data_dir>/run/feed/``).
After a commit that publishes, the changes of one event-loop turn (one commit batch)
are packed into one datagram sent to every other socket there; a thread in each process
receives and publishes them locally. Invariants:
- it never blocks or fsyncs: ``sendto`` with MSG_DONTWAIT, at most one datagram per
  peer per loop turn (more only for huge batches); sockets of dead processes are removed
  when a send is refused (ECONNREFUSED) and at startup;
- it loses nothing silently: a peer whose queue was full (EAGAIN) gets a "resync"
  marker as soon as it has room again (tried every quarter second and before the next
  datagram), and every subscriber there re-reads the store;
- changes are wake-ups, not data: the store is the truth (MODSEQ), so a change with its
  UID list dropped (too long to carry) still says which mailbox to re-read;
- a process hears only the changes of accounts it has subscribers for: its
  ``<pid>-<random>.want`` file holds one byte per ``account_id % 4096``, set before
  ``subscribe`` returns and cleared when the account's last subscriber goes. A sender
  reads a peer's bytes after its commit, so a session that subscribes and then reads the
  store misses nothing: a commit the sender made before it read a clear byte is one that
  read sees. A peer without the file hears everything. Without this, every commit woke
  every other process (a thread, the interpreter lock, an unpack) for nobody;
- closing sends what is pending (and a resync to a peer still owed one) before the
  sockets close; a close on another thread (the store closes on one) waits for a flush
  in progress on the loop, which would otherwise lose the changes it had taken.
The directory is created 0700: only the installation's own user can send.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import secrets
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from mailwright.store.api import Change

log = logging.getLogger("mailwright.store.feed")

_QUEUE_MAX = 1024


class _Sink:
    """One subscriber's queue and the loop it belongs to."""

    __slots__ = ("loop", "queue")

    def __init__(self, loop: asyncio.AbstractEventLoop | None) -> None:
        self.queue: asyncio.Queue[Change | None] = asyncio.Queue(_QUEUE_MAX)
        self.loop = loop

    def offer(self, change: Change | None) -> None:
        """Queue a change (``None``: resync), keeping the last slot for the resync marker."""
        q = self.queue
        if q.full():
            return
        if change is None or q.qsize() == _QUEUE_MAX - 1:
            q.put_nowait(None)
        else:
            q.put_nowait(change)


def _offer_all(items: Sequence[tuple[_Sink, Change | None]]) -> None:
    for sink, change in items:
        sink.offer(change)


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


class Subscription:
    """One subscriber's changes, in commit order. ``aclose`` (or ``async with``) ends it."""

    def __init__(self, feed: LocalChangeFeed, account_id: int) -> None:
        self._feed = feed
        self._account_id = account_id
        self._sink = _Sink(_running_loop())
        self._closed = False
        feed._add(account_id, self._sink)

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Change:
        if self._closed:
            raise StopAsyncIteration
        change = await self._sink.queue.get()
        if change is None:
            # Overflowed, or changes were lost on the way from another process: the
            # subscriber must re-read the mailbox state.
            return Change(self._account_id, 0, 0, "resync", ())
        return change

    async def aclose(self) -> None:
        self.close()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._feed._remove(self._account_id, self._sink)

    async def __aenter__(self) -> Subscription:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        # A session that forgets to close still stops receiving once it is gone.
        self.close()


Watcher = Callable[[int, bool], None]


class LocalChangeFeed:
    def __init__(self) -> None:
        self._subscribers: dict[int, set[_Sink]] = {}
        # Re-entrant: a Subscription collected (__del__) while this thread holds it.
        self._lock = threading.RLock()
        self._watchers: list[Watcher] = []

    def watch(self, watcher: Watcher) -> None:
        """Call ``watcher(account_id, True)`` when an account gets its first subscriber
        (at once for those that have one now) and ``(account_id, False)`` when its last one
        goes, under the feed's lock: before ``subscribe`` returns."""
        with self._lock:
            self._watchers.append(watcher)
            for account_id in self._subscribers:
                watcher(account_id, True)

    def unwatch(self, watcher: Watcher) -> None:
        """Stop calling ``watcher``; once this returns, no call of it is running."""
        with self._lock, contextlib.suppress(ValueError):
            self._watchers.remove(watcher)

    def subscribe(self, account_id: int) -> Subscription:
        return Subscription(self, account_id)

    def publish(self, change: Change) -> None:
        """Publish one change to the account's subscribers (from any thread)."""
        self.publish_many((change,))

    def publish_many(self, changes: Iterable[Change]) -> None:
        here = _running_loop()
        elsewhere: dict[asyncio.AbstractEventLoop, list[tuple[_Sink, Change | None]]] = {}
        with self._lock:
            # A copy: a collected Subscription's __del__ may unsubscribe while we iterate.
            targets = [(c, tuple(self._subscribers.get(c.account_id, ()))) for c in changes]
        for change, sinks in targets:
            for sink in sinks:
                if sink.loop is here or sink.loop is None:
                    sink.offer(change)
                else:
                    elsewhere.setdefault(sink.loop, []).append((sink, change))
        self._hand_over(elsewhere)

    def resync_all(self) -> None:
        """Every subscriber of every account re-reads the store (changes were lost)."""
        here = _running_loop()
        elsewhere: dict[asyncio.AbstractEventLoop, list[tuple[_Sink, Change | None]]] = {}
        with self._lock:
            sinks = [s for subs in self._subscribers.values() for s in subs]
        for sink in sinks:
            if sink.loop is here or sink.loop is None:
                sink.offer(None)
            else:
                elsewhere.setdefault(sink.loop, []).append((sink, None))
        self._hand_over(elsewhere)

    @staticmethod
    def _hand_over(
        elsewhere: dict[asyncio.AbstractEventLoop, list[tuple[_Sink, Change | None]]],
    ) -> None:
        for loop, items in elsewhere.items():
            # A closed loop raises RuntimeError: nobody is waiting there any more.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_offer_all, items)

    def _add(self, account_id: int, sink: _Sink) -> None:
        with self._lock:
            subs = self._subscribers.get(account_id)
            if subs is None:
                for watcher in self._watchers:
                    watcher(account_id, True)  # first: if it fails, nothing was added
                subs = self._subscribers[account_id] = set()
            subs.add(sink)

    def _remove(self, account_id: int, sink: _Sink) -> None:
        with self._lock:
            subs = self._subscribers.get(account_id)
            if subs is not None:
                subs.discard(sink)
                if not subs:
                    del self._subscribers[account_id]
                    for watcher in self._watchers:
                        watcher(account_id, False)


# -- between processes -------------------------------------------------------------------

_MAGIC = b"MWF1"
_RECORD = struct.Struct("!BqqqI")  # kind, account, mailbox, modseq, number of UIDs
_KINDS = ("append", "flags", "expunge", "create", "delete", "rename", "resync")
_KIND_CODE = {k: i + 1 for i, k in enumerate(_KINDS)}
_MAX_UIDS = 1024  # per change carried; a longer list is dropped (see the invariants)
_MAX_DATAGRAM = 16 * 1024
_RELIST_SECONDS = 1.0
_SUN_PATH_MAX = 107  # bytes of sockaddr_un.sun_path, less the terminating NUL
_RESYNC = Change(0, 0, 0, "resync", ())
_RETRY_SECONDS = 0.25  # a peer that missed changes is sent its resync marker this often
_SLOTS = 4096  # bytes of a .want file: one per account_id % _SLOTS
_WANTS_NOTHING = bytes(_SLOTS)


def pack(changes: Sequence[Change]) -> list[bytes]:
    """Changes as datagrams of at most ``_MAX_DATAGRAM`` bytes (more than one only for
    a huge batch)."""
    out: list[bytes] = []
    buf = bytearray(_MAGIC)
    for c in changes:
        code = _KIND_CODE.get(c.kind)
        if code is None:
            continue
        uids = (
            c.uids if len(c.uids) <= _MAX_UIDS and all(0 < u <= 0xFFFFFFFF for u in c.uids) else ()
        )
        record = _RECORD.pack(code, c.account_id, c.mailbox_id, c.modseq, len(uids))
        record += struct.pack(f"!{len(uids)}I", *uids)
        if len(buf) + len(record) > _MAX_DATAGRAM and len(buf) > len(_MAGIC):
            out.append(bytes(buf))
            buf = bytearray(_MAGIC)
        buf += record
    if len(buf) > len(_MAGIC):
        out.append(bytes(buf))
    return out


def unpack(data: bytes) -> list[Change]:
    """The changes of one datagram; ``ValueError`` if it is not one of ours."""
    if not data.startswith(_MAGIC):
        raise ValueError("not a change datagram")
    out = []
    pos = len(_MAGIC)
    try:
        while pos < len(data):
            code, account, mailbox, modseq, n = _RECORD.unpack_from(data, pos)
            pos += _RECORD.size
            uids = struct.unpack_from(f"!{n}I", data, pos)
            pos += 4 * n
            if 1 <= code <= len(_KINDS):
                out.append(Change(account, mailbox, modseq, _KINDS[code - 1], uids))
    except struct.error as exc:
        raise ValueError(f"truncated change datagram: {exc}") from None
    return out


class PeerRelay:
    """Carries this process's changes to the other processes of one installation and
    theirs to ``feed``. One per store; not inherited across ``fork``."""

    def __init__(self, directory: Path, feed: LocalChangeFeed) -> None:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._dir = directory
        self._feed = feed
        self._pid = os.getpid()
        # A data directory deep enough for its socket paths to pass sun_path's 108 bytes
        # is reached through /proc/self/fd/N (Linux resolves the directory there).
        self._dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        self.name = f"{self._pid}-{secrets.token_hex(6)}.sock"
        self._in = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        self._out = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        self._out.setblocking(False)
        # Which accounts this process has subscribers for (see the invariants). Made
        # after the socket: a peer that finds the socket without it sends everything.
        self._want_name = self.name.removesuffix(".sock") + ".want"
        bound, want_fd = False, -1
        try:
            self._in.bind(self._address(self.name))
            bound = True
            want_fd = os.open(
                self._want_name,
                os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC,
                0o600,
                dir_fd=self._dir_fd,
            )
            # Written, not a sparse ftruncate: setting a byte later needs no new block.
            os.pwrite(want_fd, _WANTS_NOTHING, 0)
        except OSError:
            # Nothing of this relay stays behind: not a file, not a descriptor.
            if want_fd >= 0:
                os.close(want_fd)
            for name, made in ((self._want_name, want_fd >= 0), (self.name, bound)):
                if made:
                    with contextlib.suppress(OSError):
                        os.unlink(self._dir / name)
            self._in.close()
            self._out.close()
            os.close(self._dir_fd)
            raise
        self._want_fd = want_fd
        self._slot_counts: dict[int, int] = {}
        self._want_fds: dict[str, int] = {}  # peers' .want files, open while listed
        self._closing = False
        self._lock = threading.Lock()  # the pending changes
        # Sending, and closing the sockets: a flush on the loop and a close() on another
        # thread must not interleave (see flush). Re-entrant: close() flushes under it.
        self._sending = threading.RLock()
        self._pending: list[Change] = []
        self._scheduled = False
        self._peers: list[str] = []
        self._listed_at = -_RELIST_SECONDS
        self._dir_mtime = -1
        self._lost: set[str] = set()  # peers that missed a datagram: owe them a resync
        self._retrying = False
        self.sent = 0  # datagrams sent (for tests and metrics)
        self._prune()
        feed.watch(self._interest)
        self._thread = threading.Thread(target=self._receive, name="mailwright-feed", daemon=True)
        self._thread.start()

    def _interest(self, account_id: int, wanted: bool) -> None:
        # Called under the feed's lock, so the slot counts and the bytes move together.
        # Setting a byte fails the subscribe if it cannot be written (the subscriber would
        # hear nothing from the other processes); a byte left set costs only datagrams.
        if os.getpid() != self._pid:
            return  # a forked child: the file is its parent's
        slot = account_id % _SLOTS
        count = self._slot_counts.get(slot, 0)
        if wanted and count == 0:
            os.pwrite(self._want_fd, b"\x01", slot)
        elif not wanted and count == 1:
            with contextlib.suppress(OSError):
                os.pwrite(self._want_fd, b"\x00", slot)
        count += 1 if wanted else -1
        if count > 0:
            self._slot_counts[slot] = count
        else:
            self._slot_counts.pop(slot, None)

    def _address(self, name: str) -> str:
        path = os.path.join(self._dir, name)
        if len(os.fsencode(path)) <= _SUN_PATH_MAX:
            return path
        return f"/proc/self/fd/{self._dir_fd}/{name}"

    # -- sending -----------------------------------------------------------------------

    def send(self, changes: Sequence[Change]) -> None:
        """Queue changes for the other processes; they leave at the end of this loop turn,
        together with every other change published in it (one datagram per peer)."""
        if not changes or self._closing or os.getpid() != self._pid:
            return
        with self._lock:
            self._pending.extend(changes)
            if self._scheduled:
                return
            self._scheduled = True
        loop = _running_loop()
        if loop is None:
            self.flush()
        else:
            loop.call_soon(self.flush)

    def flush(self) -> None:
        # Under the send lock, so that a close() from another thread (the store closes
        # in one) cannot close the socket between taking the changes and sending them.
        with self._sending:
            with self._lock:
                changes, self._pending = self._pending, []
                self._scheduled = False
            if not changes or self._closing:
                return
            peers = self._peer_list()
            if not peers:
                return
            everything: list[bytes] | None = None
            for peer in peers:
                wants = self._wants(peer)
                if wants is None:
                    theirs = changes
                else:
                    theirs = [
                        c for c in changes if wants[c.account_id % _SLOTS] or c.kind == "resync"
                    ]
                    if not theirs:
                        continue
                if len(theirs) == len(changes):
                    if everything is None:
                        everything = pack(changes)
                    datagrams = everything
                else:
                    datagrams = pack(theirs)
                if peer in self._lost and not self._send_resync(peer):
                    continue
                for datagram in datagrams:
                    if not self._send_to(peer, datagram):
                        break
            if self._lost:
                self._schedule_retry()

    def _wants(self, peer: str) -> bytes | None:
        """The peer's interest bytes; None (send it everything) if it has no file."""
        fd = self._want_fds.get(peer)
        if fd is None:
            try:
                fd = os.open(
                    peer.removesuffix(".sock") + ".want",
                    os.O_RDONLY | os.O_CLOEXEC,
                    dir_fd=self._dir_fd,
                )
            except OSError:
                return None  # not made yet, or a peer that predates them
            self._want_fds[peer] = fd
        try:
            wants = os.pread(fd, _SLOTS, 0)
        except OSError:
            return None
        return wants if len(wants) == _SLOTS else None

    def _send_resync(self, peer: str) -> bool:
        if not self._send_to(peer, pack([_RESYNC])[0]):
            return False
        self._lost.discard(peer)
        return True

    def _schedule_retry(self) -> None:
        # Without this, a peer that missed changes would learn of it only with the next
        # change, which may be long in coming.
        loop = _running_loop()
        if self._retrying or self._closing or loop is None:
            return
        self._retrying = True
        loop.call_later(_RETRY_SECONDS, self._retry)

    def _retry(self) -> None:
        with self._sending:
            self._retrying = False
            if self._closing:
                return
            for peer in sorted(self._lost):
                if self._wants(peer) == _WANTS_NOTHING:
                    self._lost.discard(peer)  # its subscribers are gone: nobody to resync
                else:
                    self._send_resync(peer)
            if self._lost:
                self._schedule_retry()

    def _send_to(self, peer: str, datagram: bytes) -> bool:
        try:
            self._out.sendto(datagram, socket.MSG_DONTWAIT, self._address(peer))
        except (BlockingIOError, InterruptedError):
            self._lost.add(peer)  # its queue is full: it resyncs when we get through
            return False
        except OSError as exc:
            if exc.errno == errno.ECONNREFUSED:
                # Nobody bound there any more: a dead process's socket.
                for name in (peer.removesuffix(".sock") + ".want", peer):
                    with contextlib.suppress(OSError):
                        os.unlink(self._dir / name)
            elif exc.errno == errno.ENOBUFS:
                self._lost.add(peer)
                return False
            elif exc.errno != errno.ENOENT:
                log.warning("feed.send_failed peer=%s error=%r", peer, exc)
            self._forget(peer)
            return False
        self.sent += 1
        return True

    def _forget(self, peer: str) -> None:
        with contextlib.suppress(ValueError):
            self._peers.remove(peer)
        self._lost.discard(peer)
        self._close_want(peer)

    def _close_want(self, peer: str) -> None:
        fd = self._want_fds.pop(peer, None)
        if fd is not None:
            os.close(fd)

    def _peer_list(self) -> list[str]:
        # Re-read the directory when it changed (a process came or went), and at least
        # every second (its mtime may not change for two entries made in one clock tick).
        now = time.monotonic()
        try:
            mtime = os.stat(self._dir).st_mtime_ns
        except OSError:
            return []
        if mtime != self._dir_mtime or now - self._listed_at >= _RELIST_SECONDS:
            self._dir_mtime = mtime
            self._listed_at = now
            try:
                names = os.listdir(self._dir)
            except OSError:
                names = []
            self._peers = sorted(n for n in names if n.endswith(".sock") and n != self.name)
            self._lost &= set(self._peers)
            for gone in set(self._want_fds) - set(self._peers):
                self._close_want(gone)
        return list(self._peers)

    def _prune(self) -> None:
        """Remove the sockets (and .want files) of processes that died without closing
        their store."""
        for peer in self._peer_list():
            self._send_to(peer, b"")  # empty: ignored by a live peer, refused by a dead one
        # A live process makes its .want after its socket and removes it first, so a
        # .want without a socket is a dead one's.
        try:
            names = set(os.listdir(self._dir))
        except OSError:
            return
        for name in names:
            if name.endswith(".want") and name.removesuffix(".want") + ".sock" not in names:
                with contextlib.suppress(OSError):
                    os.unlink(self._dir / name)

    # -- receiving ---------------------------------------------------------------------

    def _receive(self) -> None:
        while True:
            try:
                data = self._in.recv(65536)
            except OSError:
                if self._closing:
                    return
                continue
            if self._closing:
                return
            if not data:
                continue
            try:
                changes = unpack(data)
            except ValueError as exc:
                log.warning("feed.bad_datagram error=%s", exc)
                continue
            if any(c.kind == "resync" for c in changes):
                self._feed.resync_all()
                changes = [c for c in changes if c.kind != "resync"]
            if changes:
                self._feed.publish_many(changes)

    def close(self) -> None:
        with self._sending:
            if self._closing:
                return
            if os.getpid() == self._pid:
                self.flush()  # what was published just before closing still goes out
                for peer in sorted(self._lost):
                    self._send_resync(peer)  # a last chance for a peer that missed some
            self._closing = True
        self._feed.unwatch(self._interest)
        if os.getpid() == self._pid:
            with contextlib.suppress(OSError):
                self._out.sendto(b"", self._address(self.name))  # wakes the receiver
            self._thread.join(timeout=5)
            for name in (self._want_name, self.name):  # the .want first (see _prune)
                with contextlib.suppress(OSError):
                    os.unlink(self._dir / name)
        for peer in list(self._want_fds):
            self._close_want(peer)
        os.close(self._want_fd)
        self._in.close()
        self._out.close()
        os.close(self._dir_fd)
