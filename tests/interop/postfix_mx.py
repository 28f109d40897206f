"""A real remote MX for outbound-delivery tests: a private Postfix instance receiving mail
for some domains on a loopback address, whose answers a test can change.

    with PostfixMx(domains=["remote.test"], address="127.0.0.2") as mx:
        mx.set_reply("busy@remote.test", "451 4.3.0 Try again later")
        ...  # mailwright delivers to 127.0.0.2:mx.port
        mx.set_reply("busy@remote.test", None)  # accept from now on
        [message] = mx.wait_for(1, timeout=30)

Invariants:
- Everything (configuration, queue, data, log, mail) lives under one temporary directory;
  the instance is started with ``postfix -c DIR`` and never reads or changes the system's
  Postfix configuration or touches the system instance. Root starts it (Postfix's master
  must), as in CI.
- It receives only: mail for ``domains`` is accepted from anyone (any local part) and
  delivered by Postfix's ``virtual`` agent into ONE Maildir, one file per recipient;
  mail for any other domain is refused at RCPT (554 relay access denied). Every transport
  that would send mail away is ``error:``, so nothing ever leaves (not even a bounce).
- No DNS: smtpd looks up no client names and checks nothing against DNS.
- Durability is Postfix's own default: the queue file is fsynced before the 250 to DATA,
  and ``virtual`` fsyncs each Maildir file before linking it into new/.
- ``stop()`` ends the master and every process it started (found by their process group,
  killed by PID if they linger), so a connection to the port is refused until ``start()``.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import pwd
import re
import shutil
import signal
import smtplib
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from types import TracebackType

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.interop.conftest import require

START_TIMEOUT = 30.0
STOP_TIMEOUT = 30.0
RELOAD_TIMEOUT = 30.0
MAIL_USER = "nobody"  # owns the delivered files (virtual_minimum_uid is 100)

# A reply a test may set for a recipient: an SMTP code (4xx or 5xx) and optional text.
_REPLY = re.compile(r"[45][0-9][0-9]( [\x20-\x7e]*)?")
_ADDRESS = re.compile(r"[^\s@]+@[A-Za-z0-9.-]+")

# Only the services this setup needs; chroot off (column 5) so paths are plain.
_MASTER_CF = """\
{listen} inet n - n - - smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
virtual   unix  -       n       n       -       -       virtual
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""

_MAIN_CF = """\
# A private test instance: the remote MX of outbound-delivery tests.
compatibility_level = 3.6
queue_directory = {root}/queue
data_directory = {root}/data
mail_owner = postfix
setgid_group = postdrop
maillog_file_prefixes = {root}
maillog_file = {root}/log/maillog
myhostname = {hostname}
mydomain = {hostname}
myorigin = $myhostname
mydestination =
local_recipient_maps =
alias_maps =
alias_database =
# Postfix refuses an inet_interfaces address that is on no interface (127.0.0.2 is
# not, although Linux routes all of 127.0.0.0/8 to lo): master.cf names the address.
inet_interfaces = loopback-only
inet_protocols = {protocols}
mynetworks = 127.0.0.0/8 [::1]/128
smtpd_banner = $myhostname ESMTP
biff = no
append_dot_mydomain = no
# Receiving needs no DNS: no client name lookup, no DNS-based checks anywhere.
smtpd_peername_lookup = no
smtp_dns_support_level = disabled
smtp_host_lookup = native
# Nothing leaves this instance: not relayed mail, not bounces, not local mail.
default_transport = error:test instance sends no mail
relay_transport = error:test instance sends no mail
local_transport = error:test instance sends no mail
# Mail for our domains only, from anyone; then the replies a test set per recipient.
smtpd_relay_restrictions = reject_unauth_destination
smtpd_recipient_restrictions = check_recipient_access texthash:{root}/etc/recipient_access
# Every local part of every domain into one Maildir (the trailing slash makes it one).
virtual_mailbox_domains = {domains}
virtual_mailbox_base = {root}/vmail
virtual_mailbox_maps = static:mail/
virtual_uid_maps = static:{uid}
virtual_gid_maps = static:{gid}
# The usual ESMTP: PIPELINING, 8BITMIME, DSN and CHUNKING are on by default.
smtputf8_enable = yes
# Keep what the client sent as it was sent: loopback clients are no "local" clients
# whose headers Postfix would complete (Date, Message-ID, From) or rewrite.
local_header_rewrite_clients =
# Tests count replies, not time: no penalty delays for errors or for fast arrivals, no
# connection or rate limits.
smtpd_error_sleep_time = 0s
in_flow_delay = 0s
smtpd_client_connection_count_limit = 0
smtpd_client_connection_rate_limit = 0
smtpd_client_message_rate_limit = 0
smtpd_client_recipient_rate_limit = 0
smtpd_client_new_tls_session_rate_limit = 0
{tls}
"""

_TLS_CF = """\
smtpd_tls_security_level = may
smtpd_tls_chain_files = {root}/etc/key.pem, {root}/etc/cert.pem
smtpd_tls_loglevel = 1
# Says in the Received header whether (and how) a message came over TLS.
smtpd_tls_received_header = yes
"""


def free_port(address: str) -> int:
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.bind((address, 0))
        return int(s.getsockname()[1])


def self_signed(hostname: str) -> tuple[bytes, bytes]:
    """A private key and a self-signed certificate for ``hostname``, both PEM."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(hostname)]), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return key_pem, cert.public_bytes(serialization.Encoding.PEM)


class PostfixMx:
    """A private Postfix receiving mail for ``domains`` on ``address``:``port``.

    ``port`` is chosen free on ``address`` unless given; it stays the same across
    ``stop()`` and ``start()``. ``tls=True`` offers STARTTLS with a self-signed certificate
    for ``hostname`` (its PEM file is ``cert_path``). Delivered messages are files as
    Postfix writes them: LF line ends, with Return-Path, X-Original-To and Delivered-To
    (the envelope recipient) and Received prepended to what the client sent, which is
    otherwise kept as it was.
    """

    def __init__(
        self,
        domains: Sequence[str] = ("remote.test",),
        address: str = "127.0.0.2",
        port: int | None = None,
        hostname: str | None = None,
        tls: bool = False,
    ) -> None:
        if not domains:
            raise ValueError("PostfixMx needs at least one domain to receive mail for")
        self.domains = [d.lower() for d in domains]
        self.address = address
        self.port = port if port is not None else free_port(address)
        self.hostname = hostname or f"mx.{self.domains[0]}"
        self.tls = tls
        self.root = Path(tempfile.mkdtemp(prefix="mw-postfix-mx-"))
        self.maildir = self.root / "vmail" / "mail"
        self.cert_path: Path | None = None
        self.master_pid: int | None = None
        self._replies: dict[str, str] = {}
        self._configured = False

    # -- lifecycle ---------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self.master_pid is not None

    def start(self) -> PostfixMx:
        """Start Postfix; returns once it greets on its port."""
        if self.master_pid is not None:
            return self
        if not self._configured:
            self._configure()
        self._postfix("start")
        try:
            self.master_pid = self._read_master_pid()
            self._wait_for_greeting()
        except BaseException:
            if self.master_pid is None:
                # Postfix finds its master through its own pid file.
                self._postfix("stop", check=False, timeout=STOP_TIMEOUT)
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Take the remote down: when this returns, connections to the port are refused.
        Queued mail stays queued, to be delivered after ``start()``."""
        pid, self.master_pid = self.master_pid, None
        if pid is None:
            return
        with contextlib.suppress(subprocess.TimeoutExpired):
            self._postfix("stop", check=False, timeout=STOP_TIMEOUT)
        # The master's children (smtpd among them) hold the listening socket too: wait for
        # the whole process group, not only the master.
        deadline = time.monotonic() + STOP_TIMEOUT
        while time.monotonic() < deadline and _group(pid):
            time.sleep(0.05)
        for straggler in _group(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(straggler, signal.SIGKILL)
        deadline = time.monotonic() + STOP_TIMEOUT
        while time.monotonic() < deadline and _group(pid):
            time.sleep(0.05)

    def close(self) -> None:
        """Stop and remove everything, delivered mail included."""
        try:
            self.stop()
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> PostfixMx:
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

    # -- what arrived ------------------------------------------------------------------

    def messages(self) -> list[bytes]:
        """Every delivered message (one per recipient), raw, in the order of delivery."""
        found: list[tuple[tuple[int, int, str], Path]] = []
        for sub in ("new", "cur"):
            with contextlib.suppress(FileNotFoundError):
                for path in (self.maildir / sub).iterdir():
                    found.append((_delivery_order(path), path))
        out = []
        for _, path in sorted(found):
            with contextlib.suppress(FileNotFoundError):  # a reader moved it on meanwhile
                out.append(path.read_bytes())
        return out

    def wait_for(self, count: int, timeout: float = 30.0) -> list[bytes]:
        """All delivered messages once there are at least ``count``; raises TimeoutError
        (with the end of Postfix's log) if there are not within ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            found = self.messages()
            if len(found) >= count:
                return found
            if time.monotonic() >= deadline:
                raise TimeoutError(
                    f"{len(found)} of {count} messages delivered within {timeout} s;"
                    f" Postfix log:\n{self.log_tail()}"
                )
            time.sleep(0.05)

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = (self.root / "log" / "maillog").read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    # -- behaviour ---------------------------------------------------------------------

    def set_reply(self, recipient: str, reply: str | None) -> None:
        """Answer RCPT TO:<recipient> with ``reply`` (e.g. "451 4.3.0 Try again later",
        "550 5.1.1 No such user"), or accept it again when ``reply`` is None. Takes effect
        at once: when this returns, every new connection sees it."""
        recipient = recipient.lower()
        if not _ADDRESS.fullmatch(recipient):
            raise ValueError(f"not an address: {recipient!r}")
        if recipient.rsplit("@", 1)[1] not in self.domains:
            # Relay control refuses other domains before the recipient table is consulted.
            raise ValueError(f"{recipient} is not in this instance's domains {self.domains}")
        if reply is None:
            self._replies.pop(recipient, None)
        else:
            if not _REPLY.fullmatch(reply):
                raise ValueError(f"not a 4xx or 5xx reply: {reply!r}")
            self._replies[recipient] = reply
        self._write_replies()
        if self.master_pid is None:
            return  # read when it starts
        # texthash tables are read when a process starts: reload replaces the processes.
        self._postfix("reload")
        want = int(reply[:3]) if reply is not None else 250
        self._wait_for_rcpt_reply(recipient, want)

    # -- helpers -----------------------------------------------------------------------

    def _configure(self) -> None:
        require("postfix")
        if os.geteuid() != 0:
            pytest.fail("PostfixMx runs a Postfix master, which needs root (as in CI)")
        root = self.root
        os.chmod(root, 0o755)  # Postfix's unprivileged processes must reach their queue
        for d in ("etc", "queue", "data", "log", "vmail"):
            (root / d).mkdir(exist_ok=True)
        mail_user = pwd.getpwnam(MAIL_USER)
        os.chown(root / "vmail", mail_user.pw_uid, mail_user.pw_gid)
        postfix_user = pwd.getpwnam("postfix")
        os.chown(root / "data", postfix_user.pw_uid, postfix_user.pw_gid)
        tls = ""
        if self.tls:
            key, cert = self_signed(self.hostname)
            key_path = root / "etc" / "key.pem"
            key_path.touch(mode=0o600)
            key_path.write_bytes(key)
            self.cert_path = root / "etc" / "cert.pem"
            self.cert_path.write_bytes(cert)
            tls = _TLS_CF.format(root=root)
        ipv6 = ":" in self.address
        (root / "etc" / "main.cf").write_text(
            _MAIN_CF.format(
                root=root,
                hostname=self.hostname,
                protocols="all" if ipv6 else "ipv4",
                domains=", ".join(self.domains),
                uid=mail_user.pw_uid,
                gid=mail_user.pw_gid,
                tls=tls,
            )
        )
        listen = f"[{self.address}]:{self.port}" if ipv6 else f"{self.address}:{self.port}"
        (root / "etc" / "master.cf").write_text(_MASTER_CF.format(listen=listen))
        self._write_replies()
        self._configured = True

    def _write_replies(self) -> None:
        path = self.root / "etc" / "recipient_access"
        tmp = path.with_suffix(".tmp")
        tmp.write_text("".join(f"{rcpt} {reply}\n" for rcpt, reply in self._replies.items()))
        # Postfix waits for a table file modified within the last second or so to settle
        # (it might be half written); ours is complete before it is renamed into place,
        # so dating it back spares every reload that wait.
        settled = time.time() - 60
        os.utime(tmp, (settled, settled))
        tmp.replace(path)  # a process starting now reads the old table or the new one

    def _postfix(self, command: str, check: bool = True, timeout: float = START_TIMEOUT) -> None:
        proc = subprocess.run(
            [require("postfix"), "-c", str(self.root / "etc"), command],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and proc.returncode != 0:
            raise RuntimeError(
                f"postfix {command} failed ({proc.returncode}):\n{proc.stdout}{proc.stderr}"
                f"\n{self.log_tail()}"
            )

    def _read_master_pid(self) -> int:
        path = self.root / "queue" / "pid" / "master.pid"
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError, ValueError, IndexError):
                pid = int(path.read_text().split()[0])
                if _group(pid):
                    return pid
            time.sleep(0.05)
        raise TimeoutError(f"the Postfix master did not start:\n{self.log_tail()}")

    def _wait_for_greeting(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        last: Exception | None = None
        while time.monotonic() < deadline:
            try:
                with smtplib.SMTP(self.address, self.port, timeout=5) as smtp:
                    smtp.noop()
                    return
            except (OSError, smtplib.SMTPException) as e:
                last = e
            time.sleep(0.05)
        raise TimeoutError(
            f"Postfix did not greet within {START_TIMEOUT} s ({last}):\n{self.log_tail()}"
        )

    def _wait_for_rcpt_reply(self, recipient: str, want: int) -> None:
        # After a reload the old smtpd processes finish their sessions and exit; a new
        # session may still meet one for a moment. Probe until the new table answers
        # several sessions in a row.
        deadline = time.monotonic() + RELOAD_TIMEOUT
        in_a_row = 0
        got: tuple[int, bytes] | Exception | None = None
        while time.monotonic() < deadline:
            try:
                with smtplib.SMTP(self.address, self.port, timeout=5) as smtp:
                    smtp.ehlo("probe.invalid")
                    smtp.mail("")
                    got = smtp.rcpt(recipient)
                    smtp.rset()
            except (OSError, smtplib.SMTPException) as e:
                got = e  # an old process may drop the session as it exits
            in_a_row = in_a_row + 1 if isinstance(got, tuple) and got[0] == want else 0
            if in_a_row == 3:
                return
            time.sleep(0.05)
        raise TimeoutError(
            f"RCPT TO:<{recipient}> still answered {got!r}, not {want}, {RELOAD_TIMEOUT} s"
            f" after a reload:\n{self.log_tail()}"
        )


def _delivery_order(path: Path) -> tuple[int, int, str]:
    # Postfix names a Maildir file "<seconds>.V<dev>I<inode>M<microseconds>.<host>", both
    # times taken at delivery; the name breaks a tie.
    match = re.match(r"(\d+)\.V[0-9a-f]+I[0-9a-f]+M(\d+)\.", path.name)
    if match:
        return int(match[1]), int(match[2]), path.name
    mtime = path.stat().st_mtime_ns
    return mtime // 1_000_000_000, mtime % 1_000_000_000 // 1000, path.name


def _group(pgid: int) -> list[int]:
    """The PIDs of the live (not zombie) processes in process group ``pgid``."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                # The fields after the parenthesised command: state, ppid, pgrp, ...
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue  # it ended while we looked
        if int(fields[2]) == pgid and fields[0] != "Z":
            found.append(int(entry))
    return found


@pytest.fixture(name="postfix_mx_factory")
def postfix_mx_factory_fixture() -> Iterator[Callable[..., PostfixMx]]:
    """A callable taking ``PostfixMx``'s arguments and returning it running; every one it
    started is stopped and removed when the test ends, passed or failed. Import this
    function into a test module to make the ``postfix_mx_factory`` fixture available."""
    with contextlib.ExitStack() as stack:

        def make(**kwargs: object) -> PostfixMx:
            return stack.enter_context(PostfixMx(**kwargs))  # type: ignore[arg-type]

        yield make
