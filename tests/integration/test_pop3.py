"""POP3 on real sockets against a real ``mailwright serve``: Python's poplib and a raw
client. Download byte for byte, POP3S and STLS, the maildrop lock across workers, DELE
only at QUIT (a drop, SIGKILL or SIGTERM deletes nothing), the snapshot at login, UIDL
stability, plaintext policy, bad input, login throttling, timeouts and connection caps.

Mail is delivered over SMTP to the same server; what the server stored is read from its
database (``Server.inbox``), never through a second store instance.
"""

from __future__ import annotations

import base64
import contextlib
import poplib
import re
import signal
import smtplib
import socket
import ssl
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.integration.server import Server, worker_of, worker_pids

ALICE = "alice@example.test"
BOB = "bob@example.test"
WAIT = 15.0  # the bound of every wait on the server

DOTS = (
    b"From: s@remote.test\r\nSubject: dots\r\n\r\n"
    b"hello\r\n.dot first\r\n..two dots\r\n.\r\nFrom the start\r\nend\r\n"
)
EIGHT_BIT = (
    b"From: s@remote.test\r\nSubject: 8-bit\r\nContent-Type: text/plain; charset=utf-8\r\n"
    b"Content-Transfer-Encoding: 8bit\r\n\r\nGr\xc3\xbc\xc3\x9fe, caf\xc3\xa9\r\n"
)
# Larger than the inline limit (128 KiB): stored in, and read back from, a blob file.
LARGE = b"From: s@remote.test\r\nSubject: large\r\n\r\n" + b"".join(
    b"line %06d " % i + b"z" * 60 + b"\r\n" for i in range(3000)
)


# -- helpers ---------------------------------------------------------------------------


@contextlib.contextmanager
def running(tmp_path: Path, **env: str) -> Iterator[Server]:
    srv = Server.create(tmp_path / "mw", users=(ALICE, BOB), **env).start()
    try:
        yield srv
    finally:
        if srv.proc is not None:
            srv.kill()


def deliver(server: Server, *messages: bytes, to: str = ALICE) -> list[bytes]:
    """Deliver over SMTP; return what the server stored in ``to``'s INBOX afterwards."""
    with smtplib.SMTP(server.host, server.port, timeout=WAIT) as smtp:
        for message in messages:
            smtp.sendmail("s@remote.test", [to], message, mail_options=["BODY=8BITMIME"])
    return server.inbox(to)


def login(server: Server, user: str = ALICE) -> poplib.POP3:
    pop = poplib.POP3(server.host, server.pop3_port, timeout=WAIT)
    pop.user(user)
    pop.pass_("secret")
    return pop


def tls_context(server: Server) -> ssl.SSLContext:
    """Trusts the server's self-signed certificate (its names include 127.0.0.1)."""
    return ssl.create_default_context(cafile=str(server.cert))


def wait_until(what: str, predicate: Callable[[], bool]) -> None:
    """A bounded wait for something the server does (a log line, a released lock)."""
    deadline = time.monotonic() + WAIT
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def log_count(server: Server, event: str) -> int:
    return server.log().count(f"event={event} ")


def wait_for_events(server: Server, event: str, count: int) -> None:
    wait_until(f"{count} {event}", lambda: log_count(server, event) >= count)


def stuffed(message: bytes) -> bytes:
    """``message`` as RETR sends it after the status line (RFC 1939 §3)."""
    lines = message.split(b"\r\n")[:-1]  # stored messages end with CRLF
    return b"".join((b"." + ln if ln.startswith(b".") else ln) + b"\r\n" for ln in lines) + b".\r\n"


def top(message: bytes, n: int) -> bytes:
    """The header, the blank line and ``n`` body lines (RFC 1939 §7), CRLF ends."""
    head, _, body = message.partition(b"\r\n\r\n")
    lines = body.split(b"\r\n")[:-1][:n]
    return head + b"\r\n\r\n" + b"".join(ln + b"\r\n" for ln in lines)


def retr(pop: poplib.POP3, n: int) -> bytes:
    """RETR through poplib (which undoes the dot-stuffing), as the message's octets."""
    _resp, lines, _octets = pop.retr(n)
    return b"".join(ln + b"\r\n" for ln in lines)


def single(response: object) -> list[bytes]:
    """The words after "+OK" of LIST or UIDL with an argument (a one-line answer)."""
    assert isinstance(response, bytes)
    return response.split()[1:]


def uidls(pop: poplib.POP3) -> list[bytes]:
    response = pop.uidl()
    assert isinstance(response, tuple)  # without an argument: the listing
    return response[1]


class Client:
    """A raw POP3 client: exact bytes, pipelining, STLS by hand, dropped connections."""

    def __init__(self, port: int, *, context: ssl.SSLContext | None = None) -> None:
        sock = socket.create_connection(("127.0.0.1", port), timeout=WAIT)
        self.sock: socket.socket = (
            context.wrap_socket(sock, server_hostname="127.0.0.1") if context else sock
        )
        self.file = self.sock.makefile("rb")

    def line(self) -> bytes:
        line = self.file.readline()
        if not line:
            raise ConnectionError("closed by the server")
        return line

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def cmd(self, line: bytes) -> bytes:
        self.send(line + b"\r\n")
        return self.line()

    def body(self) -> bytes:
        """A multi-line body as sent (still dot-stuffed), through the final ".\r\n"."""
        out = b""
        while True:
            line = self.line()
            out += line
            if line == b".\r\n":
                return out

    def starttls(self, context: ssl.SSLContext) -> None:
        self.file.close()
        self.sock = context.wrap_socket(self.sock, server_hostname="127.0.0.1")
        self.file = self.sock.makefile("rb")

    def login(self, user: str = ALICE) -> bytes:
        assert self.cmd(b"USER " + user.encode()).startswith(b"+OK")
        return self.cmd(b"PASS secret")

    def closed(self) -> bool:
        return self.file.readline() == b""

    def close(self) -> None:
        self.file.close()
        self.sock.close()


def greeted(port: int, *, context: ssl.SSLContext | None = None) -> Client:
    c = Client(port, context=context)
    assert c.line().startswith(b"+OK ")
    return c


# -- download, byte for byte -----------------------------------------------------------


def test_user_pass_stat_list_uidl_retr_top_byte_for_byte(server: Server) -> None:
    stored = deliver(server, DOTS, EIGHT_BIT, LARGE)
    assert len(stored) == 3 and len(stored[2]) > 128 * 1024
    pop = login(server)
    try:
        assert pop.stat() == (3, sum(len(m) for m in stored))
        _, listing, _ = pop.list()
        assert listing == [b"%d %d" % (i, len(m)) for i, m in enumerate(stored, 1)]
        with server.db() as db:
            expected_uidl = [
                b"%d %d.%d" % (i, validity, uid)
                for i, (validity, uid) in enumerate(
                    db.execute(
                        "SELECT b.uidvalidity, p.uid FROM placements p"
                        " JOIN mailboxes b ON b.id = p.mailbox_id"
                        " JOIN accounts a ON a.id = b.account_id"
                        " WHERE a.address = ? AND b.name = 'INBOX' ORDER BY p.uid",
                        (ALICE,),
                    ),
                    1,
                )
            ]
        assert uidls(pop) == expected_uidl
        assert single(pop.uidl(2)) == expected_uidl[1].split()
        for i, message in enumerate(stored, 1):
            assert single(pop.list(i)) == [b"%d" % i, b"%d" % len(message)]
            assert retr(pop, i) == message
            for n in (0, 2, 10_000):
                _, lines, _ = pop.top(i, n)
                assert b"".join(ln + b"\r\n" for ln in lines) == top(message, n)
        assert pop.quit().startswith(b"+OK")
    finally:
        pop.close()
    # The wire itself: the status line, then the message dot-stuffed, then ".".
    c = greeted(server.pop3_port)
    assert c.login().startswith(b"+OK Logged in")
    assert c.cmd(b"RETR 1") == b"+OK %d octets\r\n" % len(stored[0])
    assert c.body() == stuffed(stored[0])
    assert c.cmd(b"TOP 1 1") == b"+OK Message follows\r\n"
    assert c.body() == stuffed(top(stored[0], 1))
    assert c.cmd(b"QUIT").startswith(b"+OK")
    assert c.closed()
    c.close()
    assert server.inbox(ALICE) == stored  # nothing was deleted


def test_pop3s_implicit_tls(server: Server) -> None:
    [stored] = deliver(server, EIGHT_BIT)
    pop = poplib.POP3_SSL(server.host, server.pop3s_port, context=tls_context(server), timeout=WAIT)
    try:
        capa = pop.capa()
        assert "STLS" not in capa and "USER" in capa
        pop.user(ALICE)
        pop.pass_("secret")
        assert pop.stat() == (1, len(stored))
        assert retr(pop, 1) == stored
        pop.quit()
    finally:
        pop.close()
    wait_for_events(server, "pop3.disconnect", 1)
    [line] = [ln for ln in server.log().splitlines() if "event=pop3.disconnect" in ln]
    assert "tls=TLS" in line or 'tls="TLS' in line, line


def test_pop3s_handshake_at_once_after_connect(server: Server) -> None:
    """The ClientHello comes right behind the TCP handshake, often before the server's
    session task is running: it must reach TLS, not a plaintext buffer (it used to)."""
    context = tls_context(server)
    for _ in range(10):
        c = Client(server.pop3s_port, context=context)
        assert c.line().startswith(b"+OK ")
        c.close()
    # Plaintext on the TLS port is not a ClientHello: the handshake fails, nothing is read
    # as a command, and the server goes on.
    with socket.create_connection(("127.0.0.1", server.pop3s_port), timeout=WAIT) as sock:
        sock.sendall(b"CAPA\r\n")
        received = b""
        while chunk := sock.recv(4096):
            received += chunk
        assert b"+OK" not in received
    wait_until("the failed handshake", lambda: "event=pop3.lost " in server.log())
    c = Client(server.pop3s_port, context=context)
    assert c.line().startswith(b"+OK ")
    c.close()


def test_pop3s_client_hello_in_pieces(server: Server) -> None:
    """A ClientHello split over several reads (as a large one is, over TCP segments)."""
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = tls_context(server).wrap_bio(inc, out, server_hostname="127.0.0.1")
    with pytest.raises(ssl.SSLWantReadError):
        tls.do_handshake()
    hello = out.read()
    with socket.create_connection(("127.0.0.1", server.pop3s_port), timeout=WAIT) as sock:
        for piece in (hello[:3], hello[3:9], hello[9:]):
            sock.sendall(piece)
            time.sleep(0.1)  # not a synchronisation: lets the server read each piece alone

        def pump() -> None:
            data = sock.recv(65536)
            if not data:
                raise ConnectionError("closed by the server")
            inc.write(data)

        while True:
            try:
                tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                sock.sendall(out.read())
                pump()
        sock.sendall(out.read())
        greeting = b""
        while not greeting.endswith(b"\r\n"):
            try:
                greeting += tls.read(1024)
            except ssl.SSLWantReadError:
                pump()
        assert greeting.startswith(b"+OK ")


def test_stls_then_login(server: Server) -> None:
    [stored] = deliver(server, DOTS)
    pop = poplib.POP3(server.host, server.pop3_port, timeout=WAIT)
    try:
        assert "STLS" in pop.capa()
        assert pop.stls(context=tls_context(server)).startswith(b"+OK")
        capa = pop.capa()
        assert "STLS" not in capa and "USER" in capa
        pop.user(ALICE)
        pop.pass_("secret")
        assert retr(pop, 1) == stored
        pop.quit()
    finally:
        pop.close()


def test_stls_discards_plaintext_pipelined_behind_it(server: Server) -> None:
    deliver(server, DOTS)
    c = greeted(server.pop3_port)
    # The USER rides in the same packet as STLS (the STARTTLS command-injection class).
    c.send(b"STLS\r\nUSER " + ALICE.encode() + b"\r\n")
    assert c.line() == b"+OK Begin TLS negotiation\r\n"
    c.starttls(tls_context(server))
    # Had the USER been read, its "+OK Send PASS" would come before CAPA's answer, and
    # the PASS would log in.
    assert c.cmd(b"CAPA") == b"+OK Capability list follows\r\n"
    assert b"USER\r\n" in c.body()
    assert c.cmd(b"PASS secret").startswith(b"-ERR Send USER first")
    assert c.login().startswith(b"+OK Logged in")
    c.cmd(b"QUIT")
    c.close()
    wait_until("the TLS log line", lambda: "event=pop3.tls " in server.log())
    discarded = re.search(r"event=pop3\.tls .*discarded=(\d+)", server.log())
    assert discarded and int(discarded.group(1)) == len(b"USER " + ALICE.encode() + b"\r\n")


def test_auth_plain_with_initial_response(server: Server) -> None:
    deliver(server, DOTS)

    def plain(user: str, password: str) -> bytes:
        return base64.b64encode(f"\0{user}\0{password}".encode())

    c = greeted(server.pop3_port)
    assert c.cmd(b"AUTH PLAIN " + plain(ALICE, "wrong")).startswith(b"-ERR [AUTH]")
    assert c.cmd(b"AUTH PLAIN " + plain(ALICE, "secret")).startswith(b"+OK Logged in")
    assert c.cmd(b"STAT").startswith(b"+OK 1 ")
    c.cmd(b"QUIT")
    c.close()
    # Without the initial response: an empty challenge, then the response; "*" cancels.
    c = greeted(server.pop3_port)
    assert c.cmd(b"AUTH PLAIN") == b"+ \r\n"
    assert c.cmd(b"*").startswith(b"-ERR")
    assert c.cmd(b"AUTH PLAIN") == b"+ \r\n"
    assert c.cmd(plain(BOB, "secret")).startswith(b"+OK Logged in: 0 messages")
    c.cmd(b"QUIT")
    c.close()


# -- the maildrop lock ------------------------------------------------------------------


def test_second_session_on_a_maildrop_is_in_use(tmp_path: Path) -> None:
    with running(tmp_path, MAILWRIGHT_WORKERS="1") as server:
        first = login(server)
        c = greeted(server.pop3_port)
        assert c.login().startswith(b"-ERR [IN-USE]")
        assert c.login(BOB).startswith(b"+OK")  # another maildrop is free
        c.cmd(b"QUIT")
        c.close()
        first.quit()  # the reply to QUIT comes after the lock is given back
        login(server).quit()


@pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="needs Linux /proc")
def test_second_session_is_in_use_across_workers(tmp_path: Path) -> None:
    with running(tmp_path, MAILWRIGHT_WORKERS="2") as server:
        assert server.proc is not None
        assert len(worker_pids(server)) == 2
        holder = greeted(server.pop3_port)
        assert holder.login().startswith(b"+OK Logged in")
        home = worker_of(server, server.pop3_port, holder.sock)
        # Connections go to the worker with fewer of them: keep each one open until the
        # second session has been refused both in the holder's worker and in the other.
        seen: set[bool] = set()
        refused: list[Client] = []
        for _ in range(20):
            c = greeted(server.pop3_port)
            refused.append(c)
            same = worker_of(server, server.pop3_port, c.sock) == home
            assert c.login().startswith(b"-ERR [IN-USE]"), f"same worker: {same}"
            seen.add(same)
            if seen == {True, False}:
                break
        assert seen == {True, False}, f"connections landed only in one worker: {seen}"
        for c in refused:
            c.cmd(b"QUIT")
            assert c.closed()
            c.close()
        holder.cmd(b"QUIT")
        holder.close()
        # The maildrop is free by the time QUIT is answered, whichever worker comes next.
        for _ in range(10):
            assert login(server).quit().startswith(b"+OK")


# -- DELE takes effect at QUIT, and only then ---------------------------------------------


def test_dropped_connection_deletes_nothing_and_quit_does(server: Server) -> None:
    stored = deliver(server, DOTS, EIGHT_BIT, LARGE)
    c = greeted(server.pop3_port)
    c.login()
    for n in (1, 2, 3):
        assert c.cmd(b"DELE %d" % n).startswith(b"+OK")
    assert c.cmd(b"STAT") == b"+OK 0 0\r\n"
    c.close()  # no QUIT
    wait_for_events(server, "pop3.disconnect", 1)
    assert server.inbox(ALICE) == stored
    pop = login(server)
    before = uidls(pop)
    assert pop.stat()[0] == 3
    pop.dele(1)
    pop.dele(3)
    assert pop.quit() == b"+OK mx.example.test closing connection (2 deleted)"
    assert server.inbox(ALICE) == [stored[1]]
    pop = login(server)
    assert pop.stat() == (1, len(stored[1]))
    assert uidls(pop) == [b"1 " + before[1].split()[1]]  # the survivor keeps its UIDL
    assert retr(pop, 1) == stored[1]
    pop.quit()
    # The large message's blob file went with it.
    assert not any((server.data_dir / "blobs").glob("*/*"))


def test_rset_unmarks(server: Server) -> None:
    stored = deliver(server, DOTS, EIGHT_BIT)
    pop = login(server)
    pop.dele(1)
    pop.rset()
    assert pop.stat()[0] == 2
    pop.quit()
    assert server.inbox(ALICE) == stored


def test_sigkill_after_dele_deletes_nothing(server: Server) -> None:
    stored = deliver(server, DOTS, EIGHT_BIT, LARGE)
    pop = login(server)
    before = uidls(pop)
    for n in (1, 2, 3):
        pop.dele(n)
    server.kill()
    pop.close()
    server.start()
    assert server.inbox(ALICE) == stored
    pop = login(server)
    assert pop.stat() == (3, sum(len(m) for m in stored))
    assert uidls(pop) == before
    assert [retr(pop, n) for n in (1, 2, 3)] == stored
    pop.quit()


def test_sigterm_during_session_deletes_nothing(server: Server) -> None:
    stored = deliver(server, DOTS, EIGHT_BIT)
    c = greeted(server.pop3_port)
    c.login()
    assert c.cmd(b"DELE 1").startswith(b"+OK")
    assert c.cmd(b"DELE 2").startswith(b"+OK")
    server.signal(signal.SIGTERM)
    assert c.line() == b"-ERR [SYS/TEMP] Server shutting down, try again later\r\n"
    assert c.closed()
    c.close()
    assert server.proc is not None
    assert server.proc.wait(timeout=60) == 0
    server._release()
    assert server.inbox(ALICE) == stored
    server.start()
    pop = login(server)
    assert pop.stat()[0] == 2
    pop.quit()


# -- the maildrop is a snapshot; UIDLs are stable ---------------------------------------------


def test_mail_arriving_during_a_session_waits_for_the_next(server: Server) -> None:
    [first] = deliver(server, DOTS)
    pop = login(server)
    listing = uidls(pop)
    now = deliver(server, EIGHT_BIT)  # SMTP delivers while the maildrop is locked
    assert len(now) == 2
    assert pop.stat() == (1, len(first))
    assert uidls(pop) == listing
    with pytest.raises(poplib.error_proto, match="No such message"):
        pop.retr(2)
    pop.quit()
    pop = login(server)
    assert pop.stat() == (2, sum(len(m) for m in now))
    assert uidls(pop)[0] == listing[0]
    assert retr(pop, 2) == now[1]
    pop.quit()


def test_uidl_stable_across_sessions_and_restarts(server: Server) -> None:
    deliver(server, DOTS, EIGHT_BIT, LARGE)

    def listing() -> list[bytes]:
        pop = login(server)
        try:
            return uidls(pop)
        finally:
            pop.quit()

    first = listing()
    assert len({u.split()[1] for u in first}) == 3
    assert listing() == first
    server.stop()
    server.start()
    assert listing() == first
    server.kill()
    server.start()
    assert listing() == first


# -- plaintext policy ---------------------------------------------------------------------


def test_plaintext_never_needs_tls(tmp_path: Path) -> None:
    with running(tmp_path, MAILWRIGHT_POP3__ALLOW_PLAINTEXT="never") as server:
        [stored] = deliver(server, DOTS)
        c = greeted(server.pop3_port)
        assert c.cmd(b"CAPA").startswith(b"+OK")
        capa = c.body().split(b"\r\n")
        assert b"USER" not in capa and b"STLS" in capa
        assert not any(line.startswith(b"SASL") for line in capa)
        assert c.cmd(b"USER " + ALICE.encode()).startswith(b"-ERR Plain-text login needs TLS")
        initial = base64.b64encode(b"\0" + ALICE.encode() + b"\0secret")
        assert c.cmd(b"AUTH PLAIN " + initial).startswith(b"-ERR Plain-text login needs TLS")
        assert c.cmd(b"STLS") == b"+OK Begin TLS negotiation\r\n"
        c.starttls(tls_context(server))
        assert c.cmd(b"CAPA").startswith(b"+OK")
        capa = c.body().split(b"\r\n")
        assert b"USER" in capa and b"STLS" not in capa
        assert c.login().startswith(b"+OK Logged in")
        assert c.cmd(b"RETR 1").startswith(b"+OK")
        assert c.body() == stuffed(stored)
        c.cmd(b"QUIT")
        c.close()
        # Implicit TLS needs nothing more.
        pop = poplib.POP3_SSL(
            server.host, server.pop3s_port, context=tls_context(server), timeout=WAIT
        )
        pop.user(ALICE)
        pop.pass_("secret")
        pop.quit()


# -- bad input ------------------------------------------------------------------------------


def test_commands_before_login_are_refused(server: Server) -> None:
    deliver(server, DOTS)
    c = greeted(server.pop3_port)
    for command in (b"STAT", b"LIST", b"RETR 1", b"DELE 1", b"UIDL", b"TOP 1 0"):
        assert c.cmd(command) == b"-ERR Not authenticated\r\n", command
    assert c.cmd(b"PASS secret") == b"-ERR Send USER first\r\n"
    assert c.cmd(b"QUIT").startswith(b"+OK")
    assert c.closed()
    c.close()
    assert len(server.inbox(ALICE)) == 1


def test_missing_deleted_and_malformed_message_numbers(server: Server) -> None:
    deliver(server, DOTS, EIGHT_BIT)
    c = greeted(server.pop3_port)
    c.login()
    refusals = [
        (b"RETR 3", b"-ERR No such message"),
        (b"RETR 0", b"-ERR No such message"),
        (b"DELE 99999999999999999999", b"-ERR No such message"),
        (b"RETR abc", b"-ERR Invalid message number"),
        (b"LIST -1", b"-ERR Invalid message number"),
        (b"TOP 1 x", b"-ERR Invalid line count"),
        (b"RETR", b"-ERR Syntax: RETR msg"),
    ]
    for command, reply in refusals:  # seven errors: under the cap of ten
        assert c.cmd(command).startswith(reply), command
    assert c.cmd(b"DELE 1").startswith(b"+OK")
    assert c.cmd(b"DELE 1") == b"-ERR Message already deleted\r\n"
    assert c.cmd(b"RETR 1") == b"-ERR Message already deleted\r\n"
    assert c.cmd(b"LIST") == b"+OK Scan listing follows\r\n"
    assert c.body().startswith(b"2 ")  # the marked message is not listed
    assert c.cmd(b"QUIT").startswith(b"+OK")  # nine errors: still served
    c.close()
    assert len(server.inbox(ALICE)) == 1


def test_overlong_lines_are_refused_and_the_server_goes_on(server: Server) -> None:
    c = greeted(server.pop3_port)
    assert c.cmd(b"NOOP " + b"x" * 5000) == b"-ERR Line too long\r\n"
    # A megabyte with no line end at all: discarded as it arrives, one refusal at the LF.
    c.send(b"y" * 1_000_000)
    assert c.cmd(b"") == b"-ERR Line too long\r\n"
    assert c.login().startswith(b"+OK Logged in")  # the same session goes on
    c.cmd(b"QUIT")
    c.close()
    login(server, BOB).quit()  # and so does the server


def test_a_flood_of_bad_commands_closes_the_connection(server: Server) -> None:
    c = greeted(server.pop3_port)
    c.send(b"BOGUS\r\n" * 50)  # pipelined: the server stops reading at the cap
    for _ in range(10):
        assert c.line() == b"-ERR Unknown command\r\n"
    assert c.line() == b"-ERR Too many errors\r\n"
    assert c.closed()
    c.close()
    login(server).quit()


# -- failed logins ----------------------------------------------------------------------------


def test_failed_logins_are_delayed_then_refused(tmp_path: Path) -> None:
    with running(
        tmp_path,
        MAILWRIGHT_AUTH__FREE_FAILURES="0",
        MAILWRIGHT_AUTH__MAX_DELAY="0.05",
        MAILWRIGHT_AUTH__MAX_USER_FAILURES="3",
    ) as server:

        def attempt(user: str, password: str) -> bytes:
            c = greeted(server.pop3_port)
            try:
                assert c.cmd(b"USER " + user.encode()).startswith(b"+OK")
                return c.cmd(b"PASS " + password.encode())
            finally:
                c.close()

        for _ in range(3):
            assert attempt(ALICE, "guess").startswith(b"-ERR [AUTH] Authentication failed")
        # The user's bucket is full: even the right password is refused, looking the same.
        assert attempt(ALICE, "secret") == b"-ERR [AUTH] Authentication failed\r\n"
        # The address has 3 failures of its cap of 20: another user still logs in.
        assert attempt(BOB, "secret").startswith(b"+OK Logged in")
        failed = [ln for ln in server.log().splitlines() if "event=auth.failed " in ln]
        assert len(failed) == 4
        assert all(f"user={ALICE}" in ln and "ip=127.0.0.1" in ln for ln in failed)
        assert all("secret" not in ln and "guess" not in ln for ln in failed)
        assert ['reason="bad password"' in ln for ln in failed] == [True] * 3 + [False]
        assert "reason=throttled" in failed[3]
        # With no free failures every one is delayed (the delay is logged, never timed).
        assert all(re.search(r" delay=0\.05\b", ln) for ln in failed)


# -- timeouts and caps -------------------------------------------------------------------------


def test_login_idle_and_handshake_timeouts(tmp_path: Path) -> None:
    with running(
        tmp_path,
        MAILWRIGHT_POP3__LOGIN_TIMEOUT="2",
        MAILWRIGHT_POP3__IDLE_TIMEOUT="2",
        MAILWRIGHT_POP3__TLS_HANDSHAKE_TIMEOUT="2",
    ) as server:
        stored = deliver(server, DOTS)
        silent = greeted(server.pop3_port)
        idle = greeted(server.pop3_port)
        no_hello = socket.create_connection(("127.0.0.1", server.pop3s_port), timeout=WAIT)
        assert idle.login().startswith(b"+OK Logged in")
        assert idle.cmd(b"DELE 1").startswith(b"+OK")
        for c in (silent, idle):
            assert c.line() == b"-ERR Autologout: idle for too long\r\n"
            assert c.closed()
            c.close()
        # A POP3S client that never starts TLS is closed, and told nothing in plaintext.
        assert no_hello.recv(100) == b""
        no_hello.close()
        assert log_count(server, "pop3.timeout") == 3
        assert server.inbox(ALICE) == stored  # the timed-out session deleted nothing
        pop = login(server)  # the maildrop was given back, and the server serves on
        assert pop.stat()[0] == 1
        pop.quit()


def test_connection_cap_per_address(tmp_path: Path) -> None:
    with running(tmp_path, MAILWRIGHT_POP3__MAX_CONNECTIONS_PER_IP="2") as server:
        a = greeted(server.pop3_port)
        b = greeted(server.pop3_port)
        extra = Client(server.pop3_port)
        assert extra.line() == b"-ERR [SYS/TEMP] Too many connections, try again later\r\n"
        assert extra.closed()
        extra.close()
        # The cap counts both POP3 ports together.
        tls = socket.create_connection((server.host, server.pop3s_port), timeout=WAIT)
        with pytest.raises((ssl.SSLError, OSError)):
            tls_context(server).wrap_socket(tls, server_hostname="127.0.0.1").recv(100)
        tls.close()
        assert a.cmd(b"QUIT").startswith(b"+OK")
        assert a.closed()  # the slot is freed before the server closes the connection
        a.close()
        again = greeted(server.pop3_port)
        assert again.login().startswith(b"+OK Logged in")
        for c in (again, b):
            c.cmd(b"QUIT")
            c.close()


def test_dropped_tls_sessions_give_their_slot_back(tmp_path: Path) -> None:
    """A TLS transport forgets the peer's address once it is gone; the cap must still
    release the address's slot (it used to keep it, locking the address out)."""
    with running(tmp_path, MAILWRIGHT_POP3__MAX_CONNECTIONS_PER_IP="2") as server:
        context = tls_context(server)
        for n in range(1, 4):
            c = greeted(server.pop3s_port, context=context)
            c.close()  # no QUIT, no TLS close_notify
            stls = greeted(server.pop3_port)
            assert stls.cmd(b"STLS").startswith(b"+OK")
            stls.starttls(context)
            stls.close()
            wait_for_events(server, "pop3.disconnect", 2 * n)
        a = greeted(server.pop3s_port, context=context)
        b = greeted(server.pop3_port)
        for c in (a, b):
            c.cmd(b"QUIT")
            c.close()
