"""The SMTP bench: smtp-source against smtp-sink, Postfix and mailwright, case by case.

For each (sessions, recipients) case every server gets a fresh instance, a short
warm-up, then one timed smtp-source run of N messages. Measured per run:

* accepted msgs/s   N / smtp-source wall time (every message got its 250)
* end-to-end msgs/s N / time until all N x recipients deliveries are in the mailboxes
* CPU s / 1k msgs   server process tree CPU (user+sys, reaped children included)
* peak RSS / PSS    summed over the server's process tree, sampled every 0.2 s
"""

from __future__ import annotations

import os
import resource
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from harness import procstat

SMTP_SOURCE = "/usr/sbin/smtp-source"
DOMAIN = "example.test"
SENDER = f"bench-sender@{DOMAIN}"
# smtp-source -r R sends to "user@", "2user@", ..., "Ruser@": the -t address first,
# then a number prepended for each further recipient. Both servers know all five.
BASE_LOCAL = "user"
MAX_RECIPIENTS = 5


def recipients(count: int = MAX_RECIPIENTS) -> list[str]:
    return [f"{BASE_LOCAL}@{DOMAIN}"] + [f"{i}{BASE_LOCAL}@{DOMAIN}" for i in range(2, count + 1)]


class Server(Protocol):
    name: str
    stores: bool
    port: int

    @property
    def root_pid(self) -> int: ...

    def stored_count(self) -> int: ...

    def log_tail(self, lines: int = 30) -> str: ...

    def describe(self) -> dict[str, object]: ...

    def alive(self) -> bool: ...

    def __enter__(self) -> Any: ...

    def __exit__(self, *exc: object) -> None: ...


@dataclass(frozen=True, slots=True)
class Case:
    sessions: int
    recipients: int

    @property
    def label(self) -> str:
        return f"{self.sessions} sess x {self.recipients} rcpt"


@dataclass(frozen=True, slots=True)
class Settings:
    messages: int
    size: int
    reuse: bool  # smtp-source -d: several messages per connection
    timeout: float  # per smtp-source run
    drain_timeout: float  # after smtp-source ends, for deliveries to land
    warmup: int


def source_argv(port: int, case: Case, messages: int, s: Settings) -> list[str]:
    argv = [
        SMTP_SOURCE,
        "-s",
        str(case.sessions),
        "-m",
        str(messages),
        "-l",
        str(s.size),
        "-r",
        str(case.recipients),
        "-M",
        "client.bench.test",
        "-f",
        SENDER,
        "-t",
        f"{BASE_LOCAL}@{DOMAIN}",
    ]
    if s.reuse:
        argv.append("-d")
    argv.append(f"127.0.0.1:{port}")
    return argv


def _children_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def _wait_stored(server: Server, target: int, timeout: float, interval: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.stored_count() >= target:
            return True
        if not server.alive():
            return False
        time.sleep(interval)
    return server.stored_count() >= target


def run_one(server: Server, case: Case, s: Settings) -> dict[str, Any]:
    """One timed smtp-source run against a started server."""
    result: dict[str, Any] = {
        "server": server.name,
        "sessions": case.sessions,
        "recipients": case.recipients,
        "messages": s.messages,
        "size": s.size,
        "reuse_connections": s.reuse,
    }
    poll = 0.05 if server.name == "mailwright" else 0.25
    # Warm-up: start worker processes, fill caches, run any lazy imports.
    if s.warmup:
        base = server.stored_count()
        warm = subprocess.run(
            source_argv(server.port, case, s.warmup, s),
            capture_output=True,
            text=True,
            timeout=max(60.0, s.timeout / 4),
            check=False,
        )
        if warm.returncode != 0:
            result["error"] = f"warm-up smtp-source failed: {warm.stderr.strip()}"
            return result
        if server.stores and not _wait_stored(
            server, base + s.warmup * case.recipients, s.drain_timeout, poll
        ):
            result["error"] = "warm-up messages were not all stored"
            return result

    base_count = server.stored_count()
    target = base_count + s.messages * case.recipients
    root = server.root_pid
    cpu0 = procstat.tree_cpu_seconds(root)
    mem_idle = procstat.tree_memory(root)
    client0 = _children_cpu()
    argv = source_argv(server.port, case, s.messages, s)
    result["command"] = " ".join(argv)

    with procstat.PeakSampler(root) as sampler:
        t0_ns = time.time_ns()
        t0 = time.monotonic()
        proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        try:
            out, err = proc.communicate(timeout=s.timeout)
        except subprocess.TimeoutExpired:
            proc.kill()  # our own child, by PID
            out, err = proc.communicate(timeout=30)
            result["error"] = f"smtp-source did not finish within {s.timeout:.0f}s"
        t_accept = time.monotonic() - t0
        client_cpu = _children_cpu() - client0
        if "error" not in result and proc.returncode != 0:
            result["error"] = (
                f"smtp-source exited {proc.returncode}: {(err or out).decode(errors='replace').strip()}"
            )
        t_e2e: float | None = None
        if server.stores and "error" not in result:
            if _wait_stored(server, target, s.drain_timeout, poll):
                t_e2e = time.monotonic() - t0
                last_ns = getattr(server, "last_store_ns", lambda: None)()
                if last_ns is not None and last_ns > t0_ns:
                    # Exact moment of the last delivery, not the moment we polled.
                    t_e2e = min(t_e2e, (last_ns - t0_ns) / 1e9)
                t_e2e = max(t_e2e, t_accept) if t_e2e is not None else None
            else:
                stored = server.stored_count() - base_count
                result["error"] = (
                    f"only {stored} of {s.messages * case.recipients} deliveries stored "
                    f"within {s.drain_timeout:.0f}s after smtp-source ended"
                )
        cpu1 = procstat.tree_cpu_seconds(root)

    if "error" in result:
        result["log_tail"] = server.log_tail()
    result.update(
        accept_seconds=round(t_accept, 3),
        e2e_seconds=round(t_e2e, 3) if t_e2e is not None else None,
        accepted_per_s=round(s.messages / t_accept, 1) if "error" not in result else None,
        e2e_per_s=round(s.messages / t_e2e, 1) if t_e2e else None,
        server_cpu_seconds=round(cpu1 - cpu0, 3),
        cpu_per_1k=round((cpu1 - cpu0) / s.messages * 1000, 3),
        client_cpu_seconds=round(client_cpu, 3),
        idle_rss_mb=round(mem_idle.rss / 2**20, 1),
        idle_pss_mb=round(mem_idle.pss / 2**20, 1),
        peak_rss_mb=round(sampler.peak_rss / 2**20, 1),
        peak_pss_mb=round(sampler.peak_pss / 2**20, 1),
        peak_processes=sampler.peak_processes,
        memory_samples=sampler.samples,
    )
    return result


def run_case(
    name: str,
    factory: Callable[[], Server],
    case: Case,
    s: Settings,
    log: Callable[[str], None],
) -> dict[str, Any]:
    t = time.monotonic()
    try:
        with factory() as server:
            log(f"  {case.label}: {server.name} on 127.0.0.1:{server.port} ...")
            result = run_one(server, case, s)
    except Exception as e:  # one broken server must not lose the other results
        result = {
            "server": name,
            "sessions": case.sessions,
            "recipients": case.recipients,
            "messages": s.messages,
            "error": f"{type(e).__name__}: {e}",
        }
    if "error" in result:
        log(f"    FAILED: {result['error']}")
    else:
        e2e = result["e2e_per_s"]
        log(
            f"    accepted {result['accepted_per_s']:.0f}/s"
            + (f", end-to-end {e2e:.0f}/s" if e2e else "")
            + f", CPU {result['cpu_per_1k']:.2f} s/1k, peak RSS {result['peak_rss_mb']:.0f} MB"
            + f" ({time.monotonic() - t:.0f}s)"
        )
    return result


# -- idle connections ----------------------------------------------------------------
def idle_connections(server: Server, count: int, timeout: float = 120.0) -> dict[str, Any]:
    """Open `count` connections that read the greeting and sit idle; RSS before/after."""
    import selectors

    root = server.root_pid
    time.sleep(0.5)
    before = procstat.tree_memory(root)
    socks: list[socket.socket] = []
    sel = selectors.DefaultSelector()
    greeted = 0
    deadline = time.monotonic() + timeout
    result: dict[str, Any] = {"server": server.name, "connections": count}
    try:
        for _ in range(count):
            if time.monotonic() > deadline:
                break
            sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
            sock.setblocking(False)
            socks.append(sock)
            sel.register(sock, selectors.EVENT_READ)
        pending = len(socks)
        while pending and time.monotonic() < deadline:
            for key, _ in sel.select(timeout=1.0):
                sock = key.fileobj
                assert isinstance(sock, socket.socket)
                data = sock.recv(4096)
                if data.startswith(b"220"):
                    greeted += 1
                sel.unregister(sock)
                pending -= 1
        time.sleep(1.0)  # let the server settle after the last accept
        after = procstat.tree_memory(root)
        result.update(
            greeted=greeted,
            rss_before_mb=round(before.rss / 2**20, 1),
            rss_after_mb=round(after.rss / 2**20, 1),
            extra_rss_mb=round((after.rss - before.rss) / 2**20, 1),
            pss_before_mb=round(before.pss / 2**20, 1),
            pss_after_mb=round(after.pss / 2**20, 1),
            extra_pss_mb=round((after.pss - before.pss) / 2**20, 1),
            extra_rss_kb_per_conn=round((after.rss - before.rss) / 1024 / max(greeted, 1), 1),
            processes_after=after.processes,
        )
        if greeted < count:
            result["error"] = f"only {greeted} of {count} connections got a 220 greeting"
    finally:
        sel.close()
        for sock in socks:
            sock.close()
    return result


def raise_fd_limit(want: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < want:
        new = want if hard == resource.RLIM_INFINITY else min(want, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))


def fs_type(path: str) -> str:
    """Filesystem type holding `path` (fsync cost depends on it)."""
    best = ("", "?")
    real = os.path.realpath(path)
    try:
        with open("/proc/mounts") as f:
            for line in f:
                parts = line.split()
                if (
                    len(parts) >= 3
                    and (real == parts[1] or real.startswith(parts[1].rstrip("/") + "/"))
                    and len(parts[1]) >= len(best[0])
                ):
                    best = (parts[1], parts[2])
    except OSError:
        pass
    return best[1]
