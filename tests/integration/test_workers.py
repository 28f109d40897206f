"""Worker processes share the listening sockets: long-lived sessions that connect together
are spread over the workers instead of all landing on the one that woke first."""

from __future__ import annotations

import contextlib
import os
import resource
import signal
import socket
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.integration.server import Server, worker_of, worker_pids

pytestmark = pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="needs Linux /proc")

SESSIONS = 10
WAIT = 10.0  # a bound for a hung test, never a pacing sleep


def _greeted(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    assert sock.recv(512).startswith(b"220 ")
    return sock


def _until_both_serve(server: Server) -> None:
    """Both workers are past their startup work (each has served a session)."""
    seen: set[int] = set()
    for _ in range(100):
        with _greeted(server.port) as sock:
            seen.add(worker_of(server, server.port, sock))
            sock.sendall(b"QUIT\r\n")
            assert sock.recv(512).startswith(b"221 ")
        if len(seen) == 2:
            return
        time.sleep(0.05)
    raise AssertionError(f"only {seen} served")


@pytest.mark.parametrize("listener", ["smtp", "imap"])
def test_sessions_that_connect_together_are_spread_over_the_workers(
    tmp_path: Path, listener: str
) -> None:
    server = Server.create(tmp_path / "mw", MAILWRIGHT_WORKERS="2").start()
    try:
        assert len(worker_pids(server)) == 2
        _until_both_serve(server)
        port = server.port if listener == "smtp" else server.imap_port
        # One connect after another, as fast as this client makes them.
        socks = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(SESSIONS)]
        for sock in socks:
            greeting = sock.recv(512)
            assert greeting.startswith(b"220 " if listener == "smtp" else b"* OK")
        spread = Counter(worker_of(server, port, sock) for sock in socks)
        assert len(spread) == 2, spread
        assert max(spread.values()) <= SESSIONS // 2 + 1, spread
        for sock in socks:
            sock.close()
        # The counts go back down as sessions end: the next ones are still served.
        for _ in range(4):
            with _greeted(server.port) as again:
                again.sendall(b"QUIT\r\n")
                assert again.recv(512).startswith(b"221 ")
    finally:
        server.close()


@pytest.mark.parametrize("pin", [True, False])
def test_each_worker_runs_on_a_cpu_of_its_own(tmp_path: Path, pin: bool) -> None:
    """``pin_workers`` (the default) keeps each worker, every thread of it, on one CPU of
    the set the server was started with, a different one each; off, they may use all."""
    cpus = frozenset(os.sched_getaffinity(0))
    if pin and len(cpus) < 2:
        pytest.skip("needs two CPUs")
    server = Server.create(
        tmp_path / "mw", MAILWRIGHT_WORKERS="2", MAILWRIGHT_PIN_WORKERS=str(pin).lower()
    ).start()
    try:
        _until_both_serve(server)  # their store threads have started by now
        assert server.proc is not None
        assert os.sched_getaffinity(server.proc.pid) == cpus  # the supervisor's unchanged
        per_worker = []
        for pid in worker_pids(server):
            threads = set()
            for tid in os.listdir(f"/proc/{pid}/task"):
                with contextlib.suppress(ProcessLookupError):  # a thread that ended meanwhile
                    threads.add(frozenset(os.sched_getaffinity(int(tid))))
            assert len(threads) == 1, threads  # every thread of a worker alike
            per_worker.append(threads.pop())
        assert len(per_worker) == 2
        if pin:
            assert all(len(s) == 1 and s <= cpus for s in per_worker), per_worker
            assert per_worker[0] != per_worker[1]
        else:
            assert per_worker == [cpus, cpus]
    finally:
        server.close()


def test_a_stopped_worker_keeps_no_client_waiting(tmp_path: Path) -> None:
    """With one worker stopped (SIGSTOP: it accepts nothing, and its count of connections
    cannot go down), the other soon has more connections and defers to it, but only for a
    bounded time: it serves every new client (each within the socket timeout)."""
    server = Server.create(tmp_path / "mw", MAILWRIGHT_WORKERS="2").start()
    try:
        held = [_greeted(server.port) for _ in range(4)]  # both workers have some now
        stopped = worker_of(server, server.port, held[0])
        os.kill(stopped, signal.SIGSTOP)
        try:
            for sock in held:
                if worker_of(server, server.port, sock) == stopped:
                    sock.close()  # its count stays until it runs again: it looks busy
            extra = []
            for _ in range(6):
                sock = _greeted(server.port)
                assert worker_of(server, server.port, sock) != stopped
                extra.append(sock)
            for sock in extra:
                sock.close()
        finally:
            os.kill(stopped, signal.SIGCONT)
        for sock in held:
            sock.close()
    finally:
        server.close()


def test_out_of_descriptors_pauses_accepting_and_loses_no_client(tmp_path: Path) -> None:
    """accept() failing with EMFILE: the server logs it, waits, and serves the client once
    a descriptor is free again (it neither spins nor drops the listening socket)."""
    server = Server.create(tmp_path / "mw", MAILWRIGHT_WORKERS="1").start()
    try:
        assert server.proc is not None
        pid = server.proc.pid
        before = _sockets(pid)
        with _greeted(server.port) as first:  # the server is up and serving
            first.sendall(b"QUIT\r\n")
            assert first.recv(512).startswith(b"221 ")
            assert first.recv(512) == b""  # and has closed its end
        deadline = time.monotonic() + WAIT
        while _sockets(pid) != before:  # the loop releases it a turn or two later
            assert time.monotonic() < deadline, "the closed connection's descriptor stays"
            time.sleep(0.01)
        limits = resource.prlimit(pid, resource.RLIMIT_NOFILE)
        # A new descriptor takes the lowest free number: a limit at that number refuses it.
        in_use = _descriptors(pid)
        lowest_free = min(set(range(len(in_use) + 1)) - in_use)
        resource.prlimit(pid, resource.RLIMIT_NOFILE, (lowest_free, limits[1]))
        try:
            waiting = socket.create_connection(("127.0.0.1", server.port), timeout=10)
            waiting.settimeout(0.5)
            with pytest.raises(TimeoutError):
                waiting.recv(512)  # queued in the kernel: no descriptor to accept it
        finally:
            resource.prlimit(pid, resource.RLIMIT_NOFILE, limits)
        waiting.settimeout(10)
        assert waiting.recv(512).startswith(b"220 ")
        waiting.close()
        assert "accept.failed" in server.log()
    finally:
        server.close()


def _descriptors(pid: int) -> set[int]:
    return {int(p.name) for p in Path(f"/proc/{pid}/fd").iterdir()}


def _sockets(pid: int) -> int:
    """How many of the process's descriptors are sockets."""
    count = 0
    for fd in _descriptors(pid):
        with contextlib.suppress(OSError):  # closed meanwhile
            count += os.readlink(f"/proc/{pid}/fd/{fd}").startswith("socket:")
    return count
