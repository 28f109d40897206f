"""The IMAP bench: N concurrent clients against Dovecot and mailwright, case by case.

For each client count every server gets a fresh instance with N users, each user's
INBOX seeded with the same 20 messages (corpus.py); one untimed warm-up session per
client (which also checks fetched bodies byte for byte against the corpus), then one
timed run per workload of the load client (imap_client.py, its own process):

* sessions     each client: connect, LOGIN, SELECT, a cycle of commands, LOGOUT; again
* persistent   each client logs in once, then runs the cycle (plus NOOP) over and over

Measured per run: ops/s (total and by command), p50/p99 latency by command, the
server's CPU seconds per 1,000 ops (its whole process tree, reaped children included)
and the client's, peak RSS/PSS of the server's tree. Then, on a fresh instance per
server, the idle-sessions test: memory before and after N sessions LOGIN, SELECT INBOX
and sit in IDLE.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import resource
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Protocol

from harness import corpus, procstat

CLIENT = Path(__file__).resolve().parent / "imap_client.py"
MAX_CLIENTS = 1000
WORKLOADS = ("sessions", "persistent")


def users(count: int) -> list[str]:
    return [f"imap{i}@{corpus.DOMAIN}" for i in range(1, count + 1)]


class ImapServer(Protocol):
    name: str
    label: str  # the row name in the table

    @property
    def imap_port(self) -> int: ...

    @property
    def root_pid(self) -> int: ...

    def seed(self, messages: list[bytes]) -> None: ...

    def log_tail(self, lines: int = 30) -> str: ...

    def describe(self) -> dict[str, object]: ...

    def alive(self) -> bool: ...

    def __enter__(self) -> Any: ...

    def __exit__(self, *exc: object) -> None: ...


@dataclass(frozen=True, slots=True)
class Settings:
    cycles: int  # cycles per timed run (a session each in the sessions workload), shared
    duration: float  # no new cycle starts after this many seconds
    grace: float  # then cycles in flight get this long before they count as failed
    password: str
    corpus_dir: Path
    workloads: tuple[str, ...] = WORKLOADS


def corpus_dir(workdir: str) -> Path:
    d = Path(workdir) / "imap-corpus"
    corpus.write(d, corpus.messages())
    os.chmod(d, 0o755)
    return d


def _own_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


class ClientProcess:
    """The load client as a child process, spoken to line by line (bounded waits)."""

    def __init__(self, job: dict[str, Any]) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(CLIENT)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            bufsize=1,
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.stderr: list[str] = []
        assert self.proc.stdout is not None and self.proc.stderr is not None
        self._threads = [
            threading.Thread(target=self._pump, args=(self.proc.stdout, self.lines), daemon=True),
            threading.Thread(target=self._drain, args=(self.proc.stderr,), daemon=True),
        ]
        for t in self._threads:
            t.start()
        self.send(json.dumps(job))

    @staticmethod
    def _pump(stream: IO[str], q: queue.Queue[str | None]) -> None:
        for line in stream:
            q.put(line.rstrip("\n"))
        q.put(None)

    def _drain(self, stream: IO[str]) -> None:
        for line in stream:
            if len(self.stderr) < 200:
                self.stderr.append(line)

    def send(self, line: str) -> None:
        assert self.proc.stdin is not None
        with contextlib.suppress(BrokenPipeError):
            self.proc.stdin.write(line + "\n")
            self.proc.stdin.flush()

    def next(self, timeout: float) -> tuple[str, Any]:
        """("READY", phase), ("RESULT", dict) or ("EXIT", stderr tail); bounded."""
        try:
            line = self.lines.get(timeout=timeout)
        except queue.Empty:
            return "TIMEOUT", f"no word from the load client within {timeout:.0f}s"
        if line is None:
            self.proc.wait(timeout=30)
            return "EXIT", (
                f"the load client exited {self.proc.returncode}: "
                + "".join(self.stderr).strip()[-2000:]
            )
        kind, _, rest = line.partition(" ")
        if kind == "RESULT":
            self.proc.wait(timeout=30)
            return kind, json.loads(rest)
        return kind, rest

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()  # our own child, by PID
            self.proc.wait(timeout=30)
        for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()


def _job(port: int, names: list[str], mode: str, s: Settings, **extra: Any) -> dict[str, Any]:
    job = {
        "port": port,
        "users": names,
        "password": s.password,
        "mode": mode,
        "cycles": s.cycles,
        "duration": s.duration,
        "grace": s.grace,
        "expect_messages": corpus.MESSAGES,
        "corpus": str(s.corpus_dir),
        "check_content": False,
        "seed": "mwbench-imap",
    }
    job.update(extra)
    return job


def _problems(run: dict[str, Any]) -> str | None:
    if run.get("failed"):
        first = f" (first: {run['errors'][0]})" if run.get("errors") else ""
        return f"{run['failed']} clients failed{first}"
    return None


def run_load(server: ImapServer, job: dict[str, Any]) -> dict[str, Any]:
    """One run of the load client, with the server's CPU and memory over its timed part."""
    root = server.root_pid
    setup_limit = 180.0
    timed_limit = float(job["duration"]) + float(job["grace"]) + 60
    client = ClientProcess(job)
    try:
        kind, value = client.next(setup_limit)
        if kind != "READY":
            return {"error": _client_error(kind, value, "set-up")}
        mem_idle = procstat.tree_memory(root)
        cpu0 = procstat.tree_cpu_seconds(root)
        busy0 = procstat.machine_busy_seconds()
        own0 = _own_cpu()
        with procstat.PeakSampler(root) as sampler:
            client.send("go")
            kind, value = client.next(timed_limit)
            time.sleep(0.2)  # the last per-session processes exit and are reaped
            cpu1 = procstat.tree_cpu_seconds(root)
        busy = procstat.machine_busy_seconds() - busy0
        own = _own_cpu() - own0
        if kind != "READY":
            return {"error": _client_error(kind, value, "timed run")}
        client.send("go")
        kind, value = client.next(120)
        if kind != "RESULT":
            return {"error": _client_error(kind, value, "clean-up")}
        run: dict[str, Any] = value
    finally:
        client.close()
    server_cpu = cpu1 - cpu0
    client_cpu = float(run["client_cpu_seconds"])
    ops = run["ops"]
    run.update(
        server_cpu_seconds=round(server_cpu, 3),
        cpu_per_1k=round(server_cpu / ops * 1000, 3) if ops else None,
        client_cpu_per_1k=round(client_cpu / ops * 1000, 3) if ops else None,
        harness_cpu_seconds=round(own, 3),
        # Machine CPU used by none of server, client and harness: loopback work the
        # kernel charges to no process, and anything else running (noise).
        other_cpu_seconds=round(max(0.0, busy - server_cpu - client_cpu - own), 3),
        machine_cpus=len(os.sched_getaffinity(0)),
        idle_rss_mb=round(mem_idle.rss / 2**20, 1),
        idle_pss_mb=round(mem_idle.pss / 2**20, 1),
        peak_rss_mb=round(sampler.peak_rss / 2**20, 1),
        peak_pss_mb=round(sampler.peak_pss / 2**20, 1),
        peak_processes=sampler.peak_processes,
        memory_samples=sampler.samples,
    )
    problem = _problems(run)
    if problem:
        run["error"] = problem
    return run


def _client_error(kind: str, value: Any, phase: str) -> str:
    if kind == "RESULT":  # the client gave up early (its set-up failed)
        return f"{phase}: " + (_problems(value) or json.dumps(value)[:500])
    return f"{phase}: {value}"


def run_one(server: ImapServer, clients: int, s: Settings) -> list[dict[str, Any]]:
    """Seed, warm up and measure each workload against a started server."""
    names = users(clients)
    base: dict[str, Any] = {"server": server.name, "label": server.label, "clients": clients}
    t = time.monotonic()
    server.seed(corpus.messages())
    base["seed_seconds"] = round(time.monotonic() - t, 2)

    # Warm-up: one session per client; starts worker processes, builds Dovecot's
    # indexes, fills mailwright's login cache (one argon2id check per user), and
    # checks the fetched bodies against the corpus.
    warm_settings = _job(
        server.imap_port,
        names,
        "sessions",
        s,
        cycles=clients,
        cycles_per_client=1,
        duration=120,
        check_content=True,
    )
    warm = run_load(server, warm_settings)
    base["warmup"] = {
        k: warm.get(k) for k in ("sessions", "content_checked", "ops_per_s", "errors", "error")
    }
    if "error" in warm or warm.get("sessions") != clients:
        error = warm.get("error") or f"warm-up ran {warm.get('sessions')} of {clients} sessions"
        return [
            {**base, "workload": w, "error": f"warm-up: {error}", "log_tail": server.log_tail()}
            for w in s.workloads
        ]

    results = []
    for workload in s.workloads:
        run = run_load(server, _job(server.imap_port, names, workload, s))
        result = {**base, "workload": workload, **run}
        if "error" in result:
            result["log_tail"] = server.log_tail()
        results.append(result)
    return results


def run_case(
    name: str,
    label: str,
    factory: Callable[[], ImapServer],
    clients: int,
    s: Settings,
    log: Callable[[str], None],
) -> list[dict[str, Any]]:
    t = time.monotonic()
    try:
        with factory() as server:
            log(f"  {clients} clients: {label} on 127.0.0.1:{server.imap_port} ...")
            results = run_one(server, clients, s)
            describe = server.describe()
            for r in results:
                r["describe"] = describe
    except Exception as e:  # one broken server must not lose the other results
        results = [
            {
                "server": name,
                "label": label,
                "clients": clients,
                "workload": w,
                "error": f"{type(e).__name__}: {e}",
            }
            for w in s.workloads
        ]
    for r in results:
        if "ops_per_s" not in r:
            log(f"    {r['workload']}: FAILED: {r['error']}")
            continue
        log(
            f"    {r['workload']}: {r['ops_per_s']:,.0f} ops/s"
            f" ({r['cycles']:,} cycles, {r['stopped_by']} bound),"
            f" p50 {r['p50_ms']} ms, p99 {r['p99_ms']} ms,"
            f" CPU {r['cpu_per_1k']:.2f} s/1k ops (client {r['client_cpu_per_1k']:.2f}),"
            f" peak RSS {r['peak_rss_mb']:.0f} MB"
            + (f" FAILED: {r['error']}" if "error" in r else "")
        )
        other = r["other_cpu_seconds"] / max(r["wall_seconds"], 1e-9)
        if other > 0.1:
            log(f"      note: {other:.2f} CPUs busy outside server, client and harness")
    log(f"    ({time.monotonic() - t:.0f}s)")
    return results


# -- idle sessions ---------------------------------------------------------------------
def idle_sessions(
    server: ImapServer, names: list[str], count: int, s: Settings, concurrency: int = 20
) -> dict[str, Any]:
    """Memory of the server's tree before and after `count` sessions sit in IDLE."""
    root = server.root_pid
    result: dict[str, Any] = {"server": server.name, "label": server.label, "sessions": count}
    t = time.monotonic()
    server.seed(corpus.messages())
    result["seed_seconds"] = round(time.monotonic() - t, 2)
    # Warm-up: one idle session per user (logins cached, indexes built, code loaded).
    warm = _idle_round(server, names, len(names), s, concurrency, measure=False)
    if "error" in warm:
        result.update(error=f"warm-up: {warm['error']}", log_tail=server.log_tail())
        return result
    time.sleep(1.0)
    before = procstat.tree_memory(root)
    run = _idle_round(server, names, count, s, concurrency, measure=True)
    result.update({k: v for k, v in run.items() if k != "memory"})
    after = run.get("memory")
    if after is not None:
        idling = max(run.get("idling", 0), 1)
        result.update(
            users=len(names),
            rss_before_mb=round(before.rss / 2**20, 1),
            rss_after_mb=round(after.rss / 2**20, 1),
            extra_rss_mb=round((after.rss - before.rss) / 2**20, 1),
            pss_before_mb=round(before.pss / 2**20, 1),
            pss_after_mb=round(after.pss / 2**20, 1),
            extra_pss_mb=round((after.pss - before.pss) / 2**20, 1),
            extra_rss_kb_per_session=round((after.rss - before.rss) / 1024 / idling, 1),
            processes_before=before.processes,
            processes_after=after.processes,
        )
    if "error" in result:
        result["log_tail"] = server.log_tail()
    return result


def _idle_round(
    server: ImapServer,
    names: list[str],
    count: int,
    s: Settings,
    concurrency: int,
    measure: bool,
) -> dict[str, Any]:
    job = _job(
        server.imap_port,
        names,
        "idle",
        s,
        sessions=count,
        concurrency=concurrency,
        duration=max(120.0, count / 10),
    )
    client = ClientProcess(job)
    memory = None
    try:
        kind, value = client.next(float(job["duration"]) + 60)
        if kind != "READY":
            return {"error": _client_error(kind, value, "opening sessions")}
        if measure:
            time.sleep(1.0)  # let the server settle after the last IDLE
            memory = procstat.tree_memory(server.root_pid)
        client.send("go")
        kind, value = client.next(180)
        if kind != "RESULT":
            return {"error": _client_error(kind, value, "ending sessions")}
        run: dict[str, Any] = value
    finally:
        client.close()
    run["memory"] = memory
    if run["idling"] < count:
        first = f" (first: {run['errors'][0]})" if run.get("errors") else ""
        run["error"] = f"only {run['idling']} of {count} sessions reached IDLE{first}"
    elif run.get("end_failures"):
        run["error"] = f"{run['end_failures']} sessions failed DONE/LOGOUT: {run['errors'][:1]}"
    return run
