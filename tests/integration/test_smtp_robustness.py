"""Bad clients on real sockets: timeouts, connection caps, STARTTLS injection, dropped
connections, signals. After each, the server serves the next client."""

from __future__ import annotations

import contextlib
import os
import select
import signal
import smtplib
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.server import Server


@contextlib.contextmanager
def running(tmp_path: Path, **env: str) -> Iterator[Server]:
    srv = Server.create(tmp_path / "mw", **env).start()
    try:
        yield srv
    finally:
        if srv.proc is not None:
            srv.kill()


class Client:
    def __init__(self, server: Server, timeout: float = 10) -> None:
        self.sock = socket.create_connection((server.host, server.port), timeout=timeout)
        self.file = self.sock.makefile("rb")

    def reply(self) -> list[bytes]:
        lines = []
        while True:
            line = self.file.readline()
            if not line:
                raise ConnectionError("closed")
            lines.append(line)
            if line[3:4] != b"-":
                return lines

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def cmd(self, line: bytes) -> bytes:
        self.send(line + b"\r\n")
        return self.reply()[-1]

    def closed(self) -> bool:
        return self.file.readline() == b""

    def close(self) -> None:
        self.file.close()
        self.sock.close()


def serves(server: Server) -> bool:
    with smtplib.SMTP(server.host, server.port, timeout=10) as smtp:
        return smtp.noop()[0] == 250


def test_idle_client_is_dropped_with_421(tmp_path: Path) -> None:
    with running(tmp_path, MAILWRIGHT_SMTP__IDLE_TIMEOUT="1") as server:
        c = Client(server)
        assert c.reply()[0].startswith(b"220 ")
        assert c.reply()[0].startswith(b"421 4.4.2")
        assert c.closed()
        c.close()
        assert serves(server)


def test_trickling_bytes_do_not_extend_the_deadline(tmp_path: Path) -> None:
    with running(tmp_path, MAILWRIGHT_SMTP__IDLE_TIMEOUT="1") as server:
        sock = socket.create_connection((server.host, server.port), timeout=10)
        received = b""
        for ch in b"NOOP this line never ends":  # one byte every 0.2 s: 5 s in all
            try:
                sock.sendall(bytes([ch]))
            except OSError:
                break
            readable, _, _ = select.select([sock], [], [], 0.2)
            if readable:
                chunk = sock.recv(4096)
                received += chunk
                if not chunk or b"421 " in received:
                    break
        sock.close()
        assert b"\r\n421 4.4.2" in received
        assert serves(server)


def test_session_cap(tmp_path: Path) -> None:
    with running(tmp_path, MAILWRIGHT_SMTP__SESSION_TIMEOUT="2") as server:
        c = Client(server)
        c.reply()
        replies = []
        for _ in range(40):  # NOOPs every 0.2 s: busy, yet ended at the cap
            try:
                replies.append(c.cmd(b"NOOP"))
            except (ConnectionError, OSError):
                break
            if replies[-1].startswith(b"421"):
                break
            time.sleep(0.2)
        assert replies[-1].startswith(b"421 4.4.2")
        c.close()


def test_connection_cap_per_ip(tmp_path: Path) -> None:
    with running(tmp_path, MAILWRIGHT_SMTP__MAX_CONNECTIONS_PER_IP="3") as server:
        clients = [Client(server) for _ in range(3)]
        for c in clients:
            assert c.reply()[0].startswith(b"220 ")
        extra = Client(server)
        assert extra.reply()[0].startswith(b"421 4.7.0")
        assert extra.closed()
        extra.close()
        clients[0].cmd(b"QUIT")
        clients[0].close()
        time.sleep(0.2)  # let the server see the close before the next connect
        again = Client(server)
        assert again.reply()[0].startswith(b"220 ")
        for c in [*clients[1:], again]:
            c.close()


def test_global_connection_cap(tmp_path: Path) -> None:
    with running(tmp_path, MAILWRIGHT_SMTP__MAX_CONNECTIONS="2") as server:
        a, b = Client(server), Client(server)
        a.reply()
        b.reply()
        c = Client(server)
        assert c.reply()[0].startswith(b"421 4.7.0")
        for x in (a, b, c):
            x.close()


def test_starttls_discards_pipelined_plaintext(server: Server) -> None:
    c = Client(server)
    c.reply()
    c.cmd(b"EHLO attacker.test")
    # The injected MAIL rides in the same packet as STARTTLS (CVE-2011-0411 style).
    c.send(b"STARTTLS\r\nMAIL FROM:<evil@remote.test>\r\n")
    assert c.reply()[-1].startswith(b"220 ")
    ctx = ssl.create_default_context(cafile=str(server.cert))
    ctx.check_hostname = False
    tls = ctx.wrap_socket(c.sock, server_hostname="mx.example.test")
    f = tls.makefile("rb")

    def cmd(line: bytes) -> bytes:
        tls.sendall(line + b"\r\n")
        while True:
            r = f.readline()
            if r[3:4] != b"-":
                return r

    assert cmd(b"EHLO client.test").startswith(b"250 ")
    # Had the injected MAIL been executed, this would be "nested MAIL" / accepted RCPT.
    assert cmd(b"RCPT TO:<alice@example.test>").startswith(b"503 5.5.1")
    assert cmd(b"MAIL FROM:<good@remote.test>").startswith(b"250 ")
    f.close()
    tls.close()
    assert (
        "discarded=" in server.log()
        and "discarded=0" not in server.log().split("smtp.tls")[1].split("\n")[0]
    )


def test_tls_handshake_timeout(tmp_path: Path) -> None:
    with running(tmp_path, MAILWRIGHT_SMTP__TLS_HANDSHAKE_TIMEOUT="1") as server:
        c = Client(server)
        c.reply()
        c.cmd(b"EHLO client.test")
        assert c.cmd(b"STARTTLS").startswith(b"220 ")
        # no handshake: the server gives up and closes
        c.sock.settimeout(10)
        assert c.sock.recv(100) == b""  # and nothing in plaintext to a client awaiting TLS
        c.close()
        assert "event=smtp.timeout" in server.log()
        # After a handshake, the next command has the idle timeout again, not the
        # handshake's: this client is silent longer than that, then goes on.
        c = Client(server)
        c.reply()
        c.cmd(b"EHLO client.test")
        assert c.cmd(b"STARTTLS").startswith(b"220 ")
        ctx = ssl.create_default_context(cafile=str(server.cert))
        ctx.check_hostname = False
        tls = ctx.wrap_socket(c.sock, server_hostname="mx.example.test")
        time.sleep(2)
        tls.sendall(b"NOOP\r\n")
        assert tls.recv(100).startswith(b"250 ")
        tls.close()
        assert serves(server)


def test_disconnect_mid_data_stores_nothing(server: Server) -> None:
    c = Client(server)
    c.reply()
    c.cmd(b"EHLO client.test")
    c.cmd(b"MAIL FROM:<a@remote.test>")
    c.cmd(b"RCPT TO:<alice@example.test>")
    assert c.cmd(b"DATA").startswith(b"354")
    c.send(b"Subject: cut\r\n\r\n" + b"half a message\r\n" * 20000)  # spills to a blob file
    c.close()
    time.sleep(0.5)
    assert server.inbox("alice@example.test") == []
    assert serves(server)
    assert not list((server.data_dir / "blobs" / "tmp").glob("*"))


def test_error_cap_closes_with_421(tmp_path: Path) -> None:
    with running(tmp_path, MAILWRIGHT_SMTP__ERROR_DELAY="0") as server:
        c = Client(server)
        c.reply()
        for _ in range(20):
            assert c.cmd(b"BOGUS").startswith(b"500 5.5.2")
        # the 20th error is followed at once by the 421
        assert c.reply()[-1].startswith(b"421 4.7.0")
        assert c.closed()
        c.close()
        assert serves(server)


def test_sigterm_lets_a_transaction_finish_and_exits_0(server: Server) -> None:
    idle = Client(server)
    idle.reply()
    busy = Client(server)
    busy.reply()
    busy.cmd(b"EHLO client.test")
    busy.cmd(b"MAIL FROM:<a@remote.test>")
    busy.cmd(b"RCPT TO:<alice@example.test>")
    assert busy.cmd(b"DATA").startswith(b"354")
    busy.send(b"Subject: in flight\r\n\r\nbody\r\n")
    server.signal(signal.SIGTERM)
    assert idle.reply()[0].startswith(b"421 4.3.2")  # idle sessions are told at once
    busy.send(b".\r\n")
    assert busy.reply()[0].startswith(b"250 2.0.0")  # the transaction in flight completes
    assert busy.reply()[0].startswith(b"421 4.3.2")
    assert server.proc is not None
    assert server.proc.wait(timeout=30) == 0
    server._release()
    assert len(server.inbox("alice@example.test")) == 1
    for c in (idle, busy):
        c.close()


def test_sighup_reloads_the_certificate(server: Server) -> None:
    from mailwright.serve.tls import make_self_signed

    def peer_cert_cn() -> str:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        with smtplib.SMTP(server.host, server.port, timeout=10) as smtp:
            smtp.starttls(context=ctx)
            sock = smtp.sock
            assert isinstance(sock, ssl.SSLSocket)
            der = sock.getpeercert(binary_form=True)
        from cryptography import x509

        assert der is not None
        return x509.load_der_x509_certificate(der).subject.rfc4514_string()

    assert peer_cert_cn() == "CN=mx.example.test"
    make_self_signed(server.cert, server.data_dir / "tls" / "key.pem", "renewed.example.test")
    server.signal(signal.SIGHUP)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and "tls.reloaded" not in server.log():
        time.sleep(0.05)
    assert peer_cert_cn() == "CN=renewed.example.test"


@pytest.mark.parametrize("n", [60])
def test_many_concurrent_clients(server: Server, n: int) -> None:
    """More clients than the per-IP cap get a clean 421; the rest deliver."""
    results: list[str] = []
    lock = threading.Lock()

    def one(i: int) -> None:
        try:
            with smtplib.SMTP(server.host, server.port, timeout=20) as smtp:
                smtp.sendmail(
                    "a@remote.test", ["alice@example.test"], f"Subject: {i}\r\n\r\nx\r\n".encode()
                )
            outcome = "ok"
        except smtplib.SMTPConnectError as exc:
            outcome = f"refused {exc.smtp_code}"
        except (smtplib.SMTPServerDisconnected, OSError) as exc:
            outcome = f"error {exc}"
        with lock:
            results.append(outcome)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert all(r == "ok" or r == "refused 421" for r in results), results
    assert len(server.inbox("alice@example.test")) == results.count("ok")


def _workers(server: Server) -> list[int]:
    assert server.proc is not None
    children = Path(f"/proc/{server.proc.pid}/task/{server.proc.pid}/children").read_text().split()
    return [int(c) for c in children]


def test_a_dead_worker_is_replaced(tmp_path: Path) -> None:
    with running(tmp_path, MAILWRIGHT_WORKERS="2") as server:
        deadline = time.monotonic() + 10
        while len(_workers(server)) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        first = _workers(server)
        assert len(first) == 2
        os.kill(first[0], signal.SIGKILL)
        while time.monotonic() < deadline:
            now = _workers(server)
            if len(now) == 2 and first[0] not in now:
                break
            time.sleep(0.05)
        assert len(_workers(server)) == 2 and first[0] not in _workers(server)
        for _ in range(6):  # whichever worker accepts, mail is stored
            assert serves(server)
        assert "worker.died" in server.log()


def _alive(pid: int) -> bool:
    """Running, as opposed to gone or a zombie nobody has reaped yet."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_supervisor_sigkill_takes_the_workers_with_it(tmp_path: Path) -> None:
    with running(tmp_path, MAILWRIGHT_WORKERS="2") as server:
        deadline = time.monotonic() + 10
        while len(_workers(server)) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        workers = _workers(server)
        server.kill()
        while any(_alive(pid) for pid in workers) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not any(_alive(pid) for pid in workers)


def test_single_process_mode(tmp_path: Path) -> None:
    with running(tmp_path, MAILWRIGHT_WORKERS="1") as server:
        with smtplib.SMTP(server.host, server.port, timeout=10) as smtp:
            smtp.sendmail("a@remote.test", ["alice@example.test"], b"Subject: x\r\n\r\nx\r\n")
        assert len(server.inbox("alice@example.test")) == 1
        assert server.stop() == 0
