"""Two builds of mailwright side by side: CPU per message of each, in alternating bursts.

    .venv/bin/python bench/ab.py --base main            # main against the working tree
    .venv/bin/python bench/ab.py --base HEAD~1 --pairs 20 --messages 4000

A change worth a few percent of CPU per message is invisible in one run against another
minutes later on a shared machine (runs of one build differ by a fifth). Here both
servers run at once, each on a port of its own with a fresh data directory; smtp-source
sends a burst to one, then to the other, the order swapped every pair, and each burst
counts the CPU time of that server's processes only. Drift of the machine hits both
builds alike, and the ratio of each pair cancels most of it. Build A is ``--base`` (a
temporary git worktree, imported through PYTHONPATH), build B the working tree. Needs
smtp-source (Debian's postfix package). A timing is printed, never asserted.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SMTP_SOURCE = "/usr/sbin/smtp-source"
CLK_TCK = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """One mailwright on its own port and data directory, in a process group of its own."""

    def __init__(self, name: str, src: Path, workdir: Path, workers: int) -> None:
        self.name = name
        self.port = free_port()
        self.data = workdir / name
        binary = Path(sys.executable).parent / "mailwright"
        self.env = {**os.environ, "PYTHONPATH": str(src)}
        run = [str(binary), "--config", str(self.data / "mailwright.toml")]
        subprocess.run(
            [str(binary), "init", "--data-dir", str(self.data), "--domain", "example.test"],
            env=self.env,
            capture_output=True,
            check=True,
        )
        subprocess.run(
            [*run, "user", "add", "user@example.test", "--password-stdin"],
            input=b"bench\n",
            env=self.env,
            capture_output=True,
            check=True,
        )
        only_smtp = {
            f"MAILWRIGHT_{section}__{key}": "[]"
            for section in ("SUBMISSION", "POP3", "IMAP")
            for key in ("LISTEN", "LISTEN_TLS")
        }
        self.env.update(
            only_smtp,
            MAILWRIGHT_HTTP__LISTEN="[]",
            MAILWRIGHT_SMTP__LISTEN=f'["127.0.0.1:{self.port}"]',
            MAILWRIGHT_SMTP__MAX_CONNECTIONS="1000",
            MAILWRIGHT_SMTP__MAX_CONNECTIONS_PER_IP="1000",
            MAILWRIGHT_WORKERS=str(workers),
        )
        self.log = open(workdir / f"{name}.log", "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [*run, "serve"],
            env=self.env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.cpu: list[float] = []  # ms of CPU per message, one per burst
        self.rate: list[float] = []

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"{self.name} exited: see {self.log.name}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                    if s.recv(3) == b"220":
                        return
            except OSError:
                pass
            time.sleep(0.2)
        raise SystemExit(f"{self.name} not listening after {timeout:.0f} s")

    def ticks(self) -> int:
        """CPU ticks (user + system) of every process in the server's group."""
        total = 0
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            try:
                fields = Path(entry.path, "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue  # gone meanwhile
            if int(fields[2]) == self.proc.pid:  # the process group
                total += int(fields[11]) + int(fields[12])
        return total

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        self.log.close()


def burst(server: Server, args: argparse.Namespace, messages: int) -> tuple[float, float]:
    """Send ``messages``; returns (ms of server CPU per message, messages per second)."""
    options = {
        "-s": args.sessions,
        "-m": messages,
        "-l": args.size,
        "-r": args.recipients,
        "-M": "client.bench.test",
        "-f": "bench-sender@example.test",
        "-t": "user@example.test",
    }
    command = [SMTP_SOURCE, *(str(x) for item in options.items() for x in item)]
    before = server.ticks()
    started = time.monotonic()
    subprocess.run([*command, f"127.0.0.1:{server.port}"], check=True, timeout=args.timeout)
    wall = time.monotonic() - started
    return (server.ticks() - before) * 1000 / CLK_TCK / messages, messages / wall


def summary(name: str, label: str, server: Server) -> str:
    cpu, rate = server.cpu, server.rate
    return (
        f"{name} {label}: CPU per message {statistics.mean(cpu):.3f} ms"
        f" (median {statistics.median(cpu):.3f}, sd {statistics.stdev(cpu):.3f}),"
        f" {statistics.mean(rate):.0f} msg/s"
    )


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--base", default="main", help="git revision of build A (default main)")
    p.add_argument("--pairs", type=int, default=12, help="bursts to each build (default 12)")
    p.add_argument("--messages", type=int, default=3000, help="messages per burst")
    p.add_argument("--sessions", type=int, default=10, help="smtp-source -s (default 10)")
    p.add_argument("--recipients", type=int, default=1, help="smtp-source -r (default 1)")
    p.add_argument("--size", type=int, default=5120, help="smtp-source -l (default 5120)")
    p.add_argument("--workers", type=int, default=2, help="worker processes of each server")
    p.add_argument("--timeout", type=float, default=600, help="seconds per burst at most")
    args = p.parse_args()
    if args.pairs < 2:
        p.error("--pairs must be at least 2")
    if not Path(SMTP_SOURCE).exists():
        print("needs smtp-source: apt-get install postfix", file=sys.stderr)
        return 2
    base = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short", args.base],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    workdir = Path(tempfile.mkdtemp(prefix="mailwright-ab-"))
    tree = workdir / "base"
    subprocess.run(
        ["git", "-C", str(ROOT), "worktree", "add", "--detach", str(tree), base],
        capture_output=True,
        check=True,
    )
    servers: list[Server] = []
    try:
        a = Server("a", tree / "src", workdir, args.workers)
        servers.append(a)
        b = Server("b", ROOT / "src", workdir, args.workers)
        servers.append(b)
        for server in (a, b):
            server.wait_ready()
            burst(server, args, max(200, args.messages // 10))  # warm up, untimed
        for n in range(args.pairs):
            for server in (a, b) if n % 2 == 0 else (b, a):
                cpu, rate = burst(server, args, args.messages)
                server.cpu.append(cpu)
                server.rate.append(rate)
            print(
                f"pair {n + 1:2d}: A {a.cpu[-1]:.3f} ms {a.rate[-1]:5.0f}/s"
                f"  B {b.cpu[-1]:.3f} ms {b.rate[-1]:5.0f}/s",
                file=sys.stderr,
            )
        ratios = [y / x for x, y in zip(a.cpu, b.cpu, strict=True)]
        sem = statistics.stdev(ratios) / len(ratios) ** 0.5
        print(
            f"{args.pairs} pairs of {args.messages:,} messages, {args.sessions} sessions x"
            f" {args.recipients} recipients, {args.workers} workers each"
        )
        print(summary("A", f"({base})", a))
        print(summary("B", "(working tree)", b))
        print(
            f"B / A, CPU per message: {statistics.mean(ratios):.3f} (standard error {sem:.3f},"
            f" median {statistics.median(ratios):.3f})"
        )
        return 0
    finally:
        for server in servers:
            server.stop()
        subprocess.run(
            ["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tree)],
            capture_output=True,
        )
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
