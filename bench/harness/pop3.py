"""The POP3 bench: N concurrent clients downloading the same mailbox from Dovecot and
mailwright, case by case.

For each client count every server gets a fresh instance with N users, each user's
INBOX seeded with the same 20 messages (corpus.py); one untimed warm-up session per
client (which also checks every retrieved message byte for byte against the corpus),
then one timed run of the load client (pop3_client.py, its own process). Measured:

* sessions/s, messages/s, MB/s   completed work / the client's wall time
* CPU s / 1k msgs                server process tree CPU (user+sys, reaped children
                                 included), and the load client's own CPU
* login ms                       USER sent → PASS answered, median
* peak RSS / PSS                 summed over the server's process tree, every 0.2 s
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from harness import corpus, procstat

CLIENT = Path(__file__).resolve().parent / "pop3_client.py"
MAX_CLIENTS = 1000


def users(count: int) -> list[str]:
    return [f"pop{i}@{corpus.DOMAIN}" for i in range(1, count + 1)]


class Pop3Server(Protocol):
    name: str
    label: str  # the row name in the table

    @property
    def pop3_port(self) -> int: ...

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
    sessions: int  # timed sessions per run, shared by the clients
    duration: float  # no new session starts after this many seconds
    grace: float  # then sessions in flight get this long before they count as failed
    password: str
    corpus_dir: Path


def _children_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def _own_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def run_client(
    port: int,
    names: list[str],
    sessions: int,
    s: Settings,
    check_content: bool,
    duration: float | None = None,
) -> dict[str, Any]:
    """One run of the load client; its JSON result (``error`` added on failure)."""
    job = {
        "port": port,
        "users": names,
        "password": s.password,
        "sessions": sessions,
        "duration": s.duration if duration is None else duration,
        "grace": s.grace,
        "expect_messages": corpus.MESSAGES,
        "corpus": str(s.corpus_dir),
        "check_content": check_content,
    }
    limit = float(job["duration"]) + s.grace + 60
    proc = subprocess.Popen(
        [sys.executable, str(CLIENT)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        out, err = proc.communicate(json.dumps(job), timeout=limit)
    except subprocess.TimeoutExpired:
        proc.kill()  # our own child, by PID
        proc.communicate(timeout=30)
        return {"error": f"the load client did not finish within {limit:.0f}s"}
    if proc.returncode != 0:
        return {"error": f"the load client exited {proc.returncode}: {err.strip()[-2000:]}"}
    result: dict[str, Any] = json.loads(out)
    problems = []
    if result["failed_sessions"]:
        problems.append(f"{result['failed_sessions']} sessions failed")
    if result["size_mismatches"]:
        problems.append(f"{result['size_mismatches']} RETR sizes differ from LIST")
    if result["content_mismatches"]:
        problems.append(f"{result['content_mismatches']} messages differ from the corpus")
    if problems:
        result["error"] = "; ".join(problems) + (
            f" (first: {result['errors'][0]})" if result["errors"] else ""
        )
    return result


def run_one(server: Pop3Server, clients: int, s: Settings) -> dict[str, Any]:
    """Seed, warm up and measure one timed run against a started server."""
    names = users(clients)
    result: dict[str, Any] = {"server": server.name, "label": server.label, "clients": clients}
    t = time.monotonic()
    server.seed(corpus.messages())
    result["seed_seconds"] = round(time.monotonic() - t, 2)

    # Warm-up: one session per client; starts worker processes, builds Dovecot's
    # indexes and UID lists, sets \Seen once, and checks every message's bytes.
    warm = run_client(server.pop3_port, names, clients, s, check_content=True, duration=120)
    result["warmup"] = {
        k: warm.get(k) for k in ("sessions", "content_checked", "login_ms_median", "errors")
    }
    if "error" in warm:
        result["error"] = f"warm-up: {warm['error']}"
        result["log_tail"] = server.log_tail()
        return result
    if warm["content_checked"] != clients * corpus.MESSAGES:
        result["error"] = f"warm-up checked {warm['content_checked']} messages only"
        return result

    root = server.root_pid
    cpu0 = procstat.tree_cpu_seconds(root)
    mem_idle = procstat.tree_memory(root)
    client0 = _children_cpu()
    busy0 = procstat.machine_busy_seconds()
    own0 = _own_cpu()
    with procstat.PeakSampler(root) as sampler:
        run = run_client(server.pop3_port, names, s.sessions, s, check_content=False)
        time.sleep(0.2)  # the last per-session processes exit and are reaped
        cpu1 = procstat.tree_cpu_seconds(root)
    busy = procstat.machine_busy_seconds() - busy0
    own = _own_cpu() - own0
    client_cpu = _children_cpu() - client0
    if "error" in run:
        result["error"] = run["error"]
        result["log_tail"] = server.log_tail()
    if "wall_seconds" not in run:
        return result
    wall = run["wall_seconds"]
    msgs = run["messages"]
    result.update(
        sessions=run["sessions"],
        sessions_requested=s.sessions,
        stopped_by=run["stopped_by"],
        messages=msgs,
        message_bytes=run["message_bytes"],
        bytes_per_message=round(run["message_bytes"] / msgs) if msgs else None,
        wall_seconds=wall,
        sessions_per_s=round(run["sessions"] / wall, 1) if wall else None,
        messages_per_s=round(msgs / wall, 1) if wall else None,
        mb_per_s=round(run["message_bytes"] / wall / 1e6, 2) if wall else None,
        server_cpu_seconds=round(cpu1 - cpu0, 3),
        cpu_per_1k=round((cpu1 - cpu0) / msgs * 1000, 3) if msgs else None,
        client_cpu_seconds=round(client_cpu, 3),
        client_cpu_per_1k=round(client_cpu / msgs * 1000, 3) if msgs else None,
        harness_cpu_seconds=round(own, 3),  # this process: memory sampling mostly
        # Machine CPU during the run used by none of the above: the kernel's loopback
        # network work (softirq, charged to no process) and anything else running —
        # a large value next to a quiet machine's means a noisy result.
        other_cpu_seconds=round(max(0.0, busy - (cpu1 - cpu0) - client_cpu - own), 3),
        machine_cpus=len(os.sched_getaffinity(0)),
        login_ms_median=run["login_ms_median"],
        login_ms_p95=run["login_ms_p95"],
        session_ms_median=run["session_ms_median"],
        session_ms_p95=run["session_ms_p95"],
        idle_rss_mb=round(mem_idle.rss / 2**20, 1),
        idle_pss_mb=round(mem_idle.pss / 2**20, 1),
        peak_rss_mb=round(sampler.peak_rss / 2**20, 1),
        peak_pss_mb=round(sampler.peak_pss / 2**20, 1),
        peak_processes=sampler.peak_processes,
        memory_samples=sampler.samples,
        event_loop=run.get("event_loop"),
    )
    return result


def run_case(
    name: str,
    label: str,
    factory: Callable[[], Pop3Server],
    clients: int,
    s: Settings,
    log: Callable[[str], None],
) -> dict[str, Any]:
    t = time.monotonic()
    try:
        with factory() as server:
            log(f"  {clients} clients: {label} on 127.0.0.1:{server.pop3_port} ...")
            result = run_one(server, clients, s)
            result["describe"] = server.describe()
    except Exception as e:  # one broken server must not lose the other results
        result = {
            "server": name,
            "label": label,
            "clients": clients,
            "error": f"{type(e).__name__}: {e}",
        }
    if "error" in result:
        log(f"    FAILED: {result['error']}")
    else:
        log(
            f"    {result['sessions_per_s']:.1f} sessions/s, {result['messages_per_s']:.0f} msg/s,"
            f" {result['mb_per_s']:.1f} MB/s, CPU {result['cpu_per_1k']:.2f} s/1k msg,"
            f" login {result['login_ms_median']} ms, peak RSS {result['peak_rss_mb']:.0f} MB"
            f" ({time.monotonic() - t:.0f}s)"
        )
        other = result["other_cpu_seconds"] / max(result["wall_seconds"], 1e-9)
        if other > 0.1:
            log(f"    note: {other:.2f} CPUs busy outside server, client and harness (see README)")
    return result


def corpus_dir(workdir: str) -> Path:
    d = Path(workdir) / "pop3-corpus"
    corpus.write(d, corpus.messages())
    os.chmod(d, 0o755)
    return d
