"""Connection caps that hold across worker processes.

Each worker owns one row of a shared-memory table (created before the workers are
forked): slot 0 counts its open connections, slots 1..N count them per client-address
hash, and the last slot the connections it has accepted whose session has not begun
(``accepting``; they count towards which worker is busier, not towards the caps). A
worker writes only its own row (one event loop, so no lock); a check sums the rows of
every worker. Two workers admitting at the same instant can overshoot a cap by
one; a hash collision only makes a per-address cap stricter, never looser. When a
worker dies, the supervisor clears its row.
"""

from __future__ import annotations

import mmap
import zlib

_SLOTS = 4096
_INT = 4


class ConnectionLimiter:
    def __init__(self, workers: int, max_total: int, max_per_ip: int) -> None:
        self.workers = workers
        self.max_total = max_total
        self.max_per_ip = max_per_ip
        self._row_len = _SLOTS + 2
        self._accepting = _SLOTS + 1
        self._mem = mmap.mmap(-1, workers * self._row_len * _INT)  # MAP_SHARED: survives fork
        self._table = memoryview(self._mem).cast("i")
        self.worker = 0  # which row this process writes; set after the fork

    def _slot(self, ip: str) -> int:
        return 1 + zlib.crc32(ip.encode()) % _SLOTS

    def _sum(self, slot: int) -> int:
        t, n = self._table, self._row_len
        return sum(t[w * n + slot] for w in range(self.workers))

    def acquire(self, ip: str) -> bool:
        """Count one more connection from ``ip``, unless a cap forbids it."""
        slot = self._slot(ip)
        if self._sum(0) >= self.max_total or self._sum(slot) >= self.max_per_ip:
            return False
        base = self.worker * self._row_len
        self._table[base] += 1
        self._table[base + slot] += 1
        return True

    def release(self, ip: str) -> None:
        base = self.worker * self._row_len
        self._table[base] -= 1
        self._table[base + self._slot(ip)] -= 1

    def clear(self, worker: int) -> None:
        """Forget a dead worker's connections."""
        base = worker * self._row_len
        for i in range(self._row_len):
            self._table[base + i] = 0

    def accepting(self, change: int) -> None:
        """This worker accepted a connection (+1) whose session began or failed (-1)."""
        self._table[self.worker * self._row_len + self._accepting] += change

    def busier(self) -> bool:
        """Has this worker more connections (open or being accepted) than some other
        worker? (A worker that died counts as none until its successor runs: the caller
        bounds how long it defers to it.)"""
        t, n, a = self._table, self._row_len, self._accepting
        load = [t[w * n] + t[w * n + a] for w in range(self.workers)]
        mine = load[self.worker]
        return any(other < mine for other in load)

    @property
    def active(self) -> int:
        return self._sum(0)
