"""LocalChangeFeed: bounded per-subscriber queues, resync on overflow, unsubscribe,
publishing from other threads; PeerRelay: changes between processes over Unix datagrams."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import gc
import os
import socket
import threading
from pathlib import Path

import pytest

from mailwright.store import feed as feed_module
from mailwright.store.api import Change
from mailwright.store.feed import LocalChangeFeed, PeerRelay


def change(account: int, modseq: int) -> Change:
    return Change(account, 1, modseq, "append", (modseq,))


def test_overflow_yields_resync_instead_of_unbounded_memory() -> None:
    async def go() -> list[Change]:
        feed = LocalChangeFeed()
        sub = feed.subscribe(7)
        for i in range(feed_module._QUEUE_MAX + 50):
            feed.publish(change(7, i + 1))
        out = [await anext(sub) for _ in range(feed_module._QUEUE_MAX)]
        feed.publish(change(7, 99_999))  # after draining, changes flow again
        out.append(await anext(sub))
        return out

    got = asyncio.run(go())
    assert [c.modseq for c in got[: feed_module._QUEUE_MAX - 1]] == list(
        range(1, feed_module._QUEUE_MAX)
    )
    assert got[feed_module._QUEUE_MAX - 1] == Change(7, 0, 0, "resync", ())
    assert got[-1].modseq == 99_999


def test_close_unsubscribes_and_ends_iteration() -> None:
    async def go() -> None:
        feed = LocalChangeFeed()
        async with feed.subscribe(1) as sub:
            feed.publish(change(1, 1))
            assert (await anext(sub)).modseq == 1
        assert feed._subscribers == {}
        feed.publish(change(1, 2))  # nobody listening: dropped
        async for _ in sub:
            raise AssertionError("closed subscription yielded")
        await sub.aclose()

    asyncio.run(go())


def test_forgotten_subscription_is_dropped_when_collected() -> None:
    async def go() -> None:
        feed = LocalChangeFeed()
        feed.subscribe(1)
        gc.collect()
        assert feed._subscribers == {}
        keep = feed.subscribe(2)
        other = feed.subscribe(2)
        del other
        gc.collect()
        assert len(feed._subscribers[2]) == 1
        keep.close()

    asyncio.run(go())


def test_subscribers_only_hear_their_account() -> None:
    async def go() -> tuple[Change, Change]:
        feed = LocalChangeFeed()
        a, b = feed.subscribe(1), feed.subscribe(2)
        feed.publish(change(2, 5))
        feed.publish(change(1, 6))
        return await anext(a), await anext(b)

    a, b = asyncio.run(go())
    assert (a.account_id, a.modseq, b.account_id, b.modseq) == (1, 6, 2, 5)


# -- publishing from other threads and loops ------------------------------------------------


def test_publish_from_another_thread_reaches_the_subscribers_loop() -> None:
    async def go() -> list[Change]:
        feed = LocalChangeFeed()
        sub = feed.subscribe(7)
        done = threading.Event()

        def elsewhere() -> None:
            feed.publish_many([change(7, 1), change(8, 2), change(7, 3)])
            feed.resync_all()
            done.set()

        threading.Thread(target=elsewhere).start()
        got = [await asyncio.wait_for(anext(sub), 10) for _ in range(3)]
        assert done.is_set()
        return got

    got = asyncio.run(go())
    assert [(c.modseq, c.kind) for c in got] == [(1, "append"), (3, "append"), (0, "resync")]


# -- between processes: datagrams ------------------------------------------------------------


def test_pack_round_trip() -> None:
    changes = [
        Change(1, 2, 3, "append", (4, 5)),
        Change(2**40, 9, 2**50, "expunge", ()),
        Change(1, 2, 4, "flags", tuple(range(1, 300))),
        Change(1, 2, 5, "rename", ()),
    ]
    (datagram,) = feed_module.pack(changes)
    assert feed_module.unpack(datagram) == changes


def test_pack_drops_long_uid_lists_and_splits_big_batches() -> None:
    huge = Change(1, 2, 3, "expunge", tuple(range(1, 100_000)))
    assert feed_module.unpack(feed_module.pack([huge])[0]) == [Change(1, 2, 3, "expunge", ())]
    many = [Change(1, 2, n, "flags", tuple(range(1, 1000))) for n in range(40)]
    datagrams = feed_module.pack(many)
    assert len(datagrams) > 1
    assert all(len(d) <= feed_module._MAX_DATAGRAM for d in datagrams)
    assert [c for d in datagrams for c in feed_module.unpack(d)] == many
    assert feed_module.pack([Change(1, 2, 3, "no such kind", ())]) == []


@pytest.mark.parametrize("data", [b"", b"junk", feed_module._MAGIC + b"\x01\x00"])
def test_unpack_refuses_what_is_not_ours(data: bytes) -> None:
    with pytest.raises(ValueError):
        feed_module.unpack(data)


# -- between processes: the relay --------------------------------------------------------------


class _Pair:
    """Two relays (as two processes would have) on one directory."""

    def __init__(self, directory: Path) -> None:
        self.feeds = LocalChangeFeed(), LocalChangeFeed()
        self.relays = [PeerRelay(directory, f) for f in self.feeds]

    def close(self) -> None:
        for r in self.relays:
            r.close()


def _relay_round_trip(directory: Path) -> None:
    async def go() -> None:
        pair = _Pair(directory)
        try:
            theirs = pair.feeds[1].subscribe(1)
            mine = pair.feeds[0].subscribe(1)
            pair.relays[0].send([change(1, 1)])
            pair.relays[0].send([change(1, 2)])  # same loop turn: one datagram
            got = [await asyncio.wait_for(anext(theirs), 10) for _ in range(2)]
            assert [c.modseq for c in got] == [1, 2]
            assert pair.relays[0].sent == 1
            # A relay does not hear itself (its store published locally already).
            pair.relays[1].send([change(1, 3)])
            assert (await asyncio.wait_for(anext(mine), 10)).modseq == 3
            assert mine._sink.queue.empty() and theirs._sink.queue.empty()
        finally:
            pair.close()
        assert list(directory.iterdir()) == []  # each relay removed its socket

    asyncio.run(go())


def test_relay_carries_changes_between_feeds(tmp_path: Path) -> None:
    _relay_round_trip(tmp_path / "run" / "feed")


def test_relay_in_a_directory_too_deep_for_sun_path(tmp_path: Path) -> None:
    deep = tmp_path / ("d" * 60) / ("e" * 60) / "run" / "feed"
    assert len(str(deep)) > 108
    _relay_round_trip(deep)


def test_sockets_of_dead_processes_are_removed(tmp_path: Path) -> None:
    directory = tmp_path / "feed"
    directory.mkdir()
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    stale.bind(str(directory / "1-dead.sock"))
    stale.close()  # the file stays, nobody is bound: what a SIGKILL leaves
    (directory / "1-dead.want").write_bytes(bytes(4096))
    relay = PeerRelay(directory, LocalChangeFeed())
    mine = sorted([relay.name, relay.name.removesuffix(".sock") + ".want"])
    try:
        assert sorted(p.name for p in directory.iterdir()) == mine
        # One that dies later is removed at the first send that is refused.
        late = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        late.bind(str(directory / "2-late.sock"))
        (directory / "2-late.want").write_bytes(b"\x00\x01" + bytes(4094))  # wants account 1
        relay._listed_at = -10.0  # forget the listing, as a second later
        relay.send([change(1, 1)])
        assert late.recv(65536)
        late.close()
        relay.send([change(1, 2)])  # refused: its socket and its .want go
        assert sorted(p.name for p in directory.iterdir()) == mine
    finally:
        relay.close()


def _fill_until_lost(relay: PeerRelay, peer: str) -> int:
    """Send changes to ``peer``, which reads nothing, until its queue is full; how many."""
    relay._listed_at = -10.0  # forget the listing: the peer was bound after the relay
    n = 0
    while peer not in relay._lost:
        relay.send([change(1, n)])
        relay.flush()  # at once, even with a loop running
        n += 1
        assert n < 100_000
    return n


def test_a_full_peer_gets_a_resync_marker(tmp_path: Path) -> None:
    directory = tmp_path / "feed"
    relay = PeerRelay(directory, LocalChangeFeed())
    slow = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    slow.bind(str(directory / "1-slow.sock"))
    try:
        n = _fill_until_lost(relay, "1-slow.sock")
        received = []
        slow.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            while True:
                received += feed_module.unpack(slow.recv(65536))
        assert len(received) < n  # some were lost...
        relay.send([change(1, 999)])
        after = feed_module.unpack(slow.recv(65536)) + feed_module.unpack(slow.recv(65536))
        # ...so the next datagram is preceded by a resync: nothing is lost silently.
        assert [c.kind for c in after] == ["resync", "append"]
        assert "1-slow.sock" not in relay._lost
    finally:
        slow.close()
        relay.close()


def test_resync_marker_resyncs_every_subscriber(tmp_path: Path) -> None:
    async def go() -> list[Change]:
        pair = _Pair(tmp_path / "feed")
        try:
            a, b = pair.feeds[1].subscribe(1), pair.feeds[1].subscribe(2)
            pair.relays[0].send([Change(0, 0, 0, "resync", ())])
            return [await asyncio.wait_for(anext(s), 10) for s in (a, b)]
        finally:
            pair.close()

    got = asyncio.run(go())
    assert [(c.account_id, c.kind) for c in got] == [(1, "resync"), (2, "resync")]


def test_relay_is_inert_in_a_forked_child(tmp_path: Path) -> None:
    relay = PeerRelay(tmp_path / "feed", LocalChangeFeed())
    try:
        relay._pid = -1  # as if this process were a fork of the one that made it
        relay.send([change(1, 1)])
        assert relay._pending == []
    finally:
        relay._pid = os.getpid()
        relay.close()


def test_a_full_peer_is_told_to_resync_without_waiting_for_the_next_change(
    tmp_path: Path,
) -> None:
    async def go() -> list[Change]:
        directory = tmp_path / "feed"
        relay = PeerRelay(directory, LocalChangeFeed())
        slow = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        slow.bind(str(directory / "1-slow.sock"))
        try:
            _fill_until_lost(relay, "1-slow.sock")
            slow.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                while True:
                    slow.recv(65536)  # the slow process catches up...
            slow.setblocking(True)
            # ...and, with no new change sent, is told within a retry interval.
            data = await asyncio.wait_for(asyncio.to_thread(slow.recv, 65536), 10)
            return feed_module.unpack(data)
        finally:
            slow.close()
            relay.close()

    assert [c.kind for c in asyncio.run(go())] == ["resync"]


def test_a_close_on_another_thread_waits_for_a_flush_in_progress(tmp_path: Path) -> None:
    """The store closes its relay on a thread while a flush may be running on the loop:
    the close waits for the flush, so the changes it took still go out."""
    directory = tmp_path / "feed"
    directory.mkdir()
    peer = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    peer.bind(str(directory / "1-peer.sock"))
    peer.settimeout(10)
    relay = PeerRelay(directory, LocalChangeFeed())
    assert peer.recv(65536) == b""  # its check for dead peers at start
    listing = relay._peer_list
    closer = threading.Thread(target=relay.close)

    def list_while_closing() -> list[str]:
        # The flush has taken the changes: now the close comes, from another thread.
        closer.start()
        closer.join(timeout=0.5)  # it must wait for this flush, not close the socket
        return listing()

    relay._peer_list = list_while_closing  # type: ignore[method-assign]
    try:
        relay.send([change(1, 7)])  # no loop running: flushes at once
        assert [c.modseq for c in feed_module.unpack(peer.recv(65536))] == [7]
        closer.join(timeout=10)
        assert not closer.is_alive()
    finally:
        peer.close()


# -- a process hears only the accounts it has subscribers for ---------------------------------


def _wants(relay: PeerRelay, account: int) -> int:
    data = (relay._dir / relay.name.removesuffix(".sock")).with_suffix(".want").read_bytes()
    return data[account % 4096]


def test_the_want_file_follows_the_subscribers(tmp_path: Path) -> None:
    feed = LocalChangeFeed()
    relay = PeerRelay(tmp_path / "feed", feed)
    try:
        assert _wants(relay, 1) == 0
        first, second = feed.subscribe(1), feed.subscribe(1)
        assert _wants(relay, 1) == 1  # set before subscribe returned
        first.close()
        assert _wants(relay, 1) == 1  # one is left
        same_slot = feed.subscribe(1 + 4096)
        second.close()
        assert _wants(relay, 1) == 1  # account 4097 shares the byte
        same_slot.close()
        assert _wants(relay, 1) == 0
    finally:
        relay.close()
    assert list((tmp_path / "feed").iterdir()) == []


def test_a_relay_made_after_the_subscribers_marks_them(tmp_path: Path) -> None:
    feed = LocalChangeFeed()
    subscription = feed.subscribe(7)
    relay = PeerRelay(tmp_path / "feed", feed)
    try:
        assert _wants(relay, 7) == 1
    finally:
        subscription.close()
        relay.close()


def test_a_process_hears_only_the_accounts_it_has_subscribers_for(tmp_path: Path) -> None:
    async def go() -> None:
        pair = _Pair(tmp_path / "feed")
        sender = pair.relays[0]
        try:
            sender.send([change(1, 1)])
            sender.flush()
            assert sender.sent == 0  # nobody there listens: nothing sent
            theirs = pair.feeds[1].subscribe(2)
            sender.send([change(1, 2), change(2, 3)])
            got = await asyncio.wait_for(anext(theirs), 10)
            assert (got.account_id, got.modseq) == (2, 3)
            assert sender.sent == 1
            await asyncio.sleep(0.05)
            assert theirs._sink.queue.empty()  # account 1's change did not go there
            theirs.close()
            sender.send([change(2, 4)])
            sender.flush()
            assert sender.sent == 1  # its last subscriber went: nothing more sent
        finally:
            pair.close()

    asyncio.run(go())


def test_a_peer_owed_a_resync_is_let_off_once_nobody_there_listens(tmp_path: Path) -> None:
    directory = tmp_path / "feed"
    relay = PeerRelay(directory, LocalChangeFeed())
    slow = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    slow.bind(str(directory / "1-slow.sock"))
    want = directory / "1-slow.want"
    want.write_bytes(b"\x00\x01" + bytes(4094))  # account 1 has a subscriber there
    try:
        _fill_until_lost(relay, "1-slow.sock")
        slow.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            while True:
                slow.recv(65536)  # room again...
        want.write_bytes(bytes(4096))  # ...but its subscriber has gone
        relay._retry()
        assert "1-slow.sock" not in relay._lost
        with pytest.raises(BlockingIOError):
            slow.recv(65536)  # no resync marker was sent
    finally:
        slow.close()
        relay.close()


def test_a_relay_whose_want_file_cannot_be_written_leaves_nothing_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    directory = tmp_path / "feed"
    directory.mkdir()
    fds = set(os.listdir("/proc/self/fd"))

    def full_disk(fd: int, data: bytes, offset: int) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    with monkeypatch.context() as patch:
        patch.setattr(os, "pwrite", full_disk)
        with pytest.raises(OSError):
            PeerRelay(directory, LocalChangeFeed())
    assert list(directory.iterdir()) == []  # neither its socket nor its .want
    assert set(os.listdir("/proc/self/fd")) == fds
    PeerRelay(directory, LocalChangeFeed()).close()  # the next one is made as usual


def test_a_subscribe_whose_byte_cannot_be_set_fails_and_adds_nothing(tmp_path: Path) -> None:
    feed = LocalChangeFeed()
    relay = PeerRelay(tmp_path / "feed", feed)
    writable = relay._want_fd
    want = (relay._dir / relay.name.removesuffix(".sock")).with_suffix(".want")
    relay._want_fd = os.open(want, os.O_RDONLY)  # a write there fails, as on a bad disk
    try:
        with pytest.raises(OSError):
            feed.subscribe(3)
        assert feed._subscribers == {} and relay._slot_counts == {}
    finally:
        os.close(relay._want_fd)
        relay._want_fd = writable
    try:
        subscription = feed.subscribe(3)  # the next one works
        assert _wants(relay, 3) == 1
        subscription.close()
    finally:
        relay.close()
