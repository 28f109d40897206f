"""CPU time and memory of a process tree, read straight from /proc (no dependency).

CPU accounting: a process's ``cutime``/``cstime`` hold the CPU of the children it has
reaped, so ``utime+stime+cutime+cstime`` summed over a root and its *live* descendants
is monotonic across child exits (Postfix's smtpd/cleanup/virtual processes come and go
and are reaped by master). Take it before and after a run and subtract.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass

CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


def _children(pid: int) -> list[int]:
    kids: list[int] = []
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return kids
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                kids.extend(int(x) for x in f.read().split())
        except OSError:
            continue
    return kids


def tree(root: int) -> list[int]:
    """The root and all its live descendants (bounded walk)."""
    seen: list[int] = []
    todo = [root]
    while todo and len(seen) < 100_000:
        pid = todo.pop()
        if pid in seen:
            continue
        seen.append(pid)
        todo.extend(_children(pid))
    return seen


def _stat_fields(pid: int) -> list[str] | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            data = f.read()
    except OSError:
        return None
    # comm may contain spaces and parentheses: fields start after the last ')'.
    return data[data.rindex(")") + 2 :].split()


def cpu_seconds(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        fields = _stat_fields(pid)
        if fields is None:
            continue
        # After "pid (comm) ": state=0 ... utime=11 stime=12 cutime=13 cstime=14.
        total += sum(int(fields[i]) for i in (11, 12, 13, 14))
    return total / CLK_TCK


def tree_cpu_seconds(root: int) -> float:
    return cpu_seconds(tree(root))


def machine_busy_seconds() -> float:
    """CPU seconds the whole machine spent busy since boot (all CPUs, from /proc/stat):
    the difference over a run, less the server's and the client's, is everything
    else that ran meanwhile — noise the results should mention."""
    try:
        with open("/proc/stat") as f:
            fields = f.readline().split()
    except OSError:
        return 0.0
    # cpu user nice system idle iowait irq softirq steal ...: busy = all but idle+iowait.
    values = [int(x) for x in fields[1:9]]
    return (sum(values) - values[3] - values[4]) / CLK_TCK


def rss_bytes(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/statm") as f:
            return int(f.read().split()[1]) * PAGE_SIZE
    except (OSError, IndexError, ValueError):
        return 0


def pss_bytes(pid: int) -> int:
    """Proportional set size: shared pages divided among their sharers (fair for trees)."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) * 1024
    except (OSError, IndexError, ValueError):
        pass
    return 0


@dataclass
class MemSample:
    rss: int
    pss: int
    processes: int


def tree_memory(root: int) -> MemSample:
    pids = tree(root)
    return MemSample(
        rss=sum(rss_bytes(p) for p in pids),
        pss=sum(pss_bytes(p) for p in pids),
        processes=len(pids),
    )


class PeakSampler:
    """Samples a process tree's summed RSS/PSS in a thread; keeps the peaks."""

    def __init__(self, root: int, interval: float = 0.2) -> None:
        self.root = root
        self.interval = interval
        self.peak_rss = 0
        self.peak_pss = 0
        self.peak_processes = 0
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="peak-sampler", daemon=True)

    def __enter__(self) -> PeakSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        self._sample()

    def _sample(self) -> None:
        m = tree_memory(self.root)
        self.peak_rss = max(self.peak_rss, m.rss)
        self.peak_pss = max(self.peak_pss, m.pss)
        self.peak_processes = max(self.peak_processes, m.processes)
        self.samples += 1

    def _run(self) -> None:
        # Bounded: the owner always stops us; the deadline is a backstop (4 hours).
        deadline = time.monotonic() + 4 * 3600
        while not self._stop.is_set() and time.monotonic() < deadline:
            self._sample()
            self._stop.wait(self.interval)
