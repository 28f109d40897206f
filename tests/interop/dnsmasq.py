"""A real DNS server for tests: dnsmasq on a loopback address at a free port (UDP and TCP),
authoritative for the records a test gives it and for nothing else.

    with Dnsmasq(
        mx={"remote.test": [(10, "mx.remote.test")]},
        a={"mx.remote.test": "127.0.0.2"},
        txt={"sel._domainkey.remote.test": "v=DKIM1; k=rsa; p=MIIB..."},
        null_mx=["nullmx.test"],
    ) as dns_server:
        DnsResolver(["127.0.0.1"], port=dns_server.port)

Invariants:
- Records go into a private configuration file (dnsmasq reads no system configuration, no
  /etc/hosts, no resolv.conf, and has no upstream): a name it does not know is NXDOMAIN
  under the ``local`` domains and REFUSED anywhere else.
- A TXT value is printable ASCII; one longer than 255 octets is sent as several strings of
  at most 255 octets (RFC 1035 §3.3.14: a character-string carries a one-octet length), so
  a reader joins a record's strings to get the value back.
- The process is ours alone: it is stopped by its PID, together with any child it forked
  for a TCP query, and nothing outlives ``stop()``.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType

import dns.exception
import dns.message
import dns.query
import pytest

from tests.interop.conftest import require

START_TIMEOUT = 10.0
STOP_TIMEOUT = 10.0
START_ATTEMPTS = 5  # a free port can be taken by someone else before dnsmasq binds it

# Host names as DNS tests use them: letters, digits, hyphen, and the underscore of
# _domainkey, _dmarc and _mta-sts labels; "*" for a wildcard.
_NAME = re.compile(r"[A-Za-z0-9_*-]+(\.[A-Za-z0-9_*-]+)*\.?")
_TXT_CHUNK = 255

Addresses = str | Sequence[str]
TxtValues = str | Sequence[str]


def free_port(address: str = "127.0.0.1") -> int:
    """A port number free on ``address`` for both UDP and TCP (dnsmasq listens on both)."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    for _ in range(100):
        with socket.socket(family, socket.SOCK_DGRAM) as udp:
            udp.bind((address, 0))
            port = int(udp.getsockname()[1])
            with socket.socket(family, socket.SOCK_STREAM) as tcp:
                try:
                    tcp.bind((address, port))
                except OSError:
                    continue
                return port
    raise RuntimeError(f"no port free for both UDP and TCP on {address}")


def txt_strings(value: str) -> list[str]:
    """``value`` as the character-strings of one TXT record: 255 octets at most each."""
    if not value.isascii() or not value.isprintable():
        raise ValueError(f"TXT values must be printable ASCII: {value!r}")
    if not value:
        return [""]
    return [value[i : i + _TXT_CHUNK] for i in range(0, len(value), _TXT_CHUNK)]


def _name(name: str) -> str:
    if name == "." or not _NAME.fullmatch(name):
        raise ValueError(f"not a host name dnsmasq can serve here: {name!r}")
    return name.rstrip(".")


def _quoted(text: str) -> str:
    # In a dnsmasq configuration file a quoted string keeps commas, '#' and blanks, and
    # takes backslash escapes; only the backslash and the quote itself need one.
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def config_lines(
    mx: Mapping[str, Sequence[tuple[int, str]]] | None = None,
    a: Mapping[str, Addresses] | None = None,
    txt: Mapping[str, TxtValues] | None = None,
    null_mx: Sequence[str] = (),
    local: Sequence[str] = ("test",),
) -> list[str]:
    """The dnsmasq configuration-file lines that serve these records."""
    lines = [f"local=/{_name(domain)}/" for domain in local]
    for domain, hosts in (mx or {}).items():
        for preference, host in hosts:
            if not 0 <= preference <= 65535:
                raise ValueError(f"MX preference out of range: {preference}")
            lines.append(f"mx-host={_name(domain)},{_name(host)},{preference}")
    for domain in null_mx:
        # RFC 7505 §3: a null MX is the single record "0 ." at the domain.
        lines.append(f"mx-host={_name(domain)},.,0")
    for host, addresses in (a or {}).items():
        listed = [addresses] if isinstance(addresses, str) else list(addresses)
        if not listed:
            raise ValueError(f"no address for {host}")
        # ip_address() refuses anything that is not one IPv4 or IPv6 address.
        text = ",".join(str(ipaddress.ip_address(addr)) for addr in listed)
        lines.append(f"host-record={_name(host)},{text}")
    for name, values in (txt or {}).items():
        records = [values] if isinstance(values, str) else list(values)
        for value in records:
            strings = ",".join(_quoted(s) for s in txt_strings(value))
            lines.append(f"txt-record={_name(name)},{strings}")
    return lines


class Dnsmasq:
    """dnsmasq serving the given records on ``address``:``port`` (UDP and TCP).

    ``mx``: domain -> [(preference, host), ...] in the order given.
    ``a``: host -> an address or a list of addresses (IPv4 gives A, IPv6 gives AAAA).
    ``txt``: name -> a value (one TXT record) or a list of values (one record each); each
    value is split into strings of at most 255 octets.
    ``null_mx``: domains that publish the null MX of RFC 7505.
    ``local``: domains whose unlisted names are NXDOMAIN (others are REFUSED).
    ``extra_args``: further dnsmasq options, as on its command line (``--cname=...``).
    """

    def __init__(
        self,
        mx: Mapping[str, Sequence[tuple[int, str]]] | None = None,
        a: Mapping[str, Addresses] | None = None,
        txt: Mapping[str, TxtValues] | None = None,
        null_mx: Sequence[str] = (),
        local: Sequence[str] = ("test",),
        extra_args: Sequence[str] = (),
        address: str = "127.0.0.1",
        log_queries: bool = False,
    ) -> None:
        self.address = address
        self.lines = config_lines(mx=mx, a=a, txt=txt, null_mx=null_mx, local=local)
        self.extra_args = list(extra_args)
        self.log_queries = log_queries
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.root: Path | None = None

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> Dnsmasq:
        if self.proc is not None:
            raise RuntimeError("dnsmasq is already running")
        binary = require("dnsmasq")
        if self.root is None:
            self.root = Path(tempfile.mkdtemp(prefix="mw-dnsmasq-"))
            (self.root / "dnsmasq.conf").write_text("".join(f"{line}\n" for line in self.lines))
        failure = ""
        for _ in range(START_ATTEMPTS):
            # The same port again after a stop() when it is still free.
            self.port = self.port or free_port(self.address)
            self.proc = self._spawn(binary)
            try:
                self._wait_until_answering()
                return self
            except RuntimeError as e:
                failure = str(e)
                self._terminate()
                if "Address already in use" not in failure:
                    break
                self.port = 0
        raise RuntimeError(failure)

    def stop(self) -> None:
        """Stop dnsmasq and any TCP worker it forked (queries then time out); ``start()``
        brings it back, on the same port if that is still free. Safe to call twice."""
        self._terminate()

    def close(self) -> None:
        """Stop, and remove the configuration and log."""
        self._terminate()
        if self.root is not None:
            shutil.rmtree(self.root, ignore_errors=True)
            self.root = None

    def __enter__(self) -> Dnsmasq:
        try:
            return self.start()
        except BaseException:
            self.close()
            raise

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- diagnostics -------------------------------------------------------------------

    def log_tail(self, lines: int = 30) -> str:
        """The end of dnsmasq's log and of its standard error."""
        if self.root is None:
            return ""
        text = []
        for name in ("log", "stderr"):
            with contextlib.suppress(OSError):
                text += (self.root / name).read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])

    # -- helpers -----------------------------------------------------------------------

    def _spawn(self, binary: str) -> subprocess.Popen[bytes]:
        assert self.root is not None
        args = [
            binary,
            "--keep-in-foreground",
            f"--conf-file={self.root / 'dnsmasq.conf'}",
            "--no-resolv",
            "--no-hosts",
            "--no-poll",
            f"--listen-address={self.address}",
            "--bind-interfaces",
            f"--port={self.port}",
            "--pid-file=",
            f"--log-facility={self.root / 'log'}",
            *(["--log-queries"] if self.log_queries else []),
        ]
        if os.geteuid() == 0:
            # Otherwise dnsmasq drops to "nobody", which cannot write our log file.
            args += ["--user=root", "--group=root"]
        with open(self.root / "stderr", "wb") as stderr:
            return subprocess.Popen(
                [*args, *self.extra_args], stdin=subprocess.DEVNULL, stdout=stderr, stderr=stderr
            )

    def _wait_until_answering(self) -> None:
        assert self.proc is not None
        # Any response will do, even REFUSED: it proves the socket is dnsmasq's.
        query = dns.message.make_query("ready.invalid", "A")
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"dnsmasq exited with status {self.proc.returncode}:\n{self.log_tail()}"
                )
            try:
                dns.query.udp(query, self.address, port=self.port, timeout=0.2)
                return
            except (dns.exception.Timeout, OSError):
                continue
        raise RuntimeError(f"dnsmasq did not answer within {START_TIMEOUT} s:\n{self.log_tail()}")

    def _terminate(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        # A TCP query is served by a child dnsmasq forks for it; stop those first, while
        # they are still known as our dnsmasq's children.
        for pid in _children(proc.pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        proc.terminate()
        try:
            proc.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=STOP_TIMEOUT)


def _children(pid: int) -> list[int]:
    """The PIDs whose parent is ``pid``."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                # The fields after the parenthesised command: state, ppid, ...
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue  # it ended while we looked
        if int(fields[1]) == pid:
            found.append(int(entry))
    return found


@pytest.fixture(name="dnsmasq_factory")
def dnsmasq_factory_fixture() -> Iterator[Callable[..., Dnsmasq]]:
    """A callable taking ``Dnsmasq``'s arguments and returning it running; every one it
    started is stopped when the test ends, passed or failed. Import this function into a
    test module to make the ``dnsmasq_factory`` fixture available there."""
    with contextlib.ExitStack() as stack:

        def make(**kwargs: object) -> Dnsmasq:
            return stack.enter_context(Dnsmasq(**kwargs))  # type: ignore[arg-type]

        yield make
