"""The shared connection caps (serve/limits.py)."""

from __future__ import annotations

import os

from mailwright.serve.limits import ConnectionLimiter


def test_caps_per_ip_and_in_all() -> None:
    lim = ConnectionLimiter(workers=1, max_total=3, max_per_ip=2)
    assert lim.acquire("192.0.2.1") and lim.acquire("192.0.2.1")
    assert not lim.acquire("192.0.2.1")  # per-address cap
    assert lim.acquire("192.0.2.2")
    assert not lim.acquire("192.0.2.3")  # total cap
    lim.release("192.0.2.1")
    assert lim.active == 2
    assert lim.acquire("192.0.2.3")


def test_rows_of_every_worker_count_and_a_dead_worker_is_forgotten() -> None:
    lim = ConnectionLimiter(workers=2, max_total=10, max_per_ip=2)
    lim.worker = 0
    assert lim.acquire("198.51.100.7")
    lim.worker = 1
    assert lim.acquire("198.51.100.7")
    assert not lim.acquire("198.51.100.7")  # the other worker's connection counts too
    lim.clear(0)
    assert lim.acquire("198.51.100.7")
    assert lim.active == 2


def test_the_table_is_shared_with_a_forked_child() -> None:
    lim = ConnectionLimiter(workers=2, max_total=10, max_per_ip=5)
    pid = os.fork()
    if pid == 0:  # the child is worker 1
        lim.worker = 1
        ok = lim.acquire("203.0.113.9") and lim.acquire("203.0.113.9")
        os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert lim.active == 2
