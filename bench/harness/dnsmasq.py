"""dnsmasq as the outbound bench's DNS: authoritative for a few records on a loopback port.

Invariants:
- dnsmasq reads only the file written here: no /etc/dnsmasq.conf, /etc/hosts or
  resolv.conf, no upstream server, so a name it was not given is NXDOMAIN under the
  ``local`` domain and REFUSED anywhere else — nothing leaves the machine;
- it listens on 127.0.0.1 at one port free for both UDP and TCP, and is ready only once
  it has answered a query for the bench's MX (checked here with a hand-built query, so
  the bench needs no DNS library);
- the process is our child: stopped by its PID, together with any child it forked to
  answer a TCP query, and nothing outlives ``__exit__``.
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from harness import procstat
from harness.instance import end_child

DNSMASQ = "/usr/sbin/dnsmasq"
START_TIMEOUT = 10.0
TYPE_A, TYPE_MX = 1, 15


def free_udp_tcp_port(address: str = "127.0.0.1") -> int:
    """A port free on ``address`` for UDP and TCP both (dnsmasq binds the two)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind((address, 0))
            port = int(udp.getsockname()[1])
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
                try:
                    tcp.bind((address, port))
                except OSError:
                    continue
                return port
    raise RuntimeError(f"no port free for UDP and TCP on {address}")


def query_packet(name: str, qtype: int, ident: int) -> bytes:
    """A standard recursive query (RFC 1035 §4.1) for ``name`` of type ``qtype``, class IN."""
    header = struct.pack("!HHHHHH", ident, 0x0100, 1, 0, 0, 0)
    labels = b"".join(
        bytes([len(part)]) + part for part in name.rstrip(".").encode("ascii").split(b".")
    )
    return header + labels + b"\0" + struct.pack("!HH", qtype, 1)


def ask(address: str, port: int, name: str, qtype: int, timeout: float = 0.5) -> tuple[int, int]:
    """(RCODE, ANCOUNT) of the answer to one UDP query; OSError or TimeoutError if none."""
    ident = random.randrange(1 << 16)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        s.sendto(query_packet(name, qtype, ident), (address, port))
        data = s.recv(4096)
    if len(data) < 12:
        raise OSError(f"short DNS answer: {data!r}")
    got, flags, _qd, ancount, _ns, _ar = struct.unpack("!HHHHHH", data[:12])
    if got != ident:
        raise OSError("DNS answer to another query")
    return flags & 0x000F, ancount


class DnsmasqInstance:
    """dnsmasq serving ``mx`` (domain -> [(preference, host)]) and ``a`` (host -> IPv4)."""

    name = "dnsmasq"

    def __init__(
        self,
        mx: Mapping[str, Sequence[tuple[int, str]]],
        a: Mapping[str, str],
        local: str = "test",
        workdir: str | None = None,
        address: str = "127.0.0.1",
    ) -> None:
        self.address = address
        self.mx = {domain: list(hosts) for domain, hosts in mx.items()}
        self.a = dict(a)
        self.local = local
        self.root = Path(tempfile.mkdtemp(prefix="mwbench-dnsmasq-", dir=workdir))
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None

    def config(self) -> str:
        lines = [f"local=/{self.local}/"]
        for domain, hosts in self.mx.items():
            lines += [f"mx-host={domain},{host},{pref}" for pref, host in hosts]
        lines += [f"host-record={host},{ip}" for host, ip in self.a.items()]
        return "".join(f"{line}\n" for line in lines)

    def __enter__(self) -> DnsmasqInstance:
        (self.root / "dnsmasq.conf").write_text(self.config())
        os.chmod(self.root, 0o755)  # dnsmasq drops to "nobody" after binding
        try:
            for _ in range(3):  # someone may take the free port before dnsmasq binds it
                self.port = free_udp_tcp_port(self.address)
                if self._start():
                    return self
            raise RuntimeError(f"dnsmasq did not start:\n{self.log_tail()}")
        except BaseException:
            self.__exit__()
            raise

    def _start(self) -> bool:
        log = open(self.root / "dnsmasq.log", "ab")  # noqa: SIM115 - dnsmasq holds it
        with log:
            self.proc = subprocess.Popen(
                [
                    DNSMASQ,
                    "--keep-in-foreground",
                    f"--conf-file={self.root / 'dnsmasq.conf'}",
                    "--no-resolv",
                    "--no-hosts",
                    "--no-poll",
                    f"--listen-address={self.address}",
                    "--bind-interfaces",
                    f"--port={self.port}",
                    # Records with a TTL as real MX and A records have (dnsmasq's default
                    # for its own records is 0, which no real zone uses).
                    "--local-ttl=300",
                    "--pid-file=",
                    "--log-facility=-",  # to stderr: our log file
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
            )
        domain = next(iter(self.mx), "ready.invalid")
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self.proc = None
                return False
            try:
                rcode, answers = ask(self.address, self.port, domain, TYPE_MX, timeout=0.2)
            except OSError:  # not listening yet (TimeoutError is an OSError)
                continue
            if domain in self.mx and (rcode != 0 or answers == 0):
                raise RuntimeError(f"dnsmasq answers MX {domain} with rcode {rcode}, {answers} RRs")
            return True
        self._terminate()
        return False

    def _terminate(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        # A TCP query is answered by a child dnsmasq forks for it: stop those first,
        # while they are still ours to find.
        for pid in procstat.tree(proc.pid)[1:]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        end_child(proc, 10)

    def __exit__(self, *exc: object) -> None:
        self._terminate()
        shutil.rmtree(self.root, ignore_errors=True)

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = (self.root / "dnsmasq.log").read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def describe(self) -> dict[str, object]:
        return {"port": self.port, "config": self.config()}

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None
